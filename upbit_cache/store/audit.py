"""The file checks behind `verify`: one series' files against its record, and the repair.

Every data file is read from disk (never from memory) and checked: readable Parquet, the
candle schema, every row inside the file's own partition, no time twice, no impossible value
(candles.impossible_values), every row inside a recorded range. A file the record lists but
the disk lacks is missing. The repair moves each bad file to `<data-dir>/quarantine/` and
takes its span out of the record (a missing file's too), so the next fetch asks for exactly
those spans again; valid files the record does not list yet (written before it listed
files) are adopted. The caller holds the series' writer lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from upbit_cache.candles import CANDLE_SCHEMA, impossible_values, in_ranges, times_ms
from upbit_cache.errors import StorageError
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.store import layout
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.store.files import StoredFile
from upbit_cache.store.records import Record, read_record
from upbit_cache.timeframes import Timeframe
from upbit_cache.words import plural

Kind = Literal[
    "unreadable",
    "wrong schema",
    "wrong partition",
    "duplicate times",
    "impossible values",
    "rows outside recorded ranges",
    "missing",
    "damaged record",
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
    except StorageError as exc:
        audit.problems.append(Problem(tf, market, "damaged record", record_path, str(exc)))
        record = Record()
    on_disk = {f.path: f for f in store.data_files(tf, market)}
    for path, found in on_disk.items():
        audit.files += 1
        # Provisional rows (a period not settled when fetched) are listed, not orphans.
        vouched = record.fetched.union(record.provisional)
        problem = _check_file(store, tf, market, found, vouched)
        if problem is not None:
            audit.problems.append(problem)
        else:
            audit.rows += _rows(store, found)
            if layout.in_series(store.root, tf, market, path) not in record.files:
                audit.unlisted.append(path)
    for name in sorted(record.files):
        path = layout.series_path(store.root, tf, market, name)
        if path not in on_disk and record.fetched.clip(layout.file_span(tf, path)):
            audit.problems.append(
                Problem(tf, market, "missing", path, "listed in the record, not on disk")
            )
    return audit


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
) -> Problem | None:
    def problem(kind: Kind, detail: str) -> Problem:
        return Problem(tf, market, kind, found.path, detail)

    try:
        with store.files.open_input(found.path) as source:
            table = pq.ParquetFile(source).read()
    except (OSError, pa.ArrowException) as exc:
        return problem("unreadable", f"{found.bytes} bytes: {exc}")
    if table.schema.names != CANDLE_SCHEMA.names:
        return problem("wrong schema", f"columns {', '.join(table.schema.names)}")
    try:
        table = table.cast(CANDLE_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        return problem("wrong schema", str(exc))
    times = times_ms(table).to_numpy()
    span = layout.file_span(tf, found.path)
    if len(times) and (times.min() < span.start or times.max() >= span.end):
        return problem("wrong partition", "rows outside the span its folder names")
    if len(np.unique(times)) != len(times):
        return problem("duplicate times", f"{len(times) - len(np.unique(times))} repeated")
    why = impossible_values(table)
    if why is not None:
        return problem("impossible values", f"a candle with {why}")
    outside = _outside(times, fetched)
    if outside:
        return problem("rows outside recorded ranges", f"{plural(outside, 'row')} nobody recorded")
    return None


def _rows(store: CandleStore, found: StoredFile) -> int:
    with store.files.open_input(found.path) as source:
        return int(pq.ParquetFile(source).metadata.num_rows)


def _outside(times: np.ndarray, fetched: Ranges) -> int:
    """How many of `times` lie in no recorded range."""
    return int((~in_ranges(times, fetched)).sum())
