"""What each job of a sharded fetch weighs: its estimated requests, the same on every host.

Shards run on hosts that do not talk to each other, started minutes apart, while the others
already write the same data dir, and each must cut the jobs exactly as the others do. So the
estimate never reads the store (what it holds changes as the shards write) and never the
clock (the shards' clocks differ): a job weighs the pages of the whole window of its base
from the market's first candle on, and only then does each shard skip what is stored.

The first candle is asked of Upbit, one request per market (the oldest of one page of a
timeframe coarse enough that the page reaches past the window): a fact of the past, the same
answer at any time. It is asked only where it is a fact and worth its cost:

- the window is fixed: its start and end are times given (`--since A --until B`,
  `--timerange A-B`, `--timerange -B`: each market's whole history), weighed whole even
  where it ends after the run's now (the page then holds the newest candles: a market that
  traded before the window still fills it, a young one still starts at its first candle).
  A window up to now, or of the last days, moves with each shard's clock: every market then
  weighs the same window (and the parts are even in count);
- the window is long: at least `PROBE_FROM` pages per market and shard, so the one request
  per market is at most a tenth of a shard's share (a backfill since 2017 is ~23,000).

Where the window ends in the settled past, each answer is kept in the data dir
(store/listings.py): a shard reads what another already learnt before it asks, and each
starts at its own share of the markets, so shards started together ask about each market
about once between them, and a shard started later (or run again) asks nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from upbit_cache.candles import times_ms
from upbit_cache.collector.client import MAX_PAGE, UpbitClient
from upbit_cache.manager.planner import pages_for
from upbit_cache.manager.scope import UPBIT_OPENED
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.store.listings import FirstCandle, keep_first, read_first
from upbit_cache.timeframes import SUPPORTED, Timeframe

if TYPE_CHECKING:
    from upbit_cache.store.candle_store import CandleStore

PROBE_FROM = 10  # pages per market and shard from which the first candles are asked
PROBE_PERIODS = 20  # the probe's timeframe: the coarsest with at least this many in the window
PROBES_IN_FLIGHT = 4  # few: each looks at what the other shards learnt just before it asks


def whole_window(base: Timeframe, span: TimeRange) -> TimeRange:
    """The base-aligned window every market is weighed over (not before Upbit opened)."""
    lo = base.floor_one(max(span.start, UPBIT_OPENED))
    return TimeRange(lo, max(lo, base.floor_one(span.end)))


def weigh(base: Timeframe, window: TimeRange, first: int | None = None) -> int:
    """Pages of `window` for one market whose first candle is at `first` (None: before it)."""
    lo = window.start if first is None else max(window.start, base.floor_one(first))
    return pages_for(base, Ranges.of([(lo, window.end)]) if lo < window.end else Ranges())


def probe_timeframe(window: TimeRange) -> Timeframe:
    """The coarsest native timeframe with at least PROBE_PERIODS periods in `window` (then
    fewer than 200: a full page of it reaches before the window); the finest minute else."""
    native = [t for t in SUPPORTED if t.native and t.kind != "second"]
    fits = [t for t in native if t.count_periods(window.start, window.end) >= PROBE_PERIODS]
    return fits[-1] if fits else native[0]


async def job_weights(
    client: UpbitClient,
    markets: Sequence[str],
    base: Timeframe,
    span: TimeRange,
    count: int,
    *,
    fixed: bool,
    store: CandleStore | None = None,
    index: int = 0,
) -> dict[str, int]:
    """Each market's estimated requests for its (market, base) job of `span`, whole, as a
    run on an empty store would send them; the same on every host (see the docstring).
    `fixed`: the window's start and end are times given (`span` is then that window).
    `store`: where answers are kept and looked up; `index`: this shard's (from 0), where its
    probes start."""
    window = whole_window(base, span)
    flat = weigh(base, window)
    if not fixed or count < 2 or flat < PROBE_FROM * count:
        return dict.fromkeys(markets, flat)
    probe = probe_timeframe(window)
    # Only an answer about the settled past is a fact for good (a later one can change).
    kept = store if store is not None and window.end <= client.settled_ms() else None
    gate = asyncio.Semaphore(PROBES_IN_FLIGHT)

    async def first_candle(market: str) -> int | None:
        async with gate:
            if kept is not None:
                known = await asyncio.to_thread(read_first, kept, probe, market)
                if known is not None and known.to == window.end:
                    return known.first
            page = await client.candles(market, probe, window.end, MAX_PAGE)
        if page.num_rows >= MAX_PAGE:
            first = None  # 200 periods with trades before the end: it traded all the window
        elif page.num_rows == 0:
            first = window.end  # nothing before the end: not listed yet, nothing to fetch
        else:
            first = int(times_ms(page)[0].as_py())  # oldest first
        if kept is not None:
            await asyncio.to_thread(keep_first, kept, probe, market, FirstCandle(window.end, first))
        return first

    # Each shard starts at its own share: shards started together ask about each market
    # about once between them (the semaphore lets the tasks in, in this order).
    start = index * len(markets) // count
    order = [*markets[start:], *markets[:start]]
    firsts = dict(zip(order, await asyncio.gather(*(first_candle(m) for m in order)), strict=True))
    return {m: weigh(base, window, firsts[m]) for m in markets}
