"""Interval arithmetic behind fetched-range records (property-tested against a set of points)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from upbit_cache.ranges import Ranges

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
    r = Ranges.of(a)
    assert points(r.clip(s, e)) == {p for p in raw_points(a) if s <= p < e}
    assert r.covers(s, e) == (set(range(s, e)) <= raw_points(a))


def test_json_round_trip() -> None:
    r = Ranges.of([(5, 9), (1, 3), (3, 4)])
    assert r.to_json() == [[1, 4], [5, 9]]
    assert Ranges.from_json(r.to_json()) == r
