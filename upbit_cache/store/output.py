"""Writing a table out: Parquet, CSV or JSON lines, to a file (atomically) or to stdout."""

from __future__ import annotations

import sys
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from upbit_cache.errors import UsageError
from upbit_cache.store.files import write_out
from upbit_cache.store.formats import Format


def write_output(table: pa.Table, out: str, fmt: Format, tz: str = "UTC") -> None:
    """Write `table` to `out` ("-" is stdout), text times in `tz`. A file appears whole or
    not at all."""
    if out == "-":
        stream = sys.stdout.buffer
        if fmt == "parquet" and stream.isatty():
            raise UsageError("will not write Parquet to a terminal: give --out FILE or --format")
        write_table(table, stream, fmt, tz)
        stream.flush()
        return
    write_out(out, lambda sink: write_table(table, sink, fmt, tz))


def write_table(
    table: pa.Table, sink: IO[bytes] | pa.NativeFile, fmt: Format, tz: str = "UTC"
) -> None:
    """Encode `table` in `fmt` into an open stream (text times in `tz`)."""
    if fmt == "parquet":
        # Fast to write and to read back: snappy, and a dictionary only for the market codes.
        # pyarrow takes a list of columns for use_dictionary; its stubs know only a bool.
        dictionary: Any = ["market"]
        pq.write_table(table, sink, compression="snappy", use_dictionary=dictionary)
    elif fmt == "csv":
        pacsv.write_csv(_iso_times(table, tz), sink)
    else:
        # JSON lines go through pandas: pyarrow has no JSON writer.
        text = _iso_times(table, tz).to_pandas().to_json(orient="records", lines=True)
        sink.write((text if text.endswith("\n") or not text else text + "\n").encode())


def _iso_times(table: pa.Table, tz: str = "UTC") -> pa.Table:
    """Times as ISO 8601 text, which every reader parses: `2026-11-20T09:00:00.000Z` in UTC,
    with the zone's offset elsewhere (`2026-11-20T18:00:00.000+09:00` in Asia/Seoul)."""
    for i, column in enumerate(table.schema):
        if pa.types.is_timestamp(column.type):
            # Markets share their candle times: format each distinct time once.
            times = table.column(i)
            distinct = pc.unique(times)
            if tz == "UTC":
                text = pc.strftime(distinct, format="%Y-%m-%dT%H:%M:%SZ")
            else:
                # The zone's wall time and offset; its stubs know timestamps without a zone only.
                local: Any = distinct.cast(pa.timestamp(column.type.unit, tz=tz))
                text = pc.strftime(local, format="%Y-%m-%dT%H:%M:%S%Ez")
            table = table.set_column(i, column.name, pc.take(text, pc.index_in(times, distinct)))
    return table
