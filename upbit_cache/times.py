"""Reading the times users type: dates and ISO datetimes, UTC unless they say otherwise."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from upbit_cache.errors import InvalidRangeError

TimeLike = str | int | datetime | pd.Timestamp


def to_ms(value: TimeLike) -> int:
    """Epoch ms of `2026-11-01`, `2026-11-01T09:00`, `...+09:00`, a datetime, or ms as int."""
    if isinstance(value, bool):
        raise InvalidRangeError(f"not a time: {value!r}")
    if isinstance(value, int):
        return value
    try:
        stamp = pd.Timestamp(value.strip() if isinstance(value, str) else value)
    except (ValueError, TypeError) as exc:
        raise InvalidRangeError(
            f"cannot read time {value!r}: use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+09:00]"
        ) from exc
    if stamp is pd.NaT:
        raise InvalidRangeError(f"not a time: {value!r}")
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize(UTC)
    return int(stamp.timestamp() * 1000)


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def iso(ms: int) -> str:
    """`2026-11-01T09:00:00Z` for epoch ms."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
