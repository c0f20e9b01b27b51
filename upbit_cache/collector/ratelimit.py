"""One rate limiter shared by every request of a process, paced on a schedule that every
process on the host can share (one IP, one budget).

Upbit counts a request when it gets it, not when we let it go. Between the two lie a new
connection's set-up, our loop busy parsing, Upbit's own queue: measured against the
simulator on a busy 2-core machine, 5-20 ms often and 100-180 ms at times, against a 5 ms
margin, so eleven requests let go a steady second apart could land inside one of its
seconds. So each send is counted from the latest moment Upbit may have counted it, as far
as we can tell: "now" until its headers are written, then their time; and an answer slower
than the quickest round trip seen lately may have waited in Upbit's queue before it was
counted, so the send counts that much later (less the margin, which covers that much;
at most MAX_LATE).

Across processes the same holds through the host's cell: a send is held there at "now"
until it is written (for at most HOLD), then at its wire time, moved as its answer says; one
that goes out more than RETAKE after the slot it took gives that slot back and takes one at
the moment it really goes (`sending`, just before the write). So a process the OS put aside
between its slot and its write never lands in a window the others filled meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from upbit_cache.errors import IPBlockedError

MAX_MARGIN = 0.1  # seconds; a 429 at this margin means someone else shares the IP
# A strike (a 429 after a pause) is forgiven after this many seconds without one: Upbit
# answers 418 to "continuing to send after 429s", and the simulator remembers 429s for 10 s.
STRIKE_MEMORY = 10.0
SHARED_MARGIN = 0.05  # of the window, while other processes of the host send too
# Seconds: a request is taken as counted at most this long after it went out; an answer
# later than that is slow work at Upbit, not a late count (it bounds what a slow answer costs).
MAX_LATE = 0.1
_ROUND_TRIPS = 64  # answers the quickest round trip is taken from
# Slots a schedule may fall behind and still catch up. A send the window holds back (its
# request of ten sends before was answered late) would otherwise shift every later slot:
# measured on an overloaded 2-core machine, that cost 3-15% of the pace; with this, ~1%.
CATCH_UP = 5
# Seconds a send may go out after its slot was taken; later (the OS ran something else, a
# new connection took long, the pool had no free one) it takes a slot anew before its write.
RETAKE = 0.5
# Seconds other processes see a send not yet written at "now", at most: it may be going out
# any moment (its owner writes it within RETAKE of its slot, or takes another; HOLD - RETAKE
# is what the OS may put it aside for between that check and the write).
HOLD = 1.0


@dataclass(eq=False)
class Send:
    """One paced request (monotonic seconds): let go at `released`, its headers written at
    `wire`, its answer's headers read at `answered`; `shared` is the time the host's
    schedule holds for it."""

    released: float
    wire: float | None = None
    answered: float | None = None
    shared: float | None = None
    writing: bool = False  # past `RateLimiter.sending`: its write follows at once


class Schedule(Protocol):
    """Hands out send times `spacing` apart (monotonic seconds), in this process or across
    every process of the host, and, when shared, keeps the host's recent sends."""

    def claim(self, now: float, spacing: float) -> float: ...

    def commit(self, now: float, window: float, capacity: int) -> float:
        """Record a send at `now` if the host's last `window` seconds have room for it, and
        return 0; else return how long to wait before trying again."""
        ...

    def retake(self, old: float | None, now: float, window: float, capacity: int) -> float:
        """Give back this process's send recorded at `old` (None: none) and commit one at
        `now`, as `commit` does (when there is no room, `old` is given back all the same)."""
        ...

    def amend(self, old: float, new: float) -> None:
        """This process's send recorded at `old` was written and counts from `new` (later)
        on."""
        ...

    def release(self, old: float) -> None:
        """This process's send recorded at `old` never went out."""
        ...


