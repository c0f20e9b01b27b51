"""Bring the store up to date: work out what is missing, fetch only that, store it.

This is where the cache manager drives the collection engine: one client (one session, one
rate limiter) serves every (market, timeframe) job, a bounded number of jobs run at once,
and each job that writes holds its writer lock so that an overlapping run waits instead of
refetching. Each record is read once for the run (`Store.coverage`): by the plan, for the
bases it weighs, or else by the job itself; a job whose record shows nothing to fetch, and
whose window holds nothing to heal, takes no lock and writes nothing (see `_untouched`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

import pyarrow as pa

from upbit_cache.candles import in_span
from upbit_cache.collector.client import UpbitClient
from upbit_cache.collector.config import ClientConfig
from upbit_cache.collector.paging import DEFAULT_WINDOW, PageResult, fetch_pages
from upbit_cache.collector.quiet import Evidence
from upbit_cache.errors import (
    DamageError,
    InvalidRangeError,
    IPBlockedError,
    StorageError,
    UpbitCacheError,
)
from upbit_cache.manager.balance import job_weights
from upbit_cache.manager.planner import (
    Plan,
    cold_base,
    pages_for,
    plan_fetch,
    requests_for,
)
from upbit_cache.manager.scope import Shard, Window, resolve_markets, selection
from upbit_cache.manager.session import new_client
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.store.audit import quarantine_stamp
from upbit_cache.store.base import Coverage
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.store.heal import Heal, Seen, heal_window, inspect_window, remember_written
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import iso

if TYPE_CHECKING:
    from upbit_cache.manager.derive import DeriveOutcome

DEFAULT_MAX_MARKETS = 16  # (market, timeframe) jobs running at once
# A day of 1s is one file: written for each 200-second page it would be rewritten 432 times
# a day (half a GB for a busy market); 30 pages at a time, about 15 times.
SECONDS_BATCH = 30


@dataclass
class MarketOutcome:
    """What one (market, timeframe) job did."""

    market: str
    timeframe: Timeframe
    candles: int = 0
    requests: int = 0
    planned: int = 0  # requests the record showed were needed, as the job first read it
    error: UpbitCacheError | None = None
    beyond: Ranges = field(default_factory=Ranges)  # lacked, past Upbit's horizon (1s)
    heal: Heal = field(default_factory=Heal)  # damage healed in its window, or met outside it


@dataclass
class WorkerShare:
    """What one Dask worker did of a `fetch --dask` run."""

    name: str
    tasks: int
    requests: int
    busy: float  # seconds it ran at least one task
    idle: float  # seconds of the run's task phase it ran none


@dataclass
class SyncReport:
    """What a whole run did."""

    outcomes: list[MarketOutcome] = field(default_factory=list)
    candle_requests: int = 0
    rate_limited: int = 0
    seconds: float = 0.0
    blocked: str | None = None  # Upbit's 418 message, if the run was stopped by one
    plan: Plan | None = None
    derived: list[DeriveOutcome] = field(default_factory=list)
    derive_seconds: float = 0.0
    now: int = 0  # Upbit's clock when the run planned, epoch ms
    shard: Shard | None = None  # the part of the jobs this run took, if split
    total_markets: int = 0  # markets of the whole run, every shard's (fetch only)
    weights: dict[str, int] = field(default_factory=dict)  # each job's estimate (sharded)
    workers: list[WorkerShare] = field(default_factory=list)  # fetch --dask: per worker

    @property
    def candles(self) -> int:
        return sum(o.candles for o in self.outcomes)

    @property
    def markets(self) -> int:
        return len({o.market for o in self.outcomes})

    @property
    def failed(self) -> list[MarketOutcome]:
        return [o for o in self.outcomes if o.error is not None]

    @property
    def failed_derived(self) -> list[DeriveOutcome]:
        return [d for d in self.derived if d.error is not None]

    @property
    def heals(self) -> list[Heal]:
        """What each series fetched or derived found damaged (healed, or left outside)."""
        return [o.heal for o in self.outcomes] + [d.heal for d in self.derived]

    @property
    def healed(self) -> int:
        """Damaged files (records too) quarantined and fetched again."""
        return sum(len(h.healed) for h in self.heals)

    @property
    def beyond(self) -> dict[str, Ranges]:
        """Per market, what was missing past Upbit's horizon (1s): not fetched, not recorded."""
        return {o.market: o.beyond for o in self.outcomes if o.beyond}


