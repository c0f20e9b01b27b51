"""Reading the times users type: dates and ISO datetimes, UTC unless they say otherwise."""

from __future__ import annotations

from datetime import UTC, datetime

from upbit_cache.errors import InvalidRangeError, UsageError

# A pandas Timestamp is a datetime too; pandas is not imported here to keep CLI start fast.
TimeLike = str | int | datetime


def to_ms(value: TimeLike) -> int:
    """Epoch ms of `2026-11-01`, `2026-11-01T09:00`, `...+09:00`, a datetime, or ms as int."""
    if isinstance(value, bool):
        raise InvalidRangeError(f"not a time: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        stamp = value
    else:
        try:
            stamp = datetime.fromisoformat(str(value).strip())
        except ValueError as exc:
            raise InvalidRangeError(
                f"cannot read time {value!r}: use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+09:00]"
            ) from exc
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return int(stamp.timestamp() * 1000)


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def iso(ms: int, tz: str = "UTC") -> str:
    """`2026-11-01T09:00:00Z` for epoch ms; in another zone with its offset:
    `2026-11-01T18:00:00+09:00` in Asia/Seoul."""
    if tz == "UTC":
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    from zoneinfo import ZoneInfo

    return datetime.fromtimestamp(ms / 1000, ZoneInfo(tz)).isoformat(timespec="seconds")


def check_timezone(name: str) -> str:
    """`name` if it is a time zone of the IANA database (`UTC`, `Asia/Seoul`), else a
    UsageError."""
    if name.strip().upper() == "UTC":
        return "UTC"
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"unknown time zone {name!r}: use UTC or a name such as Asia/Seoul"
        ) from None
    return name


MAX_SPAN_MS = 36_500 * 86_400_000  # 100 years: any window, retention or age beyond is a typo
_DURATION_UNITS = {"h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}


def parse_duration(text: str, option: str) -> int:
    """Milliseconds of `90d`, `36h` or `2w` (the unit is required: `m` would be ambiguous)."""
    value = text.strip().lower()
    number, unit = value[:-1], value[-1:]
    if unit not in _DURATION_UNITS or not number.isdigit():
        raise UsageError(f"{option}: cannot read {text!r}; use a number and h, d or w, e.g. 90d")
    ms = int(number) * _DURATION_UNITS[unit]
    if ms > MAX_SPAN_MS:
        raise UsageError(f"{option}: {text} is more than 100 years")
    return ms
