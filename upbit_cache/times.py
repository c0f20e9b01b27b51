"""Reading the times users type: dates and ISO datetimes, UTC unless they say otherwise."""

from __future__ import annotations

from datetime import UTC, datetime

from upbit_cache.errors import InvalidRangeError

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


def iso(ms: int) -> str:
    """`2026-11-01T09:00:00Z` for epoch ms."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
