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
from upbit_cache.cache.store import CandleStore, write_parquet
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
class Usage:
    files: int = 0
    bytes: int = 0


@dataclass
class PruneReport:
    dry_run: bool
    before: dict[paths.Tier, Usage]
    after: dict[paths.Tier, Usage] = field(default_factory=dict)
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
                keep = policy.keep_for(tf)
                if keep is not None:
                    report.changes += _retain(store, tf, market, tf.floor_one(now - keep), dry_run)
                cutoff = now - policy.compact_after_ms
                report.changes += _compact(store, tf, market, cutoff, dry_run)
                # Safe under the lock: nobody is writing this (timeframe, market) now.
                report.temp_files += _clear(store, _market_temps(store, tf, market), dry_run)
    old = now - TEMP_MAX_AGE_MS
    report.temp_files += _clear(store, _unlocked_temps(store, old), dry_run)
    report.screens = _clear(store, _stale_screens(store, now - SCREEN_MAX_AGE_MS), dry_run)
    report.after = usage(store) if not dry_run else _projected(report)
    report.seconds = time.monotonic() - began
    return report


def usage(store: CandleStore) -> dict[paths.Tier, Usage]:
    """Files and bytes of each tier of the dataset."""
    tiers: dict[paths.Tier, Usage] = {"hot": Usage(), "cold": Usage()}
    selector = pafs.FileSelector(f"{store.root}/candles", recursive=True, allow_not_found=True)
    for info in store.fs.get_file_info(selector):
        if info.type == pafs.FileType.File and info.base_name in paths.FILE_NAMES.values():
            tier = tiers[paths.tier_of(info.path)]
            tier.files += 1
            tier.bytes += info.size or 0
    return tiers


def _retain(
    store: CandleStore, tf: Timeframe, market: str, cutoff: int, dry_run: bool
) -> list[Change]:
    """Delete rows before `cutoff`; the record first, then the data."""
    record = store.record(tf, market)
    gone = record.fetched.clip(0, cutoff)
    if gone and not dry_run:
        kept = record.fetched.clip(cutoff, _FAR_FUTURE)
        store.set_record(
            tf, market, replace(record, fetched=kept, pruned=record.pruned.union(gone))
        )
    change = Change("retain", tf, market)
    for info in store.data_files(tf, market):
        if paths.parse_partition(info.path)[2] >= cutoff:
            continue
        table = store.read_file(info)
        rest = table.filter(pc.greater_equal(table["time"].cast(pa.int64()), cutoff))
        if rest.num_rows == table.num_rows:
            continue
        tier = paths.tier_of(info.path)
        change.removed.append(FileFacts(info.path, tier, table.num_rows, info.size or 0))
        if rest.num_rows:
            change.added.append(_put(store, info.path, rest, dry_run))
        elif not dry_run:
            store.remove_file(info.path)
    return [change] if change.removed else []


def _compact(
    store: CandleStore, tf: Timeframe, market: str, cutoff: int, dry_run: bool
) -> list[Change]:
    """Merge hot partitions that ended before `cutoff` into their cold files."""
    groups: dict[int, list[pafs.FileInfo]] = defaultdict(list)
    for start, info in sorted(store.partition_files(tf, market, "hot").items()):
        if paths.partition_end(tf, start) <= cutoff:
            groups[paths.partition_start(tf, start, "cold")].append(info)
    changes = []
    for cold_start, hot in groups.items():
        change = Change("compact", tf, market)
        cold_path = paths.data_file(store.root, tf, market, cold_start, "cold")
        [cold] = store.fs.get_file_info([cold_path])
        parts = [store.read_file(cold)] if cold.type == pafs.FileType.File else []
        if parts:
            change.removed.append(FileFacts(cold_path, "cold", parts[0].num_rows, cold.size or 0))
        for info in hot:
            table = store.read_file(info)
            parts.append(table)
            change.removed.append(FileFacts(info.path, "hot", table.num_rows, info.size or 0))
        # Cold rows first: where a time repeats, the (newer) hot row wins.
        change.added.append(
            _put(store, cold_path, dedupe_by_time(pa.concat_tables(parts)), dry_run)
        )
        if not dry_run:
            for info in hot:
                store.remove_file(info.path)
        changes.append(change)
    return changes


def _put(store: CandleStore, path: str, table: pa.Table, dry_run: bool) -> FileFacts:
    tier = paths.tier_of(path)
    if dry_run:
        sink = pa.BufferOutputStream()
        write_parquet(table, sink, tier)  # encoded in memory: the size is exact
        size = sink.getvalue().size
    else:
        store.put_file(path, table)
        [info] = store.fs.get_file_info([path])
        size = info.size or 0
    return FileFacts(path, tier, table.num_rows, size)


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
        i for i in found if i.base_name.endswith(paths.TEMP_SUFFIX) and _mtime_ms(i) < older_than
    ]


def _stale_screens(store: CandleStore, older_than: int) -> list[pafs.FileInfo]:
    found = _files(store, f"{store.root}/{paths.SCREENS}", recursive=False)
    stale = {i.base_name.split(".")[0] for i in found if i.base_name.endswith(".json")}
    stale -= {
        i.base_name.split(".")[0]
        for i in found
        if i.base_name.endswith(".json") and _mtime_ms(i) >= older_than
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


def _mtime_ms(info: pafs.FileInfo) -> int:
    return (info.mtime_ns or 0) // 1_000_000


def _projected(report: PruneReport) -> dict[paths.Tier, Usage]:
    """What `usage` would say after the changes a dry run found."""
    after = {tier: replace(u) for tier, u in report.before.items()}
    for change in report.changes:
        for facts, sign in [(f, -1) for f in change.removed] + [(f, 1) for f in change.added]:
            after[facts.tier].files += sign
            after[facts.tier].bytes += sign * facts.bytes
    return after
