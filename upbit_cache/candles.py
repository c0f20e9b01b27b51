"""The candle table every layer shares: column names, Arrow schema, the empty frame."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:  # pandas is imported only where a frame is made, to keep CLI start fast
    import pandas as pd

TIME_TYPE = pa.timestamp("ms", tz="UTC")

#: `time` is the candle's start (UTC); `timestamp` is when its last trade was stored.
CANDLE_SCHEMA = pa.schema(
    [
        pa.field("time", TIME_TYPE, nullable=False),
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.float64(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("timestamp", TIME_TYPE, nullable=False),
    ]
)
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


def dedupe_by_time(table: pa.Table) -> pa.Table:
    """Sorted by time, one row per time: where times repeat, the row that came last wins."""
    times = table["time"].cast(pa.int64()).to_numpy()
    order = np.argsort(times, kind="stable")
    ordered = times[order]
    last_of_run = np.ones(len(ordered), dtype=bool)
    last_of_run[:-1] = ordered[1:] != ordered[:-1]
    return table.take(order[last_of_run])


def from_table(table: pa.Table) -> pd.DataFrame:
    """Convert an Arrow table with CANDLE_SCHEMA to a candle frame with a plain index."""
    return table.select(list(CANDLE_COLUMNS)).to_pandas()
