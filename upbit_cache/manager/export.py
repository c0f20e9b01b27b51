"""`export`: any range of stored candles, streamed market by market, each ascending by time.

Rows are read a bounded span at a time (a cold-tier partition: a month of 1m, a year of 1h
and coarser) and written before the next span is read, so memory stays that of one span
whatever the range: a year of 1m for 200 markets is never one table. A timeframe that is
not stored is derived from a stored finer one, span by span, as `load` does.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from upbit_cache.candles import TIME_TYPE, from_table, times_ms, to_table
from upbit_cache.errors import DamageError, UnknownMarketError, UsageError
from upbit_cache.manager.derive import load_any
from upbit_cache.manager.fetch import SyncReport
from upbit_cache.manager.scope import of_quote, selection
from upbit_cache.markets import validate_quote
from upbit_cache.output.formats import Format, Layout
from upbit_cache.output.freqtrade import FREQTRADE, file_name, make_folder, write_series
from upbit_cache.output.tables import write_stream
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.settings import DEFAULT_QUOTE
from upbit_cache.store.base import Coverage
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.timeframes.convert import fill_gaps

_PRICES = ("open", "high", "low", "close", "volume", "value")
_FIELDS: list[pa.Field[Any]] = [
    pa.field("market", pa.string(), nullable=False),
    pa.field("timeframe", pa.string(), nullable=False),
    pa.field("time", TIME_TYPE, nullable=False),
    *(pa.field(name, pa.float64(), nullable=False) for name in _PRICES),
]
EXPORT_SCHEMA = pa.schema(_FIELDS)


@dataclass
class ExportReport:
    """What an export wrote, and the fetch before it (if it refreshed)."""

    markets: list[str]
    timeframes: list[Timeframe]
    span: TimeRange  # as resolved: relative times and --days against the run's clock
    rows: int = 0
    bytes: int = 0
    out: str = "-"
    seconds: float = 0.0  # the whole run, the refresh included
    sync: SyncReport | None = None
    # Series left out: a record of theirs is damaged (market, timeframe, the damage).
    damaged: list[tuple[str, Timeframe, DamageError]] = field(default_factory=list)
    fmt: str = "csv"
    files: list[str] = field(default_factory=list)  # --format freqtrade: the files written


def stored_markets(
    store: CandleStore, timeframes: Sequence[Timeframe], markets: Sequence[str], quote: str | None
) -> list[str]:
    """The markets an export without a refresh reads: those named (each must have something
    stored for a timeframe asked for, or a finer one), else every stored market of `quote`."""
    wanted = selection(markets, quote)
    sources = {base for tf in timeframes for base in (tf, *tf.divisors())}
    held = {m for base in sources for m in store.markets(base)}
    names = ", ".join(tf.name for tf in timeframes)
    if wanted:
        missing = [m for m in wanted if m not in held]
        if missing:
            raise UnknownMarketError(
                f"nothing stored for {', '.join(missing)} ({names}); run without --no-refresh"
            )
        return list(dict.fromkeys(wanted))
    found = of_quote(held, quote)
    if not found:
        prefix = validate_quote(quote or DEFAULT_QUOTE)
        raise UsageError(f"nothing stored for {prefix}-* ({names}); run without --no-refresh")
    return found


def export(
    store: CandleStore,
    markets: Sequence[str],
    timeframes: Sequence[Timeframe],
    span: TimeRange,
    out: str,
    fmt: Format | Layout,
    tz: str,
    *,
    fill: bool = False,
    coverage: Coverage | None = None,
) -> ExportReport:
    """Write the candles of `span` to `out`: market after market, for each the timeframes in
    the order given, each ascending by time; `fill` adds a candle for every period without
    trades between a series' first and last candle (the previous close, zero volume).
    `coverage`: the records as read already (a refresh's), if any."""
    # Every record first: a series whose record cannot be trusted is left out before a row
    # is written (`damaged`), the others are written. A damaged data file is met as it is
    # read, and cuts the output there (a DamageError, exit 1).
    view = coverage if coverage is not None else store.coverage()
    view.read((b, m) for m in markets for tf in timeframes for b in (tf, *tf.divisors()))
    known, damaged = {}, []
    for m in markets:
        for tf in timeframes:
            try:
                known[m, tf] = recorded(view, m, tf)
            except DamageError as exc:
                damaged.append((m, tf, exc))
    tables = (
        t for (m, tf), had in known.items() for t in series(store, m, tf, span, fill, had, view)
    )
    if fmt == "freqtrade":
        return _freqtrade(store, known, span, out, fill, view, damaged)
    written = write_stream(tables, EXPORT_SCHEMA, out, fmt, tz)
    return ExportReport(
        list(markets),
        list(timeframes),
        span,
        written.rows,
        written.bytes,
        out=out,
        damaged=damaged,
        fmt=fmt,
    )


def _freqtrade(
    store: CandleStore,
    known: dict[tuple[str, Timeframe], dict[Timeframe, Ranges]],
    span: TimeRange,
    out: str,
    fill: bool,
    view: Coverage,
    damaged: list[tuple[str, Timeframe, DamageError]],
) -> ExportReport:
    """Each series to its own file in freqtrade's layout (a series with no candle in the
    span gets none: freqtrade says "no data" for it, as for a pair never downloaded)."""
    folder = make_folder(out)
    report = ExportReport(
        list(dict.fromkeys(m for m, _ in known)), list(dict.fromkeys(t for _, t in known)), span
    )
    report.out, report.damaged, report.fmt = out, damaged, FREQTRADE
    for (market, tf), had in known.items():
        tables = series(store, market, tf, span, fill, had, view)
        first = next(tables, None)
        if first is None:
            continue
        path = os.path.join(folder, file_name(market, tf.name))
        rows, size = write_series(path, itertools.chain([first], tables))
        report.rows += rows
        report.bytes += size
        report.files.append(path)
    return report


def recorded(known: Coverage, market: str, tf: Timeframe) -> dict[Timeframe, Ranges]:
    """What is fetched of `tf` and of each timeframe it can be derived from."""
    return {b: known.fetched(b, market) for b in (tf, *tf.divisors())}


def series(
    store: CandleStore,
    market: str,
    tf: Timeframe,
    span: TimeRange,
    fill: bool = False,
    fetched: dict[Timeframe, Ranges] | None = None,
    view: Coverage | None = None,
) -> Iterator[pa.Table]:
    """One series' rows of `span` in EXPORT_SCHEMA, a bounded span at a time (`fetched`:
    its `recorded`, if read already; `view`: the records as read already)."""
    view = view if view is not None else store.coverage()
    fetched = fetched if fetched is not None else recorded(view, market, tf)
    native, bases = fetched[tf], [b for b in tf.divisors() if fetched[b]]
    known = [h for h in (r.hull for r in fetched.values()) if h is not None]
    if not known:
        return
    # The periods `fetch` asks for: from the one holding the start to the last one closed by
    # the end (the data as it stood then); and only what something is recorded for, so that
    # an open start does not walk back to 1970.
    start = max(tf.floor_one(span.start), min(h.start for h in known))
    end = min(tf.floor_one(span.end), max(h.end for h in known))
    filler = _Filler(tf) if fill else None
    # Spans of the finest stored timeframe's cold partitions bound what one read holds,
    # also when a coarser timeframe is derived from it.
    unit = bases[0] if bases else tf
    for piece in store.read_spans(unit, TimeRange(start, max(start, end))):
        aligned = TimeRange(tf.floor_one(piece.start), tf.ceil_one(piece.end))
        if not bases or native.covers(aligned):
            rows = store.load_table(market, tf, piece)  # what load_any would read, in Arrow
        else:
            rows = to_table(load_any(store, market, tf, piece, view))
        if filler is not None:
            rows = filler.fill(rows)
        if rows.num_rows:
            yield labelled(rows, market, tf)


class _Filler:
    """`--fill` across spans: the gaps between a series' candles get the previous close as
    open, high, low and close, and zero volume and value (Upbit has no candle there)."""

    def __init__(self, tf: Timeframe) -> None:
        self.tf = tf
        self.last: pa.Table | None = None  # the series' latest candle so far

    def fill(self, rows: pa.Table) -> pa.Table:
        if rows.num_rows == 0:
            return rows
        times = times_ms(rows)
        first, last = int(times[0].as_py()), int(times[-1].as_py())
        if self.last is not None:
            first = self.tf.shift_one(int(times_ms(self.last)[0].as_py()), 1)
            rows = pa.concat_tables([self.last, rows])
        self.last = rows.slice(rows.num_rows - 1)
        grid = TimeRange(first, self.tf.shift_one(last, 1))
        return to_table(fill_gaps(from_table(rows), self.tf, grid))


def labelled(rows: pa.Table, market: str, tf: Timeframe) -> pa.Table:
    """Candles of one series in EXPORT_SCHEMA: its market and timeframe on every row."""
    count = rows.num_rows
    columns: list[pa.Array[Any] | pa.ChunkedArray[Any]] = [
        pa.repeat(market, count),
        pa.repeat(tf.name, count),
        rows["time"],
    ]
    columns += [rows[name] for name in _PRICES]
    return pa.Table.from_arrays(columns, schema=EXPORT_SCHEMA)
