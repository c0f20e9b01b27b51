"""What the cache manager sees of a data dir without Parquet: series, records, versions, locks.

`Store` speaks of series, (timeframe, market), and spans of time, never of files or paths:
what each series has settled (its record, read for many series at once into a `Coverage`
that a run keeps), the versions a kept screen-prep table depends on (`stamp`), the writer
lock, and the kept screen tables themselves. It loads neither pyarrow's Parquet nor
pandas, so a screen-prep answered from its kept table stays fast; `CandleStore`
(candle_store.py) is this plus the candles.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from upbit_cache.errors import DamageError, UpbitCacheError
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.store import layout, screens
from upbit_cache.store.files import DataDir, StoredFile, Writer
from upbit_cache.store.locks import WriterLock
from upbit_cache.store.records import Record, check_record, parse_record, write_record
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import now_ms

Location = DataDir | str | os.PathLike[str] | None
Series = tuple[Timeframe, str]
LIST_FROM = 4  # a timeframe's records wanted for more markets than this: listed, not probed


class Coverage:
    """The records of many series, each read at most once for a run and kept for it.

    Made by `Store.coverage`; a series not read yet is read on first use. The store keeps
    every coverage it made current with what this process writes (and reads under a lock),
    so after a run's own write the kept record is the one just written, with no read.
    Another process's writes are not seen: a writer that needs the record as it is now
    takes the series' lock and reads it for update (`Store.record(for_update=True)`).
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._found: dict[Series, Record | DamageError] = {}
        self._listed: dict[Timeframe, dict[str, int]] = {}  # tf -> market -> record's mtime
        self._expected: dict[Timeframe, set[str]] = {}  # the markets a run will ask about
        self._files: dict[Timeframe, dict[str, list[StoredFile]]] = {}  # tf -> market -> files
        self._guard = threading.Lock()
        self._listing_guard = threading.Lock()  # one listing of each kind, whoever asks first
        self.reads = 0  # records read from the data dir for this coverage

    def record(self, tf: Timeframe, market: str) -> Record:
        """The series' record; a DamageError if it cannot be trusted."""
        if (tf, market) not in self._found:
            self._store._read_records([(tf, market)], self)
        found = self._found[(tf, market)]
        if isinstance(found, DamageError):
            raise found
        return found

    def fetched(self, tf: Timeframe, market: str) -> Ranges:
        """What the series has settled (see `Record.fetched`)."""
        return self.record(tf, market).fetched

    def settled(self, tf: Timeframe, market: str) -> Ranges:
        """`fetched`, or nothing where the record is damaged (a fetch heals it and asks for
        the whole window again)."""
        try:
            return self.fetched(tf, market)
        except DamageError:
            return Ranges()

    def read(self, series: Iterable[Series]) -> Coverage:
        """Read the records of `series` not held yet, at once (as `Store.coverage` does)."""
        wanted = [s for s in dict.fromkeys(series) if s not in self._found]
        if wanted:
            self._store._read_records(wanted, self)
        return self

    def expect(self, series: Iterable[Series]) -> Coverage:
        """Say which series the run will ask about, one by one: where they are many, the
        first ask lists their timeframe once (records, data files) rather than probing
        each (on S3 a GET or a LIST each, most of them for nothing on a first fetch)."""
        for tf, market in series:
            self._expected.setdefault(tf, set()).add(market)
        return self

    def series_files(self, tf: Timeframe, market: str) -> list[StoredFile] | None:
        """The series' data files as listed once for the run with every other market's of
        `tf` (on a remote store, when the run expects many of them), in path order; None:
        not listed so (the caller lists the series). For the store's own modules (heal):
        a reader's snapshot, never what a writer under its lock goes by."""
        if len(self._expected.get(tf, ())) <= LIST_FROM or self._store.files.parallel_reads <= 1:
            return None
        with self._listing_guard:
            if tf not in self._files:
                self._files[tf] = self._store._data_listing(tf)
        return self._files[tf].get(market, [])

    def holders(self, tf: Timeframe, markets: Iterable[str]) -> set[str]:
        """Which of `markets` hold a record of `tf`. Where the store is remote and they are
        many, from one listing, without reading a record (those not listed are known to
        have none); else from their records, read."""
        names = list(dict.fromkeys(markets))
        listed = self._store._listing(tf, self, len(names))
        if listed is None:
            self.read((tf, m) for m in names)
            return {m for m in names if self.settled(tf, m)}
        for market in names:
            if market not in listed:
                self._keep(tf, market, Record(manifest=False), read=True)
        return {m for m in names if m in listed}

    def _keep(self, tf: Timeframe, market: str, found: Record | DamageError, *, read: bool) -> None:
        """Keep what the store read (`read`: never over what this process wrote meanwhile)
        or wrote."""
        with self._guard:
            if read:
                self._found.setdefault((tf, market), found)
            else:
                self._found[(tf, market)] = found


