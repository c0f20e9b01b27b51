"""The file edits behind `prune`: retention and compaction of one series, and leftovers.

Data files are written once (store/parts.py), so both edits are one kind of step
(store/edits.py: new files, then the record, then the superseded files go), which a prune
killed at any point leaves whole for every reader, and which the next prune finishes:
- compaction merges a cold partition's listed cold file and the hot files of its partitions
  that ended before the cutoff into one new cold file;
- retention takes the files before the cutoff out of the record (with the fetched ranges
  they held, recorded as pruned: a later fetch asks for them again only if its range
  includes them), and a file straddling the cutoff is replaced by one of its later rows.
A killed step leaves unlisted files (the new ones, or the superseded), which readers ignore
and the next writer or prune deletes (`series_leftovers`). A dry run makes the same plan in
memory: what it would write is encoded (so sizes are exact) and kept, so that compaction
after retention sees the files as retention left them.

Before anything of a series is edited, `check` reads its record and every file the edits
will read (each read makes the checks of checks.py), and looks for files its record lists
that are gone: a series that cannot be read cleanly is left exactly as it is (DamageError),
so its damage stays for `verify` to find. Compaction drops no row: where two files hold one
time (legacy files of a compaction killed half way), the hot row wins.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

import pyarrow as pa

from upbit_cache.candles import in_span
from upbit_cache.errors import DamageError
from upbit_cache.ranges import TimeRange
from upbit_cache.store import layout
from upbit_cache.store.candle_store import CandleStore, write_parquet
from upbit_cache.store.checks import missing_file
from upbit_cache.store.edits import SeriesEdit
from upbit_cache.store.files import StoredFile
from upbit_cache.store.parts import Part, hull
from upbit_cache.store.records import Record
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

    The caller holds the series' writer lock; `check` comes first.
    """

    def __init__(self, store: CandleStore, tf: Timeframe, market: str, dry_run: bool) -> None:
        self.store, self.tf, self.market, self.dry_run = store, tf, market, dry_run
        self._edit: SeriesEdit | None = None
        self._sizes: dict[str, int] = {}  # name -> bytes: on disk, or as a dry run encoded it
        self._held = 0  # bytes of the tables kept for the edits (at most KEEP_BYTES past one)

    @property
    def edit(self) -> SeriesEdit:
        assert self._edit is not None, "check() first"
        return self._edit

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
        on_disk = store.data_files(tf, market)
        holes = store.missing_files(tf, market, record, on_disk)
        if holes:
            raise missing_file(holes[0], len(holes))
        self._sizes = {layout.in_series(store.root, tf, market, f.path): f.bytes for f in on_disk}
        self._edit = SeriesEdit(store, tf, market, record)
        parts = list(self.edit.parts.values())
        if keep_cutoff is not None:
            for part in parts:
                if part.span.start < keep_cutoff:
                    self._read(part.name, keep=part.span.end > keep_cutoff)
            parts = [p for p in parts if p.span.end > keep_cutoff]
        for names in _groups(tf, parts, compact_cutoff).values():
            for name in names:
                if name not in self.edit.kept:
                    self._read(name, keep=self._held < KEEP_BYTES)

    def retain(self, cutoff: int) -> list[Change]:
        """Delete rows before `cutoff`: the files that hold only those leave the record (with
        the fetched ranges before `cutoff`, recorded as pruned), a file straddling it is
        replaced by one of its later rows. Every file before `cutoff` was read (and so
        checked) by `check`."""
        edit, change = self.edit, Change("retain", self.tf, self.market)
        old = [p for p in edit.parts.values() if p.span.start < cutoff]
        record = edit.record
        gone = record.fetched.clip(TimeRange.before(cutoff))
        if not gone and not old:
            return []
        added: list[tuple[Part, int]] = []
        for part in old:
            table = self._read(part.name)
            change.removed.append(self._facts(part, table.num_rows))
            rest = in_span(table, TimeRange.since(cutoff)) if part.span.end > cutoff else None
            if rest is not None and rest.num_rows:
                added.append((self._put(rest, part.tier, {part.name}), rest.num_rows))
            else:
                edit.drop({part.name})
        kept = record.fetched.clip(TimeRange.since(cutoff))
        self._commit(replace(record, fetched=kept, pruned=record.pruned.union(gone)))
        change.added = [self._facts(part, rows) for part, rows in added]
        return [change] if change.removed else []

    def compact(self, cutoff: int) -> list[Change]:
        """Merge hot partitions that ended before `cutoff` into their cold files."""
        edit, changes = self.edit, []
        for names in _groups(self.tf, list(edit.parts.values()), cutoff).values():
            names = edit.closure(hull(edit.parts[n].span for n in names), names)
            removed = [edit.parts[n] for n in sorted(names)]
            change = Change("compact", self.tf, self.market)
            change.removed = [self._facts(p, self._read(p.name).num_rows) for p in removed]
            part = self._put(None, "cold", names)
            rows = self._read(part.name).num_rows
            self._commit(edit.record)
            change.added = [self._facts(part, rows)]
            changes.append(change)
        return changes

    def _commit(self, record: Record) -> None:
        """The edit so far, for real (not in a dry run): its new files, then the record
        (listing them), then the superseded files go."""
        if not self.dry_run:
            self.edit.commit(replace(record, files=self.edit.files, manifest=True))
        else:
            self.edit.record = record

    def _read(self, name: str, *, keep: bool = False) -> pa.Table:
        """A current file's rows (checked when they come from disk); with `keep`, kept for
        the edits that follow."""
        table = self.edit.table(name)
        if keep and name not in self.edit.kept:
            self.edit.kept[name] = table
            self._held += table.nbytes
        return table

    def _put(self, table: pa.Table | None, tier: layout.Tier, replacing: set[str]) -> Part:
        """`table` (None: the rows of `replacing`, merged) as a new file of `tier`; in a dry
        run its size is encoded in memory (exact)."""
        edit = self.edit
        part = (
            edit.merge(replacing, tier=tier) if table is None else edit.put(table, tier, replacing)
        )
        planned = edit.pending.get(part.name)
        if planned is not None and self.dry_run:
            sink = pa.BufferOutputStream()
            write_parquet(planned, sink, part.tier)
            self._sizes[part.name] = sink.getvalue().size
        return part

    def _facts(self, part: Part, rows: int) -> FileFacts:
        """A file's facts: its size as listed, encoded (dry run) or written."""
        size = self._sizes.get(part.name)
        if size is None:
            found = self.store.files.stat(self.edit.path(part.name))
            size = self._sizes[part.name] = found.bytes if found is not None else 0
        return FileFacts(self.edit.path(part.name), part.tier, rows, size)