class Progress(Protocol):
    """What a run tells its observer (the CLI renders it)."""

    def on_start(self, jobs: int) -> None: ...
    def on_page(self, candles: int) -> None: ...
    def on_done(self, outcome: MarketOutcome) -> None: ...


class _Silent:
    def on_start(self, jobs: int) -> None:
        pass

    def on_page(self, candles: int) -> None:
        pass

    def on_done(self, outcome: MarketOutcome) -> None:
        pass


async def fetch(
    store: CandleStore,
    config: ClientConfig,
    markets: Sequence[str],
    timeframes: Sequence[Timeframe],
    window: Window,
    *,
    quote: str | None = None,
    progress: Progress | None = None,
    shard: Shard | None = None,
    coverage: Coverage | None = None,
) -> SyncReport:
    """`fetch_with` on a client of its own (one session, one rate limiter)."""
    async with new_client(config) as client:
        return await fetch_with(
            client,
            store,
            markets,
            timeframes,
            window,
            quote=quote,
            progress=progress,
            shard=shard,
            coverage=coverage,
        )


async def plan_run(
    client: UpbitClient,
    store: CandleStore,
    markets: Sequence[str],
    timeframes: Sequence[Timeframe],
    window: Window,
    *,
    quote: str | None = None,
    coverage: Coverage | None = None,
    native: bool = False,
) -> tuple[list[str], int, Coverage, Plan]:
    """A fetch's markets (Upbit's list resolved), Upbit's now, the records and the plan;
    markets that are malformed or not listed, a read-only store and a window wholly past the
    1s horizon are refused here, before any candle request (see `fetch_with`)."""
    selection(markets, quote)  # a malformed code is refused before any request
    store.ensure_writable()
    listed = [m.market for m in await client.markets()]
    wanted = resolve_markets(listed, markets, quote)
    now = client.now_ms()
    known = coverage if coverage is not None else store.coverage()
    # The plan reads what it weighs (listed first, where a listing is cheaper), each job
    # what it has not: every record once.
    plan = await asyncio.to_thread(
        plan_fetch, known, wanted, timeframes, window.span_at(now), client.earliest, native
    )
    if plan.horizon is not None and plan.beyond and plan.span.end <= plan.horizon:
        raise InvalidRangeError(
            f"Upbit keeps {plan.base} candles for about three months only (since "
            f"{iso(plan.horizon)}): nothing of {iso(plan.span.start)}→{iso(plan.span.end)} "
            "can be fetched"
        )
    return wanted, now, known, plan


async def fetch_with(
    client: UpbitClient,
    store: CandleStore,
    markets: Sequence[str],
    timeframes: Sequence[Timeframe],
    window: Window,
    *,
    quote: str | None = None,
    progress: Progress | None = None,
    shard: Shard | None = None,
    coverage: Coverage | None = None,
    native: bool = False,
) -> SyncReport:
    """Fetch what the store lacks of `window` and store it.

    Without a start, the last days of the window by Upbit's clock; without an end, up to
    the last closed period. With no `markets`, every market of `quote` (default KRW).
    Markets Upbit does not list are refused before anything is fetched. Only one timeframe
    is asked of Upbit (the plan's base); the others are derived from it and materialised.
    Of a 1s base, what lies past Upbit's horizon is neither fetched nor recorded (each
    outcome's `beyond` says what); a window wholly past it that lacks anything is refused.

    With a `shard`, only that shard's markets, with all their timeframes: a job is the
    series Upbit is asked for, (market, base), and a derived timeframe goes with its base.
    The jobs are split by their estimated requests (`balance.job_weights`: heaviest first,
    each to the lightest shard), weighed on `cold_base` (the base of a run on an empty
    store) over the whole window, never on the store or the clock, so hosts whose stores
    differ, or that start minutes apart while the others write, still agree. The plan
    itself is made over every market, as an unsharded run makes it.

    `coverage`: the records as the caller read them (kept current by this run's writes, so
    the caller reads them after it without reading again); None: a coverage of its own.
    `native`: fetch each timeframe as Upbit serves it, never derived from a finer base
    (`serve`: its pages must be Upbit's own, to the last bit of a summed turnover).
    """
    wanted, now, known, plan = await plan_run(
        client, store, markets, timeframes, window, quote=quote, coverage=coverage, native=native
    )
    mine, weights = wanted, {}
    if shard is not None:
        # Weighed as a run on an empty store would fetch (never the store, never the clock):
        # every host makes the same parts, whatever the others wrote meanwhile.
        # A fixed window is weighed whole, also where it ends after this host's now: a shard
        # that starts after its end must weigh it as one that started before.
        fixed = window.start is not None and window.end is not None
        if window.start is not None and window.end is not None:
            span = TimeRange(window.start, window.end)
        else:
            span = window.span_at(now)
        base = cold_base(timeframes)
        weights = await job_weights(
            client, wanted, base, span, shard.count, fixed=fixed, store=store, index=shard.index - 1
        )
        taken = set(shard.pick(weights))
        mine = [m for m in wanted if m in taken]
        if plan.costed:
            cost = requests_for(known, mine, plan.base, plan.span, plan.horizon)
            plan = replace(plan, planned_requests=cost)
    stamp = quarantine_stamp()
    report = await sync_markets(
        store, client, mine, [plan.base], plan.span, progress, stamp=stamp, coverage=known
    )
    if not plan.costed:
        planned = sum(o.planned for o in report.outcomes)
        plan = replace(plan, planned_requests=planned, costed=True)
    report.plan, report.now = plan, now
    report.shard, report.total_markets = shard, len(wanted)
    report.weights = weights
    began = time.monotonic()
    if plan.derived:
        # Imported here: deriving needs pandas, which a plain fetch never loads.
        from upbit_cache.manager.derive import materialise_many

        jobs = [(m, t, plan.base) for m in mine for t in plan.derived]
        report.derived = await materialise_many(
            store, jobs, heal=(plan.span, stamp), coverage=known
        )
    report.derive_seconds = time.monotonic() - began
    report.seconds += report.derive_seconds
    return report


