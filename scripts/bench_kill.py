"""Kill benchmark: the 200-market screener fetch (30 days of 1h), SIGKILLed at random moments.

The real `upbit-cache fetch` runs as a process against the simulator (its own process, 30 ms
latency, 10 requests/s) and is killed with SIGKILL at a random point of what is left to
fetch, 20 times in a row on one data dir; a last run completes the job. After each kill the
pages still missing are counted from the store's records, so each kill's re-sent requests
are the requests it made that did not end up stored. At the end every stored row is
compared with the simulator's own candles: rows lost, duplicated or wrong must be 0.
Target: re-sent <= 10% of the total (a kill at 50% re-sends at most the pages in flight).

    python scripts/bench_kill.py [--markets 200] [--kills 20] [--rate 10] [--seed 1]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
from bench_fetch import krw_markets
from simproc import SimProcess

from upbit_cache.manager.planner import missing, pages_for
from upbit_cache.ranges import TimeRange
from upbit_cache.simulator.history import History
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

CLOCK = "2026-11-20T00:20:00Z"
DAYS = 30
H1 = Timeframe.parse("1h")
SPAN = TimeRange(H1.floor_one(to_ms(CLOCK) - DAYS * 86_400_000), H1.floor_one(to_ms(CLOCK)))


def pending(data_dir: str, markets: list[str]) -> int:
    """Pages the store still lacks (from its fetched-range records)."""
    known = CandleStore(data_dir).coverage()
    return sum(pages_for(H1, missing(known, m, H1, SPAN)) for m in markets)


def fetch(
    sim: SimProcess, data_dir: str, markets: list[str], rate: float
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "upbit_cache", "fetch", *markets, "-t", "1h"]
    command += ["--days", str(DAYS), "--api-url", sim.url, "--data-dir", data_dir]
    command += ["--rate", str(rate), "-q"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def check(data_dir: str, markets: list[str]) -> tuple[int, int, int]:
    """Rows lost, duplicated and wrong against the simulator's candles."""
    store, history, now = CandleStore(data_dir), History(), to_ms(CLOCK)
    lost = duplicated = wrong = 0
    for market in markets:
        got = store.load(market, H1, SPAN)
        bars = history.candles(market, 60, SPAN.start, SPAN.end, now)
        want = dict(zip(bars.start.tolist(), bars.close.tolist(), strict=True))
        times = got["time"].astype("datetime64[ms, UTC]").astype("int64").to_numpy()
        duplicated += len(times) - len(np.unique(times))
        have = dict(zip(times.tolist(), got["close"].tolist(), strict=True))
        lost += len(set(want) - set(have))
        wrong += sum(1 for t, close in have.items() if want.get(t) != close)
    return lost, duplicated, wrong


def complete(sim: SimProcess, data_dir: str, markets: list[str], rate: int) -> tuple[int, int]:
    """A last run that finishes the job: its requests and exit code."""
    sim.reset()
    last = fetch(sim, data_dir, markets, rate)
    last.wait()
    return int(sim.stats()["candle_requests"]), last.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=200)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--rate", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    flags = ["--rate", str(args.rate), "--latency", "0.03", "--clock", CLOCK, "--frozen"]
    with SimProcess(*flags) as sim, tempfile.TemporaryDirectory() as tmp:
        markets = krw_markets(sim.url, args.markets)
        total = pending(tmp, markets)
        print(
            f"fetch <{len(markets)} KRW markets> -t 1h --days {DAYS}: {total} pages a run; "
            f"{args.kills} SIGKILLs, each at 20-80% of what is left (a new data dir once "
            f"less than a tenth is left); simulator 30 ms latency, {args.rate} req/s"
        )
        resents: list[int] = []
        pages_asked = requests = runs = 0
        lost = duplicated = wrong = failed = 0
        data_dir, left = "", 0
        for kill in range(1, args.kills + 2):
            if left <= total // 10 or kill > args.kills:  # finish this data dir, check it
                if data_dir:
                    sent, code = complete(sim, data_dir, markets, args.rate)
                    requests, failed = requests + sent, failed + (code != 0)
                    found = check(data_dir, markets)
                    lost, duplicated, wrong = (
                        lost + found[0],
                        duplicated + found[1],
                        wrong + found[2],
                    )
                if kill > args.kills:
                    break
                data_dir = tempfile.mkdtemp(dir=tmp)
                left, runs, pages_asked = total, runs + 1, pages_asked + total
            target = round(left * rng.uniform(0.2, 0.8))
            sim.reset()
            victim = fetch(sim, data_dir, markets, args.rate)
            while sim.stats()["candle_requests"] < target and victim.poll() is None:
                time.sleep(0.002)
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
            sent = int(sim.stats()["candle_requests"])
            now_left = pending(data_dir, markets)
            resent = sent - (left - now_left)
            requests += sent
            resents.append(resent)
            print(
                f"  kill {kill:2d} after {sent:4d} of {left:3d} pages left: "
                f"{left - now_left:4d} kept, {resent:2d} re-sent ({resent / left:.1%})"
            )
            left = now_left
        print(
            f"total: {requests} requests for {pages_asked} pages ({runs} data dirs): "
            f"{requests - pages_asked} re-sent ({(requests - pages_asked) / pages_asked:.1%}); "
            f"per kill: mean {sum(resents) / len(resents):.1f}, max {max(resents)} "
            f"({max(resents) / total:.1%} of a run); failed last runs {failed}; "
            f"rows lost {lost}, duplicated {duplicated}, wrong {wrong}"
        )


if __name__ == "__main__":
    main()
