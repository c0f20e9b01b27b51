"""Paging one market's history backwards, 200 candles a request, several requests in flight.

Pages are cut on the time grid (`to` = a period boundary, `count` = periods in the page), not
chained on the oldest candle received, so they do not wait for each other: a market's pages
go out as fast as the rate limiter allows, whatever the latency. Upbit skips periods without
trades, so a short page is normal, and so is an empty one in a quiet stretch; empty pages
covering a week in a row mean no older history (the listing), and the older pages of that
market are then not requested at all. Every page is checked, and every empty one
corroborated by a coarser witness, before it is believed (checks.py).

Upbit serves 1s candles of the last three months only, and that horizon moves on while a
long backfill runs (newest first: its oldest pages go out hours after the plan). So each
page is checked against the horizon as it is sent: cut at it, or not sent at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from upbit_cache.candles import CANDLE_SCHEMA, times_ms
from upbit_cache.collector.checks import BadAnswer, check_page, contradicts_quiet, witness_for
from upbit_cache.collector.client import MAX_PAGE, UpbitClient
from upbit_cache.errors import ResponseFormatError, UpbitCacheError
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import iso
from upbit_cache.words import plural

DEFAULT_WINDOW = 4  # pages of one market in flight at once
PAGE_ATTEMPTS = 3  # a page whose answers fail the checks this often fails its job
_RETRY_DELAY = 0.25  # seconds before asking again, doubling
# Upbit skips periods without trades, so one empty page may just be a quiet stretch. Empty
# pages covering a whole week in a row mean the market was not trading yet (its listing).
END_OF_HISTORY_MS = 7 * 86_400_000


# Per witness timeframe, a market's last witness page: the span it answers, and its candles
# (a future: the empty pages in flight together wait for one request).
Witnesses = dict[Timeframe, tuple[TimeRange, asyncio.Future[pa.Table]]]


@dataclass(frozen=True)
class Page:
    """One request: the `count` periods starting in [start, to)."""

    start: int
    to: int
    count: int


@dataclass(frozen=True)
class PageResult:
    """A page's candles and the time range it settled (candles or known-empty)."""

    page: Page
    candles: pa.Table
    covered: tuple[int, int]
    requests: int  # candle requests it took (0: skipped, history had already ended)


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
) -> AsyncIterator[PageResult]:
    """Request the pages of `missing` (newest first, `window` in flight), yielding results as
    they arrive.

    Once a week of empty pages in a row shows where the history starts, the rest of each
    missing range before it comes back as one result, known empty, with no request. What
    lies past Upbit's horizon when its page is due (1s) is neither sent nor yielded. An
    error of one page (after retries) ends the iteration with that error; pages not yet
    sent are then never sent.
    """
    pages = plan_pages(tf, missing)
    witnesses: Witnesses = {}  # one witness page serves the empty pages after it
    history_start: int | None = None  # older pages are not requested
    done: dict[int, tuple[Page, bool]] = {}  # page index -> (page, came back empty)
    walked = 0  # pages before this index were examined in order, newest first
    run_start: int | None = None  # oldest start of the current run of empty pages
    run_end = 0

    def examine() -> None:
        """Walk finished pages newest first; a long enough empty run ends the history."""
        nonlocal walked, run_start, run_end, history_start
        while walked in done:
            page, empty = done.pop(walked)
            walked += 1
            if not empty:
                run_start = None
                continue
            if run_start is None or page.to != run_start:
                run_end = page.to  # a new run (or a jump to another missing range)
            run_start = page.start
            if run_end - run_start >= END_OF_HISTORY_MS:  # the newest such run wins
                history_start = max(history_start or run_start, run_start)

    async def run(index: int, page: Page) -> PageResult:
        nonlocal history_start
        table, requests = await checked_page(client, market, tf, page, witnesses)
        done[index] = (page, table.num_rows == 0)
        if table.num_rows == 0 and page.to - page.start >= END_OF_HISTORY_MS:
            # A week or more empty on its own ends the history whatever newer pages hold:
            # no need to wait for them (in flight, they would let older pages be sent).
            history_start = max(history_start or page.start, page.start)
        examine()
        if table.num_rows == 0:
            return PageResult(page, table, (page.start, page.to), requests)
        oldest = int(times_ms(table)[0].as_py())
        low = min(page.start, oldest) if table.num_rows >= page.count else page.start
        return PageResult(page, table, (low, page.to), requests)

    running: set[asyncio.Task[PageResult]] = set()
    unread: list[asyncio.Task[PageResult]] = []  # finished, result not taken yet
    older: int | None = None  # pages before this are older than the history: not sent
    past = False  # a page reached past Upbit's horizon: every later one is older still
    index = 0
    try:
        while True:
            for page in pages if older is None and not past else ():
                if history_start is not None and page.to <= history_start:
                    older = page.to  # pages come newest first: every later one is older
                    break
                edge = client.earliest(tf)
                if edge is not None and page.start < edge:
                    past = True
                    if page.to <= edge:
                        break
                    page = Page(edge, page.to, tf.count_periods(edge, page.to))
                running.add(asyncio.ensure_future(run(index, page)))
                index += 1
                if past or len(running) >= window:
                    break
            if not running:
                break
            finished, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            unread = list(finished)
            while unread:
                yield unread.pop().result()
        if older is not None:
            empty = CANDLE_SCHEMA.empty_table()
            for start, end in missing.clip(TimeRange.before(older)):
                yield PageResult(Page(start, end, 0), empty, (start, end), requests=0)
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
    witnesses: Witnesses | None = None,
) -> tuple[pa.Table, int]:
    """One page that passed the checks (an empty one corroborated), and the requests it took.

    A page that fails them is asked again; after PAGE_ATTEMPTS the error names the page.
    `witnesses`: the market's last witness page per timeframe, reused while it covers.
    """
    span, requests = TimeRange(page.start, page.to), 0
    for attempt in range(PAGE_ATTEMPTS):
        try:
            requests += 1
            table = await client.candles(market, tf, page.to, page.count)
            check_page(table, tf, span, page.count)
            if table.num_rows == 0:
                kept = witnesses if witnesses is not None else {}
                requests += await _corroborate_quiet(client, market, tf, page, kept)
            return table, requests
        except ResponseFormatError as exc:
            if attempt == PAGE_ATTEMPTS - 1:
                raise ResponseFormatError(
                    f"{market} {tf}: Upbit's answer for the {plural(page.count, 'period')} before "
                    f"{iso(page.to)} failed the checks {PAGE_ATTEMPTS} times ({exc}); "
                    "nothing of it was stored"
                ) from None
            await asyncio.sleep(_RETRY_DELAY * 2**attempt)
    raise AssertionError("unreachable")


