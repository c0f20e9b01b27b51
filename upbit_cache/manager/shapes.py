"""The shapes other tools' users already have: many markets in one frame (or a dict), times
as a DatetimeIndex, ccxt's symbols and OHLCV lists. Light: pandas only inside functions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from upbit_cache.errors import InvalidMarketError, UsageError
from upbit_cache.markets import validate_market, validate_markets

if TYPE_CHECKING:
    import pandas as pd

OHLCV = ["open", "high", "low", "close", "volume"]


def codes_of(market: str | Sequence[str]) -> list[str]:
    """The market codes a `market` argument names: one, or a list (checked, no repeats)."""
    if isinstance(market, str):
        return [validate_market(market)]
    codes = list(dict.fromkeys(validate_markets(market)))
    if not codes:
        raise UsageError("give at least one market, e.g. ['KRW-BTC', 'KRW-ETH']")
    return codes


def shaped(
    frames: dict[str, pd.DataFrame], market: str | Sequence[str], as_dict: bool, index: bool
) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """The frames read per market, as the call asked: one market's frame as it is; many as
    one long frame with a `market` column first (markets in the order given, each oldest
    first), or a dict; `index`: the times as the index (`time`, UTC) instead of a column."""
    import pandas as pd

    if isinstance(market, str) and not as_dict:
        (frame,) = frames.values()
        return _indexed(frame) if index else frame
    if as_dict:
        return {m: _indexed(f) if index else f for m, f in frames.items()}
    codes = list(frames)
    parts = list(frames.values())
    long = pd.concat(parts, ignore_index=True)
    # One categorical-free str column, built from the lengths: no per-row Python.
    names = pd.Series(codes, dtype="str").repeat([len(f) for f in parts])
    long.insert(0, "market", names.set_axis(long.index))
    return _indexed(long) if index else long


def _indexed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.set_index("time")


def market_of_symbol(symbol: str) -> str:
    """The Upbit market of a ccxt symbol: BTC/KRW is KRW-BTC."""
    if not isinstance(symbol, str) or symbol.count("/") != 1:
        raise InvalidMarketError(
            f"a ccxt symbol is BASE/QUOTE such as 'BTC/KRW', not {symbol!r}"
            + (f" (Upbit's {symbol} is {_flip(symbol)})" if isinstance(symbol, str) else "")
        )
    base, quote = symbol.split("/")
    return validate_market(f"{quote}-{base}")


def _flip(code: str) -> str:
    quote, _, base = code.partition("-")
    return f"{base}/{quote}" if base else "BASE/QUOTE"


def ohlcv_lists(frame: pd.DataFrame) -> list[list[float]]:
    """Candles as ccxt's OHLCV lists: `[ms, open, high, low, close, volume]` (ms an int)."""
    import numpy as np

    times = frame["time"].dt.as_unit("ms").astype("int64").tolist()
    values = frame[OHLCV].to_numpy(np.float64).tolist()
    # The lists are the shape asked for: built by Python's list machinery, not a loop of ours.
    return [[t, *v] for t, v in zip(times, values, strict=True)]