def next_slot(due: float, now: float, spacing: float) -> tuple[float, float]:
    """(when to send, when the send after it is due), given when this one was due.

    Paced on the schedule, not on the last actual send: a send that woke late (a busy loop,
    or one the window held back) does not push every later one back; the next ones catch
    up at twice the pace, so that an answer (its `Remaining-Req`) still comes between two
    sends. One more than CATCH_UP slots behind starts a new schedule.
    """
    if now < due:
        return due, due + spacing
    if now - due > spacing * CATCH_UP:
        return now, now + spacing
    return now, max(due + spacing, now + spacing / 2)


class LocalSchedule:
    """Send times for this process alone."""

    def __init__(self) -> None:
        self._due = 0.0

    def claim(self, now: float, spacing: float) -> float:
        slot, self._due = next_slot(self._due, now, spacing)
        return slot

    def commit(self, now: float, window: float, capacity: int) -> float:
        return 0.0  # the limiter's own window holds this process's sends

    def retake(self, old: float | None, now: float, window: float, capacity: int) -> float:
        return 0.0

    def amend(self, old: float, new: float) -> None:
        return None

    def release(self, old: float) -> None:
        return None


class SharedCell(Protocol):
    """Numbers other processes share, updated atomically (`hostcell.HostCell`)."""

    def update(self, step: Callable[[list[float]], tuple[float, list[float]]]) -> float: ...


def _seen(at: float, tag: float, now: float) -> float:
    """When a send of the host's cell may count, as seen at `now`: a written one (its
    owner's pid as tag) from `at`; one not yet written (its pid negated) maybe now, for up
    to HOLD."""
    return at if tag > 0 else max(at, min(now, at + HOLD))


