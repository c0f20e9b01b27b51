"""A day of use through one `UpbitCache`: the layers' hit rates and response times.

In one process, through the library, against the simulator (its own process, Upbit's rate
of 10 candle requests a second unless --rate says otherwise, 30 ms latency):
- 24 hourly screener runs (200 KRW markets x 30 days x 1h; the simulator's clock advanced an
  hour before each run after the first),
- two backtest reads (10 markets x 1 year x 15m, 1h, 4h) interleaved, after runs 6 and 18,
- live 5 markets x 1m, 15m, 1h throughout (a thread with its own event loop, closes stored).
Prints each layer's requests, hit rate and p50/p99 response time against the design's
targets (L1 memory < 100 ms, L2 hot files < 1 s, L3 cold files < 5 s), the overall hit rate
(target >= 80%), candle requests sent against a client with no cache, and peak memory
(target <= 2 GB; aim <= 500 MB). Before the day, the backtest's year is fetched and
compacted into the cold tier (as a daily prune would have), so its reads meet L3.

    python scripts/bench_cache.py [--markets 200] [--rate 10] [--memory 64M]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import resource
import tempfile
import threading
import time

from bench_fetch import krw_markets
from simproc import SimProcess

from upbit_cache import UpbitCache
from upbit_cache.manager.prune import Policy
from upbit_cache.manager.scope import ScreenRequest
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

CLOCK = "2026-11-20T00:20:00Z"
DAY_MS = 86_400_000
BACKTEST_AFTER = (6, 18)
LIVE = ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL", "KRW-DOGE"]
TARGETS = {"memory": 0.1, "hot": 1.0, "cold": 5.0}


def pages(candles: int) -> int:
    return math.ceil(candles / 200)


class Live(threading.Thread):
    """`cache.live(...)` consumed on its own event loop until stopped."""

    def __init__(self, cache: UpbitCache) -> None:
        super().__init__(daemon=True)
        self.cache, self.events, self.closes = cache, 0, 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            asyncio.run(self._watch())
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    async def _watch(self) -> None:
        stream = self.cache.live(LIVE, "1m,15m,1h")
        async with contextlib.aclosing(stream):
            async for item in stream:
                self.events += 1
                self.closes += item.event.kind == "close"
                if self._halt.is_set():
                    return

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=200)
    parser.add_argument("--backtest-markets", type=int, default=10)
    parser.add_argument("--runs", type=int, default=24)
    parser.add_argument("--rate", type=int, default=10)
    parser.add_argument("--memory", default=None, help="memory budget (default: adaptive)")
    args = parser.parse_args()
    flags = ["--rate", str(args.rate), "--latency", "0.03", "--clock", CLOCK]
    with SimProcess(*flags) as sim, tempfile.TemporaryDirectory() as data_dir:
        markets = krw_markets(sim.url, args.markets)
        tested = markets[: args.backtest_markets]
        end = Timeframe.parse("1d").floor_one(to_ms(CLOCK))
        start = end - 365 * DAY_MS

        # Before the day: the backtest's year on disk, compacted as a daily prune leaves it.
        setup = UpbitCache(data_dir, api_url=sim.url, rate=args.rate)
        began = time.perf_counter()
        for market in tested:
            setup.get(market, "15m", start, end)
        setup.prune(Policy(compact_after_ms=7 * DAY_MS), now=end)
        setup_requests = sim.stats()["candle_requests"]
        print(
            f"setup: {len(tested)} markets x 1 year of 15m fetched ({setup_requests:,} "
            f"requests) and compacted in {time.perf_counter() - began:.0f} s"
        )
        sim.reset()

        memory = None if args.memory is None else _size(args.memory)
        ws_url = "ws" + sim.url.removeprefix("http") + "/websocket/v1"
        cache = UpbitCache(
            data_dir, api_url=sim.url, ws_url=ws_url, rate=args.rate, memory_bytes=memory
        )
        live = Live(cache)
        live.start()
        request = ScreenRequest(markets=tuple(markets), days=30)
        runs: list[float] = []
        backtests: list[float] = []
        day = time.perf_counter()
        for run in range(args.runs):
            if run:
                sim.advance(3600)
            began = time.perf_counter()
            done = cache.screen_prep(request, out="/dev/null", fmt="parquet")
            runs.append(time.perf_counter() - began)
            assert done.result is not None and done.result.sync is not None
            assert not done.result.sync.failed, done.result.sync.failed[0].error
            if run + 1 in BACKTEST_AFTER:
                began = time.perf_counter()
                for market in tested:
                    for tf in ("15m", "1h", "4h"):
                        assert len(cache.get(market, tf, start, end)) > 0
                backtests.append(time.perf_counter() - began)
        day_seconds = time.perf_counter() - day
        live.stop()
        if live.error is not None:
            raise live.error
        sent = sim.stats()["candle_requests"]

    report = cache.layer_stats()
    stats = cache.stats
    print(
        f"a day: {args.runs} screener runs ({len(markets)} markets x 30 days x 1h), "
        f"{len(backtests)} backtest reads ({len(tested)} markets x 1 year x 15m/1h/4h), "
        f"live {len(LIVE)} markets x 1m/15m/1h ({live.events:,} events, {live.closes:,} closes)"
    )
    print(
        f"  wall {day_seconds:.0f} s; screener runs: first {runs[0]:.1f} s, then median "
        f"{sorted(runs[1:])[len(runs[1:]) // 2]:.1f} s; backtest reads "
        + ", ".join(f"{b:.2f} s" for b in backtests)
    )
    print(
        f"  memory budget {stats.budget / 2**20:.0f} MiB "
        f"({'adaptive' if cache.memory.budget.adaptive else 'set'}), held {stats.bytes / 2**20:.0f}"
        f" MiB ({stats.protected_bytes / 2**20:.0f} protected), {stats.evictions:,} evictions, "
        f"{stats.promotions:,} promotions"
    )
    print("| layer | requests | p50 | p99 | target | tables/pages | candles |")
    print("|---|---|---|---|---|---|---|")
    for name, layer in report.layers.items():
        p50, p99 = layer.percentile(0.5), layer.percentile(0.99)
        target = TARGETS.get(name)
        shown = (
            f"{p50 * 1e3:.1f} ms | {p99 * 1e3:.1f} ms"
            if p50 is not None and p99 is not None
            else "- | -"
        )
        verdict = (
            f"< {target * 1e3:.0f} ms {'met' if p99 is not None and p99 < target else 'MISSED'}"
            if target is not None and p99 is not None
            else "-"
        )
        print(
            f"| {name} | {layer.requests:,} | {shown} | {verdict} | {layer.reads:,} | "
            f"{layer.rows:,} |"
        )
    print(
        f"memory hit rate {report.memory_hit_rate:.1%} of table reads; overall hit rate "
        f"{report.hit_rate:.1%} of candles served without asking Upbit (target >= 80%)"
    )
    screener = pages(720) * len(markets) * args.runs
    backtest = (
        len(BACKTEST_AFTER) * len(tested) * sum(pages(365 * 24 * 60 // m) for m in (15, 60, 240))
    )
    print(
        f"candle requests sent {sent:,} (and {setup_requests:,} before the day); a client with "
        f"no cache would send {screener + backtest:,} ({screener:,} screener, {backtest:,} "
        "backtest, not counting live)"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (max RSS) {peak:.0f} MiB (target <= 2 GB, aim <= 500 MB)")


def _size(text: str) -> int:
    from upbit_cache.manager.memory import parse_size

    return parse_size(text, "--memory")


if __name__ == "__main__":
    main()
