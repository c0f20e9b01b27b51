"""Host budget benchmark: 1, 3 and 7 `upbit-cache fetch` processes on one host (one data
dir, one runtime dir) share Upbit's 10 requests/s, with idle and with saturated CPUs.

The same work every time (7 KRW markets of 1m), split across the processes, against one
simulator in its own process (`--rate 10`, a sliding window counted when it gets each
request). Prints per setting: wall seconds, candle requests, requests/s while fetching
against the 10/s bound, and 429s, over several trials. Busy: `--busy` processes spinning
`while True: pass`, always killed at the end.

    python scripts/bench_hostbudget.py [--trials 3] [--days 3] [--busy 4] [--latency 0]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from simproc import SimProcess

CLOCK = "2026-11-20T00:20:00Z"
RATE = 10
MARKETS = 7
_SUMMARY = re.compile(r"([\d,]+) requests?, ([\d,]+) 429s?, ([\d.]+) s")


@dataclass
class Trial:
    wall: float  # first process started to last one ended
    span: float  # first fetch began to last one ended (start-up excluded)
    requests: int
    limited: int  # 429s the simulator answered
    failed: int  # processes that did not exit 0


@contextmanager
def busy_loops(count: int) -> Iterator[None]:
    """`count` processes spinning on the CPUs for as long as the block runs."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(0.5 if count else 0.0)  # let them take the CPUs before anything starts
        yield
    finally:
        for loop in loops:
            loop.kill()
        for loop in loops:
            loop.wait()


def krw_markets(url: str, count: int) -> list[str]:
    with urllib.request.urlopen(f"{url}/v1/market/all", timeout=10) as answer:
        listed = [m["market"] for m in json.loads(answer.read())]
    return [m for m in listed if m.startswith("KRW-")][:count]


def trial(sim: SimProcess, markets: list[str], processes: int, days: float) -> Trial:
    """One run of `processes` fetches at once, the markets dealt out among them."""
    sim.reset()
    groups = [markets[i::processes] for i in range(processes)]
    with tempfile.TemporaryDirectory() as folder:
        env = {
            **os.environ,
            "UPBIT_CACHE_RUNTIME_DIR": os.path.join(folder, "runtime"),
            "UPBIT_SETTLE_SECONDS": "0",
        }
        began = time.monotonic()
        procs = []
        for group in groups:
            command = [sys.executable, "-m", "upbit_cache", "fetch", *group, "-t", "1m"]
            command += ["--days", f"{days:g}", "--api-url", sim.url, "-q"]
            command += ["--data-dir", os.path.join(folder, "data")]
            procs.append(
                subprocess.Popen(
                    command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )
            )
        ends: list[float] = []
        starts: list[float] = []
        failed = 0
        for proc in procs:
            out, err = proc.communicate(timeout=600)
            ended = time.monotonic()
            ends.append(ended)
            found = _SUMMARY.search(out + err)
            if proc.returncode != 0 or found is None:
                failed += 1
                print(f"  a fetch exited {proc.returncode}: {err.strip()[-300:]}", flush=True)
            else:
                starts.append(ended - float(found.group(3)))
    stats = sim.stats()
    last = max(ends)
    return Trial(
        wall=last - began,
        span=last - min(starts, default=began),
        requests=int(stats["candle_requests"]),
        limited=int(stats["rate_limited"]),
        failed=failed,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--days", type=float, default=3.0, help="days of 1m per market")
    parser.add_argument("--busy", type=int, default=4, help="busy loops when saturated")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--processes", default="1,3,7")
    args = parser.parse_args()
    flags = ["--rate", str(RATE), "--latency", str(args.latency), "--clock", CLOCK, "--frozen"]
    with SimProcess(*flags) as sim:
        markets = krw_markets(sim.url, MARKETS)
        print(
            f"{len(markets)} KRW markets x {args.days:g} days of 1m, simulator latency "
            f"{args.latency * 1000:.0f} ms, limit {RATE} req/s, {os.cpu_count()} CPUs, "
            f"{args.trials} trials each"
        )
        print(
            f"{'processes':>9} {'CPUs':>9} {'wall s':>14} {'requests':>9} "
            f"{'req/s':>12} {'of bound':>9} {'429s':>12} {'failed':>6}"
        )
        for busy in (0, args.busy):
            for processes in (int(n) for n in args.processes.split(",")):
                trials = []
                with busy_loops(busy):
                    for _ in range(args.trials):
                        trials.append(trial(sim, markets, processes, args.days))
                walls = [t.wall for t in trials]
                rates = [t.requests / t.span for t in trials]
                limited = [t.limited for t in trials]
                cpus = f"{busy} busy" if busy else "idle"
                print(
                    f"{processes:>9} {cpus:>9} {min(walls):6.1f}-{max(walls):<6.1f} "
                    f"{trials[0].requests:>9} {min(rates):5.2f}-{max(rates):<5.2f} "
                    f"{sum(rates) / len(rates) / RATE:>9.3f} "
                    f"{'/'.join(map(str, limited)):>12} {sum(t.failed for t in trials):>6}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
