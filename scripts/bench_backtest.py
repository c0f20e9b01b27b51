"""Backtest benchmark: 10 markets x 1 year x {15m, 1h, 4h}, cold, against the simulator.

The simulator runs in its own process (30 ms latency, 10 requests/s). Prints the requests
sent against the naive count (each timeframe fetched on its own) and the 1m-based count,
wall time against the rate-limit bound, the time to derive the year (in the fetch, and
again from scratch), and this process's peak memory.

    python scripts/bench_backtest.py [--markets 10] [--days 365]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

from bench_fetch import krw_markets
from simproc import SimProcess

from upbit_cache.manager.cache import UpbitCache
from upbit_cache.manager.planner import pages_for
from upbit_cache.manager.scope import Window
from upbit_cache.ranges import Ranges
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

CLOCK = "2026-11-20T00:20:00Z"
RATE = 10
DAY = 86_400_000


def pages(tf: str, days: int) -> int:
    timeframe = Timeframe.parse(tf)
    end = timeframe.floor_one(to_ms(CLOCK))
    return pages_for(timeframe, Ranges.of([(timeframe.floor_one(end - days * DAY), end)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=10)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    flags = ["--rate", str(RATE), "--latency", "0.03", "--clock", CLOCK, "--frozen"]
    targets = Timeframe.parse_list("15m,1h,4h")
    with SimProcess(*flags) as sim, tempfile.TemporaryDirectory() as data_dir:
        markets = krw_markets(sim.url, args.markets)
        naive = len(markets) * sum(pages(t.name, args.days) for t in targets)
        one_minute = len(markets) * pages("1m", args.days)
        sim.reset()
        cache = UpbitCache(data_dir, api_url=sim.url, rate=RATE)
        began = time.perf_counter()
        report = cache.fetch(markets, timeframes=targets, window=Window(days=args.days))
        wall = time.perf_counter() - began
        sent = sim.stats()["candle_requests"]
        assert report.plan is not None
        derived = sum(d.candles for d in report.derived)
        print(
            f"{len(markets)} markets x {args.days} days x 15m,1h,4h, cold, 30 ms latency, "
            f"{RATE} req/s\n"
            f"plan: {report.plan.describe()}\n"
            f"requests sent {sent:,}  (naive per-timeframe {naive:,}, 1m-based {one_minute:,}); "
            f"429s {sim.stats()['rate_limited']}; failed {len(report.failed)}\n"
            f"wall {wall:.1f} s  bound {sent / RATE:.1f} s  wall/bound {wall / (sent / RATE):.3f}\n"
            f"candles: {report.candles:,} base + {derived:,} derived; "
            f"derive in the fetch {report.derive_seconds:.2f} s"
        )
        for target in targets[1:]:
            shutil.rmtree(Path(data_dir) / "candles" / f"timeframe={target.name}")
            shutil.rmtree(Path(data_dir) / "fetched" / target.name)
        began = time.perf_counter()
        cache.resample(markets, targets[1:])
        print(f"derive 1h+4h for the year from scratch: {time.perf_counter() - began:.2f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (this process): {peak:.0f} MiB")


if __name__ == "__main__":
    main()
