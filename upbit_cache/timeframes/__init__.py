"""The timeframe calculator: timeframe rules and pure candle conversions (no I/O)."""

from __future__ import annotations

from typing import Any

from upbit_cache.timeframes.timeframe import SUPPORTED, Timeframe

__all__ = ["COMPLETE", "FILLED", "SUPPORTED", "Timeframe", "fill_gaps", "resample"]
_CONVERSIONS = {"COMPLETE", "FILLED", "fill_gaps", "resample"}


def __getattr__(name: str) -> Any:
    # The conversions work on pandas frames; import them (and pandas) on first use only,
    # so that commands which never convert start fast.
    if name in _CONVERSIONS:
        from upbit_cache.timeframes import convert

        return getattr(convert, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
