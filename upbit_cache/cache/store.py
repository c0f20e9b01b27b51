"""The Parquet store: one interface to load, write and record candles, on any pyarrow filesystem."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import platformdirs
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from upbit_cache.cache import paths
from upbit_cache.cache.atomic import atomic_write
from upbit_cache.cache.locks import FileLock
from upbit_cache.cache.manifest import Record, read_record, write_record
from upbit_cache.cache.ranges import Ranges
from upbit_cache.candles import (
    CANDLE_SCHEMA,
    TIME_TYPE,
    dedupe_by_time,
    empty_candles,
    from_table,
    to_table,
)
from upbit_cache.errors import StorageError
from upbit_cache.timeframes import Timeframe

ENV_DATA_DIR = "UPBIT_CACHE_DIR"


def default_data_dir() -> str:
    """UPBIT_CACHE_DIR if set, else the user data dir (e.g. ~/.local/share/upbit-cache)."""
    return os.environ.get(ENV_DATA_DIR) or platformdirs.user_data_dir("upbit-cache")


class CandleStore:
    """Hive-partitioned Parquet candles plus fetched-range records under one root.

    Writers of a (timeframe, market) hold `lock(tf, market)` around `write`; readers never
    need a lock, because every file is replaced by an atomic rename.
    """

    def __init__(self, root: str | os.PathLike[str], filesystem: pafs.FileSystem | None = None):
        text = os.fspath(root)
        if filesystem is None:
            if "://" in text:
                filesystem, text = pafs.FileSystem.from_uri(text)
            else:
                filesystem, text = pafs.LocalFileSystem(), str(Path(text).expanduser().absolute())
        self.fs = filesystem
        self.root = text.rstrip("/")
        self._local = isinstance(filesystem, pafs.LocalFileSystem)

    @classmethod
    def open(cls, data_dir: str | os.PathLike[str] | None = None) -> CandleStore:
        """The store at `data_dir`, or at the default data dir."""
        return cls(data_dir if data_dir is not None else default_data_dir())

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
        return FileLock(paths.lock_file(self.root, tf, market) if self._local else None)

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
        files = self._files(market, tf, start, end)
        if not files:
            return empty_candles()
        dataset = ds.dataset(files, schema=CANDLE_SCHEMA, format="parquet", filesystem=self.fs)
        condition = None
        if start is not None:
            condition = ds.field("time") >= pa.scalar(start, TIME_TYPE)
        if end is not None:
            upper = ds.field("time") < pa.scalar(end, TIME_TYPE)
            condition = upper if condition is None else condition & upper
        try:
            table = dataset.to_table(filter=condition)
        except OSError as exc:
            raise StorageError(f"cannot read {market} {tf} from {self.root}: {exc}") from exc
        return from_table(table.sort_by("time"))

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
        old = self._read_file(final)
        # Old rows first, so that for a repeated time the new row wins.
        merged = dedupe_by_time(new if old is None else pa.concat_tables([old, new]))
        atomic_write(self.fs, final, lambda sink: pq.write_table(merged, sink, compression="zstd"))

    def partition_files(self, tf: Timeframe, market: str) -> dict[int, pafs.FileInfo]:
        """The data files of one (timeframe, market), by partition start."""
        return {paths.parse_partition(i.path)[2]: i for i in self._infos(market, tf, None, None)}

    def _read_file(self, path: str) -> pa.Table | None:
        try:
            return pq.read_table(path, filesystem=self.fs, schema=CANDLE_SCHEMA)
        except FileNotFoundError:
            return None
        except (OSError, pa.ArrowInvalid) as exc:
            raise StorageError(f"cannot read {path}: {exc}") from exc

    def _files(self, market: str, tf: Timeframe, start: int | None, end: int | None) -> list[str]:
        return sorted(i.path for i in self._infos(market, tf, start, end))

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
