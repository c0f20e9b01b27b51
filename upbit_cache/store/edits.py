"""One writer's edit of a series' data files: new files, the files they supersede, the record.

Files are written once (store/parts.py). An edit plans in memory which files become current
(new ones, and those they replace: a merge of the rows a write brings with the listed files
they touch, a roll-up of small files, a compaction), then `commit` makes it so in the one
order that keeps every reader whole whatever step a kill lands on:

1. create the new files (create-only-if-absent: a file of that name holds those rows);
2. write the record, listing them and no longer the superseded ones (on S3 conditional on
   the version read: a writer that lost its lease loses the race, never a row);
3. delete the superseded files.

Killed before 2, the new files are unlisted (orphans: every reader ignores them, the next
writer of the series or `prune` deletes them); killed before 3, the superseded files are
(the same). Plain Hive readers see every data file: they meet a time twice only between 1
and 3 of an edit that superseded files (milliseconds), or after a kill there until the next
writer of the series cleans up. The caller holds the series' writer lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import pyarrow as pa

from upbit_cache.candles import dedupe_by_time
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.store import layout
from upbit_cache.store.parts import (
    Part,
    closure,
    due_roll_up,
    hull,
    merge_order,
    name_for,
    table_span,
)
from upbit_cache.store.records import Record
from upbit_cache.timeframes import Timeframe


class Store(Protocol):
    """What an edit needs of the store (CandleStore, which makes its edits through this)."""

    @property
    def root(self) -> str: ...
    def current(
        self, tf: Timeframe, market: str, record: Record, span: TimeRange | None = None
    ) -> dict[str, Part]: ...
    def read_listed(self, tf: Timeframe, market: str, path: str) -> pa.Table: ...
    def create_file(self, path: str, table: pa.Table) -> object: ...
    def set_record(self, tf: Timeframe, market: str, record: Record) -> None: ...
    def remove_file(self, path: str, *, keep_folder: bool = False) -> None: ...


class SeriesEdit:
    """The current files of one (timeframe, market) as a writer changes them, in memory
    until `commit`."""

    def __init__(self, store: Store, tf: Timeframe, market: str, record: Record) -> None:
        self.store, self.tf, self.market, self.record = store, tf, market, record
        self.parts: dict[str, Part] = store.current(tf, market, record)
        self.listed = frozenset(self.parts)  # as the record (and the legacy files) had them
        self.pending: dict[str, pa.Table] = {}  # new files, not created yet
        self.kept: dict[str, pa.Table] = {}  # listed files read already (prune keeps some)
        self._tight: set[str] = set()  # legacy files whose span their rows now say

    @property
    def files(self) -> frozenset[str]:
        """The names the record will list."""
        return frozenset(self.parts)

    @property
    def changed(self) -> bool:
        return self.files != self.listed

    @property
    def dropped(self) -> list[str]:
        """Listed files this edit supersedes (deleted once the record no longer lists them)."""
        return sorted(self.listed - self.files)

    @property
    def created(self) -> list[str]:
        """New files this edit lists."""
        return sorted(n for n in self.pending if n in self.parts)

    def path(self, name: str) -> str:
        return layout.series_path(self.store.root, self.tf, self.market, name)

    def table(self, name: str) -> pa.Table:
        """The rows of a current file: planned, or read (checked, through memory). One the
        record lists that is gone is a hole: merging around it would make it permanent."""
        planned = self.pending.get(name, self.kept.get(name))
        if planned is not None:
            return planned
        return self.store.read_listed(self.tf, self.market, self.path(name))

    def closure(self, seed: TimeRange, names: Iterable[str] = ()) -> set[str]:
        """`parts.closure` over the current files, where a legacy file (whose name says only
        its partition: a month, for a cold 1m file) counts for the span its rows hold, read
        (a merge reads it anyway)."""
        while True:
            found = closure(self.parts, seed, names)
            loose = [n for n in found if self.parts[n].legacy and n not in self._tight]
            if not loose:
                return found
            for name in loose:
                self._tight.add(name)
                part, table = self.parts[name], self.table(name)
                held = table_span(self.tf, table) if table.num_rows else TimeRange(0, 0)
                self.parts[name] = Part(name, held, part.tier)

    def place(self, rows: pa.Table) -> Part:
        """Add rows (sorted, one partition's, non-empty): a new file, merged with the listed
        files whose span they touch (the new rows win); then roll up small files."""
        names = self.closure(table_span(self.tf, rows))
        part = self.merge(names, rows)
        self.roll_up(layout.partition_start(self.tf, part.span.start))
        return part

    def merge(
        self, names: set[str], rows: pa.Table | None = None, tier: layout.Tier | None = None
    ) -> Part:
        """The files `names` (and `rows`, which win where they share a time) as one new file
        of `tier` (None: cold if any of them is, else hot)."""
        parts = merge_order(self.parts[n] for n in names)
        tables = [self.table(p.name) for p in parts] + ([rows] if rows is not None else [])
        merged = tables[0] if len(tables) == 1 else dedupe_by_time(pa.concat_tables(tables))
        if tier is None:
            tier = "cold" if any(p.tier == "cold" for p in parts) else "hot"
        return self.put(merged, tier, names)

    def put(self, table: pa.Table, tier: layout.Tier, replacing: set[str] | None = None) -> Part:
        """`table` as one new file of `tier`, in place of `replacing`."""
        part = name_for(self.tf, table, tier)
        self.drop(replacing or set())
        self.parts[part.name] = part
        if part.name not in self.listed:
            self.pending[part.name] = table
        return part

    def drop(self, names: set[str]) -> None:
        """Take files out (their rows go: retention)."""
        for name in names:
            self.parts.pop(name, None)
            self.pending.pop(name, None)
            self.kept.pop(name, None)

    def roll_up(self, start: int) -> None:
        """Merge the hot partition starting at `start`'s small files while a level is full."""
        while (names := due_roll_up(self.tf, self.parts, start)) is not None:
            self.merge(names)

    def seal(self, settled: Ranges, touched: Ranges) -> None:
        """Merge the hot files of each partition that `touched` meets and `settled` now
        covers whole into one: a settled partition (a past day of 1m) is read as one file,
        at the cost of writing its rows once more."""
        hot: dict[int, set[str]] = {}
        for name, part in self.parts.items():
            if part.tier == "hot":
                hot.setdefault(layout.partition_start(self.tf, part.span.start), set()).add(name)
        for start, found in sorted(hot.items()):
            span = TimeRange(start, layout.partition_end(self.tf, start))
            names = {n for n in found if n in self.parts}  # a merge before may have taken some
            if len(names) > 1 and touched.clip(span) and settled.covers(span):
                self.merge(self.closure(hull(self.parts[n].span for n in names), names))

    def commit(self, record: Record) -> None:
        """Create the new files, write `record` (if it changed), delete the superseded."""
        for name in self.created:
            self.store.create_file(self.path(name), self.pending[name])
        if record != self.record:
            self.store.set_record(self.tf, self.market, record)
        folders = {n.rpartition("/")[0] for n in self.parts}
        for name in self.dropped:
            self.store.remove_file(self.path(name), keep_folder=name.rpartition("/")[0] in folders)
        self.record = record
        self.listed = self.files
        self.pending.clear()
