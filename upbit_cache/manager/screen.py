"""`screen-prep`: bring the store up to date, then hand a screener one long table.

The table is `market, time, open, high, low, close, volume, value`, sorted by market then
time, closed candles only unless the open ones are asked for (then a `closed` column tells
them apart). `--top` / `--min-value` keep the markets with the most quote turnover over the
last 24 hours, computed from the candles themselves, so no extra request is needed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from upbit_cache.candles import CANDLE_SCHEMA, in_span
from upbit_cache.collector.client import UpbitClient
from upbit_cache.errors import DamageError, UsageError
from upbit_cache.manager.fetch import MarketOutcome, Progress, SyncReport, fetch_with
from upbit_cache.manager.layers import Layers
from upbit_cache.manager.scope import ScreenRequest, Window, of_quote
from upbit_cache.manager.screen_keep import fingerprint, stamp, window
from upbit_cache.markets import validate_markets, validate_quote
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.settings import DEFAULT_QUOTE
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.timeframes.timeframe import DAY_MS
from upbit_cache.times import now_ms

_READERS = min(4, os.cpu_count() or 1)  # more threads than cores only fight over the GIL
SCREEN_COLUMNS = ("market", "time", "open", "high", "low", "close", "volume", "value")


@dataclass
class ScreenResult:
    """The table and what it took to make it."""

    table: pa.Table
    sync: SyncReport | None = None
    short: dict[str, float] = field(default_factory=dict)  # market -> days it has, if fewer
    filtered_out: list[str] = field(default_factory=list)  # dropped by --top / --min-value
    open_requests: int = 0
    fingerprint: str | None = None  # what the table was built from (see screen_cache)
    damaged: dict[str, DamageError] = field(default_factory=dict)  # markets left out


async def screen_prep(
    store: CandleStore,
    client: UpbitClient,
    request: ScreenRequest,
    progress: Progress | None = None,
    layers: Layers | None = None,
) -> ScreenResult:
    """Refresh the store (only what is missing), then build the screener's table.

    Each market's read is one request of `layers` (if given).
    """
    layers = layers if layers is not None else Layers()
    timeframe, days = request.timeframe, request.days
    wanted = validate_markets(request.markets)
    sync = None
    if request.refresh or request.include_open:
        read: dict[str, Read | DamageError] = {}
        if request.refresh:
            await client.markets()  # Upbit's clock, for the window (fetch reuses the list)
            span = window(timeframe, client.now_ms(), days)
            reader = _ReadAsDone(store, timeframe, span, progress, layers)
            sync = await fetch_with(
                client,
                store,
                wanted,
                [timeframe],
                Window(days=days),
                quote=request.quote,
                progress=reader,
            )
            wanted = [o.market for o in sync.outcomes] or wanted
            derived = sync.plan is not None and bool(sync.plan.derived)
            # Tables read early are the fetched base's; a derived timeframe is read after
            # it is materialised, and a period that closed meanwhile means a new window.
            if not derived and window(timeframe, sync.now, days) == span:
                read = {m: await job for m, job in reader.jobs.items()}
            else:
                await asyncio.gather(*reader.jobs.values())  # let them finish, then read anew
        now = client.now_ms() if sync is None else sync.now
        if not wanted:
            wanted = _stored_markets(store, timeframe, request.quote)
        result = _assemble(store, wanted, timeframe, now, request, layers, read)
        if request.include_open:
            await _add_open(client, result, timeframe)
    else:
        # Without a refresh, "now" is where the stored data ends, not the wall clock.
        wanted = wanted or _stored_markets(store, timeframe, request.quote)
        ends = [r.intervals[-1][1] for r in (_settled(store, timeframe, m) for m in wanted) if r]
        end = max(ends) if ends else now_ms()
        result = _assemble(store, wanted, timeframe, end, request, layers)
    result.sync = sync
    return result


Read = tuple[list[object], pa.Table]  # a market's stamp (see screen_cache) and table


def _read(
    store: CandleStore, tf: Timeframe, market: str, span: TimeRange, layers: Layers
) -> Read | DamageError:
    """A market's stamp and table, or the damage that leaves it out of the table."""
    # The stamp is taken before reading: a write landing in between makes the next run rebuild.
    with layers.request():
        mark = stamp(store, tf, market, span)
        try:
            return mark, store.load_table(market, tf, span)
        except DamageError as exc:
            return exc


def _settled(store: CandleStore, tf: Timeframe, market: str) -> Ranges:
    """What is fetched of the series (nothing if its record is damaged: its read says so)."""
    try:
        return store.fetched(tf, market)
    except DamageError:
        return Ranges()


class _ReadAsDone:
    """Passes progress on, and reads each market's table as soon as its refresh is done.

    The rate limiter paces a refresh, so the CPU idles meanwhile: by the last answer,
    every other market's table is already read (from memory: it was just written).
    """

    def __init__(
        self,
        store: CandleStore,
        tf: Timeframe,
        span: TimeRange,
        inner: Progress | None,
        layers: Layers,
    ) -> None:
        self.store, self.tf, self.span, self.inner = store, tf, span, inner
        self.layers = layers
        self.jobs: dict[str, asyncio.Future[Read | DamageError]] = {}

    def on_start(self, jobs: int) -> None:
        if self.inner is not None:
            self.inner.on_start(jobs)

    def on_page(self, candles: int) -> None:
        if self.inner is not None:
            self.inner.on_page(candles)

    def on_done(self, outcome: MarketOutcome) -> None:
        if self.inner is not None:
            self.inner.on_done(outcome)
        args = (self.store, self.tf, outcome.market, self.span, self.layers)
        self.jobs[outcome.market] = asyncio.ensure_future(asyncio.to_thread(_read, *args))


