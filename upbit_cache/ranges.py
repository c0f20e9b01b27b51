"""Sets of half-open time intervals [start, end) in epoch ms: what was fetched, what is missing."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

Interval = tuple[int, int]


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

    def clip(self, start: int, end: int) -> Ranges:
        """The parts of self inside [start, end)."""
        return Ranges.of((max(s, start), min(e, end)) for s, e in self.intervals)

    def covers(self, start: int, end: int) -> bool:
        """Whether [start, end) lies entirely inside self."""
        return not Ranges(((start, end),)).subtract(self) if end > start else True

    def total(self) -> int:
        """Summed length in ms."""
        return sum(e - s for s, e in self.intervals)

    def to_json(self) -> list[list[int]]:
        return [[s, e] for s, e in self.intervals]

    @classmethod
    def from_json(cls, data: Iterable[Iterable[int]]) -> Ranges:
        return cls.of((int(a), int(b)) for a, b in data)
