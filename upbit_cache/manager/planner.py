"""Plan a fetch: which one native timeframe to ask Upbit for, so every requested timeframe
can be served from it with the fewest requests, given what the store already holds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from upbit_cache.collector.client import MAX_PAGE
from upbit_cache.errors import InvalidTimeframeError
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.store.base import Coverage
from upbit_cache.timeframes import SUPPORTED, Timeframe


@dataclass(frozen=True)
class Plan:
    """The base to fetch, what is derived from it, and the requests that should take."""

    base: Timeframe
    derived: tuple[Timeframe, ...]
    span: TimeRange  # the base window, base-aligned
    planned_requests: int
    horizon: int | None = None  # the oldest time Upbit serves the base (1s), None: all
    beyond: Ranges = field(default_factory=Ranges)  # lacked before `horizon`: not fetchable
    # False: chosen without reading a record, `planned_requests` is counted by the jobs as
    # each reads its own (see `plan_fetch`), and filled in when they are done.
    costed: bool = True

    def describe(self) -> str:
        derived = ", ".join(t.name for t in self.derived) or "none"
        return f"base {self.base}, derived {derived}, {self.planned_requests:,} requests planned"


def pages_for(tf: Timeframe, missing: Ranges) -> int:
    """Requests needed to fetch `missing` (tf-aligned ranges), 200 periods a page."""
    return sum(-(-tf.count_periods(lo, hi) // MAX_PAGE) for lo, hi in missing)


def missing(coverage: Coverage, market: str, tf: Timeframe, span: TimeRange) -> Ranges:
    """What of `span` the store has not settled for (tf, market): all of it where the record
    is damaged (the fetch heals it, store/heal.py, and asks for the whole window again)."""
    return Ranges.of([(span.start, span.end)]).subtract(coverage.settled(tf, market))


def bases(timeframes: Sequence[Timeframe]) -> list[Timeframe]:
    """The timeframes Upbit serves that divide every one of `timeframes`, finest first."""
    found = [b for b in SUPPORTED if b.native and all(b.divides(t) for t in timeframes)]
    if not found:
        names = ", ".join(t.name for t in timeframes)
        raise InvalidTimeframeError(f"no timeframe Upbit serves divides all of {names}")
    return found


def cold_base(timeframes: Sequence[Timeframe]) -> Timeframe:
    """The base `plan_fetch` picks when nothing is stored: the coarsest of `bases`.

    It depends on the timeframes alone (not on the store), so every host agrees on it.
    """
    return bases(timeframes)[-1]


def requests_for(
    coverage: Coverage,
    markets: Sequence[str],
    base: Timeframe,
    window: TimeRange,
    horizon: int | None = None,
) -> int:
    """Requests needed to fetch what the store lacks of `window` (base-aligned) for `markets`,
    from `horizon` on (the oldest time Upbit serves; None: all of it)."""
    reach = TimeRange.since(horizon) if horizon is not None else TimeRange.everything()
    return sum(pages_for(base, missing(coverage, m, base, window).clip(reach)) for m in markets)


def plan_fetch(
    coverage: Coverage,
    markets: Sequence[str],
    timeframes: Sequence[Timeframe],
    span: TimeRange,
    horizon: Callable[[Timeframe], int | None] = lambda tf: None,
    native: bool = False,
) -> Plan:
    """Choose the native base dividing every requested timeframe that needs fewest requests.

    `span` ends at a time (Upbit's now, or the caller's end); each timeframe only counts
    periods that have closed before it. Ties go to the coarsest base (fewest rows to store).
    `horizon(base)` is the oldest time Upbit serves a base (1s: about three months back): a
    base that cannot reach a missing part of the window is taken only when no other can.

    The records come from `coverage` (read once for the run: `Store.coverage`). A base that
    no market holds a record of would cost the whole window, which is never fewer requests
    than the coarsest base costs (it has fewer periods), so only the coarsest and the bases
    with records are weighed. Where that leaves the coarsest alone, it is the plan without a
    record read (on S3 that saves a round of GETs before the first request): each job counts
    its planned requests as it reads its own record (`costed` False). `native`: the
    coarsest base only (a native timeframe is then its own base), whatever finer ones hold.
    """
    start, end = span
    lo = min(t.floor_one(start) for t in timeframes)
    found = list(reversed(bases(timeframes)))  # coarsest first
    weighed = [b for b in found if b == found[0] or (not native and coverage.holders(b, markets))]
    if len(weighed) == 1 and horizon(weighed[0]) is None:
        base = weighed[0]
        window = TimeRange(lo, max(lo, base.floor_one(end)))
        return Plan(base, tuple(t for t in timeframes if t != base), window, 0, costed=False)
    coverage.read((b, m) for b in weighed for m in markets)  # at once, not one by one
    plans = []
    for base in weighed:
        hi = base.floor_one(end)
        window = TimeRange(lo, max(lo, hi))
        edge = horizon(base)
        derived = tuple(t for t in timeframes if t != base)
        gaps = [missing(coverage, m, base, window) for m in markets]
        reach, past = TimeRange.everything(), Ranges()
        if edge is not None:
            reach = TimeRange.since(edge)
            past = Ranges.of(part for gap in gaps for part in gap.clip(TimeRange.before(edge)))
        cost = sum(pages_for(base, gap.clip(reach)) for gap in gaps)
        plans.append(Plan(base, derived, window, cost, edge, past))
    whole = [p for p in plans if not p.beyond] or plans
    return min(whole, key=lambda p: p.planned_requests)  # the first of equals: the coarsest
