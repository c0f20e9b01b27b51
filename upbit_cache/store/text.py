"""Tables as text, exactly: numbers that read back to the same float64, times in a chosen zone.

A float is written in its shortest round-trip form, pyarrow's cast to string (the digits of
Python's `repr`: `42479677.7385635`, `1.5e-7`), so a CSV or JSON lines reader gets back
exactly the value a Parquet reader gets. Everything is vectorised: no Python loop per row.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

UTC = "UTC"
DAY_MS, HOUR_MS, MINUTE_MS = 86_400_000, 3_600_000, 60_000
_TWO_DIGITS = pa.array([f"{i:02d}" for i in range(60)])
_THREE_DIGITS = pa.array([f"{i:03d}" for i in range(1000)])


def text_times(table: pa.Table, tz: str = UTC) -> pa.Table:
    """Timestamp columns as ISO 8601 text: `2026-11-20T09:00:00.000Z` in UTC, with the
    zone's offset elsewhere (`2026-11-20T18:00:00.000+09:00` in Asia/Seoul)."""
    for i, column in enumerate(table.schema):
        if pa.types.is_timestamp(column.type):
            table = table.set_column(i, column.name, _iso(table.column(i), tz))
    return table


def _iso(times: Any, tz: str) -> Any:
    """ISO 8601 text of timestamps (never null here), to the millisecond. Assembled from
    tables of parts (the distinct days, two- and three-digit numbers, the zone's offsets):
    strftime per value costs five times more."""
    if len(times) == 0:
        return pa.array([], pa.string())
    utc = times.cast(pa.timestamp("ms", tz=UTC)).cast(pa.int64()).to_numpy()
    suffix: Any = pa.scalar("Z")
    local = utc
    if tz != UTC:
        wall = pc.local_timestamp(times.cast(pa.timestamp("ms", tz=tz)))
        local = wall.cast(pa.int64()).to_numpy()
        offsets, which = np.unique(local - utc, return_inverse=True)
        suffix = pa.array([_offset(int(o)) for o in offsets], pa.string()).take(which)
    days, ms = np.divmod(local, DAY_MS)
    distinct, day = np.unique(days, return_inverse=True)
    parts: list[Any] = [pa.array([_date(int(d)) for d in distinct], pa.string()).take(day), "T"]
    parts += [_TWO_DIGITS.take(ms // HOUR_MS), ":", _TWO_DIGITS.take(ms // MINUTE_MS % 60), ":"]
    parts += [_TWO_DIGITS.take(ms // 1000 % 60), ".", _THREE_DIGITS.take(ms % 1000), suffix]
    return pc.binary_join_element_wise(*parts, "")


def _date(day: int) -> str:
    return (datetime(1970, 1, 1) + timedelta(days=day)).strftime("%Y-%m-%d")


def _offset(ms: int) -> str:
    sign, minutes = "+" if ms >= 0 else "-", abs(ms) // MINUTE_MS
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def json_lines(table: pa.Table, tz: str = UTC) -> pa.Buffer:
    """One JSON object per row, each line ending in a newline, as one buffer."""
    if table.num_rows == 0:
        return pa.py_buffer(b"")
    table = table.combine_chunks()
    pieces: list[Any] = []
    for i, field in enumerate(table.schema):
        key = json.dumps(field.name) + ":"
        pieces += ["{" + key if i == 0 else "," + key, _json_values(table.column(i).chunk(0), tz)]
    pieces.append("}\n")
    lines: Any = pc.binary_join_element_wise(*pieces, "")
    # The lines lie back to back in the array's data buffer: that is the output.
    offsets, data = lines.buffers()[1:3]
    bounds = memoryview(offsets).cast("i")  # Arrow's int32 offsets
    first, last = bounds[lines.offset], bounds[lines.offset + len(lines)]
    out: pa.Buffer = data.slice(first, last - first)
    return out


def _json_values(values: Any, tz: str) -> Any:
    """Each value as JSON text; null (and a float that is not finite) as `null`."""
    kind = values.type
    if pa.types.is_timestamp(kind):
        text = pc.binary_join_element_wise('"', _iso(values, tz), '"', "")  # nothing to escape
    elif pa.types.is_floating(kind):
        finite = pc.is_finite(values)
        text = pc.if_else(finite, values.cast(pa.string()), pa.scalar(None, pa.string()))
    elif pa.types.is_integer(kind):
        text = values.cast(pa.string())
    elif pa.types.is_boolean(kind):
        text = pc.if_else(values, "true", "false")
    else:
        # Strings repeat (market codes, timeframes): escape each distinct one once.
        codes: Any = pc.dictionary_encode(values.cast(pa.string()))
        quoted = pa.array([json.dumps(s) for s in codes.dictionary.to_pylist()], pa.string())
        text = pc.take(quoted, codes.indices)
    return pc.fill_null(text, "null")