async def sync_markets(
    store: CandleStore,
    client: UpbitClient,
    markets: Sequence[str],
    timeframes: Sequence[Timeframe],
    span: TimeRange,
    progress: Progress | None = None,
    *,
    max_jobs: int = DEFAULT_MAX_MARKETS,
    window: int = DEFAULT_WINDOW,
    stamp: str | None = None,
    coverage: Coverage | None = None,
) -> SyncReport:
    """Run one job per (market, timeframe), each fetching only its missing closed candles
    of `span` (up to the last closed period, whatever `span` says). What a market's answers
    prove of its trades is shared by its jobs. With a `stamp` (this run's quarantine folder),
    each job first heals the damage of its window (store/heal.py) and fetches what it
    forgot; without (live's repairs), damage fails the job. `coverage`: the records as read
    for this run (None: read here)."""
    progress = progress or _Silent()
    known = coverage if coverage is not None else store.coverage()
    known.expect((tf, m) for m in markets for tf in timeframes)
    began = time.monotonic()
    jobs = [(m, tf) for m in markets for tf in timeframes]
    progress.on_start(len(jobs))
    gate = asyncio.Semaphore(max_jobs)
    before = (client.stats.candle_requests, client.stats.rate_limited)
    evidence = {m: Evidence() for m in markets}

    async def run(market: str, tf: Timeframe) -> MarketOutcome:
        async with gate:
            outcome = await _sync_one(
                store, client, market, tf, span, progress, window, evidence[market], stamp, known
            )
        progress.on_done(outcome)
        return outcome

    outcomes = await asyncio.gather(*(run(m, tf) for m, tf in jobs))
    report = SyncReport(
        outcomes=list(outcomes),
        candle_requests=client.stats.candle_requests - before[0],
        rate_limited=client.stats.rate_limited - before[1],
        seconds=time.monotonic() - began,
    )
    blocked = [o.error for o in outcomes if isinstance(o.error, IPBlockedError)]
    report.blocked = str(blocked[0]) if blocked else None
    return report


