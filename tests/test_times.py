"""Reading user-typed times: relative times, freqtrade's time ranges, windows, time zones."""

from __future__ import annotations

import pytest

from upbit_cache.errors import InvalidRangeError, UsageError
from upbit_cache.manager.scope import Window
from upbit_cache.ranges import TimeRange
from upbit_cache.times import check_timezone, parse_timerange, relative_ms, to_ms

NOW = to_ms("2026-11-20T00:20:00Z")
HOUR, DAY = 3_600_000, 86_400_000


@pytest.mark.parametrize(
    ("text", "ago"), [("-7d", 7 * DAY), ("-36h", 36 * HOUR), ("-2w", 14 * DAY), (" -1H ", HOUR)]
)
def test_relative_times_count_back_from_the_given_now(text: str, ago: int) -> None:
    assert relative_ms(text) == ago
    assert to_ms(text, now=NOW) == NOW - ago


@pytest.mark.parametrize("text", ["-7m", "-7", "7d", "-d", "--7d", "-1.5d"])
def test_what_is_not_a_relative_time_is_refused(text: str) -> None:
    assert relative_ms(text) is None
    with pytest.raises(InvalidRangeError, match="cannot read time"):
        to_ms(text, now=NOW)


def test_a_relative_time_beyond_a_century_is_refused() -> None:
    with pytest.raises(InvalidRangeError, match="more than 100 years"):
        relative_ms("-99999w")


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("20250101-20250701", (to_ms("2025-01-01"), to_ms("2025-07-01"))),
        ("20250101-", (to_ms("2025-01-01"), None)),
        ("-20250701", (None, to_ms("2025-07-01"))),
        ("1735689600-1751328000", (to_ms("2025-01-01"), to_ms("2025-07-01"))),
    ],
)
def test_freqtrade_timeranges(text: str, span: tuple[int | None, int | None]) -> None:
    assert parse_timerange(text) == span


@pytest.mark.parametrize("text", ["-", "2025-01-01", "20250101", "20251301-", "2025010-", "a-b"])
def test_bad_timeranges_are_refused(text: str) -> None:
    with pytest.raises(InvalidRangeError):
        parse_timerange(text)


def test_windows_resolve_relative_ends_against_the_runs_clock() -> None:
    window = Window.of(since="-7d", until="-1d")
    assert window.span_at(NOW) == TimeRange(NOW - 7 * DAY, NOW - DAY)
    later = NOW + DAY  # the same window a day later is a day later
    assert window.span_at(later) == TimeRange(later - 7 * DAY, later - DAY)
    mixed = Window.of(since="2026-11-01", until="-1h")
    assert mixed.span_at(NOW) == TimeRange(to_ms("2026-11-01"), NOW - HOUR)
    assert Window.of(since="-2d").span_at(NOW) == TimeRange(NOW - 2 * DAY, NOW)
    assert Window.of(days=3).span_at(NOW) == TimeRange(NOW - 3 * DAY, NOW)


def test_timerange_windows() -> None:
    window = Window.of(timerange="20261101-20261110")
    assert window.span_at(NOW) == TimeRange(to_ms("2026-11-01"), to_ms("2026-11-10"))
    assert Window.of(timerange="20261101-").span_at(NOW) == TimeRange(to_ms("2026-11-01"), NOW)
    # An open start is the beginning of each market's history.
    assert Window.of(timerange="-20261110").span_at(NOW) == TimeRange(0, to_ms("2026-11-10"))


def test_windows_that_cannot_be_served_are_refused() -> None:
    with pytest.raises(InvalidRangeError, match="not before"):
        Window.of(since="-1d", until="-2d")
    with pytest.raises(InvalidRangeError, match="not before"):
        Window.of(since="2026-11-02", until="2026-11-01")
    with pytest.raises(UsageError, match="not both"):
        Window.of(since="2026-11-01", timerange="20261101-")
    with pytest.raises(UsageError, match="not both"):
        Window.of(days=3, timerange="20261101-")
    with pytest.raises(UsageError, match="needs --since"):
        Window.of(until="-1d")
    with pytest.raises(InvalidRangeError, match="in the future"):
        Window.of(since="2026-12-01").span_at(NOW)
    with pytest.raises(InvalidRangeError, match="empty"):
        Window.of(since="2026-11-19T23:00", until="-2h").span_at(NOW)


def test_time_zones() -> None:
    assert check_timezone("Asia/Seoul") == "Asia/Seoul"
    assert check_timezone("utc") == "UTC"
    assert check_timezone("KST") == check_timezone("kst") == "Asia/Seoul"
    for bad in ("JST", "Asia/Nowhere", "../etc/passwd", ""):
        with pytest.raises(UsageError, match="unknown time zone"):
            check_timezone(bad)
