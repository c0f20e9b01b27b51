"""One rate limiter shared by every request of a process."""

from __future__ import annotations

import asyncio
import time
from collections import deque

from upbit_cache.errors import IPBlockedError

MAX_MARGIN = 0.1  # seconds; a 429 at this margin means someone else shares the IP


class RateLimiter:
    """At most `rate` sends in any sliding one-second window, evenly paced, first come first served.

    Sends are spaced `1/rate` apart (plus a hair) instead of going out in bursts: a server
    counting per rolling second then never sees a burst whose tail it handled late overlap
    the next burst's head. The window itself is still tracked, because `observe` folds in
    Upbit's `Remaining-Req` (another client on the same IP takes its share) and `on_429`
    pauses everyone; `block` (after a 418) makes every later send fail.

    The window is kept a `margin` longer than the server's, against jitter between our
    sends and Upbit's receipts. It starts tight (0.5% of the window: 200 requests take 20.1 s,
    not 20.3 s) and widens threefold on each 429, up to `MAX_MARGIN`.
    """

    def __init__(self, rate: float, window: float = 1.0, margin: float = 0.005) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.capacity = max(1, int(rate))
        self._base_window = window * self.capacity / rate
        self.margin = margin
        self._sends: deque[float] = deque()
        self._next_slot = 0.0  # when the next send is due by the pace
        self._lock = asyncio.Lock()
        self._paused_until = 0.0
        self._strikes = 0
        self._blocked: str | None = None

    async def acquire(self) -> float:
        """Wait for a free slot in the window, claim it, and return its monotonic time."""
        async with self._lock:
            while True:
                self._raise_if_blocked()
                now = time.monotonic()
                if now < self._paused_until:
                    await asyncio.sleep(self._paused_until - now)
                    continue
                while self._sends and self._sends[0] <= now - self.window:
                    self._sends.popleft()
                if len(self._sends) >= self.capacity:
                    await asyncio.sleep(self._sends[0] + self.window - now)
                elif now < self._next_slot:
                    await asyncio.sleep(self._next_slot - now)
                else:
                    # Pace on the schedule, not on the last actual send: a send that woke a
                    # little late (a busy loop) does not push every later one back; the
                    # window check above still holds the real sends to `rate` a second.
                    behind = now - self._next_slot <= self.spacing
                    self._next_slot = (self._next_slot if behind else now) + self.spacing
                    self._sends.append(now)
                    return now

    def observe(self, remaining: int | None, sent_at: float) -> None:
        """Account for sends we did not make, as seen in Upbit's `sec=` count.

        Our own sends since `sent_at - window` are at least what Upbit counted of ours
        when it answered the request sent at `sent_at`; anything above is someone else's.
        """
        if remaining is None:
            return
        self._strikes = 0
        now = time.monotonic()
        ours = sum(1 for t in self._sends if t > sent_at - self.window)
        foreign = (self.capacity - remaining) - ours
        for _ in range(max(0, foreign)):
            self._sends.append(now)

    @property
    def window(self) -> float:
        return self._base_window + self.margin

    @property
    def spacing(self) -> float:
        return self.window / self.capacity

    def on_429(self) -> None:
        """Pause all sends for a window, longer after repeated 429s, and widen the margin."""
        self.margin = min(max(self.margin, 0.001) * 3, MAX_MARGIN)
        self._strikes += 1
        pause = self.window * 2 ** min(self._strikes - 1, 4)
        self._paused_until = max(self._paused_until, time.monotonic() + pause)

    def block(self, message: str) -> None:
        """After a 418: every waiting and later acquire raises IPBlockedError."""
        self._blocked = message

    def _raise_if_blocked(self) -> None:
        if self._blocked is not None:
            raise IPBlockedError(self._blocked)
