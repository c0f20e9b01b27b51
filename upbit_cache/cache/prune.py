"""`prune`: compact old hot partitions into the cold tier, apply retention, clear leftovers.

Each (timeframe, market) is handled under its writer lock, so a `fetch` running at the same
time waits for it and it for the fetch. Every step is ordered so that a prune killed at any
point leaves a store that readers see whole, and the next prune finishes the job:
- compaction writes the cold file (old cold rows plus the hot rows) first, then deletes the
  hot files; in between, readers see both and prefer the hot rows, which are the same;
- retention updates the fetched-range record first, then deletes rows, so the record never
  claims data that is gone (the deleted range is recorded as pruned: a later fetch asks for
  it again only if its range includes it).
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from upbit_cache.cache import paths
from upbit_cache.cache.store import (
    CandleStore,
    TierUsage,
    mtime_ms,
    usage_by_tier,
    write_parquet,
)
from upbit_cache.candles import dedupe_by_time
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import now_ms

SCREEN_MAX_AGE_MS = 7 * 86_400_000  # kept screen tables not rebuilt for a week are dropped
TEMP_MAX_AGE_MS = 3_600_000  # unlocked temp files (screens, probes) older than this are orphans
_FAR_FUTURE = 2**62

Action = Literal["compact", "retain"]


@dataclass(frozen=True)
class Policy:
    """What prune keeps: hot data younger than `compact_after`, rows younger than the keep."""

    compact_after_ms: int = 7 * 86_400_000
    keep_ms: int | None = None  # every timeframe; None keeps everything
    keep_by_tf: dict[str, int] = field(default_factory=dict)  # e.g. {"1m": 90 days}
    timeframes: tuple[Timeframe, ...] = ()  # empty: every stored timeframe

    def keep_for(self, tf: Timeframe) -> int | None:
        return self.keep_by_tf.get(tf.name, self.keep_ms)


@dataclass(frozen=True)
class FileFacts:
    path: str
    tier: paths.Tier
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


@dataclass
class PruneReport:
    dry_run: bool
    before: dict[paths.Tier, TierUsage]
    after: dict[paths.Tier, TierUsage] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    temp_files: list[FileFacts] = field(default_factory=list)
    screens: list[FileFacts] = field(default_factory=list)
    seconds: float = 0.0


async def prune(
    store: CandleStore, policy: Policy, *, now: int | None = None, dry_run: bool = False
) -> PruneReport:
    """Compact, apply retention and clear leftovers; with `dry_run`, only say what would go."""
    began = time.monotonic()
    now = now if now is not None else now_ms()
    report = PruneReport(dry_run, before=usage(store))
    for tf in policy.timeframes or store.timeframes():
        for market in store.stored_markets(tf):
            async with store.lock(tf, market):
                edit = _Editor(store, tf, market, dry_run)
                keep = policy.keep_for(tf)
                if keep is not None:
                    report.changes += _retain(edit, tf.floor_one(now - keep))
                report.changes += _compact(edit, now - policy.compact_after_ms)
                # Safe under the lock: nobody is writing this (timeframe, market) now.
                report.temp_files += _clear(store, _market_temps(store, tf, market), dry_run)
    # Two clocks, never mixed: candle times are aged against `now` (this host's clock unless
    # the caller gives one: `prune --as-of`), file times against the store's own clock.
    files_now = store.clock_ms()
    report.temp_files += _clear(store, _unlocked_temps(store, files_now - TEMP_MAX_AGE_MS), dry_run)
    report.screens = _clear(store, _stale_screens(store, files_now - SCREEN_MAX_AGE_MS), dry_run)
    report.after = usage(store) if not dry_run else _projected(report)
    report.seconds = time.monotonic() - began
    return report


def usage(store: CandleStore) -> dict[paths.Tier, TierUsage]:
    """Files and bytes of each tier of the dataset."""
    selector = pafs.FileSelector(f"{store.root}/candles", recursive=True, allow_not_found=True)
    return usage_by_tier(store.fs.get_file_info(selector))


class _Editor:
    """The files of one (timeframe, market), edited for real or, in a dry run, in memory.

    A dry run keeps what it would write or delete here, so that compaction after
    retention sees the files as retention would have left them.
    """

    def __init__(self, store: CandleStore, tf: Timeframe, market: str, dry_run: bool) -> None:
        self.store, self.tf, self.market, self.dry_run = store, tf, market, dry_run
        self._pending: dict[str, tuple[pa.Table, int] | None] = {}  # path -> (table, bytes)

    def files(self) -> list[FileFacts]:
        """The data files as they stand (after pending edits), without reading them."""
        found = {
            i.path: FileFacts(i.path, paths.tier_of(i.path), -1, i.size or 0)
            for i in self.store.data_files(self.tf, self.market)
        }
        for path, edit in self._pending.items():
            if edit is None:
                found.pop(path, None)
            else:
                found[path] = FileFacts(path, paths.tier_of(path), edit[0].num_rows, edit[1])
        return [found[p] for p in sorted(found)]

    def read(self, path: str) -> tuple[pa.Table, FileFacts]:
        edit = self._pending.get(path)
        if edit is not None:
            return edit[0], FileFacts(path, paths.tier_of(path), edit[0].num_rows, edit[1])
        [info] = self.store.fs.get_file_info([path])
        table = self.store.read_file(info)
        return table, FileFacts(path, paths.tier_of(path), table.num_rows, info.size or 0)

    def exists(self, path: str) -> bool:
        if path in self._pending:
            return self._pending[path] is not None
        [info] = self.store.fs.get_file_info([path])
        return info.type == pafs.FileType.File

    def put(self, path: str, table: pa.Table) -> FileFacts:
        tier = paths.tier_of(path)
        if self.dry_run:
            sink = pa.BufferOutputStream()
            write_parquet(table, sink, tier)  # encoded in memory: the size is exact
            size = sink.getvalue().size
            self._pending[path] = (table, size)
        else:
            self.store.put_file(path, table)
            [info] = self.store.fs.get_file_info([path])
            size = info.size or 0
        return FileFacts(path, tier, table.num_rows, size)

    def remove(self, path: str) -> None:
        if self.dry_run:
            self._pending[path] = None
        else:
            self.store.remove_file(path)


def _retain(edit: _Editor, cutoff: int) -> list[Change]:
    """Delete rows before `cutoff`; the record first, then the data."""
    store, tf, market = edit.store, edit.tf, edit.market
    record = store.record(tf, market)
    gone = record.fetched.clip(0, cutoff)
    if gone and not edit.dry_run:
        kept = record.fetched.clip(cutoff, _FAR_FUTURE)
        pruned = record.pruned.union(gone)
        store.set_record(tf, market, replace(record, fetched=kept, pruned=pruned))
    change = Change("retain", tf, market)
    for facts in edit.files():
        if paths.parse_partition(facts.path)[2] >= cutoff:
            continue
        table, facts = edit.read(facts.path)
        rest = table.filter(pc.greater_equal(table["time"].cast(pa.int64()), cutoff))
        if rest.num_rows == table.num_rows:
            continue
        change.removed.append(facts)
        if rest.num_rows:
            change.added.append(edit.put(facts.path, rest))
        else:
            edit.remove(facts.path)
    return [change] if change.removed else []


def _compact(edit: _Editor, cutoff: int) -> list[Change]:
    """Merge hot partitions that ended before `cutoff` into their cold files."""
    tf = edit.tf
    groups: dict[int, list[str]] = defaultdict(list)
    for facts in edit.files():
        start = paths.parse_partition(facts.path)[2]
        if facts.tier == "hot" and paths.partition_end(tf, start) <= cutoff:
            groups[paths.partition_start(tf, start, "cold")].append(facts.path)
    changes = []
    for cold_start, hot in groups.items():
        change = Change("compact", tf, edit.market)
        cold_path = paths.data_file(edit.store.root, tf, edit.market, cold_start, "cold")
        parts = []
        for path in ([cold_path] if edit.exists(cold_path) else []) + hot:
            table, facts = edit.read(path)
            parts.append(table)
            change.removed.append(facts)
        # Cold rows first: where a time repeats, the (newer) hot row wins.
        change.added.append(edit.put(cold_path, dedupe_by_time(pa.concat_tables(parts))))
        for path in hot:  # only once the cold file holds their rows
            edit.remove(path)
        changes.append(change)
    return changes


def _market_temps(store: CandleStore, tf: Timeframe, market: str) -> list[pafs.FileInfo]:
    found = _files(store, f"{paths.candles_root(store.root, tf)}/market={market}", recursive=True)
    temps = [i for i in found if i.base_name.endswith(paths.TEMP_SUFFIX)]
    record = paths.fetched_file(store.root, tf, market)
    folder, _, name = record.rpartition("/")
    prefix = f".{name}."
    return temps + [
        i
        for i in _files(store, folder, recursive=False)
        if i.base_name.startswith(prefix) and i.base_name.endswith(paths.TEMP_SUFFIX)
    ]


def _unlocked_temps(store: CandleStore, older_than: int) -> list[pafs.FileInfo]:
    """Temp files nobody locks (screens, probes): only those too old to be in use."""
    found = _files(store, f"{store.root}/{paths.SCREENS}", recursive=False)
    found += _files(store, store.root, recursive=False)
    return [
        i for i in found if i.base_name.endswith(paths.TEMP_SUFFIX) and mtime_ms(i) < older_than
    ]


def _stale_screens(store: CandleStore, older_than: int) -> list[pafs.FileInfo]:
    found = _files(store, f"{store.root}/{paths.SCREENS}", recursive=False)
    stale = {i.base_name.split(".")[0] for i in found if i.base_name.endswith(".json")}
    stale -= {
        i.base_name.split(".")[0]
        for i in found
        if i.base_name.endswith(".json") and mtime_ms(i) >= older_than
    }
    return [
        i for i in found if not i.base_name.startswith(".") and i.base_name.split(".")[0] in stale
    ]


def _clear(store: CandleStore, infos: list[pafs.FileInfo], dry_run: bool) -> list[FileFacts]:
    facts = [FileFacts(i.path, "hot", 0, i.size or 0) for i in infos]
    if not dry_run:
        for info in infos:
            with contextlib.suppress(FileNotFoundError):  # another prune was first
                store.fs.delete_file(info.path)
    return facts


def _files(store: CandleStore, folder: str, *, recursive: bool) -> list[pafs.FileInfo]:
    selector = pafs.FileSelector(folder, recursive=recursive, allow_not_found=True)
    return [i for i in store.fs.get_file_info(selector) if i.type == pafs.FileType.File]


def _projected(report: PruneReport) -> dict[paths.Tier, TierUsage]:
    """What `usage` would say after the changes a dry run found."""
    after = dict(report.before)
    for change in report.changes:
        for facts in change.removed:
            after[facts.tier] = after[facts.tier] + TierUsage(-1, -facts.bytes)
        for facts in change.added:
            after[facts.tier] = after[facts.tier] + TierUsage(1, facts.bytes)
    return after
