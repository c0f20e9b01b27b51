"""What a command works on, resolved in one place: its markets, its window of time and, for
a fetch split across hosts, its shard.

Light on purpose (no pyarrow, no pandas): the CLI builds these before anything heavy loads.
"""

from __future__ import annotations

import heapq
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from upbit_cache.errors import InvalidRangeError, UnknownMarketError, UsageError
from upbit_cache.markets import unknown_hint, validate_markets, validate_quote
from upbit_cache.ranges import TimeRange
from upbit_cache.settings import DEFAULT_DAYS, DEFAULT_QUOTE, DEFAULT_TIMEFRAME, MAX_DAYS
from upbit_cache.timeframes.timeframe import DAY_MS, Timeframe
from upbit_cache.times import TimeLike, iso, parse_timerange, relative_ms, to_ms

UPBIT_OPENED = 1_483_228_800_000  # 2017-01-01T00:00Z: Upbit opened that October; no candle before


def of_quote(names: Iterable[str], quote: str | None) -> list[str]:
    """The names among `names` quoted in `quote` (default KRW), sorted."""
    prefix = validate_quote(quote or DEFAULT_QUOTE) + "-"
    return sorted(m for m in names if m.startswith(prefix))


def selection(markets: Sequence[str], quote: str | None = None) -> list[str]:
    """The named markets, validated (before anything is asked of Upbit)."""
    wanted = validate_markets(markets)
    if wanted and quote:
        raise UsageError("give markets or --quote, not both")
    if quote is not None:
        validate_quote(quote)
    return wanted


def resolve_markets(
    listed: Iterable[str], markets: Sequence[str], quote: str | None = None
) -> list[str]:
    """The markets to work on: those named (each one Upbit lists), else all of `quote`.

    `listed` is what Upbit lists now. Named markets keep their order; a market Upbit does
    not list is refused, with every such name in one message.
    """
    wanted = selection(markets, quote)
    known = set(listed)
    if not wanted:
        return of_quote(known, quote)
    unknown = [m for m in wanted if m not in known]
    if unknown:
        named = ", ".join(m + unknown_hint(m, known) for m in unknown)
        raise UnknownMarketError(f"Upbit does not list {named}")
    return wanted


def parse_span(
    start: TimeLike | None, end: TimeLike | None, names: tuple[str, str] = ("start", "end")
) -> tuple[int | None, int | None]:
    """Epoch ms of [start, end), either open; refused if start is not before end."""
    lo = to_ms(start) if start is not None else None
    hi = to_ms(end) if end is not None else None
    if lo is not None and hi is not None and lo >= hi:
        raise InvalidRangeError(f"{names[0]} {start} is not before {names[1]} {end}")
    return lo, hi


