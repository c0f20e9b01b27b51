"""Simulated wall clock shared by the simulator's data model and its HTTP layer."""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime

__all__ = ["SimClock", "format_utc", "to_epoch_ms"]

TimeLike = datetime | int | float | str

_ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")


def to_epoch_ms(value: TimeLike) -> int:
    """Epoch ms from a datetime or ISO-8601 string (either without zone = UTC) or epoch ms."""
    if isinstance(value, bool):
        raise TypeError("a bool is not a time")
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if not _ISO_RE.match(text):
            raise ValueError(f"not an ISO-8601 date-time: {value!r}")
        value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return round(value.timestamp() * 1000)


def format_utc(ms: int) -> str:
    """Render epoch ms as `YYYY-MM-DDTHH:MM:SS.mmmZ`."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


class SimClock:
    """Simulated "now" in epoch ms: either frozen at a set time or running as real time + offset.

    All methods are thread-safe: tests drive the clock from their own thread while the
    server loop reads it.
    """

    def __init__(self, start: TimeLike | None = None, *, frozen: bool = False) -> None:
        self._lock = threading.Lock()
        real = self._real_ms()
        start_ms = real if start is None else to_epoch_ms(start)
        self._offset_ms = start_ms - real
        self._frozen_at: int | None = start_ms if frozen else None

    @staticmethod
    def _real_ms() -> int:
        return time.time_ns() // 1_000_000

    @property
    def frozen(self) -> bool:
        """True while the clock stands still."""
        with self._lock:
            return self._frozen_at is not None

    def now_ms(self) -> int:
        """Current simulated time in epoch ms."""
        with self._lock:
            if self._frozen_at is not None:
                return self._frozen_at
            return self._real_ms() + self._offset_ms

    def set(self, value: TimeLike) -> None:
        """Jump to `value`; the mode (frozen or running) is kept."""
        target = to_epoch_ms(value)
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at = target
            else:
                self._offset_ms = target - self._real_ms()

    def advance(self, seconds: float) -> None:
        """Move the clock forward (or back, if negative) by `seconds`."""
        delta = round(seconds * 1000)
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at += delta
            else:
                self._offset_ms += delta

    def freeze(self) -> None:
        """Stop the clock at the current simulated time."""
        with self._lock:
            if self._frozen_at is None:
                self._frozen_at = self._real_ms() + self._offset_ms

    def run(self) -> None:
        """Let the clock run again from where it stands."""
        with self._lock:
            if self._frozen_at is not None:
                self._offset_ms = self._frozen_at - self._real_ms()
                self._frozen_at = None
