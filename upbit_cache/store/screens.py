"""Kept screen-prep tables: the rendered table, and a record of what it was built from.

A table is kept as `<data-dir>/screens/<key>.<format>` beside `<key>.json`, written after
the table, so a record always describes a table that is there. Through the data dir's
filesystem like every other file, and light (no Parquet, no pandas): a screen-prep with
nothing new reads only these and the file versions of what the table was built from.
"""

from __future__ import annotations

import json
from typing import Any

from upbit_cache.errors import StorageError
from upbit_cache.ranges import TimeRange
from upbit_cache.store import layout
from upbit_cache.store.files import STALE_TEMP_S, DataDir, Writer
from upbit_cache.timeframes import Timeframe


def series_versions(files: DataDir, tf: Timeframe, market: str, span: TimeRange) -> list[object]:
    """What a table of `span` read from one series depends on: the version of its record
    (which lists the data files, written once: a new file is a new record) and of every
    legacy data file that may hold it (None where there is none)."""
    names = [layout.fetched_file(files.root, tf, market)]
    names += layout.legacy_files_between(files.root, tf, market, span)
    return [list(f.version) if f is not None else None for f in files.stat_many(names)]


def read_kept(files: DataDir, name: str, fmt: str) -> tuple[str, dict[str, Any]] | None:
    """The kept table `name` in `fmt` and its record, if both are there and readable."""
    raw = files.read_bytes(layout.screen_record(files.root, name))
    table = layout.screen_table(files.root, name, fmt)
    if raw is None or not files.is_file(table):
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return (table, data) if isinstance(data, dict) else None


def keep(files: DataDir, name: str, fmt: str, write: Writer) -> str:
    """Write the table `name` (atomically); its path. Temp files of this table and its
    record that a killed run left (older than STALE_TEMP_S) go first."""
    path = layout.screen_table(files.root, name, fmt)
    old = files.clock_ms() - STALE_TEMP_S * 1000
    for found in files.list_files(layout.screens_dir(files.root)):
        if found.is_temp and found.name.startswith(f".{name}.") and found.mtime_ms < old:
            files.delete(found.path)
    files.write(path, write)
    return path


def remember(files: DataDir, name: str, record: dict[str, Any]) -> None:
    """Record what the table `name` was built from (after the table itself is written)."""
    files.write_bytes(layout.screen_record(files.root, name), json.dumps(record).encode())


def kept_table(files: DataDir, table: str) -> bytes:
    """The bytes of the kept table at `table` (as `read_kept` found it), to send out."""
    data = files.read_bytes(table)
    if data is None:
        raise StorageError(f"cannot read {table}: it was removed meanwhile; run again")
    return data
