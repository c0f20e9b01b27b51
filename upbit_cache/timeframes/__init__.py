"""The timeframe calculator: timeframe rules and pure candle conversions (no I/O)."""

from upbit_cache.timeframes.timeframe import SUPPORTED, Timeframe

__all__ = ["SUPPORTED", "Timeframe"]
