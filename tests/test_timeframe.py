"""The one timeframe type: parsing, endpoints, alignment, divisibility."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from upbit_cache.errors import InvalidTimeframeError
from upbit_cache.timeframes import SUPPORTED, Timeframe
from upbit_cache.times import to_ms

NAMES = "1s 1m 3m 5m 10m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M 1y".split()


def test_parses_exactly_the_supported_names() -> None:
    assert [tf.name for tf in SUPPORTED] == NAMES
    assert Timeframe.parse("1M").kind == "month"
    assert Timeframe.parse("1m").kind == "minute"
    assert Timeframe.parse("1s").kind == "second"
    assert Timeframe.parse("1y").kind == "year"


@pytest.mark.parametrize("bad", ["2m", "", "2s", "h", "1.5h", "../1h", "90m", "14d"])
def test_rejects_anything_else_listing_what_is_valid(bad: str) -> None:
    with pytest.raises(InvalidTimeframeError, match="use one of 1s 1m 3m 5m"):
        Timeframe.parse(bad)


@pytest.mark.parametrize(
    ("bad", "meant"),
    [("60m", "1h"), ("1H", "1h"), ("1Y", "1y"), ("60s", "1m"), ("7d", "1w"), ("5min", "5m")],
)
def test_the_same_period_written_otherwise_is_refused_with_a_hint(bad: str, meant: str) -> None:
    with pytest.raises(InvalidTimeframeError, match=f"'{bad}': did you mean {meant}\\?$"):
        Timeframe.parse(bad)


def test_parse_list_keeps_order_and_drops_repeats() -> None:
    assert [t.name for t in Timeframe.parse_list("15m,1h,15m, 4h")] == ["15m", "1h", "4h"]
    with pytest.raises(InvalidTimeframeError):
        Timeframe.parse_list(" , ")


@pytest.mark.parametrize(
    ("name", "endpoint"),
    [
        ("1m", "candles/minutes/1"),
        ("1h", "candles/minutes/60"),
        ("4h", "candles/minutes/240"),
        ("1d", "candles/days"),
        ("1w", "candles/weeks"),
        ("1M", "candles/months"),
        ("1s", "candles/seconds"),
        ("1y", "candles/years"),
        ("2h", None),
        ("3d", None),
    ],
)
def test_native_endpoints(name: str, endpoint: str | None) -> None:
    assert Timeframe.parse(name).endpoint == endpoint


@pytest.mark.parametrize(
    ("name", "at", "start"),
    [
        ("4h", "2026-11-25T03:59:59", "2026-11-25T00:00:00"),
        ("4h", "2026-11-25T04:00:00", "2026-11-25T04:00:00"),
        ("1d", "2026-11-25T23:59:00", "2026-11-25T00:00:00"),
        ("1w", "2026-11-25T10:00:00", "2026-11-23T00:00:00"),  # a Wednesday -> Monday
        ("1w", "2026-11-23T00:00:00", "2026-11-23T00:00:00"),
        ("1M", "2026-02-28T23:00:00", "2026-02-01T00:00:00"),
        ("15m", "2026-11-25T10:44:59", "2026-11-25T10:30:00"),
        ("1s", "2026-11-25T10:44:59.999", "2026-11-25T10:44:59"),
        ("1y", "2026-12-31T23:59:59", "2026-01-01T00:00:00"),
        ("1y", "2028-02-29T12:00:00", "2028-01-01T00:00:00"),
    ],
)
def test_alignment(name: str, at: str, start: str) -> None:
    assert Timeframe.parse(name).floor_one(to_ms(at)) == to_ms(start)


def test_months_shift_and_count_by_calendar() -> None:
    month = Timeframe.parse("1M")
    jan = to_ms("2026-01-01")
    assert month.shift_one(jan, 2) == to_ms("2026-03-01")
    assert month.shift_one(jan, -1) == to_ms("2025-12-01")
    assert month.count_periods(jan, to_ms("2027-01-01")) == 12
    assert month.ceil_one(to_ms("2026-01-02")) == to_ms("2026-02-01")


def test_years_shift_and_count_by_calendar() -> None:
    year = Timeframe.parse("1y")
    start = to_ms("2024-01-01")
    assert year.shift_one(start, 3) == to_ms("2027-01-01")
    assert year.shift_one(start, -1) == to_ms("2023-01-01")
    assert year.count_periods(start, to_ms("2034-01-01")) == 10
    assert year.ceil_one(to_ms("2024-06-01")) == to_ms("2025-01-01")
    assert year.fixed_ms is None and year.approx_ms == 365 * 86_400_000
    starts = np.array([start, to_ms("2020-01-01")], dtype=np.int64)
    ends = np.array([to_ms("2026-01-01"), to_ms("2021-01-01")], dtype=np.int64)
    assert list(year.periods_between(starts, ends)) == [2, 1]


def test_floor_is_vectorised() -> None:
    hour = Timeframe.parse("1h")
    times = np.array([to_ms("2026-01-01T00:59"), to_ms("2026-01-01T01:00")], dtype=np.int64)
    assert list(hour.floor(times)) == [to_ms("2026-01-01T00:00"), to_ms("2026-01-01T01:00")]


@pytest.mark.parametrize(
    ("fine", "coarse", "divides"),
    [
        ("15m", "1h", True),
        ("1h", "4h", True),
        ("4h", "1d", True),
        ("1d", "1w", True),
        ("1d", "1M", True),
        ("1h", "1M", True),
        ("1w", "1M", False),
        ("3d", "1w", False),
        ("4h", "6h", False),
        ("2h", "6h", True),
        ("1h", "15m", False),
        ("1d", "3d", True),
        ("1s", "1m", True),
        ("1s", "4h", True),
        ("1s", "1w", True),
        ("1s", "1y", True),
        ("1m", "1s", False),
        ("1M", "1y", True),
        ("1d", "1y", True),
        ("1h", "1y", True),
        ("1w", "1y", False),
        ("3d", "1y", False),
        ("1y", "1M", False),
    ],
)
def test_divides(fine: str, coarse: str, divides: bool) -> None:
    assert Timeframe.parse(fine).divides(Timeframe.parse(coarse)) is divides


def test_divisors_are_finer_only() -> None:
    four = Timeframe.parse("4h")
    assert [t.name for t in four.divisors()] == [
        "1s", "1m", "3m", "5m", "10m", "15m", "30m", "1h", "2h"
    ]  # fmt: skip
    coarse = [t.name for t in Timeframe.parse("1y").divisors() if t.kind != "minute"]
    assert coarse == ["1s", "1d", "1M"]  # not 3d or 1w: they do not fit a year


@settings(max_examples=300)
@given(
    name=st.sampled_from(NAMES),
    ms=st.integers(min_value=to_ms("2001-01-01"), max_value=to_ms("2099-12-31")),
    periods=st.integers(min_value=-40, max_value=40),
)
def test_single_time_helpers_agree_with_the_vectorised_ones(
    name: str, ms: int, periods: int
) -> None:
    tf = Timeframe.parse(name)
    start = int(tf.floor(np.array([ms]))[0])
    assert tf.floor_one(ms) == start
    moved = int(tf.shift(np.array([start]), periods)[0])
    assert tf.shift_one(start, periods) == moved
    assert tf.count_periods(min(start, moved), max(start, moved)) == abs(periods)
