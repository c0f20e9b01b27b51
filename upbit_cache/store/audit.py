"""The file checks behind `verify`: one series' files against its record, and the repair.

Every current data file (the record lists it) is read from disk (never from memory) and
checked with the checks every reader makes (checks.py: readable Parquet, the candle schema,
every row inside the span its name says, times sorted and each once, no impossible value),
then against the record: every row inside a recorded range, and no time in two listed files
(files are written once and a write that meets listed rows replaces their files: only legacy
files a killed compaction left can share one). A file the record lists but the disk lacks is
missing; a data file it does not list is an orphan (a killed writer's, which a plain Hive
reader would read all the same). A record that cannot be read, or claims ranges after now,
is damaged. The repair moves each bad file and each orphan to `<data-dir>/quarantine/` and
takes a bad file's span out of the record (a missing file's too), so the next fetch asks for
exactly those spans again; it merges files sharing times into one; a damaged record is
quarantined (its series is fetched again). Valid legacy files a record of before version 3
does not list are adopted. The caller holds the series' writer lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal, cast

import numpy as np

from upbit_cache.candles import in_ranges, times_ms
from upbit_cache.errors import DamageError
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.store import layout
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.store.checks import FileDamage, check_record
from upbit_cache.store.edits import SeriesEdit
from upbit_cache.store.files import StoredFile
from upbit_cache.store.parts import Part, closure
from upbit_cache.store.records import Record, read_record
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import now_ms
from upbit_cache.words import plural

Kind = Literal[
    FileDamage,
    "rows outside recorded ranges",
    "missing",
    "damaged record",
    "orphan",
    "overlapping files",
]


@dataclass(frozen=True)
class Problem:
    timeframe: Timeframe
    market: str
    kind: Kind
    path: str
    detail: str

    @property
    def span(self) -> TimeRange | None:
        """The time the bad data file holds (what --repair makes the next fetch ask for);
        None for a record."""
        if self.kind == "damaged record":
            return None
        return layout.file_span(self.timeframe, self.path)

    @property
    def forgets(self) -> bool:
        """Whether the repair takes this file's span out of the record (an orphan's rows
        were never recorded; files sharing times are merged, nothing is lost)."""
        return self.kind not in ("damaged record", "orphan", "overlapping files")


@dataclass
class SeriesAudit:
    """What checking one (timeframe, market) found."""

    timeframe: Timeframe
    market: str
    files: int = 0
    rows: int = 0
    problems: list[Problem] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)  # valid legacy files to adopt


def audit_series(store: CandleStore, tf: Timeframe, market: str) -> SeriesAudit:
    """Check one series' files against its record."""
    audit = SeriesAudit(tf, market)
    record_path = layout.fetched_file(store.root, tf, market)
    record: Record | None
    try:
        record = read_record(store.files, record_path)
        record = check_record(record_path, record, now_ms(), lambda: store.written_ms(record_path))
    except DamageError as exc:
        audit.problems.append(Problem(tf, market, "damaged record", record_path, exc.detail))
        record = None  # trusted for nothing: every file is checked as vouched by none
    on_disk = store.data_files(tf, market)
    if record is not None:
        current = store.current(tf, market, record)
        orphans = {f.path for f in store.leftovers(tf, market, current, on_disk)}
        vouched = record.fetched.union(record.provisional)
    else:
        current = {}
        orphans = set()
        vouched = Ranges()
    times: dict[str, np.ndarray] = {}
    for found in on_disk:
        name = layout.in_series(store.root, tf, market, found.path)
        if found.path in orphans:
            detail = "a data file its record does not list (a killed write's)"
            audit.problems.append(Problem(tf, market, "orphan", found.path, detail))
            continue
        if record is not None and name not in current:
            continue  # a young orphan on S3: a writer may list it yet
        audit.files += 1
        checked = _check_file(store, tf, market, found, vouched)
        if isinstance(checked, Problem):
            audit.problems.append(checked)
            continue
        rows, table_times = checked
        audit.rows += rows
        times[name] = table_times
        if record is not None and not record.manifest and name not in record.files:
            audit.unlisted.append(found.path)
    if record is not None:
        audit.problems += _overlapping(store, tf, market, current, times)
        for path in store.missing_files(tf, market, record, on_disk):
            audit.problems.append(
                Problem(tf, market, "missing", path, "listed in the record, not on disk")
            )
    return audit


