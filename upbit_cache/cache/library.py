"""`UpbitCache`: the object a backtest or notebook uses: memory, then disk, then Upbit."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from typing import TYPE_CHECKING

from upbit_cache.cache.derive import load_any, settled_periods
from upbit_cache.cache.memory import DEFAULT_MEMORY_BYTES, MemoryCache, MemoryStats
from upbit_cache.cache.store import CandleStore
from upbit_cache.cache.sync import SyncReport, fetch
from upbit_cache.collector.config import ClientConfig
from upbit_cache.errors import InvalidRangeError
from upbit_cache.markets import validate_market
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import TimeLike, now_ms, to_ms

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import pandas as pd

    from upbit_cache.cache.live import LiveEvent


class UpbitCache:
    """A local, always-fresh copy of Upbit candles, used from Python.

        cache = UpbitCache()                      # default data dir, api.upbit.com
        frame = cache.get("KRW-BTC", "1h", "2026-11-01", "2026-11-08")

    `get` answers from memory when it can, else from disk, and asks Upbit only for the
    ranges neither holds (storing them, so the next call is local).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        api_url: str | None = None,
        rate: float | None = None,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
    ) -> None:
        self.store = CandleStore.open(data_dir, memory=MemoryCache(memory_bytes))
        self.config = ClientConfig.from_env(api_url, rate)
        self.last_fetch: SyncReport | None = None

    def live(
        self,
        markets: list[str],
        timeframes: str | list[Timeframe],
        *,
        store: bool = True,
        ws_url: str | None = None,
    ) -> AsyncIterator[LiveEvent]:
        """Live candle events (snapshot, update, close) from Upbit's trade stream, forever.

            async for item in cache.live(["KRW-BTC"], "1m,15m,1h"):
                print(item.event.kind, item.event.candle)

        Closed candles go to the store unless `store=False`.
        """
        from upbit_cache.cache.live import live_candles

        tfs = Timeframe.parse_list(timeframes) if isinstance(timeframes, str) else timeframes
        config = replace(self.config, ws_url=ws_url) if ws_url else self.config
        target = self.store if store else None
        return live_candles(markets, tfs, config=config, store=target)

    @property
    def stats(self) -> MemoryStats:
        """Hits, misses and evictions of the memory layer."""
        return self.store.memory.stats

    def get(
        self,
        market: str,
        timeframe: str | Timeframe,
        start: TimeLike,
        end: TimeLike | None = None,
    ) -> pd.DataFrame:
        """Candles with start <= time < end (end: now), closed ones only, oldest first."""
        return asyncio.run(self.aget(market, timeframe, start, end))

    async def aget(
        self,
        market: str,
        timeframe: str | Timeframe,
        start: TimeLike,
        end: TimeLike | None = None,
    ) -> pd.DataFrame:
        """`get` for code that already runs an event loop."""
        code = validate_market(market)
        tf = timeframe if isinstance(timeframe, Timeframe) else Timeframe.parse(timeframe)
        lo = to_ms(start)
        hi = to_ms(end) if end is not None else None
        if hi is not None and lo >= hi:
            raise InvalidRangeError(f"start {start} is not before end {end}")
        # By our clock; if Upbit's is a little behind, the fetch finds nothing to do.
        closed = tf.floor_one(now_ms())
        wanted = (tf.floor_one(lo), min(tf.ceil_one(hi), closed) if hi is not None else closed)
        if not self._settled(code, tf, *wanted):
            self.last_fetch = await fetch(self.store, self.config, [code], [tf], start=lo, end=hi)
            if self.last_fetch.failed:
                raise self.last_fetch.failed[0].error  # type: ignore[misc]
        return await asyncio.to_thread(load_any, self.store, code, tf, lo, hi)

    def _settled(self, market: str, tf: Timeframe, start: int, end: int) -> bool:
        """Whether the store can answer [start, end) for tf, natively or from a base."""
        if end <= start:
            return True
        for source in (tf, *tf.divisors()):
            have = self.store.fetched(source, market)
            if source != tf:
                have = settled_periods(have, tf)
            if have.covers(start, end):
                return True
        return False
