"""The Parquet store: one interface to load, write and record candles, on any pyarrow filesystem."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
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
from upbit_cache.errors import StorageError, UpbitCacheError
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import now_ms

HOT_ROW_GROUP = 4_096
COLD_ROW_GROUP = 10_080  # a week of 1m candles
COLD_ZSTD_LEVEL = 12
_READ_ATTEMPTS = 20

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

    def clock_ms(self) -> int:
        """Now on the store's own clock: the modification time a file written now gets.

        File ages (leftover temp files, kept screens nobody uses) are measured against this,
        not against this host's clock, so that a store whose clock differs from ours (another
        host's disk, an object store, a test under a shifted clock) ages nothing wrongly.
        Where nothing can be written, this host's clock is the only one there is.
        """
        probe = paths.temp_path(f"{self.root}/.clock")
        try:
            with self.fs.open_output_stream(probe):
                pass
            [info] = self.fs.get_file_info([probe])
            self.fs.delete_file(probe)
        except OSError:
            return now_ms()
        return mtime_ms(info) if info.mtime_ns else now_ms()

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
        """`load` as an Arrow table (CANDLE_SCHEMA), read through the memory layer.

        Hot and cold files are read as one: where both hold a time (a compaction under way,
        or a backfill into a compacted span), the hot row wins.
        """
        for attempt in range(_READ_ATTEMPTS):
            infos = self._infos(market, tf, start, end)
            try:
                table = self._combine([self._read(info) for info in infos], infos)
                break
            except FileNotFoundError:
                # A concurrent prune compacted files between our listing and our read: list
                # again (the files already read come from memory, so each try gets further).
                if attempt == _READ_ATTEMPTS - 1:
                    raise StorageError(
                        f"{market} {tf}: files keep changing under this read; try again"
                    ) from None
                time.sleep(0.01 * attempt)
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
            sources = {**kept, **(sources or {})}
            pruned = old.pruned.subtract(covered)  # fetched again: no longer a pruned gap
            record = Record(old.fetched.union(covered), base, sources, pruned)
            write_record(self.fs, path, record)
        return table.num_rows

    def _merge_partition(self, market: str, tf: Timeframe, start: int, new: pa.Table) -> None:
        final = paths.data_file(self.root, tf, market, start)
        [info] = self.fs.get_file_info([final])
        old = self._read(info) if info.type == pafs.FileType.File else None
        # Old rows first, so that for a repeated time the new row wins.
        merged = dedupe_by_time(new if old is None else pa.concat_tables([old, new]))
        self.put_file(final, merged)

    def put_file(self, path: str, table: pa.Table) -> None:
        """Write one data file atomically, encoded for its tier (named by its file name)."""
        tier = paths.tier_of(path)
        atomic_write(self.fs, path, lambda sink: write_parquet(table, sink, tier))
        # Just written: keep it in memory, so a read that follows costs no disk read.
        [info] = self.fs.get_file_info([path])
        self.memory.put(path, _version(info), table)

    def remove_file(self, path: str) -> None:
        """Delete one data file and its partition directory if that is left empty."""
        try:
            self.fs.delete_file(path)
        except FileNotFoundError:
            pass  # already gone: what was asked for
        except OSError as exc:
            raise StorageError(f"cannot delete {path}: {exc}") from exc
        folder = path.rpartition("/")[0]
        if not self.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
            with contextlib.suppress(OSError):  # a writer may be filling it again
                self.fs.delete_dir(folder)

    def set_record(self, tf: Timeframe, market: str, record: Record) -> None:
        """Replace the record of one (timeframe, market); the caller holds its lock."""
        write_record(self.fs, paths.fetched_file(self.root, tf, market), record)

    def data_files(self, tf: Timeframe, market: str) -> list[pafs.FileInfo]:
        """Every data file (both tiers) of one (timeframe, market), in path order."""
        return self._infos(market, tf, None, None)

    def timeframes(self) -> list[Timeframe]:
        """Timeframes with any data or record in the store."""
        names: set[str] = set()
        for top in ("candles", "fetched"):
            selector = pafs.FileSelector(f"{self.root}/{top}", allow_not_found=True)
            names.update(i.base_name for i in self.fs.get_file_info(selector))
        found = []
        for name in sorted(names):
            try:
                found.append(Timeframe.parse(name))
            except UpbitCacheError:
                continue  # not ours
        return found

    def stored_markets(self, tf: Timeframe) -> list[str]:
        """Markets with a record or any data file for this timeframe."""
        selector = pafs.FileSelector(paths.candles_root(self.root, tf), allow_not_found=True)
        dirs = (i.base_name for i in self.fs.get_file_info(selector))
        held = {d.removeprefix("market=") for d in dirs if d.startswith("market=")}
        return sorted(held.union(self.markets(tf)))

    def partition_files(
        self, tf: Timeframe, market: str, tier: paths.Tier = "hot"
    ) -> dict[int, pafs.FileInfo]:
        """The data files of one (timeframe, market) in one tier, by partition start."""
        infos = self._infos(market, tf, None, None)
        return {paths.parse_partition(i.path)[2]: i for i in infos if paths.tier_of(i.path) == tier}

    def read_file(self, info: pafs.FileInfo) -> pa.Table:
        """One data file, from memory when this version of it was read or written before."""
        try:
            return self._read(info)
        except FileNotFoundError as exc:
            raise StorageError(f"cannot read {info.path}: it was removed meanwhile") from exc

    def _read(self, info: pafs.FileInfo) -> pa.Table:
        version = _version(info)
        table = self.memory.get(info.path, version)
        if table is None:
            try:
                with self.fs.open_input_file(info.path) as source:
                    table = pq.ParquetFile(source).read().cast(CANDLE_SCHEMA)
            except FileNotFoundError:
                raise
            except (OSError, pa.ArrowInvalid) as exc:
                raise StorageError(f"cannot read {info.path}: {exc}") from exc
            self.memory.put(info.path, version, table)
        return table

    @staticmethod
    def _combine(parts: list[pa.Table], infos: list[pafs.FileInfo]) -> pa.Table:
        if not parts:
            return CANDLE_SCHEMA.empty_table()
        table = pa.concat_tables(parts)
        if any(paths.tier_of(i.path) == "cold" for i in infos):
            # Path order puts a span's cold file before its hot files: the hot row wins.
            table = dedupe_by_time(table)
        return table

    def _infos(
        self, market: str, tf: Timeframe, start: int | None, end: int | None
    ) -> list[pafs.FileInfo]:
        """The data files (both tiers) that may hold [start, end), in path order."""
        if start is not None and end is not None:
            infos = self.fs.get_file_info(
                paths.data_files_between(self.root, tf, market, start, end)
            )
        else:
            base = f"{paths.candles_root(self.root, tf)}/market={market}"
            selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
            infos = self.fs.get_file_info(selector)
        names = paths.FILE_NAMES.values()
        found = [i for i in infos if i.type == pafs.FileType.File and i.base_name in names]
        return sorted(found, key=_path)


@dataclass(frozen=True)
class TierUsage:
    """Data files of one tier and their summed size."""

    files: int = 0
    bytes: int = 0

    def __add__(self, other: TierUsage) -> TierUsage:
        return TierUsage(self.files + other.files, self.bytes + other.bytes)


def usage_by_tier(infos: Iterable[pafs.FileInfo]) -> dict[paths.Tier, TierUsage]:
    """Files and bytes per tier among `infos` (anything that is not a data file is skipped)."""
    tiers: dict[paths.Tier, TierUsage] = {"hot": TierUsage(), "cold": TierUsage()}
    for info in infos:
        if info.type == pafs.FileType.File and info.base_name in paths.FILE_NAMES.values():
            tier = paths.tier_of(info.path)
            tiers[tier] = tiers[tier] + TierUsage(1, info.size or 0)
    return tiers


def write_parquet(table: pa.Table, sink: pa.NativeFile, tier: paths.Tier) -> None:
    """Encode candles for a tier: hot files are rewritten often, cold ones read for years.

    Hot: snappy (cheap to write, read everywhere) and small row groups. Cold: zstd at a high
    level over encodings that suit the data (delta for the sorted times, byte-stream-split
    for the floats: a third fewer bytes than plain zstd, and faster to read), row groups of a
    week of 1m candles for range scans. Both are sorted by `time`, say so, and carry `time`
    statistics, so readers skip what they do not need.
    """
    sorting = [pq.SortingColumn(table.schema.get_field_index("time"))]
    if tier == "hot":
        pq.write_table(
            table, sink, compression="snappy", row_group_size=HOT_ROW_GROUP, sorting_columns=sorting
        )
        return
    encodings = {
        name: "DELTA_BINARY_PACKED" if pa.types.is_timestamp(kind) else "BYTE_STREAM_SPLIT"
        for name, kind in zip(table.schema.names, table.schema.types, strict=True)
    }
    pq.write_table(
        table,
        sink,
        compression="zstd",
        compression_level=COLD_ZSTD_LEVEL,
        use_dictionary=False,
        column_encoding=encodings,
        row_group_size=COLD_ROW_GROUP,
        write_statistics=True,
        sorting_columns=sorting,
    )


def mtime_ms(info: pafs.FileInfo) -> int:
    """A file's modification time in epoch ms (on the store's clock, see `clock_ms`)."""
    return (info.mtime_ns or 0) // 1_000_000


def _version(info: pafs.FileInfo) -> tuple[int, int]:
    return (info.size or 0, info.mtime_ns or 0)


def _path(info: pafs.FileInfo) -> str:
    return info.path
