"""What a fetch does with the damage it meets: it heals its own window and reports the rest.

Before a series is fetched (or derived) its window is checked, under the series' writer
lock, with the checks every reader makes (checks.py). A damaged record (unreadable, or
claiming ranges after now) is quarantined and replaced by one that lists the series' data
files as provisional: stored, vouched for by nothing, so the fetch asks Upbit again for all
of its window (their rows outside it stay, readable, until a fetch covers them). Then every
data file the window touches is read: one that is damaged, or listed and gone, is
quarantined and its span forgotten, as `verify --repair` does (audit.py: `repair_series`),
and the fetch asks for that whole span again, also where it reaches past the window. Outside
the window nothing is read or touched: what a listing shows (a listed file gone, a zero-byte
file) is reported, for `verify --repair`.

The versions (size, modification time) of the files that passed are kept in
`checked/<tf>/<MARKET>.json` (a cache: what it does not say is read), by name: files are
written once, so a cron fetch over a year reads what its last run wrote, not the year (and
nothing a fetch wrote itself: `remember_written`, made of checked rows); a file changed by
hand (its size or time) is read again. Damage that keeps a file's size and time (bit rot)
is for the readers and `verify`. What killed writers left (unlisted files, temp files) is
deleted first, under the lock (CandleStore.sweep); a look without the lock
(`inspect_window`) that meets any sends the series to `heal_window`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from upbit_cache.errors import DamageError
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.store import layout
from upbit_cache.store.audit import Problem, SeriesAudit, file_problem, repair_series
from upbit_cache.store.base import Coverage
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.store.files import StoredFile
from upbit_cache.store.records import Record
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import now_ms


@dataclass(frozen=True)
class Healed:
    """One damaged file (or record) quarantined and forgotten so that it is fetched again."""

    problem: Problem
    moved: str | None  # where it went (under quarantine/); None: it was gone already

    @property
    def again(self) -> TimeRange | None:
        """The span asked of Upbit again (the data file's; None for a record)."""
        return self.problem.span


@dataclass
class Heal:
    """What checking one series' window found: healed inside it, reported outside it."""

    healed: list[Healed] = field(default_factory=list)
    outside: list[Problem] = field(default_factory=list)  # left as they are
    pruned: Ranges = field(default_factory=Ranges)  # deleted by retention: not asked again

    @property
    def again(self) -> Ranges:
        """The spans of the healed data files, less what retention deleted: to fetch again
        in this run."""
        spans = Ranges.of((s.start, s.end) for h in self.healed if (s := h.again) is not None)
        return spans.subtract(self.pruned)


# Damage found by a look (path and version -> what is wrong): not read again in that version.
Seen = dict[tuple[str, tuple[int, int]], Problem]


def heal_window(
    store: CandleStore,
    tf: Timeframe,
    market: str,
    window: TimeRange,
    stamp: str,
    seen: Seen | None = None,
) -> Heal:
    """Heal the damage of one series inside `window`, report what a listing shows outside
    it (`stamp`: the quarantine folder; `seen`: what `inspect_window` found just before).
    The caller holds the series' writer lock."""
    heal = Heal()
    try:
        record = store.record(tf, market, for_update=True)
    except DamageError as exc:
        heal.healed.append(_heal_record(store, tf, market, exc, stamp))
        record = store.record(tf, market, for_update=True)
    # What killed writers left goes first (under the lock, once per run): a file no record
    # lists is no reader's, and a plain Hive reader would meet its rows twice.
    current = store.current(tf, market, record)
    everything = store.series_listing(tf, market)
    swept = {f.path for f in store.sweep(tf, market, current, everything)}
    on_disk = [
        f
        for f in everything
        if f.path not in swept
        and not f.is_temp
        and layout.in_series(store.root, tf, market, f.path) in current
    ]
    problems, heal.outside = _findings(store, tf, market, window, record, on_disk, seen or {})
    if problems:
        repair_series(store, SeriesAudit(tf, market, problems=problems), stamp)
        heal.healed += [Healed(p, _moved(store, p, stamp)) for p in problems]
    heal.pruned = record.pruned
    return heal


def inspect_window(
    store: CandleStore,
    tf: Timeframe,
    market: str,
    window: TimeRange,
    known: Coverage,
    seen: Seen | None = None,
) -> Heal | None:
    """What `heal_window` would find, looked at without the series' lock: None if anything
    inside `window` needs healing (then `heal_window` under the lock), else what a listing
    shows outside it, to report. The record and the listing are the run's (`known`: read
    once for it). Nothing is changed but the cache of versions found sound (keyed by
    version: a file replaced meanwhile is read again next time); the damaged files found
    are added to `seen`, for `heal_window` not to read them again.

    A reader's look: a compaction under way can look like a hole, or a listed file be gone
    when read, which only sends the series to `heal_window`, where it is looked at again
    under the lock (a StorageError here means the same).
    """
    record = known.record(tf, market)
    listed = known.series_files(tf, market)
    if listed is None:
        listed = store.data_files(tf, market)
    current = store.current(tf, market, record)
    on_disk = [f for f in listed if layout.in_series(store.root, tf, market, f.path) in current]
    if len(on_disk) < len(listed):
        return None  # files no record lists (a killed write's): swept under the lock
    found = seen if seen is not None else {}
    problems, outside = _findings(store, tf, market, window, record, on_disk, found)
    return None if problems else Heal(outside=outside, pruned=record.pruned)


def _findings(
    store: CandleStore,
    tf: Timeframe,
    market: str,
    window: TimeRange,
    record: Record,
    on_disk: list[StoredFile],
    seen: Seen,
) -> tuple[list[Problem], list[Problem]]:
    """The damage inside `window` (to heal), and what a listing shows outside it (to report)."""
    problems = _check_window(store, tf, market, on_disk, window, seen)
    outside: list[Problem] = []
    for path in store.missing_files(tf, market, record, on_disk):
        gone = Problem(tf, market, "missing", path, "listed in the record, not on disk")
        (problems if _touches(tf, path, window) else outside).append(gone)
    outside += [
        Problem(tf, market, "unreadable", f.path, "0 bytes")
        for f in on_disk
        if f.bytes == 0 and not _touches(tf, f.path, window)
    ]
    return problems, outside


def remember_written(store: CandleStore, tf: Timeframe, market: str) -> None:
    """Add the data files this store wrote of the series to the versions found sound: they
    were made of checked rows (a checked file's and checked pages'), so the next fetch need
    not read them again to know. The caller holds the series' writer lock (no one else
    wrote them). Those it deleted since (superseded: files are written once) are forgotten."""
    mine = store.take_written(tf, market)
    if not mine:
        return
    before = _sound(store, tf, market)
    after = dict(before)
    for path, version in mine.items():
        name = layout.in_series(store.root, tf, market, path)
        if version is None:
            after.pop(name, None)
        else:
            after[name] = list(version)
    _remember(store, tf, market, before, after)


def _heal_record(
    store: CandleStore, tf: Timeframe, market: str, damage: DamageError, stamp: str
) -> Healed:
    """Quarantine a damaged record; its successor lists every data file as provisional."""
    path = layout.fetched_file(store.root, tf, market)
    target = layout.quarantine_path(store.root, path, stamp)
    store.files.move(path, target)
    store.files.read_for_update(path)  # on S3: the next write creates it, over nothing
    closed = TimeRange.before(tf.floor_one(now_ms()))  # never a claim after now
    on_disk = _survivors(tf, store.data_files(tf, market))
    spans = [layout.file_span(tf, f.path).clip(closed) for f in on_disk]
    names = frozenset(layout.in_series(store.root, tf, market, f.path) for f in on_disk)
    held = Ranges.of((s.start, s.end) for s in spans if not s.empty)
    store.set_record(tf, market, Record(files=names, provisional=held))
    return Healed(Problem(tf, market, "damaged record", path, damage.detail), target)


def _survivors(tf: Timeframe, on_disk: list[StoredFile]) -> list[StoredFile]:
    """The data files a record lost to damage most likely listed: where files written once
    share a span, the newest (a superseding file is written after what it merges, and
    holds its rows). Legacy files are all kept (readers let the hot row win)."""
    kept: list[StoredFile] = []
    newest_first = sorted(on_disk, key=lambda f: (f.mtime_ns, f.bytes), reverse=True)
    for found in newest_first:
        span = layout.file_span(tf, found.path)
        if layout.is_legacy(found.path) or not any(
            not layout.is_legacy(k.path) and span.overlaps(layout.file_span(tf, k.path))
            for k in kept
        ):
            kept.append(found)
    return sorted(kept, key=lambda f: f.path)


def _check(store: CandleStore, tf: Timeframe, market: str, found: StoredFile) -> Problem | None:
    """What the checks every reader makes find wrong with one data file, if anything."""
    try:
        store.read_file(found)  # through memory: what a fetch then merges into is read once
    except DamageError as exc:
        return file_problem(tf, market, found, exc)
    return None


def _check_window(
    store: CandleStore,
    tf: Timeframe,
    market: str,
    on_disk: list[StoredFile],
    window: TimeRange,
    seen: Seen,
) -> list[Problem]:
    """The damaged files among those on disk that `window` touches. Only those that changed
    since they last passed are read; what passes is remembered."""
    names = {f.path: layout.in_series(store.root, tf, market, f.path) for f in on_disk}
    before = _sound(store, tf, market)
    now = {names[f.path]: list(f.version) for f in on_disk}
    sound = {name: version for name, version in now.items() if before.get(name) == version}
    problems = []
    for found in on_disk:
        name = names[found.path]
        if name in sound or not _touches(tf, found.path, window):
            continue
        problem = seen.get((found.path, found.version)) or _check(store, tf, market, found)
        if problem is None:
            sound[name] = now[name]
        else:
            seen[found.path, found.version] = problem
            problems.append(problem)
    _remember(store, tf, market, before, sound)
    return problems


def _sound(store: CandleStore, tf: Timeframe, market: str) -> dict[str, list[int]]:
    """The versions of the series' data files that passed the checks, by name in the series."""
    raw = store.files.read_bytes(layout.checked_file(store.root, tf, market))
    try:
        found = json.loads(raw) if raw is not None else {}
    except ValueError:
        return {}  # a cache: what it does not say is read again
    return found if isinstance(found, dict) else {}


def _remember(
    store: CandleStore,
    tf: Timeframe,
    market: str,
    before: dict[str, list[int]],
    sound: dict[str, list[int]],
) -> None:
    """Keep `sound` for the next fetch, if it is not what `before` said already."""
    if sound != before:
        data = json.dumps(dict(sorted(sound.items()))).encode()
        store.files.write_bytes(layout.checked_file(store.root, tf, market), data)


def _touches(tf: Timeframe, path: str, window: TimeRange) -> bool:
    return not layout.file_span(tf, path).clip(window).empty


def _moved(store: CandleStore, problem: Problem, stamp: str) -> str | None:
    if problem.kind == "missing":
        return None
    return layout.quarantine_path(store.root, problem.path, stamp)
