"""The Parquet store: load, write and record candles, through one `DataDir`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from upbit_cache import retry
from upbit_cache.candles import (
    CANDLE_SCHEMA,
    dedupe_by_time,
    from_table,
    in_ranges,
    in_span,
    times_ms,
    to_table,
)
from upbit_cache.errors import DamageError, StorageError
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.store import layout
from upbit_cache.store.base import Location, Store
from upbit_cache.store.checks import decode, missing_file
from upbit_cache.store.edits import SeriesEdit
from upbit_cache.store.files import StoredFile
from upbit_cache.store.layout import Tier as Tier  # the manager names tiers by this
from upbit_cache.store.migrate import migrate
from upbit_cache.store.parts import Part, disjoint, merge_order
from upbit_cache.store.records import Record, read_record, write_record
from upbit_cache.timeframes import Timeframe

HOT_ROW_GROUP = 4_096
COLD_ROW_GROUP = 10_080  # a week of 1m candles
COLD_ZSTD_LEVEL = 12
_GONE_ATTEMPTS = 3  # a listed file missing this many reads in a row is gone, not moving
READ_AHEAD = 8  # data files read at once on object storage
WRITTEN_ONCE = (0, 0)  # the memory layer's version of a file written once: its name says all

if TYPE_CHECKING:  # pandas is imported only where a frame is made, to keep CLI start fast
    import pandas as pd


class TableCache(Protocol):
    """A memory layer in front of file reads (the cache manager's), keyed by path and version
    (WRITTEN_ONCE for a file written once: its path names its content)."""

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
    need a lock: data files are written once, and the record listing them is replaced by an
    atomic rename.

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
        self._swept: set[tuple[str, str]] = set()  # series whose leftovers this store removed
        self._temps: dict[str, list[StoredFile]] = {}  # timeframe -> temp files of its records
        # Data files this store wrote (path -> version) or deleted (None), for heal.py.
        self._written: dict[str, tuple[int, int] | None] = {}

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

        The files the record lists whose span (their name says it) meets `span` are read and
        combined; they never share a time, save legacy files a killed compaction left (then
        the hot row wins). A listed file that is gone makes the record be read again (a
        compaction may have just replaced it); gone read after read, it is a hole.
        """
        missing: dict[str, int] = {}  # listed file -> reads in a row that did not find it
        for attempt in range(retry.READ_ATTEMPTS):
            parts = self.current(tf, market, self.record(tf, market), span)
            tables, gone = self._read_parts(tf, market, parts)
            if gone is None:
                table = _combine(list(parts.values()), tables)
                return in_span(table, span) if span is not None else table
            missing[gone] = missing.get(gone, 0) + 1
            if missing[gone] > _GONE_ATTEMPTS:
                raise _hole(tf, market, gone)
            time.sleep(0.01 * attempt)
        raise StorageError(f"{market} {tf}: files keep changing under this read; try again")

    def _read_parts(
        self, tf: Timeframe, market: str, parts: dict[str, Part]
    ) -> tuple[list[pa.Table], str | None]:
        """The tables of `parts` (in their order), or the path of one that is gone. On object
        storage, where each file is a round trip, up to READ_AHEAD at a time."""
        paths = [layout.series_path(self.root, tf, market, name) for name in parts]

        def read(path: str) -> pa.Table | str:
            try:
                return self._read(path)
            except FileNotFoundError:
                return path

        if len(paths) > 1 and not self.files.is_local:
            with ThreadPoolExecutor(min(READ_AHEAD, len(paths))) as pool:
                found = list(pool.map(read, paths))
        else:
            found = [read(p) for p in paths]
        gone = next((f for f in found if isinstance(f, str)), None)
        if gone is not None:
            return [], gone
        return [f for f in found if not isinstance(f, str)], None

    def current(
        self, tf: Timeframe, market: str, record: Record, span: TimeRange | None = None
    ) -> dict[str, Part]:
        """The series' current data files (touching `span`, None: all), by name in its folder.

        The record's list, and where the record is no manifest (written before version 3,
        or none) the legacy files on disk too.
        """
        names = set(record.files)
        if not record.manifest:
            names.update(self._legacy_on_disk(tf, market, span))
        parts = (Part.of(tf, name) for name in sorted(names))
        return {p.name: p for p in parts if span is None or p.span.overlaps(span)}

    def _legacy_on_disk(self, tf: Timeframe, market: str, span: TimeRange | None) -> list[str]:
        if span is not None and span.bounded:
            paths = layout.legacy_files_between(self.root, tf, market, span)
            found = [f for f in self.files.stat_many(paths) if f is not None]
        else:
            found = self.data_files(tf, market)
        return [
            layout.in_series(self.root, tf, market, f.path)
            for f in found
            if layout.is_legacy(f.path)
        ]

    def read_listed(self, tf: Timeframe, market: str, path: str) -> pa.Table:
        """A file the record lists, for a writer (which holds the series' lock): checked,
        through memory; gone, it is a hole (DamageError)."""
        try:
            return self._read(path)
        except FileNotFoundError:
            raise _hole(tf, market, path) from None

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
        """Add candles to the series as new files, then record `covered` as settled.

        Rows replace stored rows with the same `time` (the files holding those are merged
        with them into one new file: store/edits.py). `covered` is recorded as made by this
        write: native, or for a derived timeframe derived from `derived_from`, whose base
        partitions' fingerprints (`sources`) are recorded too; the rest of the record keeps
        its labels. Rows of `provisional` (periods Upbit may not have settled when asked)
        are written and recorded as such, not as fetched. Returns the number of rows
        written. The caller holds `lock(tf, market)`.

        On S3 the record is replaced only over the version read: a writer on another host
        that got there first (after taking over a stalled lease) makes this one read and
        plan again, so neither's rows are lost. Data files need no such care: each is
        created once, under a name its content decides.
        """
        table = to_table(candles)
        for attempt in retry.write_race():
            with attempt:
                return self._write(
                    market, tf, table, covered, derived_from, sources, provisional or Ranges()
                )
        raise AssertionError("unreachable")  # write_race raises the last conflict

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
        old = read_record(self.files, layout.fetched_file(self.root, tf, market), for_update=True)
        edit = SeriesEdit(self, tf, market, old)
        self.sweep(tf, market, edit.listed)
        if provisional and table.num_rows:
            # A provisional candle never replaces a settled one (live's closes racing the
            # REST fetch that settled their periods).
            settled = in_ranges(times_ms(table).to_numpy(), old.fetched.subtract(covered))
            table = table.filter(pa.array(~settled)) if settled.any() else table
        touched = covered.union(provisional)
        if table.num_rows:
            table = dedupe_by_time(table)
            starts = layout.partition_starts(tf, times_ms(table).to_numpy())
            bounds = np.flatnonzero(np.diff(starts)) + 1
            for rows in np.split(np.arange(table.num_rows), bounds):
                span = edit.place(table.take(rows)).span
                touched = touched.union([(span.start, span.end)])
        edit.seal(old.fetched.union(covered), touched)
        new = old
        if covered or sources or provisional or edit.changed:
            base = derived_from.name if derived_from is not None else None
            new = old.covering(covered, base, sources, edit.files, provisional)
        edit.commit(new)
        return table.num_rows

    def sweep(
        self,
        tf: Timeframe,
        market: str,
        listed: Iterable[str],
        on_disk: list[StoredFile] | None = None,
    ) -> list[StoredFile]:
        """Delete what killed writers left of one series, once per store: temp files, and
        data files the record does not list (`listed`: the current names); what went. The
        caller holds the series' writer lock."""
        key = (tf.name, market)
        if key in self._swept:
            return []
        self._swept.add(key)
        found = self.leftovers(tf, market, listed, on_disk)
        for f in found:
            self.files.delete(f.path)  # gone already: another writer was first
        if any(not f.is_temp for f in found):
            self.bump_record(tf, market)
        return found

    def bump_record(self, tf: Timeframe, market: str) -> None:
        """After unlisted data files were deleted, on S3: write the record again (as it is,
        a new version), so that a writer whose lease was taken over while it stalled, and
        which created one of them, fails its conditional record write and plans again
        rather than list a file that is gone. Nothing to do elsewhere (locks hold there)."""
        path = layout.fetched_file(self.root, tf, market)
        if self.files.conditional and self.files.stat(path) is not None:
            write_record(self.files, path, read_record(self.files, path), fresh=True)

    def leftovers(
        self,
        tf: Timeframe,
        market: str,
        listed: Iterable[str] | None,
        on_disk: list[StoredFile] | None = None,
    ) -> list[StoredFile]:
        """Temp files of the series' writers and its data files that `listed` lacks (orphans
        of a killed write, or files it superseded; None: no data file, the record is not to
        be trusted): safe to delete under the series' lock (then `bump_record`)."""
        root = self.root
        folder = layout.market_dir(root, tf, market)
        found = on_disk if on_disk is not None else self._on_disk(folder)
        names = set(listed) if listed is not None else None
        orphans = [
            f
            for f in found
            if names is not None
            and not f.is_temp
            and layout.is_data_file(f.name)
            and layout.in_series(root, tf, market, f.path) not in names
        ]
        name = layout.fetched_file(root, tf, market).rpartition("/")[2]
        temps = [f for f in found if f.is_temp]
        temps += [f for f in self._record_temps(tf) if f.name.startswith(f".{name}.")]
        return temps + orphans

    def _record_temps(self, tf: Timeframe) -> list[StoredFile]:
        """Temp files among the records of `tf`, listed once per store: a series' own are
        deleted only under its lock, when no writer of it can be making one (one listed
        earlier is a finished write's, gone, or a killed one's)."""
        if not self.files.leaves_temps:
            return []  # on S3 a write is one PUT: there is never a temp file
        found = self._temps.get(tf.name)
        if found is None:
            folder = layout.records_root(self.root, tf)
            found = self._temps[tf.name] = [f for f in self.files.list_files(folder) if f.is_temp]
        return found

    def create_file(self, path: str, table: pa.Table) -> StoredFile | None:
        """Create one data file named by its content (see `DataDir.create`), encoded for its
        tier; None if it was there already (the same rows: adopted as it is). The caller
        holds the series' writer lock."""
        tier = layout.tier_of(path)
        made = self.files.create(path, lambda sink: write_parquet(table, sink, tier))
        # Just written (or there with these rows): keep it, so a read that follows is free.
        self.cache.put(path, WRITTEN_ONCE, table, tier=tier)
        if made is not None:
            self._written[path] = made.version  # made of checked rows (heal.py)
        return made

    def put_file(self, path: str, table: pa.Table) -> StoredFile | None:
        """Write one data file: a legacy name is replaced atomically, any other created
        (`create_file`). The caller holds the series' writer lock."""
        if not layout.is_legacy(path):
            return self.create_file(path, table)
        tier = layout.tier_of(path)
        written = self.files.write(path, lambda sink: write_parquet(table, sink, tier))
        if written is not None:
            self.cache.put(path, written.version, table, tier=tier)
            self._written[path] = written.version  # made of checked rows (heal.py)
        return written

    def take_written(self, tf: Timeframe, market: str) -> dict[str, tuple[int, int] | None]:
        """The versions of the series' data files this store wrote since it was last asked,
        by path, None for those it deleted since (and forgets them)."""
        folder = layout.market_dir(self.root, tf, market) + "/"
        mine = {p: v for p, v in list(self._written.items()) if p.startswith(folder)}
        for path in mine:
            self._written.pop(path, None)
        return mine

    def remove_file(self, path: str, *, keep_folder: bool = False) -> None:
        """Delete one data file and, unless `keep_folder` (other files are there), its
        partition folder if that is left empty."""
        self.files.delete(path)  # already gone is what was asked for
        self._written[path] = None
        if not keep_folder:
            self.files.delete_dir_if_empty(path.rpartition("/")[0])

    def data_files(self, tf: Timeframe, market: str) -> list[StoredFile]:
        """Every data file on disk (both tiers, listed or not) of one (timeframe, market), in
        path order."""
        found = self._on_disk(layout.market_dir(self.root, tf, market))
        return [f for f in found if not f.is_temp and layout.is_data_file(f.name)]

    def series_listing(self, tf: Timeframe, market: str) -> list[StoredFile]:
        """Every file under the series' folder (temp files too), in path order."""
        return self._on_disk(layout.market_dir(self.root, tf, market))

    def _on_disk(self, folder: str) -> list[StoredFile]:
        return self.files.list_files(folder, recursive=True)

    def partition_files(
        self, tf: Timeframe, market: str, tier: layout.Tier | None = "hot"
    ) -> dict[int, list[Part]]:
        """The current data files of one (timeframe, market) in one tier (None: both), by
        the start of the partition (of their tier) holding them."""
        found: dict[int, list[Part]] = {}
        for part in self.current(tf, market, self.record(tf, market)).values():
            if tier is None or part.tier == tier:
                start = layout.partition_start(tf, part.span.start, part.tier)
                found.setdefault(start, []).append(part)
        return found

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
        self, tf: Timeframe, market: str, record: Record
    ) -> list[tuple[TimeRange, list[str]]]:
        """What a derivation from this series (whose record is `record`) depends on, span
        by span: each hot partition that a current file meets or `record.fetched` overlaps,
        oldest first, with the names of the files holding it (none: empty). Files are
        written once and named by their content, so the names change when the rows do: a
        derivation recomputes a span whose names or settled ranges changed since it ran."""
        names: dict[int, list[str]] = {}
        for part in self.current(tf, market, record).values():
            for start in layout.partitions_between(tf, part.span):
                names.setdefault(start, []).append(part.name)
        starts = set(names)
        for lo, hi in record.fetched:
            starts.update(layout.partitions_between(tf, TimeRange(lo, hi)))
        return [
            (TimeRange(start, layout.partition_end(tf, start)), sorted(names.get(start, [])))
            for start in sorted(starts)
        ]

    def read_file(self, found: StoredFile | str) -> pa.Table:
        """One data file, from memory when it was read or written before (a legacy file:
        this version of it); StorageError if there is none."""
        path = found if isinstance(found, str) else found.path
        try:
            return self._read(path, found if isinstance(found, StoredFile) else None)
        except FileNotFoundError:
            raise StorageError(f"cannot read {path}: there is no such file") from None

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

    def _read(self, path: str, found: StoredFile | None = None) -> pa.Table:
        """A data file, checked; FileNotFoundError if it is gone. From memory a table is
        served as it was checked when read (or made by a write): a file written once is
        known by its path, a legacy file by its version too."""
        version = WRITTEN_ONCE
        if layout.is_legacy(path):
            found = found if found is not None else self.files.stat(path)
            if found is None:
                raise FileNotFoundError(path)
            version = found.version
        table = self.cache.get(path, version)
        if table is None:
            table = decode(path, lambda: self.files.open_input(path))
            self.cache.put(path, version, table, read=True, tier=layout.tier_of(path))
        return table


def _combine(parts: list[Part], tables: list[pa.Table]) -> pa.Table:
    """The rows of a series' files as one sorted table, each time once."""
    if not tables:
        return CANDLE_SCHEMA.empty_table()
    if disjoint(parts):  # files written once never share a time: their order is the rows'
        order = sorted(range(len(parts)), key=lambda i: parts[i].span.start)
        return pa.concat_tables([tables[i] for i in order])
    # Legacy files a killed compaction left in both tiers: the hot row wins.
    order = [parts.index(p) for p in merge_order(parts)]
    return dedupe_by_time(pa.concat_tables([tables[i] for i in order]))


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
