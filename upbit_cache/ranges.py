"""Time as the code passes it around: one span (`TimeRange`) and sets of spans (`Ranges`).

Both are half-open, [start, end), in epoch ms, UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from upbit_cache.errors import InvalidRangeError

Interval = tuple[int, int]
EARLIEST = -(2**62)  # an open start: before any candle
LATEST = 2**62  # an open end: after any candle


@dataclass(frozen=True)
class TimeRange:
    """One span of time [start, end) in epoch ms; a side may be open (EARLIEST, LATEST)."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise InvalidRangeError(f"the range ends before it starts ({self.start} > {self.end})")

    @classmethod
    def since(cls, start: int) -> TimeRange:
        return cls(start, LATEST)

    @classmethod
    def before(cls, end: int) -> TimeRange:
        return cls(EARLIEST, end)

    @classmethod
    def everything(cls) -> TimeRange:
        return cls(EARLIEST, LATEST)

    @property
    def bounded(self) -> bool:
        """Whether both sides are real times."""
        return self.start != EARLIEST and self.end != LATEST

    @property
    def empty(self) -> bool:
        return self.end <= self.start

    def overlaps(self, other: TimeRange) -> bool:
        """Whether the two share any time."""
        return self.start < other.end and other.start < self.end

    def clip(self, other: TimeRange) -> TimeRange:
        """The part of self inside `other` (empty, at `other`'s edge, if none)."""
        start = min(max(self.start, other.start), other.end)
        return TimeRange(start, max(start, min(self.end, other.end)))

    def __iter__(self) -> Iterator[int]:
        """`start, end = span`."""
        return iter((self.start, self.end))


@dataclass(frozen=True)
class Ranges:
    """Sorted, disjoint, non-touching intervals. Immutable; operations return new sets."""

    intervals: tuple[Interval, ...] = ()

    @classmethod
    def of(cls, items: Iterable[Interval]) -> Ranges:
        """Normalise any intervals: drop empty ones, sort, merge overlapping and touching."""
        merged: list[list[int]] = []
        for start, end in sorted((int(s), int(e)) for s, e in items if e > s):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        return cls(tuple((s, e) for s, e in merged))

    def __iter__(self) -> Iterator[Interval]:
        return iter(self.intervals)

    def __bool__(self) -> bool:
        return bool(self.intervals)

    def __len__(self) -> int:
        return len(self.intervals)

    def union(self, other: Iterable[Interval]) -> Ranges:
        return Ranges.of([*self.intervals, *other])

    def subtract(self, other: Ranges) -> Ranges:
        """The parts of self not in other."""
        out: list[Interval] = []
        for start, end in self.intervals:
            cursor = start
            for o_start, o_end in other.intervals:
                if o_end <= cursor or o_start >= end:
                    continue
                if o_start > cursor:
                    out.append((cursor, o_start))
                cursor = max(cursor, o_end)
                if cursor >= end:
                    break
            if cursor < end:
                out.append((cursor, end))
        return Ranges(tuple(out))

    def intersect(self, other: Ranges) -> Ranges:
        """The parts of self also in other."""
        return self.subtract(self.subtract(other))

    def clip(self, span: TimeRange) -> Ranges:
        """The parts of self inside `span`."""
        return Ranges.of((max(s, span.start), min(e, span.end)) for s, e in self.intervals)

    def covers(self, span: TimeRange) -> bool:
        """Whether `span` lies entirely inside self."""
        return span.empty or not Ranges(((span.start, span.end),)).subtract(self)

    @property
    def hull(self) -> TimeRange | None:
        """From the first start to the last end; None for no ranges."""
        return TimeRange(self.intervals[0][0], self.intervals[-1][1]) if self.intervals else None

    def total(self) -> int:
        """Summed length in ms."""
        return sum(e - s for s, e in self.intervals)

    def to_json(self) -> list[list[int]]:
        return [[s, e] for s, e in self.intervals]

    @classmethod
    def from_json(cls, data: Iterable[Iterable[int]]) -> Ranges:
        return cls.of((int(a), int(b)) for a, b in data)
