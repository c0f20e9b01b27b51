"""An absence is never believed on one answer: what proves a stretch without candles quiet.

Upbit sends no candle for a period without trades, and a broken proxy or cache sends `[]`
too, so an empty page alone proves nothing. A *non-empty* answer does: over the span it
speaks for, every period it has no candle for had no trade, and nothing traded in a
candle's period after that candle's last trade (its `timestamp`, when that trade was
stored, is never before it). So before an empty page's span is recorded as quiet (or as
before the listing), other answers are gathered into the market's `Evidence` until they
cover it:

- the ticker's last trade (one request per quote currency, not a candle request): nothing
  traded since it;
- a coarser page over the span (1h candles for 200 minutes of 1m, days for 200 hours): its
  absent periods, and its candles' periods after their last trades;
- where a coarser period straddles the span's edge, a page of the page's own timeframe
  next to a trade known from those, which therefore must not come back empty.

An answer that shows a trade inside the span means the empty page lied: it is asked again.
An empty witness proves nothing and is asked again; what nothing corroborates fails.

Upbit's paging is read both ways (the `count` periods before `to`, or the `count` newest
candles before it): a page speaks for [to - count periods, to) under either. Answers only
vouch for periods Upbit had settled when it answered. A stretch that reaches back past its
witness (a listing, a thin market quiet for weeks) is followed back with ever coarser pages
(200 periods each: hours, days, months, years) as far as needed, so where trading starts is
found in a few requests without assuming any longest quiet stretch.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from upbit_cache.candles import times_ms
from upbit_cache.collector.checks import BadAnswer, check_page
from upbit_cache.collector.client import MAX_PAGE, UpbitClient
from upbit_cache.errors import UpbitCacheError
from upbit_cache.ranges import Interval, Ranges, TimeRange
from upbit_cache.timeframes import SUPPORTED, Timeframe
from upbit_cache.times import iso
from upbit_cache.words import plural

MAX_WITNESSES = 5  # answers asked to corroborate one empty page, at most
_NATIVE = sorted((t for t in SUPPORTED if t.native), key=lambda t: t.approx_ms)


class Refuted(BadAnswer):
    """An answer shows a trade inside a stretch thought quiet."""


def reach(tf: Timeframe, to: int, count: int = MAX_PAGE) -> TimeRange:
    """The span a page of `count` periods before `to` speaks for, under either reading."""
    return TimeRange(tf.shift_one(to, -count), to)


def trade_spans(table: pa.Table, tf: Timeframe) -> list[Interval]:
    """Per candle, the span its last trade lies in: its period, up to its `timestamp`."""
    starts = times_ms(table).to_numpy()
    last = table["timestamp"].cast(pa.int64()).to_numpy()
    ends = np.minimum(tf.shift(starts, 1), last + 1)
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


@dataclass
class Evidence:
    """What one market's answers of a run have shown: spans proven to hold no trade, and
    spans known to hold one. Proofs take `lock`, so each reuses the answers before it."""

    quiet: Ranges = field(default_factory=Ranges)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    traded: list[Interval] = field(default_factory=list)  # sorted; each holds a trade
    ends: set[int] = field(default_factory=set)  # where the spans of `traded` end
    asked: set[tuple[Timeframe, int]] = field(default_factory=set)  # witness (tf, to) answered
    empty: set[tuple[Timeframe, int]] = field(default_factory=set)  # ... and those that were []
    in_flight: list[int] = field(default_factory=list)  # the `to` of each page sent, unanswered
    ticker_asked: bool = False

    def learn(self, table: pa.Table, tf: Timeframe, span: TimeRange, settled: int) -> None:
        """Take in a non-empty answer of `tf` that speaks for `span`, given at a moment when
        periods before `settled` were final."""
        busy = trade_spans(table, tf)
        vouched = span.clip(TimeRange.before(settled))
        heard = Ranges.of([(vouched.start, vouched.end)]).subtract(Ranges.of(busy))
        self.quiet = self.quiet.union(heard)
        self._traded(busy)

    def saw(self, table: pa.Table, tf: Timeframe) -> None:
        """Note the oldest candle of a data page: a trade that a witness for the empty page
        before it can reach, so that an empty witness there is seen to lie."""
        if table.num_rows:
            self._traded(trade_spans(table.slice(0, 1), tf))

    def last_trade(self, last: int, settled: int) -> None:
        """The market's last trade as the ticker saw it: nothing traded after it."""
        self.quiet = self.quiet.union([(last + 1, settled)])
        self._traded([(last, last + 1)])

    def _traded(self, spans: list[Interval]) -> None:
        for span in spans:
            bisect.insort(self.traded, span)
            self.ends.add(span[1])

    def unknown(self, span: TimeRange) -> Ranges:
        """The parts of `span` not proven quiet."""
        return Ranges.of([(span.start, span.end)]).subtract(self.quiet)

    def trade_in(self, span: TimeRange) -> int | None:
        """A time inside `span` known to have a trade (as the start of its span), if any."""
        i = bisect.bisect_left(self.traded, (span.start, span.start))
        for lo, hi in itertools.islice(self.traded, i, None):
            if lo >= span.end:
                break
            if hi <= span.end:
                return lo
        return None

    def next_trade(self, at: int) -> Interval | None:
        """The first span known to hold a trade starting at or after `at`."""
        i = bisect.bisect_left(self.traded, (at, at))
        return self.traded[i] if i < len(self.traded) else None

    def stretch_start(self, at: int) -> int | None:
        """Where the proven-quiet stretch holding `at` starts, if `at` is proven quiet."""
        return next((s for s, e in self.quiet if s <= at < e), None)


