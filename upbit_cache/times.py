"""Reading the times users type: dates, ISO datetimes (UTC unless they say otherwise), times
relative to now (`-7d`), freqtrade's time ranges (`20250101-20250701`), and time zones."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from upbit_cache.errors import InvalidRangeError, UsageError

# A pandas Timestamp is a datetime too; pandas is not imported here to keep CLI start fast.
TimeLike = str | int | datetime

MAX_SPAN_MS = 36_500 * 86_400_000  # 100 years: any window, retention or age beyond is a typo
_DURATION_UNITS = {"h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
_RELATIVE = re.compile(r"-([0-9]+)([hdw])")
# freqtrade's --timerange: dates (YYYYMMDD) or epoch seconds, either end open.
_TIMERANGE = re.compile(r"([0-9]{8}|[0-9]{10})?-([0-9]{8}|[0-9]{10})?")
_TIME_FORMS = "YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS][+09:00] or -7d (h, d or w before now)"


def to_ms(value: TimeLike, now: int | None = None) -> int:
    """Epoch ms of `2026-11-01`, `2026-11-01T09:00`, `...+09:00`, a datetime, ms as int, or a
    time relative to `now` (default: this host's clock) such as `-7d`, `-36h` or `-2w`."""
    if isinstance(value, bool):
        raise InvalidRangeError(f"not a time: {value!r}")
    if isinstance(value, int):
        return value
    ago = relative_ms(value)
    if ago is not None:
        return (now_ms() if now is None else now) - ago
    if isinstance(value, datetime):
        stamp = value
    else:
        try:
            stamp = datetime.fromisoformat(str(value).strip())
        except ValueError as exc:
            raise InvalidRangeError(f"cannot read time {value!r}: use {_TIME_FORMS}") from exc
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return int(stamp.timestamp() * 1000)


def relative_ms(value: TimeLike) -> int | None:
    """How long before now a relative time (`-7d`, `-36h`, `-2w`) is, in ms; None if `value`
    is not relative."""
    if not isinstance(value, str):
        return None
    found = _RELATIVE.fullmatch(value.strip().lower())
    if found is None:
        return None
    ago = int(found[1]) * _DURATION_UNITS[found[2]]
    if ago > MAX_SPAN_MS:
        raise InvalidRangeError(f"{value.strip()} is more than 100 years ago")
    return ago


def parse_timerange(text: str) -> tuple[int | None, int | None]:
    """freqtrade's `--timerange`: `20250101-20250701`, `20250101-` or `-20250701` (UTC dates,
    or epoch seconds); epoch ms of [start, end), either end open (None)."""
    found = _TIMERANGE.fullmatch(text.strip())
    if found is None or (found[1] is None and found[2] is None):
        raise InvalidRangeError(
            f"cannot read time range {text!r}: use YYYYMMDD-YYYYMMDD (either end may be left "
            "out: 20250101- or -20250701)"
        )
    return _range_end(found[1]), _range_end(found[2])


def _range_end(text: str | None) -> int | None:
    if text is None:
        return None
    if len(text) == 10:
        return int(text) * 1000
    try:
        day = datetime.strptime(text, "%Y%m%d").replace(tzinfo=UTC)
    except ValueError as exc:
        raise InvalidRangeError(f"cannot read date {text!r} of the time range") from exc
    return int(day.timestamp() * 1000)


# Zone abbreviations people type for the zones this tool is about (an abbreviation is not an
# IANA name, and most are ambiguous: only these are taken).
ZONE_ALIASES = {"KST": "Asia/Seoul"}


def check_timezone(name: str) -> str:
    """`name` if it is a time zone of the IANA database (`UTC`, `Asia/Seoul`), `KST` as
    Asia/Seoul, else a UsageError (with the zone meant, if a name ends like one: `Seoul`)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if name.strip().upper() == "UTC":
        return "UTC"
    alias = ZONE_ALIASES.get(name.strip().upper())
    if alias is not None:
        return alias
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        hint = _zone_meant(name)
        raise UsageError(
            f"unknown time zone {name!r}: "
            + (f"did you mean {hint}?" if hint else "use UTC or a name such as Asia/Seoul")
        ) from None
    return name


def _zone_meant(name: str) -> str | None:
    """The one IANA zone whose last part is `name` (any case), if there is one."""
    from zoneinfo import available_timezones

    wanted = name.strip().replace(" ", "_").lower()
    found = [z for z in available_timezones() if z.rpartition("/")[2].lower() == wanted]
    return found[0] if len(found) == 1 else None


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def iso(ms: int, tz: str = "UTC") -> str:
    """`2026-11-01T09:00:00Z` for epoch ms; in another zone with its offset:
    `2026-11-01T18:00:00+09:00` in Asia/Seoul."""
    if tz == "UTC":
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    from zoneinfo import ZoneInfo

    return datetime.fromtimestamp(ms / 1000, ZoneInfo(tz)).isoformat(timespec="seconds")


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
