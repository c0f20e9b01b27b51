"""Fetch benchmark: 200 KRW markets x 30 days of 1h, cold then warm, against the simulator.

The simulator runs in its own process, answers with ~30 ms latency and enforces 10
requests/s. Prints wall seconds, candle requests, 429s, and wall / (requests / 10 req/s),
the ratio to the rate-limit bound. Targets: cold within 5% of the bound with zero 429s;
warm <= 1 request per market. Last, the no-op (the same hour again) as a whole
`upbit-cache fetch` process: start-up, market list, plan, no candle request.

    python scripts/bench_fetch.py [--markets 200] [--days 30] [--latency 0.03]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from simproc import SimProcess

from upbit_cache.manager.cache import UpbitCache
from upbit_cache.manager.scope import Window

CLOCK = "2026-11-20T00:20:00Z"
RATE = 10


def run(sim: SimProcess, data_dir: str, markets: list[str], days: int, label: str) -> None:
    sim.reset()
    began = time.perf_counter()
    cache = UpbitCache(data_dir, api_url=sim.url, rate=RATE)
    report = cache.fetch(markets, timeframes="1h", window=Window(days=days))
    wall = time.perf_counter() - began
    stats = sim.stats()
    requests = stats["candle_requests"]
    bound = requests / RATE
    ratio = f"{wall / bound:.3f}" if requests else "n/a"
    print(
        f"{label:<22} wall {wall:7.2f} s  candle requests {requests:4d} "
        f"({requests / len(markets):.2f}/market)  429s {stats['rate_limited']}  "
        f"candles {report.candles:7,d}  bound {bound:6.1f} s  wall/bound {ratio}  "
        f"failed {len(report.failed)}"
    )


def whole_process(sim: SimProcess, data_dir: str, markets: list[str], days: int, runs: int) -> None:
    """The no-op fetch as a user runs it: `upbit-cache fetch ...` as its own process."""
    command = [sys.executable, "-m", "upbit_cache", "fetch", *markets, "-t", "1h", "-q"]
    command += ["--days", str(days), "--rate", str(RATE), "--data-dir", data_dir]
    command += ["--api-url", sim.url]
    walls = []
    for _ in range(runs):
        sim.reset()
        began = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - began)
    requests = sim.stats()["candle_requests"]
    print(
        f"{'no-op, whole process':<22} wall {statistics.median(walls):7.2f} s median of {runs} "
        f"(min {min(walls):.2f}, max {max(walls):.2f})  candle requests {requests:4d}"
    )


def krw_markets(url: str, count: int) -> list[str]:
    with urllib.request.urlopen(f"{url}/v1/market/all", timeout=10) as answer:
        listed = [m["market"] for m in json.loads(answer.read())]
    return [m for m in listed if m.startswith("KRW-")][:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=200)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--latency", type=float, default=0.03)
    parser.add_argument("--repeat", type=int, default=5, help="runs of the whole-process no-op")
    args = parser.parse_args()
    flags = ["--rate", str(RATE), "--latency", str(args.latency), "--clock", CLOCK, "--frozen"]
    with SimProcess(*flags) as sim, tempfile.TemporaryDirectory() as data_dir:
        markets = krw_markets(sim.url, args.markets)
        print(
            f"{len(markets)} KRW markets x {args.days} days of 1h, simulator latency "
            f"{args.latency * 1000:.0f} ms, limit {RATE} req/s"
        )
        run(sim, data_dir, markets, args.days, "cold (empty dir)")
        run(sim, data_dir, markets, args.days, "warm (same hour)")
        sim.advance(3600)
        run(sim, data_dir, markets, args.days, "warm (one hour later)")
        whole_process(sim, data_dir, markets, args.days, args.repeat)


if __name__ == "__main__":
    main()
