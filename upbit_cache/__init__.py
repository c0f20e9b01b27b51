"""upbit-cache: a local, always-fresh, exact copy of Upbit candles as Hive-partitioned Parquet.

import upbit_cache
frame = upbit_cache.load("KRW-BTC", "1h", "2026-11-01", "2026-11-08")
cache = upbit_cache.UpbitCache()
frame = cache.get("KRW-BTC", "1h", "2026-11-01")   # fetches what is missing first
frame = await cache.aget("KRW-BTC", "1h", "2026-11-01")   # the same, in async code

Every call works in a Jupyter cell or an async app too (see `UpbitCache`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from upbit_cache.errors import (
    DamageError,
    ExchangeError,
    InvalidMarketError,
    InvalidRangeError,
    InvalidTimeframeError,
    IPBlockedError,
    RateLimitedError,
    RefusedError,
    ResponseFormatError,
    ServerError,
    StorageError,
    UnknownMarketError,
    UpbitCacheError,
    UsageError,
)

if TYPE_CHECKING:  # what type checkers see; at run time these load on first use (below)
    import pandas as pd

    from upbit_cache.candles import CANDLE_COLUMNS
    from upbit_cache.manager.cache import UpbitCache
    from upbit_cache.manager.scope import ScreenRequest, Shard, Window
    from upbit_cache.markets import validate_market
    from upbit_cache.store.candle_store import CandleStore
    from upbit_cache.timeframes import Timeframe
    from upbit_cache.times import TimeLike

_P = ParamSpec("_P")
_R = TypeVar("_R")

__all__ = [
    "CANDLE_COLUMNS",
    "CandleStore",
    "DamageError",
    "ExchangeError",
    "IPBlockedError",
    "InvalidMarketError",
    "InvalidRangeError",
    "InvalidTimeframeError",
    "RateLimitedError",
    "RefusedError",
    "ResponseFormatError",
    "ScreenRequest",
    "ServerError",
    "Shard",
    "StorageError",
    "Timeframe",
    "UnknownMarketError",
    "UpbitCache",
    "UpbitCacheError",
    "UsageError",
    "Window",
    "aload",
    "load",
    "validate_market",
]

# The manager and the store pull in pyarrow (and pandas on first read): import them on first
# use only, so that a command that needs neither (a screen-prep with nothing new) starts fast.
# The rest too: the console entry point installs its SIGTERM handler once this has run.
_LAZY = {
    "Timeframe": "upbit_cache.timeframes",
    "validate_market": "upbit_cache.markets",
    "UpbitCache": "upbit_cache.manager.cache",
    "ScreenRequest": "upbit_cache.manager.scope",
    "Shard": "upbit_cache.manager.scope",
    "Window": "upbit_cache.manager.scope",
    "CandleStore": "upbit_cache.store.candle_store",
    "CANDLE_COLUMNS": "upbit_cache.candles",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def _checked(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """`func` with its arguments checked when it is called (manager/api.py, loaded at the
    first call: the console entry point imports this package first thing)."""
    import functools

    ready: list[Callable[_P, _R]] = []

    @functools.wraps(func)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        if not ready:
            from upbit_cache.manager.api import checked

            ready.append(checked(func))
        return ready[0](*args, **kwargs)

    return run


@_checked
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

    `UpbitCache(data_dir).load(...)`: a timeframe that was not materialised is derived on
    the fly from a stored finer one; `fill=True` gives a regular grid, made-up rows marked.
    """
    from upbit_cache.manager.cache import UpbitCache

    return UpbitCache(data_dir).load(market, timeframe, start, end, fill=fill)


async def aload(
    market: str,
    timeframe: str | Timeframe,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    fill: bool = False,
) -> pd.DataFrame:
    """`load`, awaited: the files are read in a worker thread, not on the event loop."""
    from upbit_cache.manager.cache import UpbitCache

    return await UpbitCache(data_dir).aload(market, timeframe, start, end, fill=fill)
