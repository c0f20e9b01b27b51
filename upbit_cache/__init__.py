"""upbit-cache: a local, always-fresh, exact copy of Upbit candles as Hive-partitioned Parquet.

import upbit_cache
frame = upbit_cache.load("KRW-BTC", "1h", "2026-11-01", "2026-11-08")
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from upbit_cache.errors import (
    ExchangeError,
    InvalidMarketError,
    InvalidRangeError,
    InvalidTimeframeError,
    IPBlockedError,
    RateLimitedError,
    ResponseFormatError,
    ServerError,
    StorageError,
    UnknownMarketError,
    UpbitCacheError,
    UsageError,
)
from upbit_cache.markets import validate_market
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import TimeLike, to_ms

if TYPE_CHECKING:  # pandas loads on first use, so `upbit-cache` starts fast
    import pandas as pd

__all__ = [
    "CANDLE_COLUMNS",
    "CandleStore",
    "ExchangeError",
    "IPBlockedError",
    "InvalidMarketError",
    "InvalidRangeError",
    "InvalidTimeframeError",
    "RateLimitedError",
    "ResponseFormatError",
    "ServerError",
    "StorageError",
    "Timeframe",
    "UnknownMarketError",
    "UpbitCache",
    "UpbitCacheError",
    "UsageError",
    "load",
]


def __getattr__(name: str) -> Any:
    # The store and the cache object pull in pyarrow and pandas: import them on first use
    # only, so that a command that needs neither (a screen-prep with nothing new) starts fast.
    if name == "UpbitCache":
        from upbit_cache.cache.library import UpbitCache

        return UpbitCache
    if name == "CandleStore":
        from upbit_cache.cache.store import CandleStore

        return CandleStore
    if name == "CANDLE_COLUMNS":
        from upbit_cache.candles import CANDLE_COLUMNS

        return CANDLE_COLUMNS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load(
    market: str,
    timeframe: str | Timeframe,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    fill: bool = False,
) -> pd.DataFrame:
    """Stored candles of one market with start <= time < end, oldest first (no network).

    A timeframe that was not materialised is derived on the fly from a stored finer one.
    Periods without trades have no row, as on Upbit; `fill=True` gives a regular grid
    instead, made-up rows (previous close, zero volume) marked in a `filled` column.
    """
    tf = timeframe if isinstance(timeframe, Timeframe) else Timeframe.parse(timeframe)
    lo = to_ms(start) if start is not None else None
    hi = to_ms(end) if end is not None else None
    if lo is not None and hi is not None and lo >= hi:
        raise InvalidRangeError(f"start {start} is not before end {end}")
    from upbit_cache.cache.derive import load_any
    from upbit_cache.cache.store import CandleStore
    from upbit_cache.timeframes.convert import fill_gaps

    frame = load_any(CandleStore.open(data_dir), validate_market(market), tf, lo, hi)
    if not fill or frame.empty:
        return frame
    first = int(frame["time"].iloc[0].value // 1_000_000) if lo is None else lo
    last = tf.shift_one(int(frame["time"].iloc[-1].value // 1_000_000), 1) if hi is None else hi
    return fill_gaps(frame, tf, first, last)