async def _corroborate_quiet(
    client: UpbitClient, market: str, tf: Timeframe, page: Page, witnesses: Witnesses
) -> int:
    """Ask a coarser witness over an empty page's span; raise if it shows trades there.

    Without a coarser timeframe that fits the span twice, the same page is asked once more:
    a second empty answer agrees. Returns the requests made.
    """
    span = TimeRange(page.start, page.to)
    try:  # the market's last trade: one ticker request for the whole run, not a candle one
        seen_at, last = await client.last_trade(market)
    except UpbitCacheError:
        seen_at, last = 0, None  # no ticker (or it failed): a candle witness will do
    if last is not None and seen_at >= page.to:
        if last < page.start:
            return 0  # nothing traded since before the span: quiet, corroborated
        if last < page.to:
            raise BadAnswer(
                f"an empty answer for {iso(span.start)}..{iso(span.end)}, but the market's "
                f"last trade at {iso(last)} lies in it"
            )
    witness = witness_for(tf, span)
    if witness is None:
        again = await client.candles(market, tf, page.to, page.count)
        check_page(again, tf, span, page.count)
        if again.num_rows:
            raise BadAnswer("an empty answer, and a full one when asked again")
        return 1
    seen, requests = await _witness_page(client, market, witness, span, witnesses)
    why = contradicts_quiet(seen, witness, span)
    if why is not None:
        raise BadAnswer(why)
    return requests


async def _witness_page(
    client: UpbitClient, market: str, wtf: Timeframe, span: TimeRange, witnesses: Witnesses
) -> tuple[pa.Table, int]:
    """`wtf` candles over `span` and the requests that took: from the last witness page if it
    covers the span (asked already, or on its way), else a full page ending with the span.
    Pages go newest first, so the empty pages that follow fall inside it: a sparse market's
    1s pages need one 1m witness per 60 empty pages, not one each."""
    first, end = wtf.floor_one(span.start), wtf.ceil_one(span.end)
    held = witnesses.get(wtf)
    if held is not None and held[0].start <= first and end <= held[0].end:
        return await held[1], 0
    covered = TimeRange(wtf.shift_one(end, -MAX_PAGE), end)

    async def ask() -> pa.Table:
        seen = await client.candles(market, wtf, end, MAX_PAGE)
        check_page(seen, wtf, covered, MAX_PAGE)
        return seen

    answer = asyncio.ensure_future(ask())
    witnesses[wtf] = (covered, answer)
    try:
        return await answer, 1
    except Exception:
        if witnesses.get(wtf, (covered, None))[1] is answer:
            del witnesses[wtf]  # a failed witness is asked again, not reused
        raise
