"""Interval arithmetic behind fetched-range records (property-tested against a set of points)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from upbit_cache.errors import InvalidRangeError
from upbit_cache.ranges import Ranges, TimeRange

intervals = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), max_size=6)


def points(r: Ranges) -> set[int]:
    return {p for s, e in r for p in range(s, e)}


def raw_points(items: list[tuple[int, int]]) -> set[int]:
    return {p for s, e in items for p in range(s, e)}


@given(intervals)
def test_of_normalises(items: list[tuple[int, int]]) -> None:
    r = Ranges.of(items)
    assert points(r) == raw_points(items)
    flat = [x for pair in r for x in pair]
    assert flat == sorted(flat)
    assert all(e > s for s, e in r)
    assert all(a[1] < b[0] for a, b in zip(r.intervals, r.intervals[1:], strict=False))


@given(intervals, intervals)
def test_union_and_subtract(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> None:
    ra, rb = Ranges.of(a), Ranges.of(b)
    assert points(ra.union(rb)) == raw_points(a) | raw_points(b)
    assert points(ra.subtract(rb)) == raw_points(a) - raw_points(b)


@given(intervals, st.integers(0, 60), st.integers(0, 60))
def test_clip_and_covers(a: list[tuple[int, int]], s: int, e: int) -> None:
    s, e = min(s, e), max(s, e)
    r = Ranges.of(a)
    assert points(r.clip(TimeRange(s, e))) == {p for p in raw_points(a) if s <= p < e}
    assert r.covers(TimeRange(s, e)) == (set(range(s, e)) <= raw_points(a))


@given(st.integers(-100, 100), st.integers(0, 50), st.integers(-100, 100), st.integers(0, 50))
def test_time_range_clip(a: int, wa: int, b: int, wb: int) -> None:
    one, other = TimeRange(a, a + wa), TimeRange(b, b + wb)
    clipped = one.clip(other)
    assert set(range(*clipped)) == set(range(*one)) & set(range(*other))
    assert other.start <= clipped.start <= clipped.end <= other.end


def test_a_time_range_never_ends_before_it_starts() -> None:
    with pytest.raises(InvalidRangeError, match="ends before it starts"):
        TimeRange(5, 4)
    assert TimeRange(5, 5).empty and Ranges.of([(1, 9)]).covers(TimeRange(5, 5))
    assert not TimeRange.since(0).bounded and TimeRange(0, 1).bounded
    assert Ranges.of([(1, 3), (7, 9)]).hull == TimeRange(1, 9) and Ranges().hull is None


def test_json_round_trip() -> None:
    r = Ranges.of([(5, 9), (1, 3), (3, 4)])
    assert r.to_json() == [[1, 4], [5, 9]]
    assert Ranges.from_json(r.to_json()) == r
