"""freqtrade's data folder: one `feather` OHLCV file per market and timeframe, named and
typed as freqtrade's own FeatherDataHandler writes and reads them.

    KRW-BTC 1h  ->  <out>/BTC_KRW-1h.feather     (pair BTC/KRW, `misc.pair_to_filename`)
    KRW-BTC 1M  ->  <out>/BTC_KRW-1Mo.feather    (`timeframe_to_file`: M is Mo on disk)

Columns `date, open, high, low, close, volume`: `date` a UTC timestamp in milliseconds (the
unit freqtrade's loader gives it), the rest float64; Arrow IPC (Feather v2) compressed
with lz4 at level 9, as freqtrade's `to_feather` call does. Spot data: the files lie in
`<out>` itself (freqtrade puts futures in `<out>/futures`; Upbit has none).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import IO, Any, cast

import pyarrow as pa

from upbit_cache.errors import UsageError
from upbit_cache.output.destination import write_out

FREQTRADE = "freqtrade"
_FIELDS: list[pa.Field[Any]] = [
    pa.field("date", pa.timestamp("ms", tz="UTC")),
    *(pa.field(name, pa.float64()) for name in ("open", "high", "low", "close", "volume")),
]
FREQTRADE_SCHEMA = pa.schema(_FIELDS)
# freqtrade.misc.pair_to_filename: these become "_" in a file name.
_REPLACED = ("/", " ", ".", "@", "$", "+", ":")


def pair(market: str) -> str:
    """ccxt's (and freqtrade's) pair of an Upbit market: KRW-BTC is BTC/KRW."""
    quote, _, base = market.partition("-")
    return f"{base}/{quote}"


def file_name(market: str, timeframe: str) -> str:
    """The file freqtrade reads for a spot pair and timeframe (`1h`): `BTC_KRW-1h.feather`."""
    name = pair(market)
    for char in _REPLACED:
        name = name.replace(char, "_")
    return f"{name}-{timeframe.replace('M', 'Mo')}.feather"


def check_folder(out: str) -> None:
    """Refuse, before any work, a folder that cannot hold the files: `-` (stdout), a file,
    or a folder whose parent does not exist (only the last folder is created, as freqtrade
    itself does: a typo would scatter folders)."""
    if out == "-" or "://" in out:
        raise UsageError(
            "--format freqtrade writes a folder of files: give --out FOLDER "
            "(e.g. user_data/data/upbit)"
        )
    path = os.path.abspath(os.path.expanduser(out))
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"cannot write freqtrade files into {out}: it is a file, not a folder")
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise UsageError(f"cannot write freqtrade files into {out}: there is no folder {parent}")


def make_folder(out: str) -> str:
    """`out` as an absolute path, created if it is missing (its parent exists)."""
    path = os.path.abspath(os.path.expanduser(out))
    os.makedirs(path, exist_ok=True)
    return path


def frame_of(rows: pa.Table) -> pa.Table:
    """Candles in the store's (or the export's) columns, as freqtrade's columns."""
    columns = [rows["time"].cast(FREQTRADE_SCHEMA.field("date").type)]
    columns += [rows[name].cast(pa.float64()) for name in FREQTRADE_SCHEMA.names[1:]]
    return pa.Table.from_arrays(columns, schema=FREQTRADE_SCHEMA)


def write_series(path: str, tables: Iterable[pa.Table]) -> tuple[int, int]:
    """One series' candles (ascending) to `path`, atomically; its rows and bytes."""
    counts = [0, 0]

    def write(stream: IO[bytes] | pa.NativeFile) -> None:
        sink = stream if isinstance(stream, pa.NativeFile) else pa.PythonFile(cast(Any, stream))
        options = pa.ipc.IpcWriteOptions(compression=pa.Codec("lz4", compression_level=9))
        with pa.ipc.new_file(sink, FREQTRADE_SCHEMA, options=options) as writer:
            for table in tables:
                writer.write_table(frame_of(table), max_chunksize=65_536)
                counts[0] += table.num_rows
        counts[1] = sink.tell()

    write_out(path, write)
    return counts[0], counts[1]
