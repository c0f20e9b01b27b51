"""Candle conversions: aggregate into a coarser timeframe the way Upbit does, and gap filling."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from upbit_cache.candles import CANDLE_COLUMNS
from upbit_cache.errors import InvalidTimeframeError
from upbit_cache.ranges import TimeRange
from upbit_cache.timeframes.timeframe import DAY_MS, Timeframe

if TYPE_CHECKING:
    from upbit_cache.timeframes.timeframe import Millis

#: Extra boolean column of `resample`: the whole period lies inside the known-complete range.
COMPLETE = "complete"
#: Extra boolean column of `fill_gaps`: the row was made up, no trade happened in the period.
FILLED = "filled"

Floats = npt.NDArray[np.float64]
Positions = npt.NDArray[np.intp]
_UNITS_PER_ONE = 10**8  # Upbit prints volume and turnover with 8 decimals
# The largest whole part whose count of 1e-8 units stays below 2**53, exact in float64.
_MAX_EXACT_WHOLE = (2**53 - _UNITS_PER_ONE) // _UNITS_PER_ONE


def resample(
    candles: pd.DataFrame,
    source: Timeframe,
    target: Timeframe,
    *,
    complete_until: int | None = None,
) -> pd.DataFrame:
    """Aggregate `source` candles into `target` candles with Upbit's rules.

    Open of the first candle, close of the last, max high, min low, summed volume and value,
    `timestamp` of the last candle. A period without candles gets no row. `complete` is True
    when the period ends at or before `complete_until` (epoch ms; None: all complete).
    """
    if not source.divides(target):
        raise InvalidTimeframeError(
            f"cannot resample {source} candles to {target}: "
            f"a {target} period is not made of whole {source} periods"
        )
    times = _checked_times(candles, source)
    keys = target.floor(times)
    # Sorted input keeps each period's candles contiguous, so a period is a run of equal keys.
    first_of_run = _first_of_runs(keys)
    last_of_run = np.ones(len(keys), dtype=bool)
    last_of_run[:-1] = first_of_run[1:]
    starts, lasts = np.flatnonzero(first_of_run), np.flatnonzero(last_of_run)
    period = keys[starts]
    out = pd.DataFrame(
        {
            "time": _to_time(period),
            "open": _floats(candles, "open")[starts],
            "high": np.maximum.reduceat(_floats(candles, "high"), starts),
            "low": np.minimum.reduceat(_floats(candles, "low"), starts),
            "close": _floats(candles, "close")[lasts],
            "volume": _sum_decimals(_floats(candles, "volume"), starts),
            "value": _sum_decimals(_floats(candles, "value"), starts),
            "timestamp": _to_time(_ms(candles["timestamp"])[lasts]),
        }
    )
    if complete_until is None:
        out[COMPLETE] = np.ones(len(out), dtype=bool)
    else:
        out[COMPLETE] = target.shift(period, 1) <= complete_until
    return out


def fill_gaps(candles: pd.DataFrame, timeframe: Timeframe, span: TimeRange) -> pd.DataFrame:
    """The candles on a regular grid of every period starting in `span` (bounded).

    A period without a candle repeats the previous close as open, high, low and close, with
    zero volume and value, and keeps the previous candle's `timestamp` (it is still the last
    trade known at that point, and the column stays non-null); `filled` marks these rows.
    Candles before `start` only seed the filling; periods before the first candle stay absent.
    """
    times = _checked_times(candles, timeframe)
    # Stepping by a day is fine enough to meet every month start too; `floor` then maps the
    # steps onto period starts, so the calendar rules stay in Timeframe alone.
    step = timeframe.fixed_ms or DAY_MS
    start, end = span
    first = timeframe.ceil_one(start)
    steps = timeframe.floor(np.arange(first, max(first, end), step, dtype=np.int64))
    grid = steps[_first_of_runs(steps)]
    # The candle each grid point takes its values from: the latest one at or before it.
    source = np.searchsorted(times, grid, side="right") - 1
    known = source >= 0
    grid, source = grid[known], source[known]
    filled = times[source] != grid
    out = candles.iloc[source][list(CANDLE_COLUMNS)].reset_index(drop=True)
    out["time"] = _to_time(grid)
    close = out["close"].to_numpy(np.float64)
    for column in ("open", "high", "low"):
        out[column] = np.where(filled, close, out[column].to_numpy(np.float64))
    for column in ("volume", "value"):
        out[column] = np.where(filled, 0.0, out[column].to_numpy(np.float64))
    out[FILLED] = filled
    return out


def _sum_decimals(values: Floats, starts: Positions) -> Floats:
    """Per-group sums of Upbit's 8-decimal numbers, exact in decimal, rounded once to float64.

    Upbit keeps volume and value as decimals, and its coarser candles hold their exact sums.
    Summing float64s drifts in the last bits, and `np.round(sum, 8)` cannot repair that once a
    number has about 8 integer digits (KRW turnover does): float spacing is then coarser than
    1e-8, so rounding to 8 decimals changes nothing. On the real KRW-BTC samples that left 9
    of 60 3m turnovers an ulp off. So each number is read back as the shortest decimal of at
    most 8 places that it stands for, those are summed as integers, and each sum is rounded
    to float64 once. A number that needs more than 8 places counts as rounded to 8.
    """
    whole = np.floor(values)
    frac = values - whole  # exact: no rounding happens in this subtraction
    units = np.rint(frac * _UNITS_PER_ONE)
    # Try fewer places last so the shortest fitting decimal wins. Below 2**26 the 8-place
    # reading is already exact; above it a float holds fewer places and the search matters.
    for places in range(7, -1, -1):
        scale = 10.0**places
        digits = np.rint(frac * scale)
        fits = whole + digits / scale == values
        units = np.where(fits, digits * (_UNITS_PER_ONE / scale), units)
    carry, rest = np.divmod(np.add.reduceat(units.astype(np.int64), starts), _UNITS_PER_ONE)
    whole_sum = np.add.reduceat(whole.astype(np.int64), starts) + carry
    # With a small whole part the count of 1e-8 units stays under 2**53: an exact float64,
    # which one division rounds correctly.
    small = whole_sum <= _MAX_EXACT_WHOLE
    exact = (np.where(small, whole_sum, 0) * _UNITS_PER_ONE + rest) / _UNITS_PER_ONE
    # Larger sums exceed 2**26: they lie on a rounding midpoint (then rest / 1e8 is exact) or
    # at least 1e-14 away from one, far beyond the error of rest / 1e8, so the one addition
    # still gives the float64 nearest the decimal sum.
    return np.where(small, exact, whole_sum + rest / _UNITS_PER_ONE)


def _first_of_runs(keys: Millis) -> npt.NDArray[np.bool_]:
    """Marks the first of each run of equal values in a sorted array."""
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    return first


def _checked_times(candles: pd.DataFrame, timeframe: Timeframe) -> Millis:
    """The candle starts in epoch ms; refuse input the vectorised grouping would garble."""
    times = _ms(candles["time"])
    if (np.diff(times) <= 0).any():
        raise ValueError("candles must be sorted by time, without repeated times")
    if (timeframe.floor(times) != times).any():
        raise ValueError(f"candle times are not aligned to {timeframe}")
    return times


def _floats(candles: pd.DataFrame, column: str) -> Floats:
    return candles[column].to_numpy(np.float64)


def _ms(column: pd.Series) -> Millis:
    return np.asarray(column.astype("datetime64[ms, UTC]").astype("int64"), dtype=np.int64)


def _to_time(ms: Millis) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(ms.astype("datetime64[ms]")).tz_localize("UTC")
