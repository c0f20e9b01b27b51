"""One rate limiter shared by every request of a process, paced on a schedule that every
process on the host can share (one IP, one budget)."""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from upbit_cache.errors import IPBlockedError

MAX_MARGIN = 0.1  # seconds; a 429 at this margin means someone else shares the IP
# A strike (a 429 after a pause) is forgiven after this many seconds without one: Upbit
# answers 418 to "continuing to send after 429s", and the simulator remembers 429s for 10 s.
STRIKE_MEMORY = 10.0
SHARED_MARGIN = 0.05  # of the window, while other processes of the host send too


class Schedule(Protocol):
    """Hands out send times `spacing` apart (monotonic seconds), in this process or across
    every process of the host, and, when shared, keeps the host's recent sends."""

    def claim(self, now: float, spacing: float) -> float: ...

    def commit(self, now: float, window: float, capacity: int) -> float:
        """Record a send at `now` if the host's last `window` seconds have room for it, and
        return 0; else return how long to wait before trying again."""
        ...


def next_slot(due: float, now: float, spacing: float) -> tuple[float, float]:
    """(when to send, when the send after it is due), given when this one was due.

    Paced on the schedule, not on the last actual send: a send that woke a little late (a
    busy loop) does not push every later one back; one far behind starts a new schedule.
    """
    if now < due:
        return due, due + spacing
    return now, (due if now - due <= spacing else now) + spacing


class LocalSchedule:
    """Send times for this process alone."""

    def __init__(self) -> None:
        self._due = 0.0

    def claim(self, now: float, spacing: float) -> float:
        slot, self._due = next_slot(self._due, now, spacing)
        return slot

    def commit(self, now: float, window: float, capacity: int) -> float:
        return 0.0  # the limiter's own window holds this process's sends


class SharedCell(Protocol):
    """Numbers other processes share, updated atomically (the store's `HostCell`)."""

    def update(self, step: Callable[[list[float]], tuple[float, list[float]]]) -> float: ...


class SharedSchedule:
    """Send times shared through a `SharedCell` by every process on the host: the next due
    time first, then the host's last sends (for the rolling window).

    Slots alone do not hold a rolling window across processes: a process whose loop woke
    late (a busy CPU) sends close to the next process's on-time slot. So each send is also
    committed against the host's actual recent sends before it goes out.
    """

    def __init__(self, cell: SharedCell) -> None:
        self.cell = cell

    def claim(self, now: float, spacing: float) -> float:
        def step(values: list[float]) -> tuple[float, list[float]]:
            due = values[0] if values else 0.0
            if due > now + 60:  # left by another boot: the monotonic clock restarted
                due, values = 0.0, []
            slot, following = next_slot(due, now, spacing)
            return slot, [following, *values[1:]]

        return self.cell.update(step)

    def commit(self, now: float, window: float, capacity: int) -> float:
        me = float(os.getpid())

        def step(values: list[float]) -> tuple[float, list[float]]:
            due = values[0] if values else 0.0
            pairs = list(zip(values[1::2], values[2::2], strict=False))
            # Sends of several processes arrive with more jitter (each its own loop and
            # connection): then the window is kept SHARED_MARGIN wider.
            crowded = any(pid != me for _, pid in pairs)
            span = window * (1 + SHARED_MARGIN) if crowded else window
            recent = [(t, pid) for t, pid in pairs if now - span < t <= now + 60]
            if len(recent) >= capacity:
                return recent[0][0] + span - now, values
            kept = [*recent[max(0, len(recent) - capacity + 1) :], (now, me)]
            return 0.0, [due, *(x for pair in kept for x in pair)]

        return self.cell.update(step)


