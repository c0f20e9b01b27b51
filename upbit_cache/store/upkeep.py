"""The file edits behind `prune`: retention and compaction of one series, and leftovers.

Every step is ordered so that a prune killed at any point leaves a store that readers see
whole, and the next prune finishes the job:
- compaction writes the cold file (old cold rows plus the hot rows) first, then deletes the
  hot files; in between, readers see both and prefer the hot rows, which are the same;
- retention updates the fetched-range record first, then deletes rows, so the record never
  claims data that is gone (the deleted range is recorded as pruned: a later fetch asks for
  it again only if its range includes it).
A dry run does the same work in memory: what it would write is encoded (so sizes are
exact) and kept, so that compaction after retention sees the files as retention left them.

Before anything of a series is edited, `check` reads its record and every file the edits
will read (each read makes the checks of checks.py), and looks for files its record lists
that are gone: a series that cannot be read cleanly is left exactly as it is (DamageError),
so its damage stays for `verify` to find. Compaction drops no row: a cold span's rows are
each file's own, checked, and only where a hot file and the cold one hold the same time
(a compaction killed half way) does the hot row win.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import pyarrow as pa

from upbit_cache.candles import dedupe_by_time, in_span
from upbit_cache.ranges import TimeRange
from upbit_cache.store import layout
from upbit_cache.store.candle_store import CandleStore, write_parquet
from upbit_cache.store.checks import missing_file
from upbit_cache.store.files import StoredFile
from upbit_cache.timeframes import Timeframe

Action = Literal["compact", "retain"]
KEEP_BYTES = 64 << 20  # tables `check` keeps for the edits that follow, at most


@dataclass(frozen=True)
class FileFacts:
    path: str
    tier: layout.Tier
    rows: int
    bytes: int


@dataclass
class Change:
    """One step on one (timeframe, market): the files it removes and those it writes."""

    action: Action
    tf: Timeframe
    market: str
    removed: list[FileFacts] = field(default_factory=list)
    added: list[FileFacts] = field(default_factory=list)


class SeriesEditor:
    """The files of one (timeframe, market), edited for real or, in a dry run, in memory.

    The caller holds the series' writer lock.
    """

    def __init__(self, store: CandleStore, tf: Timeframe, market: str, dry_run: bool) -> None:
        self.store, self.tf, self.market, self.dry_run = store, tf, market, dry_run
        self._pending: dict[str, tuple[pa.Table, int] | None] = {}  # path -> (table, bytes)
        self._facts: dict[str, FileFacts] = {}  # files read (checked) as they are on disk
        self._kept: dict[str, pa.Table] = {}  # of those, the ones `check` kept for the edits
        self._held = 0  # bytes of the kept tables (at most KEEP_BYTES past the first)

    def check(self, keep_cutoff: int | None, compact_cutoff: int) -> None:
        """Raise DamageError, before any edit, if `retain(keep_cutoff)` (None: no retention)
        then `compact(compact_cutoff)` would meet damage: a record that cannot be trusted, a
        listed file that is gone, or a file they read that fails its checks.

        What retention reads is kept (the rows it deletes are counted here, the files it cuts
        in two are at most one per tier); so are the files to compact, up to KEEP_BYTES: past
        that (89 days of 1s is 7.7 M rows, 490 MB) compaction reads them once more.
        """
        store, tf, market = self.store, self.tf, self.market
        record = store.record(tf, market, for_update=not self.dry_run)
        holes = store.missing_files(tf, market, record)
        if holes:
            raise missing_file(holes[0], len(holes))
        files = self._files()
        if keep_cutoff is not None:
            for facts in files:
                if layout.file_span(tf, facts.path).start < keep_cutoff:
                    self._read(facts.path, keep=_straddles(tf, facts.path, keep_cutoff))
            files = [f for f in files if layout.file_span(tf, f.path).end > keep_cutoff]
        have = {f.path for f in files}
        for cold, hot in _groups(tf, market, store.root, files, compact_cutoff).items():
            for path in ([cold] if cold in have else []) + hot:
                if path not in self._kept:
                    self._read(path, keep=self._held < KEEP_BYTES)

    def retain(self, cutoff: int) -> list[Change]:
        """Delete rows before `cutoff`; the record first (its ranges, and its list of the
        files that go whole), then the data: the record never claims what is gone. Every
        file before `cutoff` is read (and so checked) before anything changes; of those that
        go whole, only their counts are kept."""
        store, tf, market = self.store, self.tf, self.market
        old = [f.path for f in self._files() if layout.file_span(tf, f.path).start < cutoff]
        whole = [path for path in old if layout.file_span(tf, path).end <= cutoff]
        cut = [self._read(path) for path in old if path not in whole]  # one per tier at most
        counted = [self._facts.get(path) or self._read(path)[1] for path in whole]
        record = store.record(tf, market, for_update=not self.dry_run)
        gone = record.fetched.clip(TimeRange.before(cutoff))
        if (gone or whole) and not self.dry_run:
            kept = record.fetched.clip(TimeRange.since(cutoff))
            pruned = record.pruned.union(gone)
            names = {layout.in_series(store.root, tf, market, p) for p in whole}
            trimmed = replace(record, fetched=kept, pruned=pruned, files=record.files - names)
            store.set_record(tf, market, trimmed)
        change = Change("retain", tf, market)
        for facts in counted:
            change.removed.append(facts)
            self._remove(facts.path)
        for table, facts in cut:
            rest = in_span(table, TimeRange.since(cutoff))
            if rest.num_rows == table.num_rows:
                continue
            change.removed.append(facts)
            if rest.num_rows:
                change.added.append(self._put(facts.path, rest))
            else:
                self._list(drop=[facts.path])  # one that straddled the cutoff, all rows before
                self._remove(facts.path)
        return [change] if change.removed else []

    def compact(self, cutoff: int) -> list[Change]:
        """Merge hot partitions that ended before `cutoff` into their cold files."""
        groups = _groups(self.tf, self.market, self.store.root, self._files(), cutoff)
        changes = []
        for cold_path, hot in groups.items():
            change = Change("compact", self.tf, self.market)
            parts = []
            for path in ([cold_path] if self._exists(cold_path) else []) + hot:
                table, facts = self._read(path)
                parts.append(table)
                change.removed.append(facts)
            # Cold rows first: where a time repeats (only between the cold file and a hot
            # one: each file's times are checked unique), the (newer) hot row wins.
            change.added.append(self._put(cold_path, dedupe_by_time(pa.concat_tables(parts))))
            self._list(add=[cold_path], drop=hot)
            for path in hot:  # only once the cold file (and the record) holds their rows
                self._remove(path)
            changes.append(change)
        return changes

    def _list(self, add: Sequence[str] = (), drop: Sequence[str] = ()) -> None:
        """Keep the record's list of data files in step (`verify` checks against it)."""
        if self.dry_run or not (add or drop):
            return
        store, tf, market = self.store, self.tf, self.market
        record = store.record(tf, market, for_update=not self.dry_run)
        names = {layout.in_series(store.root, tf, market, p) for p in add}
        gone = {layout.in_series(store.root, tf, market, p) for p in drop}
        store.set_record(tf, market, replace(record, files=(record.files - gone) | names))

    def _files(self) -> list[FileFacts]:
        """The data files as they stand (after pending edits), without reading them."""
        found = {
            f.path: FileFacts(f.path, layout.tier_of(f.path), -1, f.bytes)
            for f in self.store.data_files(self.tf, self.market)
        }
        for path, edit in self._pending.items():
            if edit is None:
                found.pop(path, None)
            else:
                found[path] = FileFacts(path, layout.tier_of(path), edit[0].num_rows, edit[1])
        return [found[p] for p in sorted(found)]

    def _read(self, path: str, *, keep: bool = False) -> tuple[pa.Table, FileFacts]:
        """A file as it stands (after pending edits), checked when it comes from disk; with
        `keep`, kept for the next read of it (which takes it)."""
        edit = self._pending.get(path)
        if edit is not None:
            return edit[0], FileFacts(path, layout.tier_of(path), edit[0].num_rows, edit[1])
        table = self._kept.pop(path, None)
        if table is not None:
            self._held -= table.nbytes
        else:
            table = self.store.read_file(path, for_update=not self.dry_run)
            size = self.store.files.stat(path)
            facts = FileFacts(path, layout.tier_of(path), table.num_rows, size.bytes if size else 0)
            self._facts[path] = facts
        if keep:
            self._kept[path] = table
            self._held += table.nbytes
        return table, self._facts[path]

    def _exists(self, path: str) -> bool:
        if path in self._pending:
            return self._pending[path] is not None
        return self.store.files.is_file(path, for_update=not self.dry_run)

    def _put(self, path: str, table: pa.Table) -> FileFacts:
        self._forget(path)
        tier = layout.tier_of(path)
        if self.dry_run:
            sink = pa.BufferOutputStream()
            write_parquet(table, sink, tier)  # encoded in memory: the size is exact
            size = sink.getvalue().size
            self._pending[path] = (table, size)
        else:
            written = self.store.put_file(path, table)
            size = written.bytes if written is not None else 0
        return FileFacts(path, tier, table.num_rows, size)

    def _forget(self, path: str) -> None:
        """What was read of `path` is no longer what it holds."""
        table = self._kept.pop(path, None)
        if table is not None:
            self._held -= table.nbytes
        self._facts.pop(path, None)

    def _remove(self, path: str) -> None:
        self._forget(path)
        if self.dry_run:
            self._pending[path] = None
        else:
            self.store.remove_file(path)