class SharedSchedule:
    """Send times shared through a `SharedCell` by every process on the host: the next due
    time first, then the host's recent sends (for the rolling window), each as its time and
    its process's pid, negated until the send is written.

    Slots alone do not hold a rolling window across processes: a process whose loop woke
    late (a busy CPU) sends close to the next process's on-time slot. So each send is also
    committed against the host's recent sends before it goes out, seen where they may count
    (`_seen`): its owner records when it really went out, and later if its answer says so.
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
        return self.retake(None, now, window, capacity)

    def retake(self, old: float | None, now: float, window: float, capacity: int) -> float:
        me = float(os.getpid())

        def step(values: list[float]) -> tuple[float, list[float]]:
            due = values[0] if values else 0.0
            pairs = _pairs(values)
            if old is not None:
                pairs = [p for p in pairs if not _mine(p, me, old)]
            # Sends of several processes arrive with more jitter (each its own loop and
            # connection): then the window is kept SHARED_MARGIN wider.
            crowded = any(abs(tag) != me for _, tag in pairs)
            span = window * (1 + SHARED_MARGIN) if crowded else window
            recent = [
                (t, tag) for t, tag in pairs if now - span < _seen(t, tag, now) and t <= now + 60
            ]
            if len(recent) >= capacity:
                seen = sorted(_seen(t, tag, now) for t, tag in recent)
                return seen[-capacity] + span - now, _values(due, recent)
            return 0.0, _values(due, [*recent, (now, -me)])

        return self.cell.update(step)

    def amend(self, old: float, new: float) -> None:
        me = float(os.getpid())

        def step(values: list[float]) -> tuple[float, list[float]]:
            pairs = _pairs(values)
            for i, pair in enumerate(pairs):
                if _mine(pair, me, old):
                    pairs[i] = (new, me)
                    return 0.0, _values(values[0], pairs)
            return 0.0, values  # already left the window

        self.cell.update(step)

    def release(self, old: float) -> None:
        me = float(os.getpid())

        def step(values: list[float]) -> tuple[float, list[float]]:
            pairs = [p for p in _pairs(values) if not _mine(p, me, old)]
            return 0.0, _values(values[0] if values else 0.0, pairs)

        self.cell.update(step)


_CELL_SENDS = 64  # sends a cell keeps at most (its file has room for about a hundred)


def _pairs(values: list[float]) -> list[tuple[float, float]]:
    return list(zip(values[1::2], values[2::2], strict=False))


def _mine(pair: tuple[float, float], me: float, at: float) -> bool:
    return abs(pair[1]) == me and abs(pair[0] - at) < 2e-6  # the cell keeps microseconds


def _values(due: float, pairs: list[tuple[float, float]]) -> list[float]:
    kept = sorted(pairs)[-_CELL_SENDS:]
    return [due, *(x for pair in kept for x in pair)]


class RateLimiter:
    """At most `rate` sends in any sliding one-second window, evenly paced, first come first served.

    Sends are spaced `1/rate` apart (plus a hair) instead of going out in bursts: a server
    counting per rolling second then never sees a burst whose tail it handled late overlap
    the next burst's head. The window itself is still tracked, because `observe` folds in
    Upbit's `Remaining-Req` (another client on the same IP takes its share) and `on_429`
    pauses everyone, twice as long after each further strike; `block` (after a 418) makes
    every later send fail.

    Each send is counted from the latest moment Upbit may have counted it (see the module
    docstring): the client reports when it went out (`sent`) and was answered (`answered`).
    The window is kept a `margin` longer than the server's, against what that leaves
    unseen. It starts tight (0.5% of the window: 200 requests take 20.1 s, not 20.3 s) and
    widens threefold on each strike, up to `MAX_MARGIN`.

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
        self._sends: list[Send] = []
        self._round_trips: deque[float] = deque(maxlen=_ROUND_TRIPS)
        self._lock = asyncio.Lock()
        self._clock = clock
        self._paused_until = 0.0
        self._strikes = 0  # 429s that each paused everyone, less those forgiven (STRIKE_MEMORY)
        self._struck_at = -1e9  # when the last strike paused everyone
        self._blocked: IPBlockedError | None = None

    async def acquire(self) -> Send:
        """Wait for a free slot in the window, claim it, and return the send it is."""
        async with self._lock:
            claimed = False
            while True:
                if await self._paused():
                    continue
                now = self._clock()
                wait = self._window_wait(now)
                if wait > 0:
                    # Sends in flight may move later meanwhile: look again within a spacing.
                    await asyncio.sleep(min(wait, self.spacing))
                    continue
                if not claimed:
                    # The slot is ours once claimed (other processes of the host may hold
                    # the ones before it); the window check holds real sends to `rate`.
                    slot, claimed = self.schedule.claim(now, self.spacing), True
                    if slot > now:
                        await asyncio.sleep(slot - now)
                        continue
                now = self._clock()
                wait = self.schedule.commit(now, self.window, self.capacity)
                if wait > 0:
                    # Sends of other processes are written meanwhile: look again soon.
                    await asyncio.sleep(min(wait, self.spacing))
                    continue
                send = Send(released=now, shared=now)
                self._sends.append(send)
                return send

    async def sending(self, send: Send) -> None:
        """`send` is about to be written (the client's trace hook, just before the write).

        Its slot was taken when it was let go; a connection's set-up, a wait for a free one
        or the OS running other work may have put it off since. More than RETAKE late, it
        gives that slot back and takes one now, waiting for room in the window if need be:
        other processes saw it at its slot, and a send written long after it could join a
        window they filled meanwhile. Its wire time is read once the write is done.
        """
        if send.writing:
            return
        if send.shared is not None and self._clock() - send.shared > RETAKE:
            await self._retake(send)
        send.writing = True
        # Called back on the loop's next turn: after the write that follows this hook.
        asyncio.get_running_loop().call_soon(self.sent, send)

    async def _paused(self) -> bool:
        """Raise if blocked; sit out a 429 pause and say so (the caller looks again)."""
        self._raise_if_blocked()
        now = self._clock()
        if now < self._paused_until:
            await asyncio.sleep(self._paused_until - now)
            return True
        return False

    async def _retake(self, send: Send) -> None:
        while True:
            if await self._paused():
                continue
            now = self._clock()
            wait = self._window_wait(now, without=send)
            if wait <= 0:
                wait = self.schedule.retake(send.shared, now, self.window, self.capacity)
                # Given back either way; held again only if there was room.
                send.shared = now if wait <= 0 else None
                if wait <= 0:
                    return
            await asyncio.sleep(min(wait, self.spacing))

    def sent(self, send: Send) -> None:
        """`send`'s headers were just written."""
        send.writing = True
        if send.wire is None:
            send.wire = self._clock()
            self._share(send, written=True)

    def answered(self, send: Send, *, failed: bool = False) -> None:
        """`send`'s answer just came (`failed`: its connection broke instead)."""
        now = self._clock()
        if send.wire is None and not send.writing:  # it never went out: Upbit did not count it
            if send in self._sends:
                self._sends.remove(send)
            if send.shared is not None:
                self.schedule.release(send.shared)
                send.shared = None
            return
        if send.wire is None:  # written, but `sent` had not run yet
            send.wire = now
            self._share(send, written=True)
        if send.answered is None:
            send.answered = now
            if not failed:
                self._round_trips.append(now - send.wire)
            self._share(send)

    def counted(self, send: Send, now: float) -> float:
        """The latest moment Upbit may have counted `send` at, as far as we know at `now`."""
        if send.wire is None:
            return now  # it goes out at the earliest now
        end = now if send.answered is None else send.answered
        quickest = min(self._round_trips, default=end - send.wire)
        # The margin already covers a count this late; only what lies beyond it moves the
        # send (every millisecond moved slows the pace by as much).
        late = min(end - send.wire - quickest, MAX_LATE) - self.margin
        return send.wire + max(late, 0.0)

    def _window_wait(self, now: float, without: Send | None = None) -> float:
        """How long until the window has room for one more send (0: now), leaving out
        `without` (a send taking its slot anew)."""
        self._sends = [s for s in self._sends if not self._gone(s, now)]
        others = [s for s in self._sends if s is not without]
        if len(others) < self.capacity:
            return 0.0
        counted = sorted(self.counted(s, now) for s in others)
        recent = [t for t in counted if t > now - self.window]
        if len(recent) < self.capacity:
            return 0.0
        return recent[-self.capacity] + self.window - now

    def _gone(self, send: Send, now: float) -> bool:
        """Out of the window for good: its count can move no later."""
        if send.wire is None:
            return False
        final = send.answered is not None or send.wire + MAX_LATE <= now
        return final and self.counted(send, now) <= now - self.window

    def _share(self, send: Send, *, written: bool = False) -> None:
        # Other processes of the host pace on the cell: once it is `written` they see it no
        # longer as maybe "now" but at its wire time, and see it move later if it does.
        if send.shared is None:
            return
        counted = max(self.counted(send, self._clock()), send.shared)
        if written or counted - send.shared > 1e-4:
            self.schedule.amend(send.shared, counted)
            send.shared = counted

    async def unpaused(self) -> float:
        """Wait out a pause (after a 429) without taking a slot: for requests of another
        group (the market list); the monotonic time to send at."""
        while True:
            self._raise_if_blocked()
            now = self._clock()
            if now >= self._paused_until:
                return now
            await asyncio.sleep(self._paused_until - now)

    def observe(self, remaining: int | None, send: Send) -> None:
        """Account for sends we did not make, as seen in Upbit's `sec=` count.

        When Upbit answered `send`, it had counted ours of the window before it; anything
        above that is someone else's.
        """
        if remaining is None:
            return
        now = self._clock()
        at = self.counted(send, now)
        ours = sum(1 for s in self._sends if at - self.window < self.counted(s, now) <= at)
        foreign = (self.capacity - remaining) - ours
        for _ in range(max(0, foreign)):
            self._sends.append(Send(released=now, wire=now, answered=now))

    @property
    def window(self) -> float:
        return self._base_window + self.margin

    @property
    def spacing(self) -> float:
        return self.window / self.capacity

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
