"""Writing tables out: Parquet, CSV or JSON lines, to a file (atomically) or to stdout.

Tables are written as they come, so a stream of any length takes the memory of one row
group. Text is exact (see text.py); Parquet keeps UTC timestamps. A file named `.gz` or
`.zst` is compressed as it is written (compression.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, cast

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from upbit_cache.output import compression
from upbit_cache.output.destination import write_all, write_out
from upbit_cache.output.formats import Format
from upbit_cache.output.text import UTC, csv_table, json_lines

ROW_GROUP = 65_536  # rows gathered before a write: Parquet row groups of a useful size


@dataclass
class Written:
    """What went out: rows and bytes."""

    rows: int = 0
    bytes: int = 0


def write_output(table: pa.Table, out: str, fmt: Format, tz: str = UTC) -> None:
    """Write `table` to `out` ("-" is stdout), text times in `tz`. A file appears whole or
    not at all."""
    write_stream([table], table.schema, out, fmt, tz)


def write_table(
    table: pa.Table, sink: IO[bytes] | pa.NativeFile, fmt: Format, tz: str = UTC
) -> None:
    """Encode `table` in `fmt` into an open stream (text times in `tz`)."""
    _encode([table], table.schema, _Counted(sink), fmt, tz)


def write_stream(
    tables: Iterable[pa.Table], schema: pa.Schema, out: str, fmt: Format, tz: str = UTC
) -> Written:
    """Write tables of `schema` to `out` ("-" is stdout) as they come; text times in `tz`.

    A file appears whole or not at all. On stdout, a failure part way (a closed pipe, a
    damaged file read) stops the output where it is: a cut Parquet stream stays unreadable
    rather than ending in a footer that would make it look whole.
    """
    if out == "-":
        sink = _Counted(sys.stdout.buffer)
        rows = _encode(tables, schema, sink, fmt, tz)
        sys.stdout.buffer.flush()
        return Written(rows, sink.bytes)
    done = Written()
    _, codec = compression.split(out)

    def write(stream: IO[bytes] | pa.NativeFile) -> None:
        counted = _Counted(stream)  # what the file holds: compressed, if it is
        with compression.compressing(counted.as_file(), codec) as inner:
            done.rows = _encode(tables, schema, _Counted(inner), fmt, tz)
        done.bytes = counted.bytes

    write_out(out, write)
    return done


def _encode(
    tables: Iterable[pa.Table], schema: pa.Schema, sink: _Counted, fmt: Format, tz: str
) -> int:
    rows = 0
    parquet = _parquet_writer(sink, schema) if fmt == "parquet" else None
    try:
        for i, table in enumerate(_grouped(tables, schema)):
            rows += table.num_rows
            if parquet is not None:
                parquet.write_table(table)
            elif fmt == "csv":
                if i == 0:  # pyarrow would quote the names whatever the quoting style
                    sink.write((",".join(schema.names) + "\n").encode())
                options = pacsv.WriteOptions(include_header=False, quoting_style="none")
                pacsv.write_csv(csv_table(table, tz), sink.as_file(), write_options=options)
            else:
                sink.write(json_lines(table, tz))
    except BaseException:
        sink.stopped = True
        raise
    if parquet is not None:
        parquet.close()
    return rows


def _parquet_writer(sink: _Counted, schema: pa.Schema) -> pq.ParquetWriter:
    # Fast to write and to read back: snappy, and a dictionary only for the text columns
    # (market codes, timeframes). pyarrow takes a list of columns for use_dictionary; its
    # stubs know only a bool.
    text: Any = [f.name for f in schema if pa.types.is_string(f.type)]
    return pq.ParquetWriter(sink.as_file(), schema, compression="snappy", use_dictionary=text)


def _grouped(tables: Iterable[pa.Table], schema: pa.Schema) -> Iterator[pa.Table]:
    """The tables regathered into groups of about ROW_GROUP rows; at least one (maybe empty),
    so that an empty CSV still has its header."""
    held: list[pa.Table] = []
    count, sent = 0, False
    for table in tables:
        held.append(table)
        count += table.num_rows
        if count >= ROW_GROUP:
            yield pa.concat_tables(held)
            held, count, sent = [], 0, True
    if held or not sent:
        yield pa.concat_tables(held) if held else schema.empty_table()


class _Counted:
    """A write-only stream that counts the bytes through it, and lets none through once
    `stopped` (the output ends where the failure found it)."""

    def __init__(self, inner: IO[bytes] | pa.NativeFile) -> None:
        self.inner = inner
        self.bytes = 0
        self.stopped = False
        self.closed = False  # pyarrow asks; the inner stream is closed by its owner

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        if not self.stopped:
            write_all(self.inner, data)
            self.bytes += size
        return size

    def flush(self) -> None:
        if not self.stopped:
            self.inner.flush()

    def as_file(self) -> IO[bytes]:
        """Itself, typed as the file object pyarrow's writers take (write, flush, closed)."""
        return cast("IO[bytes]", self)