def _straddles(tf: Timeframe, path: str, cutoff: int) -> bool:
    """Whether the data file at `path` holds time on both sides of `cutoff`."""
    span = layout.file_span(tf, path)
    return span.start < cutoff < span.end


def _groups(
    tf: Timeframe, market: str, root: str, files: Sequence[FileFacts], cutoff: int
) -> dict[str, list[str]]:
    """Cold file -> the hot files (of `files`) that compaction before `cutoff` merges into it."""
    groups: dict[str, list[str]] = defaultdict(list)
    for facts in files:
        start = layout.parse_partition(facts.path)[2]
        if facts.tier == "hot" and layout.partition_end(tf, start) <= cutoff:
            cold_start = layout.partition_start(tf, start, "cold")
            groups[layout.data_file(root, tf, market, cold_start, "cold")].append(facts.path)
    return dict(groups)


def series_leftovers(store: CandleStore, tf: Timeframe, market: str) -> list[StoredFile]:
    """Temp files of one series' writers: safe to remove under the series' writer lock."""
    root, files = store.root, store.files
    found = files.list_files(layout.market_dir(root, tf, market), recursive=True)
    record = layout.fetched_file(root, tf, market)
    folder, _, name = record.rpartition("/")
    mine = [f for f in files.list_files(folder) if f.name.startswith(f".{name}.")]
    return [f for f in found + mine if f.is_temp]


def unlocked_leftovers(store: CandleStore, older_than: int) -> list[StoredFile]:
    """Temp files nobody locks (screens, probes): only those too old to be in use."""
    found = store.files.list_files(layout.screens_dir(store.root))
    found += store.files.list_files(store.root)
    return [f for f in found if f.is_temp and f.mtime_ms < older_than]


def stale_screens(store: CandleStore, older_than: int) -> list[StoredFile]:
    """Kept screen tables whose record was last written before `older_than`."""
    found = store.files.list_files(layout.screens_dir(store.root))
    records = [f for f in found if f.name.endswith(layout.RECORD_SUFFIX) and not f.is_temp]
    stale = {layout.screen_key(f.name) for f in records if f.mtime_ms < older_than}
    return [f for f in found if not f.is_temp and layout.screen_key(f.name) in stale]


def clear(store: CandleStore, found: list[StoredFile], dry_run: bool) -> list[FileFacts]:
    """Delete `found` (not in a dry run); what went, as facts."""
    facts = [FileFacts(f.path, "hot", 0, f.bytes) for f in found]
    if not dry_run:
        for f in found:
            store.files.delete(f.path)  # gone already: another prune was first
    return facts
