"""Paging one market's history backwards, 200 candles a request, several requests in flight.

Pages are cut on the time grid (`to` = a period boundary, `count` = periods in the page), not
chained on the oldest candle received, so they do not wait for each other: a market's pages
go out as fast as the rate limiter allows, whatever the latency. Upbit skips periods without
trades, so a short page is normal, and so is an empty one in a quiet stretch. Every page is
checked before it is believed (checks.py), and every empty one corroborated by other answers
(quiet.py); a page whose span those answers already prove quiet (before the listing, inside
a long quiet stretch), or that an earlier answer already settled (Upbit may fill a page with
older candles when the periods before `to` had no trades), is not sent at all.

What a page says of periods Upbit had not settled when it answered (the last seconds: it
stores trades a little after they happen) comes back as provisional, not covered.

Upbit serves 1s candles of the last three months only, and that horizon moves on while a
long backfill runs (newest first: its oldest pages go out hours after the plan). So each
page is checked against the horizon as it is sent: cut at it, or not sent at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from upbit_cache import retry
from upbit_cache.candles import CANDLE_SCHEMA, times_ms
from upbit_cache.collector.checks import BadAnswer, check_page
from upbit_cache.collector.client import MAX_PAGE, UpbitClient
from upbit_cache.collector.quiet import Evidence, prove_quiet
from upbit_cache.errors import ResponseFormatError
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import iso
from upbit_cache.words import plural

DEFAULT_WINDOW = 4  # pages of one market in flight at once


@dataclass(frozen=True)
class Page:
    """One request: the `count` periods starting in [start, to)."""

    start: int
    to: int
    count: int


@dataclass(frozen=True)
class PageResult:
    """A page's candles, the span it settled (candles or proven quiet), and the span after
    it whose candles Upbit had not settled yet (written, but asked for again later)."""

    page: Page
    candles: pa.Table
    covered: TimeRange
    provisional: TimeRange
    requests: int  # candle requests it took (0: not sent, its span was proven quiet)


def plan_pages(tf: Timeframe, ranges: Iterable[tuple[int, int]]) -> Iterator[Page]:
    """Pages covering aligned [start, end) ranges exactly, newest first, made as they are
    needed (a window of decades asks for no memory before its listing is found)."""
    for start, end in sorted(ranges, reverse=True):
        to = end
        while to > start:
            count = min(MAX_PAGE, tf.count_periods(start, to))
            first = tf.shift_one(to, -count)
            yield Page(first, to, count)
            to = first


async def fetch_pages(
    client: UpbitClient,
    market: str,
    tf: Timeframe,
    missing: Ranges,
    window: int = DEFAULT_WINDOW,
    *,
    settled: int | None = None,
    evidence: Evidence | None = None,
) -> AsyncIterator[PageResult]:
    """Request the pages of `missing` (newest first, `window` in flight), yielding results as
    they arrive.

    Periods ending after `settled` (default: Upbit's clock less the settle time) come back
    provisional. `evidence`: what this run's other answers showed of the market (shared by
    its jobs); a page it proves quiet is yielded with no request. What lies past Upbit's
    horizon when its page is due (1s) is neither sent nor yielded. An error of one page
    (after retries) ends the iteration with that error; pages not yet sent are then never
    sent.
    """
    final = client.settled_ms() if settled is None else settled
    known = evidence if evidence is not None else Evidence()
    oldest = missing.hull.start if missing.hull is not None else final
    pages = plan_pages(tf, missing)

    def split(page: Page, low: int) -> tuple[TimeRange, TimeRange]:
        edge = max(low, min(page.to, tf.floor_one(final)))
        return TimeRange(low, edge), TimeRange(edge, page.to)

    stretch = (0, 0)  # the last proven-quiet stretch a page fell in
    answered = Ranges()  # what the answers so far settled (a page may reach back past its own)

    def proven(page: Page) -> bool:
        """Whether the page's whole span is settled: answered already, or proven quiet."""
        nonlocal stretch
        if page.to > final:
            return False
        if answered.covers(TimeRange(page.start, page.to)):
            return True
        if not stretch[0] <= page.start < page.to <= stretch[1]:
            found = known.quiet.clip(TimeRange(page.start, page.to))
            if found.total() != page.to - page.start:
                return False
            stretch = next((s, e) for s, e in known.quiet if s <= page.start < e)
        return True

    async def run(page: Page) -> PageResult:
        covered, provisional = split(page, page.start)
        known.in_flight.append(page.to)
        try:
            table, requests = await checked_page(client, market, tf, page, covered, known, oldest)
        finally:
            known.in_flight.remove(page.to)
        known.saw(table, tf)
        if table.num_rows >= page.count:  # a full page may reach back past its start
            oldest_candle = int(times_ms(table)[0].as_py())
            covered, provisional = split(page, min(page.start, oldest_candle))
        return PageResult(page, table, covered, provisional, requests)

    def skipped(span: TimeRange) -> PageResult:
        page = Page(span.start, span.end, 0)
        quiet = TimeRange(span.end, span.end)
        return PageResult(page, CANDLE_SCHEMA.empty_table(), span, quiet, requests=0)

    running: set[asyncio.Task[PageResult]] = set()
    unread: list[asyncio.Task[PageResult]] = []  # finished, result not taken yet
    past = False  # a page reached past Upbit's horizon: every later one is older still
    try:
        while True:
            quiet: TimeRange | None = None  # consecutive pages proven quiet: not sent
            for page in pages if not past else ():
                edge = client.earliest(tf)
                if edge is not None and page.start < edge:
                    past = True
                    if page.to <= edge:
                        break
                    page = Page(edge, page.to, tf.count_periods(edge, page.to))
                if proven(page):
                    if quiet is not None and quiet.start != page.to:
                        yield skipped(quiet)
                        quiet = None
                    quiet = TimeRange(page.start, quiet.end if quiet is not None else page.to)
                    continue
                running.add(asyncio.ensure_future(run(page)))
                if past or len(running) >= window:
                    break
            if quiet is not None:
                yield skipped(quiet)
            if not running:
                break
            finished, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            unread = list(finished)
            while unread:
                result = unread.pop().result()
                answered = answered.union([(result.covered.start, result.covered.end)])
                yield result
    finally:
        for task in running:
            task.cancel()
        # Every task's outcome is taken, so an error beside the one raised is not logged as
        # "never retrieved".
        await asyncio.gather(*running, *unread, return_exceptions=True)


