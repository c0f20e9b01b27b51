"""The timeframe calculator: timeframe rules and pure candle conversions (no I/O)."""

from upbit_cache.timeframes.resample import COMPLETE, FILLED, fill_gaps, resample
from upbit_cache.timeframes.timeframe import SUPPORTED, Timeframe

__all__ = ["COMPLETE", "FILLED", "SUPPORTED", "Timeframe", "fill_gaps", "resample"]