async def _sync_one(
    store: CandleStore,
    client: UpbitClient,
    market: str,
    tf: Timeframe,
    span: TimeRange,
    progress: Progress,
    window: int,
    evidence: Evidence,
    stamp: str | None,
    known: Coverage,
) -> MarketOutcome:
    outcome = MarketOutcome(market, tf)
    batch = SECONDS_BATCH if tf.kind == "second" else 1

    async def keep(pages: list[PageResult]) -> None:
        # Only what the record will vouch for: a short page may hold older candles too.
        spans = [TimeRange(p.covered.start, p.provisional.end) for p in pages]
        rows = pa.concat_tables([in_span(p.candles, s) for p, s in zip(pages, spans, strict=True)])
        done = Ranges.of((p.covered.start, p.covered.end) for p in pages)
        unsettled = Ranges.of((p.provisional.start, p.provisional.end) for p in pages)
        written = await asyncio.to_thread(
            store.write, market, tf, rows, done, provisional=unsettled
        )
        outcome.candles += written

    try:
        # The open period is never asked for: its candle is not final until it closes.
        # Those that closed within the settle time come back provisional: written, not
        # recorded as fetched, asked for again by the next run (in its newest page).
        closed_end = tf.floor_one(client.now_ms())
        upper = tf.ceil_one(min(span.end, closed_end))
        wanted = Ranges.of([(tf.floor_one(span.start), upper)])
        whole = TimeRange(tf.floor_one(span.start), upper)
        # The record, if the plan did not read it (once, for the run), and what it lacks.
        settled = await asyncio.to_thread(known.settled, tf, market)
        first = client.earliest(tf)
        reach = TimeRange.since(first) if first is not None else TimeRange.everything()
        outcome.planned = pages_for(tf, wanted.subtract(settled).clip(reach))
        seen: Seen = {}  # damage the look found: not read again under the lock
        left_alone = await asyncio.to_thread(
            _untouched, store, known, tf, market, wanted, whole, stamp, seen
        )
        if left_alone is not None:
            outcome.heal = left_alone
            return outcome
        async with store.lock(tf, market):
            # Under the lock the record is read again, for update: another run may have
            # written it since this run's coverage read it (then this one fetches only what
            # that one did not). The coverage keeps what is read here, and each write.
            if stamp is not None and wanted:
                # Damage inside the window is quarantined and forgotten first; a healed
                # file's whole span is asked again, also where it reaches past the window.
                outcome.heal = await asyncio.to_thread(
                    heal_window, store, tf, market, whole, stamp, seen
                )
                wanted = wanted.union(outcome.heal.again.clip(TimeRange.before(upper)))
            else:
                await asyncio.to_thread(store.record, tf, market, for_update=True)
            missing = wanted.subtract(known.fetched(tf, market))
            # Each page is written (candles, then its range in the record) as it lands, so
            # a run killed at any moment loses only the pages in flight, and an error, a 418
            # or Ctrl-C/SIGTERM keeps everything that arrived before it. (1s pages go
            # SECONDS_BATCH at a time: SIGKILL loses those too, REST still has them.)
            landed: list[PageResult] = []
            try:
                answers = fetch_pages(client, market, tf, missing, window, evidence=evidence)
                async for result in answers:
                    outcome.requests += result.requests
                    landed.append(result)
                    if len(landed) >= batch:
                        pages, landed = landed, []
                        await asyncio.shield(keep(pages))  # a cancellation waits for the write
                    progress.on_page(result.candles.num_rows)
            finally:
                if landed:
                    await asyncio.shield(keep(landed))
            if stamp is not None:  # what this job wrote, the next run need not check
                await asyncio.to_thread(remember_written, store, tf, market)
            # The pager sends nothing past Upbit's horizon (1s), and nothing of it is
            # recorded: the record says what Upbit was asked, and that span stays a hole.
            edge = client.earliest(tf)  # where it is now: it moves during a long run
            if edge is not None:
                left = missing.subtract(known.fetched(tf, market))  # as this run wrote it
                outcome.beyond = left.clip(TimeRange.before(edge))
    except UpbitCacheError as exc:
        outcome.error = exc
    return outcome


def _untouched(
    store: CandleStore,
    known: Coverage,
    tf: Timeframe,
    market: str,
    wanted: Ranges,
    whole: TimeRange,
    stamp: str | None,
    seen: Seen,
) -> Heal | None:
    """What to report of a series this run leaves alone, or None if the job must take its
    lock: something of `wanted` is missing from the run's coverage, or (with a `stamp`)
    something inside it needs healing.

    No lock is needed to find nothing to do: everything here reads as readers do (data
    files are written once, the record that lists them replaced by an atomic rename), and
    whatever another run does to the series meanwhile, this job's outcome is the one it
    would have had by running just before it (a fetch only adds to what is settled; what a
    prune takes away now, it would have taken after).
    """
    try:
        record = known.record(tf, market)
    except DamageError:
        return None  # healed under the lock
    if wanted.subtract(record.fetched):
        return None
    if stamp is None or not wanted:
        return Heal()
    try:
        return inspect_window(store, tf, market, whole, known, seen)
    except StorageError:
        return None  # a file changing under the look (a compaction): look again, locked
