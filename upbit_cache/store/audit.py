"""The file checks behind `verify`: one series' files against its record, and the repair.

Every data file is read from disk (never from memory) and checked with the checks every
reader makes (checks.py: readable Parquet, the candle schema, every row inside the file's own
partition, times sorted and each once, no impossible value), then against the record: every
row inside a recorded range. A file the record lists but the disk lacks is missing. A record
that cannot be read, or claims ranges after now, is damaged. The repair moves each bad file
to `<data-dir>/quarantine/` and takes its span out of the record (a missing file's too), so
the next fetch asks for exactly those spans again; a damaged record is quarantined (its series
is fetched again). Valid files the record does not list yet (written before it listed files)
are adopted. The caller holds the series' writer lock.
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
from upbit_cache.store.files import StoredFile
from upbit_cache.store.records import Record, read_record
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import now_ms
from upbit_cache.words import plural

Kind = Literal[FileDamage, "rows outside recorded ranges", "missing", "damaged record"]


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


@dataclass
class SeriesAudit:
    """What checking one (timeframe, market) found."""

    timeframe: Timeframe
    market: str
    files: int = 0
    rows: int = 0
    problems: list[Problem] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)  # valid files the record does not list


def audit_series(store: CandleStore, tf: Timeframe, market: str) -> SeriesAudit:
    """Check one series' files against its record."""
    audit = SeriesAudit(tf, market)
    record_path = layout.fetched_file(store.root, tf, market)
    try:
        record = read_record(store.files, record_path)
        record = check_record(record_path, record, now_ms(), lambda: store.written_ms(record_path))
    except DamageError as exc:
        audit.problems.append(Problem(tf, market, "damaged record", record_path, exc.detail))
        record = Record()  # trusted for nothing: every file is checked as vouched by none
    on_disk = {f.path: f for f in store.data_files(tf, market)}
    for path, found in on_disk.items():
        audit.files += 1
        # Provisional rows (a period not settled when fetched) are listed, not orphans.
        vouched = record.fetched.union(record.provisional)
        checked = _check_file(store, tf, market, found, vouched)
        if isinstance(checked, Problem):
            audit.problems.append(checked)
        else:
            audit.rows += checked
            if layout.in_series(store.root, tf, market, path) not in record.files:
                audit.unlisted.append(path)
    for path in store.missing_files(tf, market, record, list(on_disk.values())):
        audit.problems.append(
            Problem(tf, market, "missing", path, "listed in the record, not on disk")
        )
    return audit


def quarantine_stamp() -> str:
    """The folder under quarantine/ of one run's moves: its UTC time (nothing compares it)."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def repair_series(store: CandleStore, audit: SeriesAudit, stamp: str) -> list[str]:
    """Quarantine the bad files, forget their spans, adopt valid unlisted files; the moves."""
    tf, market = audit.timeframe, audit.market
    moved: list[str] = []
    record_path = layout.fetched_file(store.root, tf, market)
    if any(p.kind == "damaged record" for p in audit.problems):
        target = layout.quarantine_path(store.root, record_path, stamp)
        store.files.move(record_path, target)
        moved.append(target)
    record = store.record(tf, market, for_update=True)
    fetched, names = record.fetched, set(record.files)
    for problem in audit.problems:
        if problem.kind == "damaged record":
            continue
        span = layout.file_span(tf, problem.path)
        fetched = fetched.subtract(Ranges.of([(span.start, span.end)]))
        names.discard(layout.in_series(store.root, tf, market, problem.path))
        if problem.kind != "missing":
            target = layout.quarantine_path(store.root, problem.path, stamp)
            store.files.move(problem.path, target)
            store.files.delete_dir_if_empty(problem.path.rpartition("/")[0])
            moved.append(target)
    names |= {layout.in_series(store.root, tf, market, p) for p in audit.unlisted}
    # A derived series recomputes everything next time: its base fingerprints may vouch for
    # spans that are gone now.
    sources = {} if audit.problems else record.sources
    repaired = replace(record, fetched=fetched, files=frozenset(names), sources=sources)
    if repaired != record:
        store.set_record(tf, market, repaired)
    return moved


def _check_file(
    store: CandleStore, tf: Timeframe, market: str, found: StoredFile, fetched: Ranges
) -> Problem | int:
    """What is wrong with one data file, or its number of rows."""

    def problem(kind: Kind, detail: str) -> Problem:
        return Problem(tf, market, kind, found.path, detail)

    try:
        table = store.check_file(found)  # the checks every reader makes
    except DamageError as exc:
        return file_problem(tf, market, found, exc)
    except FileNotFoundError:  # listed a moment ago, under the lock: another host's doing
        return problem("unreadable", "removed while it was checked")
    outside = _outside(times_ms(table).to_numpy(), fetched)
    if outside:
        return problem("rows outside recorded ranges", f"{plural(outside, 'row')} nobody recorded")
    return table.num_rows


def file_problem(tf: Timeframe, market: str, found: StoredFile, exc: DamageError) -> Problem:
    """What a data file's DamageError (from its checks) is in verify's words."""
    if exc.kind == "unreadable":
        return Problem(tf, market, "unreadable", found.path, f"{found.bytes} bytes: {exc.detail}")
    return Problem(tf, market, cast("FileDamage", exc.kind), found.path, exc.detail)


def _outside(times: np.ndarray, fetched: Ranges) -> int:
    """How many of `times` lie in no recorded range."""
    return int((~in_ranges(times, fetched)).sum())
