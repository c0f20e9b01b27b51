"""The candle table every layer shares: column names, Arrow schema, the empty frame."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from upbit_cache.ranges import EARLIEST, LATEST, Ranges, TimeRange

if TYPE_CHECKING:  # pandas is imported only where a frame is made, to keep CLI start fast
    import numpy.typing as npt
    import pandas as pd

TIME_TYPE = pa.timestamp("ms", tz="UTC")

#: `time` is the candle's start (UTC); `timestamp` is when its last trade was stored.
_PRICES = ("open", "high", "low", "close", "volume", "value")
_FIELDS: list[pa.Field[Any]] = [
    pa.field("time", TIME_TYPE, nullable=False),
    *(pa.field(name, pa.float64(), nullable=False) for name in _PRICES),
    pa.field("timestamp", TIME_TYPE, nullable=False),
]
CANDLE_SCHEMA = pa.schema(_FIELDS)
CANDLE_COLUMNS: tuple[str, ...] = tuple(CANDLE_SCHEMA.names)


def empty_candles() -> pd.DataFrame:
    """No data is an empty frame with the candle columns and dtypes, never None."""
    return CANDLE_SCHEMA.empty_table().to_pandas()


def to_table(candles: pd.DataFrame | pa.Table) -> pa.Table:
    """A candle frame or table as an Arrow table with exactly CANDLE_SCHEMA."""
    if isinstance(candles, pa.Table):
        return candles.select(list(CANDLE_COLUMNS)).cast(CANDLE_SCHEMA)

    return pa.Table.from_pandas(
        candles[list(CANDLE_COLUMNS)], schema=CANDLE_SCHEMA, preserve_index=False
    )


def times_ms(table: pa.Table) -> pa.ChunkedArray[Any]:
    """The `time` column as epoch ms."""
    return table["time"].cast(pa.int64())


def in_span(table: pa.Table, span: TimeRange) -> pa.Table:
    """The rows with start <= time < end (a side may be open)."""
    times = times_ms(table)
    keep = None
    if span.start != EARLIEST:
        keep = pc.greater_equal(times, pa.scalar(span.start, pa.int64()))
    if span.end != LATEST:
        upper = pc.less(times, pa.scalar(span.end, pa.int64()))
        keep = upper if keep is None else pc.and_(keep, upper)
    return table if keep is None else table.filter(keep)


def in_ranges(times: npt.NDArray[np.int64], ranges: Ranges) -> npt.NDArray[np.bool_]:
    """Which of `times` (sorted or not) lie inside one of `ranges`."""
    if not ranges:
        return np.zeros(len(times), dtype=bool)
    lo = np.array([s for s, _ in ranges], dtype=np.int64)
    hi = np.array([e for _, e in ranges], dtype=np.int64)
    slot = np.searchsorted(lo, times, side="right") - 1
    return np.asarray((slot >= 0) & (times < hi[np.maximum(slot, 0)]))


def impossible_values(table: pa.Table) -> str | None:
    """What no real candle can have, if a row of `table` has it: prices of zero or less or
    not numbers, low above open/close, high below them, volume or turnover negative or not
    a number."""
    o, h, low, c, v, value = (
        table[name].to_numpy() for name in ("open", "high", "low", "close", "volume", "value")
    )
    if not len(o):
        return None
    # The common case (every row fine) in a few reductions: a NaN anywhere makes its min or
    # max NaN, which fails every comparison. Only a failing table pays for saying which rule.
    with np.errstate(invalid="ignore"):
        room = np.minimum(o, c)  # one scratch array for both relations (a day of 1s: 86,400)
        below = np.subtract(room, low, out=room).min()
        above = np.subtract(h, np.maximum(o, c, out=room), out=room).min()
        fine = (
            low.min() > 0
            and below >= 0
            and above >= 0
            and h.max() < np.inf
            and v.min() >= 0
            and value.min() >= 0
            and v.max() < np.inf
            and value.max() < np.inf
        )
    if fine:
        return None
    impossible = {
        "a price that is not a number": ~np.isfinite(np.stack([o, h, low, c])).all(axis=0),
        "a price of zero or less": np.minimum.reduce([o, h, low, c]) <= 0,
        "a low above the open or close": low > np.minimum(o, c),
        "a high below the open or close": h < np.maximum(o, c),
        "negative volume or turnover": np.minimum(v, value) < 0,
    }
    return next(
        (what for what, rows in impossible.items() if rows.any()),
        "volume or turnover that is not a number",
    )


def dedupe_by_time(table: pa.Table) -> pa.Table:
    """Sorted by time, one row per time: where times repeat, the row that came last wins."""
    times = times_ms(table).to_numpy()
    order = np.argsort(times, kind="stable")
    ordered = times[order]
    last_of_run = np.ones(len(ordered), dtype=bool)
    last_of_run[:-1] = ordered[1:] != ordered[:-1]
    return table.take(order[last_of_run])


def from_table(table: pa.Table) -> pd.DataFrame:
    """Convert an Arrow table with CANDLE_SCHEMA to a candle frame with a plain index."""
    return table.select(list(CANDLE_COLUMNS)).to_pandas()