@dataclass(frozen=True)
class Window:
    """The time a command asks for: [start, end) in epoch ms, or the last `days`.

    `start` None: the last `days` (default 30) before now; `end` None: up to the last closed
    period. A time relative to now (`--since -7d`) is kept as how long before now it is
    (`start_ago`, `end_ago`) and resolved against the run's clock, Upbit's when the run asks
    Upbit, like `--days`. Built by `Window.of`, which refuses what cannot be served.
    """

    start: int | None = None
    end: int | None = None
    days: float | None = None
    start_ago: int | None = None
    end_ago: int | None = None

    def __post_init__(self) -> None:
        if self.days is not None and (self.start is not None or self.start_ago is not None):
            raise UsageError("give --days or --since, not both")
        if self.start is not None and self.start_ago is not None:
            raise UsageError("give the start as a time or as a time before now, not both")
        if self.end is not None and self.end_ago is not None:
            raise UsageError("give the end as a time or as a time before now, not both")
        if self.days is not None:
            _check_days(self.days)
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise InvalidRangeError("the range is empty: start must be before end")
        ago = (self.start_ago, self.end_ago)
        if ago[0] is not None and ago[1] is not None and ago[0] <= ago[1]:
            raise InvalidRangeError("the range is empty: start must be before end")

    @classmethod
    def of(
        cls,
        since: TimeLike | None = None,
        until: TimeLike | None = None,
        days: float | None = None,
        timerange: str | None = None,
    ) -> Window:
        """A window from what a user gives: `since`/`until` times (or times before now such
        as `-7d`), a number of days, or freqtrade's `timerange` (`20250101-20250701`)."""
        if timerange is not None:
            if since is not None or until is not None:
                raise UsageError("give --timerange or --since/--until, not both")
            if days is not None:
                raise UsageError("give --days or --timerange, not both")
            start, end = parse_timerange(timerange)
            _not_before_upbit(start, "--timerange", timerange)
            _not_before_upbit(end, "--timerange", timerange)
            # An open start (`-20250701`) is the beginning of each market's history.
            return cls(0 if start is None else start, end)
        if until is not None and since is None:
            raise UsageError("--until needs --since")
        start_ago, end_ago = _ago(since), _ago(until)
        if start_ago is None and end_ago is None:
            start, end = parse_span(since, until, ("--since", "--until"))
            _not_before_upbit(start, "--since", since)
            _not_before_upbit(end, "--until", until)
            return cls(start, end, days)
        if start_ago is not None and end_ago is not None and start_ago <= end_ago:
            raise InvalidRangeError(f"--since {since} is not before --until {until}")
        start = to_ms(since) if since is not None and start_ago is None else None
        end = to_ms(until) if until is not None and end_ago is None else None
        _not_before_upbit(start, "--since", since)
        _not_before_upbit(end, "--until", until)
        return cls(start, end, days, start_ago, end_ago)

    def span_at(self, now: int) -> TimeRange:
        """[start, end) given now (epoch ms): the end is at most now; a range that starts in
        the future or is empty once resolved is refused."""
        if self.start is not None:
            start = self.start
        elif self.start_ago is not None:
            start = now - self.start_ago
        else:
            start = now - int((self.days if self.days is not None else DEFAULT_DAYS) * DAY_MS)
        if start >= now:
            raise InvalidRangeError(f"the range starts in the future: {iso(start)}, now {iso(now)}")
        end = now
        if self.end is not None:
            end = min(self.end, now)
        elif self.end_ago is not None:
            end = now - self.end_ago
        if end <= start:
            raise InvalidRangeError(f"the range is empty: from {iso(start)} to {iso(end)}")
        return TimeRange(start, end)


def _not_before_upbit(ms: int | None, option: str, given: TimeLike | None) -> None:
    """Refuse a time someone typed that is before Upbit opened: a typo (`0001-01-01`) that
    would otherwise be sent to Upbit. A market's whole history is an open start instead."""
    if ms is not None and ms < UPBIT_OPENED:
        raise InvalidRangeError(
            f"{option} {given} is before Upbit opened: give a time from {iso(UPBIT_OPENED)[:10]} "
            "on (--timerange -YYYYMMDD starts at each market's listing)"
        )


def _ago(value: TimeLike | None) -> int | None:
    return relative_ms(value) if value is not None else None


_SHARD = re.compile(r"([0-9]+|auto)/([0-9]+)")
_SHARD_FORM = "--shard must be K/N with 1 <= K <= N, or auto/N (e.g. 2/4)"
JOB_INDEX = "JOB_COMPLETION_INDEX"  # Kubernetes sets it in each pod of an Indexed Job, 0-based


def assign(weights: Mapping[str, float], count: int) -> list[list[str]]:
    """The jobs of `weights` (job -> estimated requests) split into `count` parts of about
    equal weight: the heaviest first, each to the lightest part so far (LPT greedy).

    Deterministic: equal weights go by job name, equal parts to the lower-numbered one, so
    every host given the same weights makes the same parts. Each part in job-name order.
    """
    loads = [(0.0, k) for k in range(count)]  # a heap of (weight so far, part)
    parts: list[list[str]] = [[] for _ in range(count)]
    for job in sorted(weights, key=lambda j: (-weights[j], j)):
        load, k = heapq.heappop(loads)
        parts[k].append(job)
        heapq.heappush(loads, (load + weights[job], k))
    return [sorted(part) for part in parts]