class RateLimiter:
    """At most `rate` sends in any sliding one-second window, evenly paced, first come first served.

    Sends are spaced `1/rate` apart (plus a hair) instead of going out in bursts: a server
    counting per rolling second then never sees a burst whose tail it handled late overlap
    the next burst's head. The window itself is still tracked, because `observe` folds in
    Upbit's `Remaining-Req` (another client on the same IP takes its share) and `on_429`
    pauses everyone, twice as long after each further strike; `block` (after a 418) makes
    every later send fail.

    The window is kept a `margin` longer than the server's, against jitter between our
    sends and Upbit's receipts. It starts tight (0.5% of the window: 200 requests take 20.1 s,
    not 20.3 s) and widens threefold on each strike, up to `MAX_MARGIN`.

    `clock`: the monotonic seconds the pauses and strikes are kept in (tests set it).
    """

    def __init__(
        self,
        rate: float,
        window: float = 1.0,
        margin: float = 0.005,
        schedule: Schedule | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.capacity = max(1, int(rate))
        self._base_window = window * self.capacity / rate
        self.margin = margin
        self.schedule: Schedule = schedule or LocalSchedule()
        self._sends: deque[float] = deque()
        self._lock = asyncio.Lock()
        self._clock = clock
        self._paused_until = 0.0
        self._strikes = 0
        self._struck_at = -1e9  # when the last strike paused everyone
        self._blocked: IPBlockedError | None = None

    async def acquire(self) -> float:
        """Wait for a free slot in the window, claim it, and return its monotonic time."""
        async with self._lock:
            while True:
                self._raise_if_blocked()
                now = self._clock()
                if now < self._paused_until:
                    await asyncio.sleep(self._paused_until - now)
                    continue
                while self._sends and self._sends[0] <= now - self.window:
                    self._sends.popleft()
                if len(self._sends) >= self.capacity:
                    await asyncio.sleep(self._sends[0] + self.window - now)
                    continue
                # The slot is ours once claimed (other processes of the host may hold the
                # ones before it); the window check above holds real sends to `rate`.
                slot = self.schedule.claim(now, self.spacing)
                if slot > now:
                    await asyncio.sleep(slot - now)
                while (wait := self.schedule.commit(self._clock(), self.window, self.capacity)) > 0:
                    await asyncio.sleep(wait)
                self._raise_if_blocked()
                sent = self._clock()
                self._sends.append(sent)
                return sent

    async def unpaused(self) -> float:
        """Wait out a pause (after a 429) without taking a slot: for requests of another
        group (the market list); the monotonic time to send at."""
        while True:
            self._raise_if_blocked()
            now = self._clock()
            if now >= self._paused_until:
                return now
            await asyncio.sleep(self._paused_until - now)

    def observe(self, remaining: int | None, sent_at: float) -> None:
        """Account for sends we did not make, as seen in Upbit's `sec=` count.

        Our own sends since `sent_at - window` are at least what Upbit counted of ours
        when it answered the request sent at `sent_at`; anything above is someone else's.
        """
        if remaining is None:
            return
        now = self._clock()
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

    @property
    def strikes(self) -> int:
        """429s that each paused everyone, less those forgiven (one per STRIKE_MEMORY s)."""
        return self._strikes

    @property
    def paused_until(self) -> float:
        """The monotonic time sends resume at (in the past: not paused)."""
        return self._paused_until

    def on_429(self, sent_at: float | None = None) -> None:
        """A 429 for a request sent at `sent_at` (None: just now): pause every send, twice as
        long as last time while strikes are remembered, and widen the margin.

        A 429 of a request sent before the last pause began is the same overrun, already
        answered by that pause: several requests in flight at once do not escalate it.
        """
        now = self._clock()
        if sent_at is not None and sent_at < self._struck_at:
            return
        quiet = now - self._struck_at
        if quiet >= STRIKE_MEMORY:
            self._strikes = max(0, self._strikes - int(quiet // STRIKE_MEMORY))
        self._strikes += 1
        self._struck_at = now
        self.margin = min(max(self.margin, 0.001) * 3, MAX_MARGIN)
        pause = self.window * 2 ** min(self._strikes - 1, 4)
        self._paused_until = max(self._paused_until, now + pause)

    def block(self, error: IPBlockedError) -> None:
        """After a 418: every waiting and later acquire raises (a copy of) `error`."""
        self._blocked = error

    def _raise_if_blocked(self) -> None:
        if self._blocked is not None:
            raise IPBlockedError(str(self._blocked), self._blocked.retry_after)
