"""Tables as text, exactly and in one style: numbers that read back to the same float64,
written as floats, and times in a chosen zone.

A float is written in its shortest round-trip form, pyarrow's cast to string (the digits of
Python's `repr`: `42479677.7385635`, `1.5e-7`), so a CSV or JSON lines reader gets back
exactly the value a Parquet reader gets; an integral one gets `.0` (`199162000.0`), so that
pandas, DuckDB and JSON readers infer float64 / DOUBLE for a KRW market's prices, as Parquet
and `load()` give. Times are ISO 8601 to the millisecond (`2026-11-20T09:00:00.000Z`). JSON
is compact (`{"market":"KRW-BTC",...}`). Everything is vectorised: no Python loop per row;
`json_number` and `time_text` write one value the same way (`live --jsonl`).
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

UTC = "UTC"
DAY_MS, HOUR_MS, MINUTE_MS = 86_400_000, 3_600_000, 60_000
_TWO_DIGITS = pa.array([f"{i:02d}" for i in range(60)])
_THREE_DIGITS = pa.array([f"{i:03d}" for i in range(1000)])
# pyarrow writes a float (double-conversion's shortest form) positionally for decimal
# exponents -6 to 9 (`0.000001`, `4294967296`) and as `1.5e-7`, `1e+10` beyond.
_POSITIONAL = (-6, 10)


def float_texts(values: Any) -> Any:
    """Each float as text: shortest round-trip digits, `.0` after an integral one (null
    stays null). The `.0` goes where pyarrow's text has neither a point nor an exponent:
    integral values below 1e10."""
    text = values.cast(pa.string())
    below = pa.scalar(10.0 ** _POSITIONAL[1], pa.float64())
    integral = pc.and_(pc.equal(pc.floor(values), values), pc.less(pc.abs(values), below))
    if not pc.any(integral).as_py():
        return text
    return pc.binary_join_element_wise(text, pc.if_else(integral, ".0", ""), "")


def json_number(value: float) -> str:
    """One float as `float_texts` writes it (`null` if not finite, as JSON has no NaN)."""
    if not math.isfinite(value):
        return "null"
    digits, point = _shortest(abs(value))
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if not digits:
        return f"{sign}0.0"
    exponent = point - 1
    if _POSITIONAL[0] <= exponent < _POSITIONAL[1]:
        if point <= 0:
            return f"{sign}0.{'0' * -point}{digits}"
        if point >= len(digits):
            return f"{sign}{digits}{'0' * (point - len(digits))}.0"
        return f"{sign}{digits[:point]}.{digits[point:]}"
    rest = f".{digits[1:]}" if len(digits) > 1 else ""
    return f"{sign}{digits[0]}{rest}e{'+' if exponent >= 0 else '-'}{abs(exponent)}"


def _shortest(value: float) -> tuple[str, int]:
    """The shortest round-trip digits of `value` >= 0 (Python's repr has them) and where the
    point goes: value = 0.DIGITS x 10**point; no digits for zero."""
    mantissa, _, exponent = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    both = whole + fraction
    digits = both.lstrip("0")
    point = len(whole) - (len(both) - len(digits)) + (int(exponent) if exponent else 0)
    return digits.rstrip("0"), point


def time_text(ms: int, tz: str = UTC) -> str:
    """One time as `text_times` writes it: `2026-11-20T09:00:00.000Z`, or with the zone's
    offset (`2026-11-20T18:00:00.000+09:00`)."""
    seconds, millis = divmod(ms, 1000)
    if tz == UTC:
        when = datetime(1970, 1, 1) + timedelta(seconds=seconds)
        return f"{when:%Y-%m-%dT%H:%M:%S}.{millis:03d}Z"
    from zoneinfo import ZoneInfo

    local = datetime.fromtimestamp(seconds, ZoneInfo(tz))
    offset = local.utcoffset()
    assert offset is not None
    return f"{local:%Y-%m-%dT%H:%M:%S}.{millis:03d}{_offset(offset // timedelta(milliseconds=1))}"


def csv_table(table: pa.Table, tz: str = UTC) -> pa.Table:
    """`table` with every value as the text CSV holds: times and floats as above.

    Written with no quoting at all (pyarrow quotes every text column, the numbers' text
    included, or none): every text value here is a market code, a timeframe, a time or a
    number, none of which holds a comma, a quote or a line end.
    """
    table = text_times(table, tz)
    for i, column in enumerate(table.schema):
        if pa.types.is_floating(column.type):
            table = table.set_column(i, column.name, float_texts(table.column(i)))
    return table


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
        text = pc.if_else(finite, float_texts(values), pa.scalar(None, pa.string()))
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