@dataclass(frozen=True)
class Shard:
    """The K-th of N disjoint parts of a fetch's jobs (K 1-based): `Shard(2, 4)` is 2/4.

    The parts are made by `assign` from each job's estimated requests, which every host
    computes alike from the same markets, timeframes and window (manager/balance.py), so N
    runs, one per shard, do every job exactly once between them, on any hosts.
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        numbers = (self.index, self.count)
        if any(isinstance(n, bool) or not isinstance(n, int) for n in numbers):
            raise UsageError(f"{_SHARD_FORM}, not {self.index!r}/{self.count!r}")
        if not 1 <= self.index <= self.count:
            raise UsageError(f"{_SHARD_FORM}, not {self}")

    @classmethod
    def parse(cls, text: str | Shard, env: Mapping[str, str] | None = None) -> Shard:
        """`2/4`, or `auto/4`: K is `JOB_COMPLETION_INDEX` + 1 (Kubernetes counts from 0),
        read from `env` (default: this process's environment). A Shard is returned as is;
        anything else is a UsageError."""
        if isinstance(text, Shard):
            return text
        found = _SHARD.fullmatch(text.strip()) if isinstance(text, str) else None
        if found is None:
            raise UsageError(f"{_SHARD_FORM}, not {text!r}")
        try:
            count = int(found[2])
            index = _job_index(env, count) + 1 if found[1] == "auto" else int(found[1])
        except ValueError:  # more digits than int() reads
            raise UsageError(f"{_SHARD_FORM}, not {text!r}") from None
        if not 1 <= index <= count:
            raise UsageError(f"{_SHARD_FORM}, not {text.strip()!r}")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def pick(self, weights: Mapping[str, float]) -> list[str]:
        """This shard's jobs of `weights` (job -> estimated requests), in name order."""
        return assign(weights, self.count)[self.index - 1]


def _job_index(env: Mapping[str, str] | None, count: int) -> int:
    """The pod's 0-based index from JOB_COMPLETION_INDEX, refused unless 0 <= it < count."""
    found = (os.environ if env is None else env).get(JOB_INDEX)
    if count < 1:
        raise UsageError(f"{_SHARD_FORM}, not 'auto/{count}'")
    if found is None:
        raise UsageError(f"--shard auto/{count} takes K from {JOB_INDEX}, which is not set")
    if not found.strip().isdigit() or not 0 <= int(found) < count:
        raise UsageError(
            f"--shard auto/{count}: {JOB_INDEX} must be a whole number from 0 to {count - 1} "
            f"(Kubernetes counts from 0), not {found!r}"
        )
    return int(found)


@dataclass(frozen=True)
class ScreenRequest:
    """What a `screen-prep` asks for."""

    markets: tuple[str, ...] = ()
    quote: str | None = None
    timeframe: Timeframe = field(default_factory=lambda: Timeframe.parse(DEFAULT_TIMEFRAME))
    days: float = DEFAULT_DAYS
    refresh: bool = True
    include_open: bool = False
    min_value: float | None = None
    top: int | None = None

    def __post_init__(self) -> None:
        selection(self.markets, self.quote)
        if self.top is not None and self.top < 1:
            raise UsageError("--top must be at least 1")
        _check_days(self.days)
        if self.min_value is not None and not 0 <= self.min_value < float("inf"):
            raise UsageError(f"--min-value must be a number of 0 or more, not {self.min_value}")


def _check_days(days: float) -> None:
    if not 0 < days <= MAX_DAYS:  # NaN fails too
        raise UsageError(f"--days must be more than 0 and at most {MAX_DAYS}, not {days}")
