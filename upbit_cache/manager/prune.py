"""`prune`: compact old hot partitions into the cold tier, apply retention, clear leftovers.

Each (timeframe, market) is handled under its writer lock, so a `fetch` running at the same
time waits for it and it for the fetch. The file edits, and the order that keeps every step
safe to kill, are the store's (`store/upkeep.py`); this module decides what to prune.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from upbit_cache.errors import RefusedError, StorageError
from upbit_cache.settings import DEFAULT_COMPACT_AFTER
from upbit_cache.store.candle_store import CandleStore, Tier, TierUsage
from upbit_cache.store.upkeep import (
    Change,
    FileFacts,
    SeriesEditor,
    clear,
    series_leftovers,
    stale_screens,
    unlocked_leftovers,
)
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import now_ms, parse_duration

SCREEN_MAX_AGE_MS = 7 * 86_400_000  # kept screen tables not rebuilt for a week are dropped
TEMP_MAX_AGE_MS = 3_600_000  # unlocked temp files (screens, probes) older than this are orphans

__all__ = ["Change", "FileFacts", "Policy", "PruneReport", "prune"]


@dataclass(frozen=True)
class Policy:
    """What prune keeps: hot data younger than `compact_after`, rows younger than the keep."""

    compact_after_ms: int = parse_duration(DEFAULT_COMPACT_AFTER, "--compact-after")
    keep_ms: int | None = None  # every timeframe; None keeps everything
    keep_by_tf: dict[str, int] = field(default_factory=dict)  # e.g. {"1m": 90 days}
    timeframes: tuple[Timeframe, ...] = ()  # empty: every stored timeframe

    def keep_for(self, tf: Timeframe) -> int | None:
        return self.keep_by_tf.get(tf.name, self.keep_ms)


@dataclass
class PruneReport:
    dry_run: bool
    before: dict[Tier, TierUsage]
    after: dict[Tier, TierUsage] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    temp_files: list[FileFacts] = field(default_factory=list)
    screens: list[FileFacts] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # series left alone: a damaged file
    emptied: list[str] = field(default_factory=list)  # `1m KRW-BTC`: retention leaves no row
    seconds: float = 0.0


async def prune(
    store: CandleStore,
    policy: Policy,
    *,
    now: int | None = None,
    dry_run: bool = False,
    yes: bool = False,
) -> PruneReport:
    """Compact, apply retention and clear leftovers; with `dry_run`, only say what would go.

    Retention that would delete every row of a series (nothing it recorded lies after the
    cutoff: `--keep 0d`) is a RefusedError carrying the dry run's report, nothing changed,
    unless `yes` confirms it: a typo in an age must not empty a store.
    """
    now = now if now is not None else now_ms()
    emptied = _emptied(store, policy, now)
    if emptied and not dry_run and not yes:
        found = await prune(store, policy, now=now, dry_run=True)
        raise RefusedError(
            f"prune would delete every row of {_named(found.emptied)}: nothing changed; "
            "what it would remove is above (as --dry-run says); give --yes to do it",
            found,
        )
    began = time.monotonic()
    report = PruneReport(dry_run, before=store.usage())
    report.emptied = emptied
    for tf in policy.timeframes or store.timeframes():
        for market in store.stored_markets(tf):
            async with store.lock(tf, market):
                try:
                    edit = SeriesEditor(store, tf, market, dry_run)
                    keep = policy.keep_for(tf)
                    keep_cutoff = tf.floor_one(now - keep) if keep is not None else None
                    compact_cutoff = now - policy.compact_after_ms
                    # Damage anywhere prune would read leaves the whole series as it is (for
                    # verify to find), never compacted or retained around, nor dropped.
                    edit.check(keep_cutoff, compact_cutoff)
                    if keep_cutoff is not None:
                        report.changes += edit.retain(keep_cutoff)
                    report.changes += edit.compact(compact_cutoff)
                except StorageError as exc:  # one bad file skips its series, not the store
                    report.skipped.append(f"{tf} {market}: left as it is: {exc}")
                # Safe under the lock: nobody is writing this (timeframe, market) now.
                report.temp_files += clear(store, series_leftovers(store, tf, market), dry_run)
    # Two clocks, never mixed: candle times are aged against `now` (this host's clock unless
    # the caller gives one: `prune --as-of`), file times against the store's own clock.
    files_now = store.clock_ms()
    orphans = unlocked_leftovers(store, files_now - TEMP_MAX_AGE_MS)
    report.temp_files += clear(store, orphans, dry_run)
    report.screens = clear(store, stale_screens(store, files_now - SCREEN_MAX_AGE_MS), dry_run)
    report.after = store.usage() if not dry_run else _projected(report)
    report.seconds = time.monotonic() - began
    return report


def _emptied(store: CandleStore, policy: Policy, now: int) -> list[str]:
    """The series (`1m KRW-BTC`) whose rows retention would all delete: it holds data files
    and nothing it recorded (fetched or provisional) lies at or after its cutoff. From the
    records only, so a real prune pays nothing for the question."""
    found = []
    for tf in policy.timeframes or store.timeframes():
        keep = policy.keep_for(tf)
        if keep is None:
            continue
        cutoff = tf.floor_one(now - keep)
        for market in store.stored_markets(tf):
            try:
                record = store.record(tf, market)
            except StorageError:
                continue  # damaged: prune leaves it as it is, and says so
            hull = record.fetched.union(record.provisional).hull
            held = any(u.files for u in store.series_usage(tf, market).values())
            if (hull is None or hull.end <= cutoff) and held:
                found.append(f"{tf} {market}")
    return found


def _named(series: list[str]) -> str:
    """`1m KRW-BTC, 1h KRW-BTC and 3 more series`, at most five named."""
    shown = ", ".join(series[:5])
    more = len(series) - 5
    return shown + (f" and {more} more series" if more > 0 else "")


def _projected(report: PruneReport) -> dict[Tier, TierUsage]:
    """What `usage` would say after the changes a dry run found."""
    after = dict(report.before)
    for change in report.changes:
        for facts in change.removed:
            after[facts.tier] = after[facts.tier] + TierUsage(-1, -facts.bytes)
        for facts in change.added:
            after[facts.tier] = after[facts.tier] + TierUsage(1, facts.bytes)
    return after