async def prove_quiet(
    client: UpbitClient,
    market: str,
    tf: Timeframe,
    span: TimeRange,
    evidence: Evidence,
    needed_from: int,
    max_witnesses: int = MAX_WITNESSES,
) -> int:
    """Corroborate that `span`, the settled part of an empty answer of `tf`, held no trade;
    return the candle requests it took.

    Raises Refuted if an answer shows a trade in `span` (the empty one lied), BadAnswer if
    `max_witnesses` answers do not corroborate it (their messages call `span` "it").
    `needed_from` is the oldest time still to be fetched: a quiet stretch reaching past the
    witness is followed back that far, so the pages of it are not sent at all.
    """
    async with evidence.lock:
        _refute(evidence, span)
        if evidence.unknown(span):
            await _ask_ticker(client, market, evidence)
            _refute(evidence, span)
        requests = tries = 0
        while unknown := evidence.unknown(span):
            if tries == max_witnesses:
                raise BadAnswer(f"{plural(tries, 'other answer')} did not corroborate it")
            wtf, to = _next_witness(tf, unknown, evidence)
            tries += 1
            requests += 1
            if await _witness(client, market, wtf, to, span, evidence) is None:
                continue  # an empty witness proves nothing: another is asked
        requests += await _follow_back(client, market, span, evidence, needed_from)
        return requests


def _refute(evidence: Evidence, span: TimeRange) -> None:
    known = evidence.trade_in(span)
    if known is not None:
        raise Refuted(f"another answer shows a trade at {iso(known)} in it")


async def _ask_ticker(client: UpbitClient, market: str, evidence: Evidence) -> None:
    """The market's last trade from the ticker list, once per run (not a candle request)."""
    if evidence.ticker_asked:
        return
    evidence.ticker_asked = True
    try:
        seen_at, last = await client.last_trade(market)
    except UpbitCacheError:
        return  # no ticker (or it failed): candle witnesses will do
    if last is not None and last < seen_at:
        evidence.last_trade(last, min(seen_at, client.settled_ms()))


async def _witness(
    client: UpbitClient,
    market: str,
    wtf: Timeframe,
    to: int,
    span: TimeRange,
    evidence: Evidence,
) -> pa.Table | None:
    """Ask one witness page and take it in; None if it came back empty."""
    table = await client.candles(market, wtf, to, MAX_PAGE)
    spoken = reach(wtf, to)
    check_page(table, wtf, spoken, MAX_PAGE)
    if table.num_rows == 0:
        evidence.empty.add((wtf, to))
        return None
    edge = client.earliest(wtf)
    if edge is not None:  # 1s: nothing is served past the horizon, quiet or not
        spoken = spoken.clip(TimeRange.since(edge))
    evidence.asked.add((wtf, to))
    inside = [lo for lo, hi in trade_spans(table, wtf) if lo >= span.start and hi <= span.end]
    if inside:
        raise Refuted(f"the {wtf} candle at {iso(inside[0])} shows a trade in it")
    evidence.learn(table, wtf, spoken, client.settled_ms())
    return table