def _stored_markets(store: CandleStore, timeframe: Timeframe, quote: str | None) -> list[str]:
    found = of_quote(store.markets(timeframe), quote)
    if not found:
        prefix = validate_quote(quote or DEFAULT_QUOTE)
        raise UsageError(f"nothing stored for {prefix}-* {timeframe}; run without --no-refresh")
    return found


def _assemble(
    store: CandleStore,
    markets: Sequence[str],
    tf: Timeframe,
    now: int,
    request: ScreenRequest,
    layers: Layers,
    read: dict[str, Read | DamageError] | None = None,
) -> ScreenResult:
    """The table of `markets` over the window ending at `now`; `read` holds those read already.
    A market whose record or files are damaged is left out (`damaged`)."""
    min_value, top = request.min_value, request.top
    span = window(tf, now, request.days)
    start, end = span
    result = ScreenResult(table=pa.table({}))
    names = sorted(markets)
    done = {m: read[m] for m in names if read and m in read}
    left = [m for m in names if m not in done]
    # Parquet decoding releases the GIL: a few threads read the markets' files in parallel.
    with ThreadPoolExecutor(max_workers=_READERS) as pool:
        done |= dict(
            zip(left, pool.map(lambda m: _read(store, tf, m, span, layers), left), strict=True)
        )
    reads = {m: r for m, r in done.items() if not isinstance(r, DamageError)}
    result.damaged = {m: r for m, r in done.items() if isinstance(r, DamageError)}
    names = [m for m in names if m in reads]
    result.fingerprint = fingerprint(tf, span, [reads[m][0] for m in names])
    parts = {m: reads[m][1] for m in names}
    full = _long_table(parts)
    # Per market, in one pass each: the first candle (is its history short?) and the last
    # 24 hours' turnover (for --top / --min-value).
    firsts = dict(_per_market(full, "time", "min", cast_int=True))
    recent = in_span(full, TimeRange.since(end - DAY_MS))
    turnover = dict.fromkeys(names, 0.0) | dict(_per_market(recent, "value", "sum"))
    kept = [m for m in names if min_value is None or turnover[m] >= min_value]
    if top is not None:
        kept = sorted(kept, key=lambda m: -turnover[m])[:top]
    result.filtered_out = [m for m in names if m not in set(kept)]
    for market in sorted(kept):  # the table's markets only: the others are not its concern
        first = firsts.get(market, end)
        if first > start:
            result.short[market] = round((end - first) / DAY_MS, 2)
    if result.filtered_out:
        full = full.filter(pc.is_in(full["market"], pa.array(sorted(kept), pa.string())))
    result.table = full
    return result


def _per_market(
    table: pa.Table, column: str, how: Literal["min", "sum"], *, cast_int: bool = False
) -> list[tuple[str, float]]:
    values = table[column].cast(pa.int64()) if cast_int else table[column]
    pair = pa.Table.from_arrays([table["market"], values], names=["market", "v"])
    done = pair.group_by("market").aggregate([("v", how)])
    found = zip(done["market"].to_pylist(), done[f"v_{how}"].to_pylist(), strict=True)
    return [(str(market), v) for market, v in found if v is not None]


def _long_table(parts: dict[str, pa.Table]) -> pa.Table:
    """One table, market first; parts come sorted by market, each sorted by time."""
    names = pa.array(list(parts), pa.string())
    counts = np.array([t.num_rows for t in parts.values()], dtype=np.int64)
    codes = pa.array(np.repeat(np.arange(len(parts), dtype=np.int32), counts), pa.int32())
    market = pa.DictionaryArray.from_arrays(codes, names).cast(pa.string())
    tables = list(parts.values()) or [CANDLE_SCHEMA.empty_table()]
    body = pa.concat_tables(tables).select(list(SCREEN_COLUMNS[1:]))
    return body.add_column(0, "market", market)


async def _add_open(client: UpbitClient, result: ScreenResult, tf: Timeframe) -> None:
    """Append each market's candle still in progress, marked `closed = False`."""
    from upbit_cache.timeframes.convert import resample  # pandas: only for --include-open

    plan_base = tf if tf.native else next(b for b in reversed(tf.divisors()) if b.native)
    now = client.now_ms()
    period = tf.floor_one(now)
    count = max(1, plan_base.count_periods(period, plan_base.ceil_one(now)))
    markets = [str(m) for m in pc.unique(result.table["market"]).to_pylist()]
    opened = []
    for market in markets:
        page = await client.candles(market, plan_base, None, count)
        result.open_requests += 1
        rows = in_span(page, TimeRange.since(period))
        if rows.num_rows == 0:
            continue
        if plan_base != tf:
            frame = resample(rows.to_pandas(), plan_base, tf)
            rows = pa.Table.from_pandas(frame, preserve_index=False)
        rows = rows.select(list(SCREEN_COLUMNS[1:]))
        opened.append(rows.add_column(0, "market", pa.array([market] * rows.num_rows)))
    table = result.table.append_column("closed", pa.array([True] * result.table.num_rows))
    if opened:
        extra = pa.concat_tables(opened)
        extra = extra.append_column("closed", pa.array([False] * extra.num_rows))
        table = pa.concat_tables([table, extra.cast(table.schema)])
        order = pc.sort_indices(table, [("market", "ascending"), ("time", "ascending")])
        table = table.take(order)
    result.table = table
