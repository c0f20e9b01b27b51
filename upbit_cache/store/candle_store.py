"""The Parquet store: load, write and record candles, through one `DataDir`."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from upbit_cache.candles import (
    CANDLE_SCHEMA,
    dedupe_by_time,
    from_table,
    in_ranges,
    in_span,
    times_ms,
    to_table,
)
from upbit_cache.errors import DamageError, StorageError, WriteConflict
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.store import layout
from upbit_cache.store.base import Location, Store
from upbit_cache.store.checks import decode, missing_file
from upbit_cache.store.files import StoredFile
from upbit_cache.store.layout import Tier as Tier  # the manager names tiers by this
from upbit_cache.store.migrate import migrate
from upbit_cache.store.records import Record, read_record, write_record
from upbit_cache.timeframes import Timeframe

HOT_ROW_GROUP = 4_096
COLD_ROW_GROUP = 10_080  # a week of 1m candles
COLD_ZSTD_LEVEL = 12
_READ_ATTEMPTS = 20
_GONE_ATTEMPTS = 3  # a listed file missing this many reads in a row is gone, not moving
_CONFLICT_ATTEMPTS = 20  # rounds of read-merge-write lost to other hosts' writers

if TYPE_CHECKING:  # pandas is imported only where a frame is made, to keep CLI start fast
    import pandas as pd


class TableCache(Protocol):
    """A memory layer in front of file reads (the cache manager's), keyed by file version."""

    def get(self, path: str, version: tuple[int, int]) -> pa.Table | None: ...
    def put(
        self,
        path: str,
        version: tuple[int, int],
        table: pa.Table,
        *,
        read: bool = False,
        tier: Tier = "hot",
    ) -> None:
        """Keep `table`: just written, or (`read`) just read from disk by a reader, from a
        file of `tier`."""


class _NoCache:
    def get(self, path: str, version: tuple[int, int]) -> pa.Table | None:
        return None

    def put(
        self,
        path: str,
        version: tuple[int, int],
        table: pa.Table,
        *,
        read: bool = False,
        tier: Tier = "hot",
    ) -> None:
        pass


class CandleStore(Store):
    """Hive-partitioned Parquet candles plus fetched-range records under one root.

    Writers of a (timeframe, market) hold `lock(tf, market)` around `write`; readers never
    need a lock, because every file is replaced by an atomic rename.

    The cache manager uses the series level: the records (`Store`: `coverage`, `record`,
    `fetched`, `lock`, `stamp`), `load`/`load_table`, `write`, `read_spans`, `base_versions`
    and `series_usage`. The file level (`data_files`, `partition_files`, `read_file`,
    `check_file`, `put_file`, `remove_file`, `missing_files`, `usage`) is for the store's own
    modules (upkeep, audit, heal); tests/test_house.py keeps the manager off it.
    """

    def __init__(
        self,
        location: Location = None,
        *,
        cache: TableCache | None = None,
        lock_timeout: float | None = None,
        on_lock_wait: Callable[[str], None] | None = None,
    ) -> None:
        """`lock_timeout`: how long a writer waits for another's lock (None: as long as it
        takes); `on_lock_wait` is told, once per store, that a writer is waiting."""
        super().__init__(location, lock_timeout=lock_timeout, on_lock_wait=on_lock_wait)
        migrate(self.files)  # a data dir of an older layout, on first use (one listing if not)
        self.cache: TableCache = cache if cache is not None else _NoCache()
        self._cleared: set[str] = set()  # files whose leftover temps this store removed
        self._written: dict[str, tuple[int, int]] = {}  # data files written: path -> version

    @classmethod
    def on(cls, store: Store, cache: TableCache | None = None) -> CandleStore:
        """A CandleStore on the data dir of `store`, with its lock settings."""
        return cls(
            store.files,
            cache=cache,
            lock_timeout=store.lock_timeout,
            on_lock_wait=store._on_lock_wait,
        )

    # Series level

    def load(self, market: str, tf: Timeframe, span: TimeRange | None = None) -> pd.DataFrame:
        """Stored candles of one market inside `span` (None: all), oldest first."""
        return from_table(self.load_table(market, tf, span))

    def load_table(self, market: str, tf: Timeframe, span: TimeRange | None = None) -> pa.Table:
        """`load` as an Arrow table (CANDLE_SCHEMA), read through the memory layer if any.

        Hot and cold files are read as one: where both hold a time (a compaction under way,
        or a backfill into a compacted span), the hot row wins.
        """
        missing: dict[str, int] = {}  # listed file -> reads in a row that did not find it
        for attempt in range(_READ_ATTEMPTS):
            found = self._files(market, tf, span)
            try:
                table = self._combine([self._read(f) for f in found], found)
                gone = self._listed_but_gone(market, tf, span, found)
                # A compaction moves files one month at a time: each read may meet another
                # file in flight; one missing read after read is gone.
                missing = {path: missing.get(path, 0) + 1 for path in gone}
                hole = next((path for path, n in missing.items() if n > _GONE_ATTEMPTS), None)
                if hole is not None:
                    raise _hole(tf, market, hole)
                if not gone:
                    break
            except FileNotFoundError:
                # A concurrent prune compacted files between our listing and our read: list
                # again (the files already read come from memory, so each try gets further).
                if attempt == _READ_ATTEMPTS - 1:
                    raise StorageError(
                        f"{market} {tf}: files keep changing under this read; try again"
                    ) from None
            time.sleep(0.01 * attempt)
        return in_span(table, span) if span is not None else table

    def _listed_but_gone(
        self, market: str, tf: Timeframe, span: TimeRange | None, found: list[StoredFile]
    ) -> list[str]:
        """Files the record lists for `span` that are not on disk: a hole a reader must not
        hide (a compaction under way looks the same for an instant, hence the retries)."""
        listed = self.record(tf, market).files
        if not listed:
            return []
        have = {layout.in_series(self.root, tf, market, f.path) for f in found}
        gone = []
        for name in sorted(listed - have):
            path = layout.series_path(self.root, tf, market, name)
            held = layout.file_span(tf, path)
            if span is None or not held.clip(span).empty:
                gone.append(path)
        return gone

    def write(
        self,
        market: str,
        tf: Timeframe,
        candles: pd.DataFrame | pa.Table,
        covered: Ranges,
        *,
        derived_from: Timeframe | None = None,
        sources: dict[str, str] | None = None,
        provisional: Ranges | None = None,
    ) -> int:
        """Merge candles into their partitions, then record `covered` as settled.

        Rows replace stored rows with the same `time`. `covered` is recorded as made by this
        write: native, or for a derived timeframe derived from `derived_from`, whose base
        partitions' fingerprints (`sources`) are recorded too; the rest of the record keeps
        its labels. Rows of `provisional` (periods Upbit may not have settled when asked)
        are written and recorded as such, not as fetched. Returns the number of rows
        written. The caller holds `lock(tf, market)`.

        On S3 each file is replaced only over the version merged into it: a writer on another
        host that got there first makes this one read and merge again, so neither's rows are
        lost (the lock is per host there; this is what holds across hosts).
        """
        table = to_table(candles)
        for attempt in range(_CONFLICT_ATTEMPTS):
            try:
                return self._write(
                    market, tf, table, covered, derived_from, sources, provisional or Ranges()
                )
            except WriteConflict:
                if attempt == _CONFLICT_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
        raise AssertionError("unreachable")

    def _write(
        self,
        market: str,
        tf: Timeframe,
        table: pa.Table,
        covered: Ranges,
        derived_from: Timeframe | None,
        sources: dict[str, str] | None,
        provisional: Ranges,
    ) -> int:
        written: set[str] = set()
        path = layout.fetched_file(self.root, tf, market)
        old = read_record(self.files, path, for_update=True)
        if provisional and table.num_rows:
            # A provisional candle never replaces a settled one (live's closes racing the
            # REST fetch that settled their periods).
            settled = in_ranges(times_ms(table).to_numpy(), old.fetched.subtract(covered))
            table = table.filter(pa.array(~settled)) if settled.any() else table
        if table.num_rows:
            starts = layout.partition_starts(tf, times_ms(table).to_numpy())
            order = np.argsort(starts, kind="stable")
            bounds = np.flatnonzero(np.diff(starts[order])) + 1
            for rows in np.split(order, bounds):
                start = int(starts[rows[0]])
                merged = self._merge_partition(market, tf, start, table.take(rows), old.files)
                written.add(merged)
        if covered or sources or written or provisional:
            self._clear_leftovers(path)
            base = derived_from.name if derived_from is not None else None
            names = [layout.in_series(self.root, tf, market, p) for p in written]
            new = old.covering(covered, base, sources, names, provisional)
            write_record(self.files, path, new)
            self._recorded(tf, market, new)  # the run's coverage keeps it: no read again
        return table.num_rows

    def _merge_partition(
        self, market: str, tf: Timeframe, start: int, new: pa.Table, listed: frozenset[str]
    ) -> str:
        final = layout.data_file(self.root, tf, market, start)
        self._clear_leftovers(final)
        old = self._read_for_update(final)
        if old is None and layout.in_series(self.root, tf, market, final) in listed:
            # Writing the new rows alone would make the hole permanent: the record says the
            # old ones are here.
            raise _hole(tf, market, final)
        # Old rows first, so that for a repeated time the new row wins.
        merged = dedupe_by_time(new if old is None else pa.concat_tables([old, new]))
        self.put_file(final, merged)
        return final

    def _read_for_update(self, path: str) -> pa.Table | None:
        """A data file a writer will replace, or None; on S3 its version is remembered."""
        if not self.files.conditional:
            found = self.files.stat(path)
            return self._read(found) if found is not None else None
        raw = self.files.read_for_update(path)
        return decode(path, lambda: pa.BufferReader(raw)) if raw is not None else None

    def _clear_leftovers(self, final: str) -> None:
        """Remove temp files a killed writer left beside `final`, once per file and process.

        The caller holds the series' writer lock, so no other writer's temp is there now.
        """
        if final in self._cleared or not self.files.leaves_temps:
            return  # on S3 a write is one PUT: there is never a temp file to clear
        self._cleared.add(final)
        folder, _, name = final.rpartition("/")
        for found in self.files.list_files(folder):
            if found.is_temp and found.name.startswith(f".{name}."):
                self.files.delete(found.path)

    def put_file(self, path: str, table: pa.Table) -> StoredFile | None:
        """Write one data file atomically, encoded for its tier (named by its file name).

        The caller holds the series' writer lock; None if the file vanished all the same.
        """
        tier = layout.tier_of(path)
        written = self.files.write(path, lambda sink: write_parquet(table, sink, tier))
        if written is not None:
            # Just written: keep it in memory, so a read that follows costs no disk read.
            self.cache.put(path, written.version, table)
            self._written[path] = written.version  # made of checked rows (heal.py)
        return written

    def take_written(self, tf: Timeframe, market: str) -> dict[str, tuple[int, int]]:
        """The versions of the series' data files this store wrote since it was last asked,
        by path (and forgets them)."""
        folder = layout.market_dir(self.root, tf, market) + "/"
        mine = {p: v for p, v in list(self._written.items()) if p.startswith(folder)}
        for path in mine:
            self._written.pop(path, None)
        return mine

    def remove_file(self, path: str) -> None:
        """Delete one data file and its partition directory if that is left empty."""
        self.files.delete(path)  # already gone is what was asked for
        self.files.delete_dir_if_empty(path.rpartition("/")[0])

    def data_files(self, tf: Timeframe, market: str) -> list[StoredFile]:
        """Every data file (both tiers) of one (timeframe, market), in path order."""
        return self._files(market, tf, None)

    def partition_files(
        self, tf: Timeframe, market: str, tier: layout.Tier = "hot"
    ) -> dict[int, StoredFile]:
        """The data files of one (timeframe, market) in one tier, by partition start."""
        found = self._files(market, tf, None)
        return {
            layout.parse_partition(f.path)[2]: f for f in found if layout.tier_of(f.path) == tier
        }

    def usage(self) -> dict[layout.Tier, TierUsage]:
        """Files and bytes of each tier of the whole dataset."""
        return usage_by_tier(self.files.list_files(layout.candles_dir(self.root), recursive=True))

    def series_usage(self, tf: Timeframe, market: str) -> dict[Tier, TierUsage]:
        """Files and bytes of each tier of one series."""
        return usage_by_tier(self.data_files(tf, market))

    @staticmethod
    def read_spans(tf: Timeframe, span: TimeRange) -> list[TimeRange]:
        """`span` (bounded) cut where `tf`'s cold partitions start (a day of 1s, a month of
        1m, a year otherwise): reads of these pieces one after another hold one stored
        file's rows at a time, whatever the span."""
        parts = layout.partitions_between(tf, span, "cold")
        return [
            TimeRange(
                max(start, span.start), min(layout.partition_end(tf, start, "cold"), span.end)
            )
            for start in parts
        ]

    def base_versions(
        self, tf: Timeframe, market: str, settled: Ranges
    ) -> list[tuple[TimeRange, tuple[int, int] | None]]:
        """What a derivation from this series depends on, span by span: each hot partition
        that holds a file or overlaps `settled`, oldest first, with the version of its file
        (None: there is none). A derivation recomputes a span whose version or settled
        ranges changed since it last ran."""
        files = self.partition_files(tf, market)
        starts = set(files)
        for lo, hi in settled:
            starts.update(layout.partitions_between(tf, TimeRange(lo, hi)))
        found = []
        for start in sorted(starts):
            held = files.get(start)
            span = TimeRange(start, layout.partition_end(tf, start))
            found.append((span, held.version if held is not None else None))
        return found

    def read_file(self, found: StoredFile | str, *, for_update: bool = False) -> pa.Table:
        """One data file, from memory when this version of it was read or written before.

        `for_update`: read by a writer that will replace or delete it (prune, verify).
        """
        if for_update and self.files.conditional:
            path = found if isinstance(found, str) else found.path
            table = self._read_for_update(path)
            if table is None:
                raise StorageError(f"cannot read {path}: there is no such file")
            return table
        if isinstance(found, str):
            stat = self.files.stat(found)
            if stat is None:
                raise StorageError(f"cannot read {found}: there is no such file")
            found = stat
        try:
            return self._read(found)
        except FileNotFoundError as exc:
            raise StorageError(f"cannot read {found.path}: it was removed meanwhile") from exc

    def check_file(self, found: StoredFile) -> pa.Table:
        """One data file read from disk, never from memory, and checked (checks.py): what
        `verify` reads. A DamageError says what is wrong with it."""
        return decode(found.path, lambda: self.files.open_input(found.path))

    def missing_files(
        self, tf: Timeframe, market: str, record: Record, on_disk: list[StoredFile] | None = None
    ) -> list[str]:
        """Files `record` lists, with rows of a fetched span, that are not on disk (`on_disk`:
        the series' files, if listed already): holes. For a caller holding the series' lock
        (a reader without it may meet a compaction in flight)."""
        on_disk = self.data_files(tf, market) if on_disk is None else on_disk
        have = {layout.in_series(self.root, tf, market, f.path) for f in on_disk}
        paths = [layout.series_path(self.root, tf, market, n) for n in sorted(record.files - have)]
        return [p for p in paths if record.fetched.clip(layout.file_span(tf, p))]

    def _read(self, found: StoredFile) -> pa.Table:
        # From memory a table is served as it was checked when read (or made by a write).
        table = self.cache.get(found.path, found.version)
        if table is None:
            table = decode(found.path, lambda: self.files.open_input(found.path))
            self.cache.put(
                found.path, found.version, table, read=True, tier=layout.tier_of(found.path)
            )
        return table

    @staticmethod
    def _combine(parts: list[pa.Table], found: list[StoredFile]) -> pa.Table:
        if not parts:
            return CANDLE_SCHEMA.empty_table()
        table = pa.concat_tables(parts)
        if any(layout.tier_of(f.path) == "cold" for f in found):
            # Path order puts a span's cold file before its hot files: the hot row wins.
            table = dedupe_by_time(table)
        return table

    def _files(self, market: str, tf: Timeframe, span: TimeRange | None) -> list[StoredFile]:
        """The data files (both tiers) that may hold `span` (None: all), in path order."""
        if span is not None and span.bounded:
            names = layout.data_files_between(self.root, tf, market, span)
            found = [f for f in self.files.stat_many(names) if f is not None]
        else:
            found = self.files.list_files(layout.market_dir(self.root, tf, market), recursive=True)
        return sorted((f for f in found if layout.is_data_file(f.name)), key=_path)


@dataclass(frozen=True)
class TierUsage:
    """Data files of one tier and their summed size."""

    files: int = 0
    bytes: int = 0

    def __add__(self, other: TierUsage) -> TierUsage:
        return TierUsage(self.files + other.files, self.bytes + other.bytes)


def usage_by_tier(found: Iterable[StoredFile]) -> dict[layout.Tier, TierUsage]:
    """Files and bytes per tier among `found` (anything that is not a data file is skipped)."""
    tiers: dict[layout.Tier, TierUsage] = {"hot": TierUsage(), "cold": TierUsage()}
    for f in found:
        if layout.is_data_file(f.name):
            tier = layout.tier_of(f.path)
            tiers[tier] = tiers[tier] + TierUsage(1, f.bytes)
    return tiers


def write_parquet(table: pa.Table, sink: IO[bytes] | pa.NativeFile, tier: layout.Tier) -> None:
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


def _hole(tf: Timeframe, market: str, path: str) -> DamageError:
    named = missing_file(path)
    return DamageError(f"{tf} {market}: {named}", path, named.kind, named.detail)


def _path(found: StoredFile) -> str:
    return found.path
