"""`verify --upbit`: ask Upbit again about what the store believes, within a request budget.

Two beliefs can be wrong with every file intact: a stretch recorded as quiet (Upbit sent no
candle there, and the answers that corroborated it agreed), and the newest candles of a
series (the closest to when Upbit had not settled them). So each series' newest recorded
page is asked again first, then recorded quiet stretches, longest first across the series,
each corroborated the way an empty page is (collector/quiet.py), until the budget of candle
requests is spent. What Upbit contradicts is reported; with `repair` its span is forgotten,
so the next fetch asks for it again. An answer that settles nothing (an empty one proves
nothing) is counted as unsure, not as a contradiction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa

from upbit_cache.candles import in_span, times_ms
from upbit_cache.collector.checks import BadAnswer, check_page
from upbit_cache.collector.client import MAX_PAGE, UpbitClient
from upbit_cache.collector.quiet import Evidence, Refuted, prove_quiet
from upbit_cache.errors import DamageError, ResponseFormatError
from upbit_cache.manager.info import quiet_runs
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.settings import DEFAULT_BUDGET
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import iso

_MAX_WITNESSES = 8  # a recorded stretch can be years long: a few more rungs than a page's

Kind = Literal["newest", "quiet"]


@dataclass(frozen=True)
class Contradiction:
    """Upbit's answer now disagrees with what the store recorded over `span`."""

    timeframe: Timeframe
    market: str
    kind: Kind  # "newest": the newest candles differ; "quiet": trades in a quiet stretch
    span: TimeRange
    detail: str


@dataclass
class RecheckReport:
    """What `verify --upbit` asked and found."""

    series: int = 0
    newest: int = 0  # newest pages compared
    quiet: int = 0  # quiet stretches corroborated or refuted
    unsure: int = 0  # checks no answer settled either way
    requests: int = 0
    budget: int = DEFAULT_BUDGET
    contradictions: list[Contradiction] = field(default_factory=list)
    forgotten: bool = False  # the contradicted spans were taken out of the records

    @property
    def spent(self) -> bool:
        return self.requests >= self.budget


@dataclass(frozen=True)
class _Check:
    timeframe: Timeframe
    market: str
    kind: Kind
    span: TimeRange
    periods: int


async def recheck(
    store: CandleStore,
    client: UpbitClient,
    timeframes: Sequence[Timeframe] = (),
    markets: Sequence[str] = (),
    *,
    budget: int = DEFAULT_BUDGET,
    repair: bool = False,
) -> RecheckReport:
    """Ask Upbit again about the newest candles and quiet stretches of the stored native
    series (of `timeframes` x `markets`, default all), at most `budget` candle requests."""
    report = RecheckReport(budget=budget)
    checks = await asyncio.to_thread(_plan, store, client, timeframes, markets, report)
    evidence: dict[str, Evidence] = {}
    began = client.stats.candle_requests
    for check in checks:
        report.requests = client.stats.candle_requests - began
        if report.spent:
            break
        known = evidence.setdefault(check.market, Evidence())
        found = await _run(store, client, check, known, report, budget - report.requests)
        if found is not None:
            report.contradictions.append(found)
    report.requests = client.stats.candle_requests - began
    if repair and report.contradictions:
        for found in report.contradictions:
            async with store.lock(found.timeframe, found.market):
                spans = Ranges.of([(found.span.start, found.span.end)])
                await asyncio.to_thread(store.forget, found.timeframe, found.market, spans)
        report.forgotten = True
    return report


def _plan(
    store: CandleStore,
    client: UpbitClient,
    timeframes: Sequence[Timeframe],
    markets: Sequence[str],
    report: RecheckReport,
) -> list[_Check]:
    """Every series' newest page first, then quiet stretches, longest first."""
    newest: list[_Check] = []
    quiet: list[_Check] = []
    for tf in timeframes or store.timeframes():
        if not tf.native:
            continue  # derived candles are remade from their base, which is checked
        for market in store.markets(tf):
            if markets and market not in markets:
                continue
            try:
                native = store.record(tf, market).native
                times = times_ms(store.load_table(market, tf)).to_numpy() if native else None
            except DamageError:
                continue  # the file checks report it; Upbit cannot say more of damage
            if not native or times is None:
                continue
            report.series += 1
            start, end = native.intervals[-1]
            count = min(MAX_PAGE, tf.count_periods(tf.ceil_one(start), end))
            if count > 0:
                span = TimeRange(tf.shift_one(end, -count), end)
                newest.append(_Check(tf, market, "newest", span, count))
            _, runs, _ = quiet_runs(tf, native, np.unique(times))
            for lo, hi in runs:
                periods = tf.count_periods(lo, hi)
                quiet.append(_Check(tf, market, "quiet", TimeRange(lo, hi), periods))
    quiet.sort(key=lambda c: (-c.periods, c.market, c.timeframe.approx_ms))
    return newest + quiet


async def _run(
    store: CandleStore,
    client: UpbitClient,
    check: _Check,
    evidence: Evidence,
    report: RecheckReport,
    left: int,
) -> Contradiction | None:
    """One check, within `left` candle requests."""
    tf, market, span = check.timeframe, check.market, check.span
    if check.kind == "quiet":
        report.quiet += 1
        most = min(_MAX_WITNESSES, left)
        try:
            await prove_quiet(client, market, tf, span, evidence, span.start, max_witnesses=most)
        except Refuted as exc:
            return Contradiction(tf, market, "quiet", span, str(exc))
        except ResponseFormatError:
            report.unsure += 1  # nothing settled it either way
        return None
    report.newest += 1
    try:
        answer = await client.candles(market, tf, span.end, check.periods)
        check_page(answer, tf, span, check.periods)
    except BadAnswer:
        report.unsure += 1
        return None
    if answer.num_rows == 0:
        report.unsure += 1  # an empty answer proves nothing
        return None
    theirs = in_span(answer, span)
    ours = await asyncio.to_thread(store.load_table, market, tf, span)
    why = _differs(ours, theirs)
    return None if why is None else Contradiction(tf, market, "newest", span, why)


def _differs(ours: pa.Table, theirs: pa.Table) -> str | None:
    """How the stored candles differ from Upbit's answer for the same span, if they do."""
    mine = dict(zip(times_ms(ours).to_numpy().tolist(), ours.to_pylist(), strict=True))
    upbit = dict(zip(times_ms(theirs).to_numpy().tolist(), theirs.to_pylist(), strict=True))
    for at in sorted(set(mine) | set(upbit)):
        if at not in mine:
            return f"Upbit has a candle at {iso(at)} that the store lacks"
        if at not in upbit:
            return f"the store has a candle at {iso(at)} that Upbit does not"
        if mine[at] != upbit[at]:
            columns = [c for c in upbit[at] if mine[at][c] != upbit[at][c]]
            return f"the candle at {iso(at)} differs in {', '.join(columns)}"
    return None