def _groups(tf: Timeframe, parts: Iterable[Part], cutoff: int) -> dict[int, set[str]]:
    """Cold partition start -> the files compaction before `cutoff` merges there: the hot
    files of partitions that ended before it, with the cold files listed there already."""
    hot: dict[int, set[str]] = defaultdict(set)
    cold: dict[int, set[str]] = defaultdict(set)
    for part in parts:
        start = layout.partition_start(tf, part.span.start)
        into = layout.partition_start(tf, part.span.start, "cold")
        if part.tier == "cold":
            cold[into].add(part.name)
        elif layout.partition_end(tf, start) <= cutoff:
            hot[into].add(part.name)
    return {into: names | cold[into] for into, names in sorted(hot.items())}


def series_leftovers(store: CandleStore, tf: Timeframe, market: str) -> list[StoredFile]:
    """What killed writers left of one series (temp files; data files its record does not
    list, unless the record is damaged): safe to remove under the series' writer lock."""
    try:
        record = store.record(tf, market)
    except DamageError:
        return store.leftovers(tf, market, None)
    return store.leftovers(tf, market, store.current(tf, market, record))


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
    """Delete `found` (not in a dry run); what went, as facts. Where data files went (a
    series' leftovers, under its lock), its record is bumped (CandleStore.bump_record)."""
    facts = [FileFacts(f.path, layout.tier_of(f.path), 0, f.bytes) for f in found]
    if not dry_run:
        series = set()
        for f in found:
            store.files.delete(f.path)  # gone already: another prune was first
            if not f.is_temp and layout.is_data_file(f.name):
                series.add(layout.parse_partition(f.path)[:2])
        for tf, market in sorted(series, key=str):
            store.bump_record(tf, market)
    return facts
