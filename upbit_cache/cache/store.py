"""The Parquet store: one interface to load, write and record candles, on any pyarrow filesystem."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from upbit_cache.cache import paths
from upbit_cache.cache.atomic import atomic_write
from upbit_cache.cache.datadir import default_data_dir
from upbit_cache.cache.locks import FileLock
from upbit_cache.cache.manifest import Record, read_record, write_record
from upbit_cache.cache.memory import MemoryCache
from upbit_cache.cache.ranges import Ranges
from upbit_cache.candles import CANDLE_SCHEMA, dedupe_by_time, from_table, to_table
from upbit_cache.errors import StorageError
from upbit_cache.timeframes import Timeframe

if TYPE_CHECKING:  # pandas is imported only where a frame is made, to keep CLI start fast
    import pandas as pd


class CandleStore:
    """Hive-partitioned Parquet candles plus fetched-range records under one root.

    Writers of a (timeframe, market) hold `lock(tf, market)` around `write`; readers never
    need a lock, because every file is replaced by an atomic rename.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        filesystem: pafs.FileSystem | None = None,
        memory: MemoryCache | None = None,
    ):
        text = os.fspath(root)
        if filesystem is None:
            if "://" in text:
                filesystem, text = pafs.FileSystem.from_uri(text)
            else:
                filesystem, text = pafs.LocalFileSystem(), str(Path(text).expanduser().absolute())
        self.fs = filesystem
        self.root = text.rstrip("/")
        self.memory = memory if memory is not None else MemoryCache()
        self.is_local = isinstance(filesystem, pafs.LocalFileSystem)

    @classmethod
    def open(
        cls, data_dir: str | os.PathLike[str] | None = None, memory: MemoryCache | None = None
    ) -> CandleStore:
        """The store at `data_dir`, or at the default data dir."""
        return cls(data_dir if data_dir is not None else default_data_dir(), memory=memory)

    def ensure_writable(self) -> None:
        """Fail early, with the path in the message, if nothing can be written here."""
        probe = f"{self.root}/.write-probe"
        try:
            atomic_write(self.fs, probe, lambda sink: sink.write(b"ok"))
            self.fs.delete_file(probe)
        except (StorageError, OSError) as exc:
            raise StorageError(f"data dir {self.root} is not writable: {exc}") from exc

    def lock(self, tf: Timeframe, market: str) -> FileLock:
        """The writer lock of one (timeframe, market)."""
        return FileLock(paths.lock_file(self.root, tf, market) if self.is_local else None)

    def fetched(self, tf: Timeframe, market: str) -> Ranges:
        """The time ranges already asked of Upbit for this (timeframe, market)."""
        return self.record(tf, market).fetched

    def record(self, tf: Timeframe, market: str) -> Record:
        """Everything recorded of this (timeframe, market): fetched ranges, derivation."""
        return read_record(self.fs, paths.fetched_file(self.root, tf, market))

    def markets(self, tf: Timeframe) -> list[str]:
        """Markets with any fetched range recorded for this timeframe."""
        selector = pafs.FileSelector(f"{self.root}/fetched/{tf.name}", allow_not_found=True)
        names = (info.base_name for info in self.fs.get_file_info(selector))
        return sorted(n.removesuffix(".json") for n in names if n.endswith(".json"))

    def load(
        self, market: str, tf: Timeframe, start: int | None = None, end: int | None = None
    ) -> pd.DataFrame:
        """Stored candles of one market with start <= time < end (epoch ms), oldest first."""
        return from_table(self.load_table(market, tf, start, end))

    def load_table(
        self, market: str, tf: Timeframe, start: int | None = None, end: int | None = None
    ) -> pa.Table:
        """`load` as an Arrow table (CANDLE_SCHEMA), read through the memory layer."""
        infos = sorted(self._infos(market, tf, start, end), key=_path)
        parts = [self._read(info) for info in infos]
        if not parts:
            return CANDLE_SCHEMA.empty_table()
        table = pa.concat_tables(parts)
        if start is None and end is None:
            return table
        times = table["time"].cast(pa.int64())
        keep = pc.greater_equal(times, start) if start is not None else None
        if end is not None:
            upper = pc.less(times, end)
            keep = upper if keep is None else pc.and_(keep, upper)
        return table.filter(keep)

    def write(
        self,
        market: str,
        tf: Timeframe,
        candles: pd.DataFrame | pa.Table,
        covered: Ranges,
        *,
        derived_from: Timeframe | None = None,
        sources: dict[str, str] | None = None,
    ) -> int:
        """Merge candles into their partitions, then record `covered` as settled.

        Rows replace stored rows with the same `time`. For a derived timeframe, `derived_from`
        and the base partitions' fingerprints (`sources`) are recorded too. Returns the number
        of rows written. The caller holds `lock(tf, market)`.
        """
        table = to_table(candles)
        if table.num_rows:
            starts = paths.partition_starts(tf, table["time"].cast(pa.int64()).to_numpy())
            order = np.argsort(starts, kind="stable")
            bounds = np.flatnonzero(np.diff(starts[order])) + 1
            for rows in np.split(order, bounds):
                self._merge_partition(market, tf, int(starts[rows[0]]), table.take(rows))
        if covered or sources:
            path = paths.fetched_file(self.root, tf, market)
            old = read_record(self.fs, path)
            base = derived_from.name if derived_from is not None else old.derived_from
            kept = old.sources if base == old.derived_from else {}
            record = Record(old.fetched.union(covered), base, {**kept, **(sources or {})})
            write_record(self.fs, path, record)
        return table.num_rows

    def _merge_partition(self, market: str, tf: Timeframe, start: int, new: pa.Table) -> None:
        final = paths.data_file(self.root, tf, market, start)
        [info] = self.fs.get_file_info([final])
        old = self._read(info) if info.type == pafs.FileType.File else None
        # Old rows first, so that for a repeated time the new row wins.
        merged = dedupe_by_time(new if old is None else pa.concat_tables([old, new]))
        atomic_write(self.fs, final, lambda sink: pq.write_table(merged, sink, compression="zstd"))
        # Just written: keep it in memory, so a read that follows costs no disk read.
        [info] = self.fs.get_file_info([final])
        self.memory.put(final, _version(info), merged)

    def partition_files(self, tf: Timeframe, market: str) -> dict[int, pafs.FileInfo]:
        """The data files of one (timeframe, market), by partition start."""
        return {paths.parse_partition(i.path)[2]: i for i in self._infos(market, tf, None, None)}

    def _read(self, info: pafs.FileInfo) -> pa.Table:
        """One data file, from memory when this version of it was read or written before."""
        version = _version(info)
        table = self.memory.get(info.path, version)
        if table is None:
            try:
                with self.fs.open_input_file(info.path) as source:
                    table = pq.ParquetFile(source).read().cast(CANDLE_SCHEMA)
            except (OSError, pa.ArrowInvalid) as exc:
                raise StorageError(f"cannot read {info.path}: {exc}") from exc
            self.memory.put(info.path, version, table)
        return table

    def _infos(
        self, market: str, tf: Timeframe, start: int | None, end: int | None
    ) -> list[pafs.FileInfo]:
        if start is not None and end is not None:
            wanted = [
                paths.data_file(self.root, tf, market, p)
                for p in paths.partitions_between(tf, start, end)
            ]
            infos = self.fs.get_file_info(wanted)
        else:
            base = f"{paths.candles_root(self.root, tf)}/market={market}"
            selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
            infos = self.fs.get_file_info(selector)
        return [i for i in infos if i.type == pafs.FileType.File and i.base_name == paths.DATA_FILE]


def _version(info: pafs.FileInfo) -> tuple[int, int]:
    return (info.size or 0, info.mtime_ns or 0)


def _path(info: pafs.FileInfo) -> str:
    return info.path
