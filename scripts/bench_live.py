"""Live benchmark: 5 markets x 1m, 15m, 1h built from the simulator's trade stream.

The simulator runs in its own process with its clock sped up (default 3600x: a simulated
hour a second), so its deterministic trades arrive at a high rate. Through the library's
live iterator (no store unless `--store`: then closed candles are appended to a temporary
data dir, far more often than in real time at this clock speed), this prints the latency from
a trade frame's arrival to the candle update it causes (p50/p99; frames that arrived during
the start-up backfill are left out), this process's CPU share, and its memory after the
run, with how many trades and closes it saw.

    python scripts/bench_live.py [--seconds 60] [--speed 3600] [--store]

`--day` instead writes a simulated day of closes for the same 5 markets x 3 timeframes into
a temporary store exactly as `live` writes them at real-time pace (each close its own write,
provisional, then the same period settled through REST a few seconds later; no network),
and prints the bytes written per close (data files, records), the time per write, and the
data files per partition during and after the day. It runs against whatever
`upbit_cache` is importable (PYTHONPATH=<another checkout> measures that one).

    python scripts/bench_live.py --day [--minutes 1440]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from simproc import SimProcess

from upbit_cache.collector.config import ClientConfig
from upbit_cache.manager.live import live_candles
from upbit_cache.ranges import Ranges
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.store.files import DataDir
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL", "KRW-DOGE"]
CLOCK = "2026-11-20T00:00:00Z"
DAY = 86_400_000


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


class Written:
    """Bytes the store writes, counted where every write of a file goes (DataDir)."""

    def __init__(self) -> None:
        self.data = self.records = self.files = 0
        real_write = DataDir.write
        real_create = getattr(DataDir, "create", None)  # absent before files were written once

        def write(files: DataDir, path: str, writer: Any) -> Any:
            return self.count(path, real_write(files, path, writer))

        setattr(DataDir, "write", write)  # noqa: B010 (a counter around the real write)
        if real_create is not None:

            def create(files: DataDir, path: str, writer: Any) -> Any:
                return self.count(path, real_create(files, path, writer))

            setattr(DataDir, "create", create)  # noqa: B010

    def count(self, path: str, found: Any) -> Any:
        size = found.bytes if found is not None else 0
        if path.endswith(".parquet"):
            self.data += size
            self.files += found is not None
        elif "/fetched/" in path:
            self.records += size
        return found


def day_of_closes(root: str, minutes: int) -> None:
    """A simulated day of live's writes (see the module's docstring), and its figures."""
    from upbit_cache.simulator.history import History

    history, start = History(), to_ms(CLOCK)
    timeframes = Timeframe.parse_list("1m,15m,1h")
    frames = {
        (m, tf): history.candles(m, tf.approx_ms // 60_000, start, start + DAY, start + DAY)
        for m in MARKETS
        for tf in timeframes
    }
    store, written = CandleStore(root), Written()
    closes, seconds, most = 0, 0.0, 0
    for minute in range(1, minutes + 1):
        now = start + minute * 60_000
        for tf in timeframes:
            if (now - start) % tf.approx_ms:
                continue
            period = now - tf.approx_ms
            for market in MARKETS:
                frame = frames[market, tf]
                row = frame[frame["start"] == period]
                table = _as_table(row)
                done = Ranges.of([(period, now)])
                began = time.perf_counter()
                store.write(market, tf, table, Ranges(), provisional=done)  # live's close
                store.write(market, tf, table, done)  # settled through REST
                seconds += time.perf_counter() - began
                closes += 1
        if minute % 60 == 0:
            most = max(most, _most_files(root))
    per = closes or 1
    print(f"{len(MARKETS)} markets x 1m,15m,1h, {minutes} simulated minutes: {closes:,} closes")
    print(
        f"  bytes written per close: {written.data / per:,.0f} data ({written.files / per:.2f}"
        f" files), {written.records / per:,.0f} record; {seconds / (2 * per) * 1000:.2f} ms"
        " a write"
    )
    print(
        f"  data bytes in all: {written.data / 1e6:.1f} MB, records {written.records / 1e6:.1f} MB"
    )
    print(f"  data files per partition: at most {most} (hourly looks), at the end:")
    for tf in timeframes:
        folder = Path(root) / "candles" / f"timeframe={tf.name}"
        counts = sorted(len(list(p.glob("*.parquet"))) for p in folder.glob("market=*/date=*"))
        print(f"    {tf.name}: {counts}")


def _most_files(root: str) -> int:
    folders = Path(root).glob("candles/timeframe=*/market=*/date=*")
    return max((len(list(p.glob("*.parquet"))) for p in folders), default=0)


def _as_table(rows: Any) -> Any:
    import pandas as pd

    return pd.DataFrame(
        {
            "time": pd.to_datetime(rows["start"].to_numpy(np.int64), unit="ms", utc=True),
            **{c: rows[c].to_numpy() for c in ("open", "high", "low", "close", "volume", "value")},
            "timestamp": pd.to_datetime(rows["timestamp"].to_numpy(np.int64), unit="ms", utc=True),
        }
    ).astype({"time": "datetime64[ms, UTC]", "timestamp": "datetime64[ms, UTC]"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--speed", type=float, default=3600)
    parser.add_argument("--store", action="store_true", help="append closes to a temp store")
    parser.add_argument("--day", action="store_true", help="a simulated day of writes only")
    parser.add_argument("--minutes", type=int, default=1440)
    args = parser.parse_args()
    if args.day:
        with tempfile.TemporaryDirectory() as root:
            day_of_closes(root, args.minutes)
        return
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