class Store:
    """A data dir as series: records, versions, locks and kept screens (no Parquet).

    Writers of a (timeframe, market) hold `lock(tf, market)` around their writes; readers
    never need a lock: data files are written once, and a record (or kept screen) is
    replaced by an atomic rename.
    """

    def __init__(
        self,
        location: Location = None,
        *,
        lock_timeout: float | None = None,
        on_lock_wait: Callable[[str], None] | None = None,
    ) -> None:
        """`lock_timeout`: how long a writer waits for another's lock (None: as long as it
        takes); `on_lock_wait` is told, once per store, that a writer is waiting."""
        self.files = location if isinstance(location, DataDir) else DataDir.open(location)
        self.lock_timeout = lock_timeout
        self._on_lock_wait = on_lock_wait
        self._told = False
        self._views: weakref.WeakSet[Coverage] = weakref.WeakSet()

    @property
    def root(self) -> str:
        return self.files.root

    @property
    def where(self) -> str:
        """The data dir as a user names it: a folder, or `s3://bucket/prefix`."""
        return self.files.where

    # The data dir

    def exists(self) -> bool:
        """Whether the data dir is there (a fetch creates it)."""
        return self.files.exists()

    def require(self) -> None:
        """Fail (StorageError, exit 2) unless the data dir exists (see DataDir.require)."""
        self.files.require()

    def ensure_writable(self) -> None:
        """Fail early, with the path in the message, if nothing can be written here."""
        self.files.ensure_writable()

    def clock_ms(self) -> int:
        """Now by the data dir's own clock (see DataDir.clock_ms)."""
        return self.files.clock_ms()

    # Series

    def lock(self, tf: Timeframe, market: str, *, shared: bool = False) -> WriterLock:
        """The writer lock of one (timeframe, market); `shared`: a reader's, which keeps
        writers out and needs no write (see DataDir.lock)."""
        path = layout.lock_file(self.root, tf, market)
        return self.files.lock(
            path, f"{tf} {market}", self.lock_timeout, self._waiting, shared=shared
        )

    def _waiting(self, what: str) -> None:
        if self._on_lock_wait is not None and not self._told:
            self._told = True
            self._on_lock_wait(what)

    def fetched(self, tf: Timeframe, market: str) -> Ranges:
        """The time ranges already asked of Upbit for this (timeframe, market)."""
        return self.record(tf, market).fetched

    def record(self, tf: Timeframe, market: str, *, for_update: bool = False) -> Record:
        """Everything recorded of this (timeframe, market): fetched ranges, derivation.

        `for_update`: read by a writer holding the series' lock that will `set_record` from
        it; the record read is then what every coverage of this store keeps. A record that
        cannot be read, or claims ranges after now, is a DamageError (records.py).
        """
        path = layout.fetched_file(self.root, tf, market)
        raw = self.files.read_for_update(path) if for_update else self.files.read_bytes(path)
        try:
            record = check_record(
                path, parse_record(path, raw), now_ms(), lambda: self.written_ms(path)
            )
        except DamageError as exc:
            if for_update:
                self._recorded(tf, market, exc)
            raise
        if for_update:
            self._recorded(tf, market, record)
        return record

    def set_record(self, tf: Timeframe, market: str, record: Record) -> None:
        """Replace the record of one (timeframe, market); the caller holds its lock."""
        write_record(self.files, layout.fetched_file(self.root, tf, market), record)
        self._recorded(tf, market, record)

    def forget(self, tf: Timeframe, market: str, spans: Ranges) -> None:
        """Take `spans` out of what the record says was fetched, so the next fetch asks for
        them again (their candles stay until it does); the caller holds the series' lock."""
        record = self.record(tf, market, for_update=True)
        fetched = record.fetched.subtract(spans)
        if fetched != record.fetched:
            self.set_record(tf, market, replace(record, fetched=fetched, sources={}))

    def coverage(self, series: Iterable[Series] = ()) -> Coverage:
        """The records of `series`, read now (at once where the store is remote) and kept
        for a run; any other series is read when first asked for (see Coverage)."""
        view = Coverage(self)
        self._views.add(view)
        return view.read(series)

    def _recorded(self, tf: Timeframe, market: str, found: Record | DamageError) -> None:
        """What this process wrote (or read for update) of a record: every coverage keeps it."""
        for view in list(self._views):
            view._keep(tf, market, found, read=False)

    def _listing(self, tf: Timeframe, view: Coverage, wanted: int) -> dict[str, int] | None:
        """The markets with a record of `tf` (and its mtime), listed once per coverage, where
        a listing beats reading: a remote store, and more than LIST_FROM records wanted (in
        one call, or by the run: `Coverage.expect`)."""
        wanted = max(wanted, len(view._expected.get(tf, ())))
        if wanted <= LIST_FROM or self.files.parallel_reads <= 1:
            return None
        with view._listing_guard:
            if tf not in view._listed:
                found = self.files.list_files(layout.records_root(self.root, tf))
                names = ((layout.market_of_record(f.name), f.mtime_ms) for f in found)
                view._listed[tf] = {m: mtime for m, mtime in names if m}
        return view._listed[tf]

    def _data_listing(self, tf: Timeframe) -> dict[str, list[StoredFile]]:
        """Every market's data files of `tf` (both tiers), in one recursive listing."""
        found: dict[str, list[StoredFile]] = {}
        prefix = layout.candles_root(self.root, tf) + "/"
        for f in self.files.list_files(prefix.rstrip("/"), recursive=True):
            market = layout.market_of_dir(f.path.removeprefix(prefix).partition("/")[0])
            if market and layout.is_data_file(f.name):
                found.setdefault(market, []).append(f)
        return found

    def _read_records(self, series: list[Series], view: Coverage) -> None:
        """Read the records of `series` into `view`. A timeframe's records wanted for many
        markets on a remote store are listed first (one LIST per 1,000), and only those
        there are read, at once."""
        by_tf: dict[Timeframe, list[str]] = {}
        for tf, market in series:
            by_tf.setdefault(tf, []).append(market)
        reads: list[tuple[Series, str, int | None]] = []
        for tf, markets in by_tf.items():
            listed = self._listing(tf, view, len(markets))
            for market in markets:
                path = layout.fetched_file(self.root, tf, market)
                if listed is None:
                    reads.append(((tf, market), path, None))
                elif market in listed:
                    reads.append(((tf, market), path, listed[market]))
                else:
                    view._keep(tf, market, Record(manifest=False), read=True)

        def one(item: tuple[Series, str, int | None]) -> None:
            (tf, market), path, written = item
            raw = self.files.read_bytes(path)
            with view._guard:
                view.reads += 1
            try:
                found: Record | DamageError = check_record(
                    path,
                    parse_record(path, raw),
                    now_ms(),
                    lambda: written if written is not None else self.written_ms(path),
                )
            except DamageError as exc:
                found = exc
            view._keep(tf, market, found, read=True)

        workers = min(self.files.parallel_reads, len(reads))
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(one, reads))
        else:
            for item in reads:
                one(item)

    def written_ms(self, path: str) -> int | None:
        """When the file at `path` was last written, by the data dir's clock (None: gone)."""
        found = self.files.stat(path)
        return found.mtime_ms if found is not None else None

    def markets(self, tf: Timeframe) -> list[str]:
        """Markets with any fetched range recorded for this timeframe."""
        found = self.files.list_files(layout.records_root(self.root, tf))
        return sorted(m for m in (layout.market_of_record(f.name) for f in found) if m)

    def timeframes(self) -> list[Timeframe]:
        """Timeframes with any data or record in the store."""
        dirs = self.files.list_dirs(layout.candles_dir(self.root))
        names = {n for n in (layout.timeframe_of_dir(d) for d in dirs) if n}
        names.update(self.files.list_dirs(layout.records_dir(self.root)))
        found = []
        for name in sorted(names):
            try:
                found.append(Timeframe.parse(name))
            except UpbitCacheError:
                continue  # not ours
        return found

    def stored_markets(self, tf: Timeframe) -> list[str]:
        """Markets with a record or any data file for this timeframe."""
        dirs = self.files.list_dirs(layout.candles_root(self.root, tf))
        held = {m for m in (layout.market_of_dir(d) for d in dirs) if m}
        return sorted(held.union(self.markets(tf)))

    def stamp(self, tf: Timeframe, market: str, span: TimeRange) -> list[object]:
        """What a table of `span` read from one series depends on: the version of its record
        and of every data file that may hold it (None where there is none). Equal stamps:
        the same rows."""
        return [market, *screens.series_versions(self.files, tf, market, span)]

    # Kept screen-prep tables (screens.py)

    def kept_screen(self, name: str, fmt: str) -> tuple[str, dict[str, Any]] | None:
        """The kept table `name` in `fmt` (its handle) and its record, if both are there."""
        return screens.read_kept(self.files, name, fmt)

    def keep_screen(self, name: str, fmt: str, write: Writer) -> str:
        """Write the table `name` (atomically); its handle, for `kept_table`."""
        return screens.keep(self.files, name, fmt, write)

    def remember_screen(self, name: str, record: dict[str, Any]) -> None:
        """Record what the table `name` was built from (after the table is written)."""
        screens.remember(self.files, name, record)

    def kept_table(self, table: str) -> bytes:
        """The bytes of a kept table (its handle from `kept_screen` or `keep_screen`), for
        the output room to send as they are."""
        return screens.kept_table(self.files, table)
