"""Simulated wall clock shared by the simulator's data model and its HTTP layer."""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
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
    """Simulated "now" in epoch ms: either frozen at a set time or running at `speed` x real time.

    All methods are thread-safe: tests drive the clock from their own thread while the
    server loop reads it. Listeners (`add_listener`) are called after every change made by
    set/advance/freeze/run/set_speed, in the thread that made it.
    """

    def __init__(
        self, start: TimeLike | None = None, *, frozen: bool = False, speed: float = 1.0
    ) -> None:
        self._lock = threading.Lock()
        self._speed = _check_speed(speed)
        start_ms = self._wall_ms() if start is None else to_epoch_ms(start)
        # While running: now = anchor_sim + (monotonic - anchor_real) * speed.
        self._anchor_sim = start_ms
        self._anchor_real = time.monotonic_ns()
        self._frozen_at: int | None = start_ms if frozen else None
        self._listeners: list[Callable[[], None]] = []

    @staticmethod
    def _wall_ms() -> int:
        return time.time_ns() // 1_000_000

    def _running_ms(self) -> int:
        """Simulated time of a running clock (call with the lock held)."""
        elapsed = time.monotonic_ns() - self._anchor_real
        if self._speed != 1.0:
            elapsed = round(elapsed * self._speed)
        return self._anchor_sim + elapsed // 1_000_000

    def _anchor(self, sim_ms: int) -> None:
        """Restart the running clock at `sim_ms` (call with the lock held)."""
        self._anchor_sim = sim_ms
        self._anchor_real = time.monotonic_ns()

    def _notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    @property
    def frozen(self) -> bool:
        """True while the clock stands still."""
        with self._lock:
            return self._frozen_at is not None

    @property
    def speed(self) -> float:
        """How many simulated seconds pass per real second while running."""
        with self._lock:
            return self._speed

    def now_ms(self) -> int:
        """Current simulated time in epoch ms."""
        with self._lock:
            if self._frozen_at is not None:
                return self._frozen_at
            return self._running_ms()

    def real_seconds_until(self, sim_ms: int) -> float | None:
        """Real seconds until the clock reaches `sim_ms` (0 if past); None while frozen."""
        with self._lock:
            if self._frozen_at is not None:
                return None
            return max(0.0, (sim_ms - self._running_ms()) / self._speed / 1000)

    def set(self, value: TimeLike) -> None:
        """Jump to `value`; the mode (frozen or running) is kept."""
        target = to_epoch_ms(value)
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at = target
            else:
                self._anchor(target)
        self._notify()

    def advance(self, seconds: float) -> None:
        """Move the clock forward (or back, if negative) by `seconds`."""
        delta = round(seconds * 1000)
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at += delta
            else:
                self._anchor_sim += delta
        self._notify()

    def freeze(self) -> None:
        """Stop the clock at the current simulated time."""
        with self._lock:
            if self._frozen_at is None:
                self._frozen_at = self._running_ms()
        self._notify()

    def run(self) -> None:
        """Let the clock run again from where it stands."""
        with self._lock:
            if self._frozen_at is not None:
                self._anchor(self._frozen_at)
                self._frozen_at = None
        self._notify()

    def set_speed(self, speed: float) -> None:
        """Change the speed factor; the current simulated time is kept."""
        checked = _check_speed(speed)
        with self._lock:
            if self._frozen_at is None:
                self._anchor(self._running_ms())
            self._speed = checked
        self._notify()

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener()` after every change of the clock."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        """Stop calling `listener` (no error if it was not added)."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)


def _check_speed(speed: float) -> float:
    if isinstance(speed, bool) or not isinstance(speed, int | float):
        raise TypeError(f"speed must be a number, got {speed!r}")
    if not math.isfinite(speed) or speed <= 0:
        raise ValueError(f"speed must be a positive number, got {speed!r}")
    return float(speed)