def _overlapping(
    store: CandleStore,
    tf: Timeframe,
    market: str,
    current: dict[str, Part],
    times: dict[str, np.ndarray],
) -> list[Problem]:
    """Listed files that hold a time another listed file holds too."""
    found = []
    parts = sorted((p for p in current.values() if p.name in times), key=lambda p: p.span.start)
    for i, later in enumerate(parts):
        for earlier in parts[:i]:
            if not earlier.span.overlaps(later.span):
                continue
            shared = int(np.isin(times[later.name], times[earlier.name]).sum())
            if shared:
                detail = f"{plural(shared, 'time')} also in {earlier.name}"
                path = layout.series_path(store.root, tf, market, later.name)
                found.append(Problem(tf, market, "overlapping files", path, detail))
                break
    return found


def quarantine_stamp() -> str:
    """The folder under quarantine/ of one run's moves: its UTC time (nothing compares it)."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def repair_series(store: CandleStore, audit: SeriesAudit, stamp: str) -> list[str]:
    """Quarantine the bad files and orphans, forget the bad files' spans, merge files that
    share times, adopt valid unlisted legacy files; the moves."""
    tf, market = audit.timeframe, audit.market
    moved: list[str] = []
    record_path = layout.fetched_file(store.root, tf, market)
    if any(p.kind == "damaged record" for p in audit.problems):
        target = layout.quarantine_path(store.root, record_path, stamp)
        store.files.move(record_path, target)
        moved.append(target)
    record = store.record(tf, market, for_update=True)
    fetched, names = record.fetched, set(record.files)
    forgotten = False
    for problem in audit.problems:
        name = layout.in_series(store.root, tf, market, problem.path)
        if problem.forgets:
            span = layout.file_span(tf, problem.path)
            fetched = fetched.subtract(Ranges.of([(span.start, span.end)]))
            names.discard(name)
            forgotten = True
        if problem.kind in ("damaged record", "missing", "overlapping files"):
            continue
        target = layout.quarantine_path(store.root, problem.path, stamp)
        store.files.move(problem.path, target)
        store.files.delete_dir_if_empty(problem.path.rpartition("/")[0])
        moved.append(target)
    names |= {layout.in_series(store.root, tf, market, p) for p in audit.unlisted}
    # A derived series recomputes everything next time: its base fingerprints may vouch for
    # spans that are gone now.
    sources = {} if forgotten else record.sources
    repaired = replace(record, fetched=fetched, files=frozenset(names), sources=sources)
    if repaired != record:
        store.set_record(tf, market, repaired)
    shared = [p for p in audit.problems if p.kind == "overlapping files"]
    if shared:
        _merge_shared(store, tf, market, repaired, shared)
    return moved


def _merge_shared(
    store: CandleStore, tf: Timeframe, market: str, record: Record, shared: list[Problem]
) -> None:
    """Files sharing times become one file each group (the hot row wins, as readers had it)."""
    edit = SeriesEdit(store, tf, market, record)
    for problem in shared:
        name = layout.in_series(store.root, tf, market, problem.path)
        if name in edit.parts:
            edit.merge(closure(edit.parts, edit.parts[name].span, {name}))
    edit.commit(replace(record, files=edit.files, manifest=True))


def _check_file(
    store: CandleStore, tf: Timeframe, market: str, found: StoredFile, fetched: Ranges
) -> Problem | tuple[int, np.ndarray]:
    """What is wrong with one data file, or its number of rows and its times."""

    def problem(kind: Kind, detail: str) -> Problem:
        return Problem(tf, market, kind, found.path, detail)

    try:
        table = store.check_file(found)  # the checks every reader makes
    except DamageError as exc:
        return file_problem(tf, market, found, exc)
    except FileNotFoundError:  # listed a moment ago, under the lock: another host's doing
        return problem("unreadable", "removed while it was checked")
    times = times_ms(table).to_numpy()
    outside = _outside(times, fetched)
    if outside:
        return problem("rows outside recorded ranges", f"{plural(outside, 'row')} nobody recorded")
    return table.num_rows, times


def file_problem(tf: Timeframe, market: str, found: StoredFile, exc: DamageError) -> Problem:
    """What a data file's DamageError (from its checks) is in verify's words."""
    if exc.kind == "unreadable":
        return Problem(tf, market, "unreadable", found.path, f"{found.bytes} bytes: {exc.detail}")
    return Problem(tf, market, cast("FileDamage", exc.kind), found.path, exc.detail)


def _outside(times: np.ndarray, fetched: Ranges) -> int:
    """How many of `times` lie in no recorded range."""
    return int((~in_ranges(times, fetched)).sum())