def _next_witness(tf: Timeframe, unknown: Ranges, evidence: Evidence) -> tuple[Timeframe, int]:
    """The page to ask next about `unknown` (not empty), as (timeframe, to).

    First the coarsest timeframe with two periods inside the whole stretch. Then, for its
    newest part still unknown: a page of `tf` over it that holds a known trade (so an empty
    answer is a visible lie); else the coarsest timeframe with two periods inside that part,
    else the next coarser one over it; else `tf` over it again.
    """
    hull = unknown.hull
    assert hull is not None
    coarse = _coarse(tf, hull, evidence)
    if coarse is not None:
        return coarse
    start, end = unknown.intervals[-1]
    piece = TimeRange(start, end)
    beside = _beside_trade(tf, piece, evidence)
    if beside is not None:
        return tf, beside
    coarse = _coarse(tf, piece, evidence)
    if coarse is not None:
        return coarse
    for wtf in [t for t in _NATIVE if t.approx_ms > tf.approx_ms][:1]:
        to = _to(wtf, piece, evidence)
        if (wtf, to) not in evidence.asked:
            return wtf, to
    return tf, _to(tf, piece, evidence)


def _coarse(tf: Timeframe, span: TimeRange, evidence: Evidence) -> tuple[Timeframe, int] | None:
    """The coarsest timeframe with two periods inside `span`, and its page over it, unless
    that was asked already."""
    fitting = [t for t in _NATIVE if tf.approx_ms < t.approx_ms <= (span.end - span.start) // 2]
    if not fitting:
        return None
    to = _to(fitting[-1], span, evidence)
    return None if (fitting[-1], to) in evidence.asked else (fitting[-1], to)


def _to(wtf: Timeframe, span: TimeRange, evidence: Evidence) -> int:
    """A `to` for a `wtf` page over `span`.

    Right after `span`, so the page also speaks for the time before it, where the next
    (older) pages go; but late enough to take in the first trade known after `span` if that
    is near (an empty answer is then a visible lie), and the newest page still in flight
    (answers come back in any order: the witness asked first serves the pages after it).
    If that came back empty, as far past `span` as the page can reach while still over it:
    trades are likelier after a quiet stretch than before it (a listing).
    """
    end = wtf.ceil_one(span.end)
    after = evidence.next_trade(span.end)
    later = [wtf.ceil_one(t) for t in evidence.in_flight if t > span.end]
    if after is not None and wtf.ceil_one(after[1]) - end <= MAX_PAGE // 4 * wtf.approx_ms:
        later.append(wtf.ceil_one(after[1]))
    fitting = [to for to in later if reach(wtf, to).start <= span.start]
    to = max(fitting, default=end)
    if (wtf, to) not in evidence.empty:
        return to
    if after is not None and reach(wtf, wtf.ceil_one(after[1])).start <= span.start:
        return wtf.ceil_one(after[1])
    return max(end, wtf.shift_one(wtf.floor_one(span.start), MAX_PAGE))


def _beside_trade(tf: Timeframe, span: TimeRange, evidence: Evidence) -> int | None:
    """A `to` for a `tf` page over `span` whose reach holds a known trade, not asked yet."""
    after = evidence.next_trade(span.end)
    candidates = [tf.ceil_one(after[1])] if after is not None else []
    candidates += [tf.ceil_one(span.end), tf.shift_one(tf.floor_one(span.start), MAX_PAGE)]
    for to in candidates:
        spoken = reach(tf, to)
        if (
            spoken.start <= span.start
            and to >= span.end
            and (tf, to) not in evidence.asked
            and evidence.trade_in(spoken) is not None
        ):
            return to
    return None


async def _follow_back(
    client: UpbitClient, market: str, span: TimeRange, evidence: Evidence, needed_from: int
) -> int:
    """Follow the quiet stretch holding `span` back with coarser pages, until its start is
    known or it reaches `needed_from`; the candle requests it took.

    Each step asks the coarsest timeframe with two periods inside the stretch known so far
    (a quiet hour says nothing of days), reaching 200 of them back.
    """
    requests = 0
    while True:
        start = evidence.stretch_start(span.start)
        if start is None or start <= needed_from or start in evidence.ends:
            return requests  # far enough back, or the stretch starts after a known trade
        end = next(e for s, e in evidence.quiet if s == start)
        fitting = [t for t in _NATIVE if t.approx_ms <= (end - start) // 2]
        if not fitting:
            return requests
        wtf = fitting[-1]
        to = _to(wtf, TimeRange(start, end), evidence)
        if (wtf, to) in evidence.asked or reach(wtf, to).start >= start:
            return requests
        requests += 1
        if await _witness(client, market, wtf, to, span, evidence) is None:
            return requests
