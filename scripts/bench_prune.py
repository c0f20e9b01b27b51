"""Storage-tier benchmark: a year of 1m candles for 5 markets (about 2.6 M rows).

Seeds the store with the simulator's deterministic candles (no HTTP: this is about the
store), then prints bytes and file counts per tier before and after `prune` compacts
everything older than 7 days, the compaction time, and the time to read one month and one
year (1s: one day and one month) of one market back through the library
(`upbit_cache.load`, a fresh process-level memory each time) from the hot tier (before)
and from the cold tier (after).

    python scripts/bench_prune.py [--markets 5] [--days 365] [--timeframe 1m|1s]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable

import pandas as pd

import upbit_cache
from upbit_cache.manager.prune import Policy, prune
from upbit_cache.ranges import Ranges
from upbit_cache.simulator.history import History
from upbit_cache.store.candle_store import CandleStore, TierUsage
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import iso, to_ms

NOW = to_ms("2026-11-20T00:00:00Z")
DAY = 86_400_000
UNITS = {"1m": 1, "1s": "seconds"}  # the simulator's names
READS = {  # what is read back, per timeframe
    "1m": {
        "one month": (to_ms("2026-09-01"), to_ms("2026-10-01")),
        "one year": (NOW - 365 * DAY, NOW),
    },
    "1s": {
        "one day": (to_ms("2026-11-01"), to_ms("2026-11-02")),
        "one month": (to_ms("2026-10-01"), to_ms("2026-11-01")),
    },
}


def seed(root: str, markets: list[str], days: int, tf: Timeframe) -> int:
    store, history, rows = CandleStore(root), History(), 0
    start = NOW - days * DAY
    for market in markets:
        bars = history.candles(market, UNITS[tf.name], start, NOW, NOW)
        frame = pd.DataFrame(
            {
                "time": pd.to_datetime(bars["start"], unit="ms", utc=True),
                **{c: bars[c] for c in ("open", "high", "low", "close", "volume", "value")},
                "timestamp": pd.to_datetime(bars["timestamp"], unit="ms", utc=True),
            }
        )
        rows += store.write(market, tf, frame, Ranges.of([(start, NOW)]))
    return rows


def best_of(runs: int, work: Callable[[], int]) -> tuple[float, int]:
    times, rows = [], 0
    for _ in range(runs):
        began = time.perf_counter()
        rows = work()
        times.append(time.perf_counter() - began)
    return min(times), rows


def reads(root: str, market: str, tf: Timeframe) -> dict[str, tuple[float, int]]:
    # upbit_cache.load opens a fresh store (fresh memory layer) on every call: a cold read.
    return {
        name: best_of(
            3, lambda lo=lo, hi=hi: len(upbit_cache.load(market, tf, lo, hi, data_dir=root))
        )
        for name, (lo, hi) in READS[tf.name].items()
    }


def show(label: str, tiers: dict[str, TierUsage]) -> None:
    for tier, use in tiers.items():
        print(f"  {label:<7} {tier:<4}  files {use.files:>6,}  bytes {use.bytes / 1e6:>9.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--markets", type=int, default=5)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--timeframe", choices=sorted(UNITS), default="1m")
    args = parser.parse_args()
    tf = Timeframe.parse(args.timeframe)
    markets = [m.market for m in History().markets if m.market.startswith("KRW-")]
    markets = markets[: args.markets]
    with tempfile.TemporaryDirectory() as root:
        began = time.perf_counter()
        rows = seed(root, markets, args.days, tf)
        seeded = time.perf_counter() - began
        print(
            f"{len(markets)} markets x {args.days} days x {tf} up to {iso(NOW)}: {rows:,} rows, "
            f"seeded (hot tier, as fetch writes it) in {seeded:.1f} s"
        )
        before = CandleStore(root).usage()
        hot_reads = reads(root, markets[0], tf)
        began = time.perf_counter()
        report = asyncio.run(prune(CandleStore(root), Policy(compact_after_ms=7 * DAY), now=NOW))
        compaction = time.perf_counter() - began
        after = CandleStore(root).usage()
        cold_reads = reads(root, markets[0], tf)
        show("before", before)
        show("after", after)
        moved = sum(len(c.removed) for c in report.changes)
        total_before = sum(u.bytes for u in before.values())
        total_after = sum(u.bytes for u in after.values())
        print(
            f"  compaction: {moved:,} files into {sum(len(c.added) for c in report.changes)} "
            f"in {compaction:.1f} s; bytes {total_before / 1e6:.1f} MB -> "
            f"{total_after / 1e6:.1f} MB ({total_before / max(total_after, 1):.2f}x smaller)"
        )
        for name in READS[tf.name]:
            (hot_s, hot_rows), (cold_s, cold_rows) = hot_reads[name], cold_reads[name]
            assert hot_rows == cold_rows, "the tiers disagree"
            print(
                f"  read {name:<9} of {markets[0]} ({hot_rows:,} rows) via upbit_cache.load: "
                f"hot {hot_s * 1000:7.1f} ms   cold {cold_s * 1000:7.1f} ms"
            )


if __name__ == "__main__":
    main()