async def checked_page(
    client: UpbitClient,
    market: str,
    tf: Timeframe,
    page: Page,
    settled: TimeRange,
    evidence: Evidence,
    needed_from: int,
) -> tuple[pa.Table, int]:
    """One page that passed the checks, an empty one corroborated over its `settled` part,
    and the candle requests it took.

    A page that fails them is asked again (`retry.bad_page`); when the tries run out the
    error names the page.
    """
    span, requests = TimeRange(page.start, page.to), 0
    try:
        async for attempt in retry.bad_page():
            with attempt:
                requests += 1
                table = await client.candles(market, tf, page.to, page.count)
                check_page(table, tf, span, page.count)
                if table.num_rows == 0 and not settled.empty:
                    try:
                        requests += await prove_quiet(
                            client, market, tf, settled, evidence, needed_from
                        )
                    except BadAnswer as exc:
                        what = f"an empty answer for {iso(settled.start)}..{iso(settled.end)}"
                        raise BadAnswer(f"{what}: {exc}") from None
                return table, requests
    except ResponseFormatError as exc:
        raise ResponseFormatError(
            f"{market} {tf}: Upbit's answer for the {plural(page.count, 'period')} before "
            f"{iso(page.to)} failed the checks {retry.PAGE_ATTEMPTS} times ({exc}); "
            "nothing of it was stored"
        ) from None
    raise AssertionError("unreachable")
