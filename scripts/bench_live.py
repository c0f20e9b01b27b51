"""Live benchmark: 5 markets x 1m, 15m, 1h built from the simulator's trade stream.

The simulator runs in its own process with its clock sped up (default 3600x: a simulated
hour a second), so its deterministic trades arrive at a high rate. Through the library's
live iterator (no store unless `--store`: then closed candles are appended to a temporary
data dir, far more often than in real time at this clock speed), this prints the latency from
a trade frame's arrival to the candle update it causes (p50/p99; frames that arrived during
the start-up backfill are left out), this process's CPU share, and its memory after the
run, with how many trades and closes it saw.

    python scripts/bench_live.py [--seconds 60] [--speed 3600] [--store]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import tempfile
import time

import numpy as np
from simproc import SimProcess

from upbit_cache.collector.config import ClientConfig
from upbit_cache.manager.live import live_candles
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe

MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL", "KRW-DOGE"]
CLOCK = "2026-11-20T00:00:00Z"


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


async def run(
    url: str, ws_url: str, seconds: float, store: CandleStore | None
) -> dict[str, object]:
    config = ClientConfig(api_url=url, rate=10, ws_url=ws_url)
    stream = live_candles(MARKETS, Timeframe.parse_list("1m,15m,1h"), config=config, store=store)
    latencies: list[float] = []
    trades, closes, began = set(), 0, 0.0
    cpu = 0.0
    async with contextlib.aclosing(stream):
        async for item in stream:
            if began and item.received is not None and item.received >= began:
                latencies.append(time.monotonic() - item.received)
                trades.add((item.event.candle.market, item.received))
            if not began and item.event.kind == "snapshot":
                began, cpu = time.monotonic(), time.process_time()
            closes += item.event.kind == "close"
            if began and time.monotonic() - began >= seconds:
                break
    wall = time.monotonic() - began
    return {
        "wall": wall,
        "cpu": (time.process_time() - cpu) / wall,
        "updates": len(latencies),
        "trades": len(trades),
        "closes": closes,
        "latency": np.array(latencies) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--speed", type=float, default=3600)
    parser.add_argument("--store", action="store_true", help="append closes to a temp store")
    args = parser.parse_args()
    with (
        SimProcess("--clock", CLOCK, "--speed", str(args.speed), "--rate", "10") as sim,
        tempfile.TemporaryDirectory() as root,
    ):
        ws_url = "ws" + sim.url.removeprefix("http") + "/websocket/v1"
        before = rss_mib()
        store = CandleStore(root) if args.store else None
        got = asyncio.run(run(sim.url, ws_url, args.seconds, store))
    latency = got["latency"]
    assert isinstance(latency, np.ndarray)
    simulated_hours = args.seconds * args.speed / 3600
    print(
        f"{len(MARKETS)} markets x 1m,15m,1h, simulator clock x{args.speed:g}, "
        f"{'closes stored' if args.store else 'no store'} "
        f"({simulated_hours:.0f} simulated hours in {got['wall']:.0f} s)"
    )
    print(
        f"  trades {got['trades']:,} ({got['trades'] / got['wall']:,.0f}/s), candle updates "
        f"{got['updates']:,}, closes {got['closes']:,}"
    )
    print(
        f"  trade frame -> candle update: p50 {np.percentile(latency, 50):.3f} ms  "
        f"p99 {np.percentile(latency, 99):.3f} ms  max {latency.max():.1f} ms"
    )
    print(f"  CPU share of this process: {got['cpu']:.1%} of one core")
    print(f"  memory: {before:.0f} MiB at start, {rss_mib():.0f} MiB after the run")


if __name__ == "__main__":
    main()
