"""Retry policies, by name, in one place (tenacity): what is tried again, how many times, and
how long is waited before each try. The code that retries names its policy, runs its
attempts (`for attempt in policy: with attempt: ...`) and says what went wrong when the
tries run out (the last failure is raised again).

    http(retries, backoff)   one request: transient failures, and 429s (each kind counted apart)
    bad_page()               a candle page whose answers failed the checks
    reconnect(link)          the WebSocket trade stream, after a drop
    write_race()             a read-merge-write another host's writer got to first (S3)
    walk_race()              a folder listing that a writer changed under pyarrow's walk

Each call makes a new policy: a tenacity object holds the state of the attempts run with it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from upbit_cache.errors import ResponseFormatError, WriteConflict

HTTP_BACKOFF_CAP = 10.0  # seconds: the longest wait before asking again
RATE_LIMIT_RETRIES = 8  # 429s to one request that are asked again; the next fails it
PAGE_ATTEMPTS = 3  # a page whose answers fail the checks this often fails its job
PAGE_DELAY = 0.25  # seconds before asking a page again, doubling
FIRST_CONNECT_TRIES = 3  # a stream that never connected gives up after this many
RECONNECT_CAP = 1.0  # seconds: back within about 1.5 s of the server's return
WRITE_ATTEMPTS = 20  # rounds of read-merge-write lost to other hosts' writers
READ_ATTEMPTS = 20  # reads of a series whose listed files keep moving (candle_store)
WALK_TRIES = 3  # listings of a folder that keeps changing under the walk


class Transient(Exception):
    """A failure worth asking again (5xx, timeout, broken connection, undecodable body)."""


class RateLimited(Exception):
    """HTTP 429 to a request released at `sent_at`: ask again once the rate limiter's pause
    is over (the pause is the wait)."""

    def __init__(self, sent_at: float) -> None:
        super().__init__("HTTP 429")
        self.sent_at = sent_at


class Dropped(Exception):
    """The WebSocket connection ended (its reason is the message)."""


def http(
    retries: int, backoff: float, before_retry: Callable[[BaseException], None]
) -> AsyncRetrying:
    """One request: up to `retries` more tries after transient failures, waiting `backoff`
    seconds doubling, times 0.5-1.5 (jitter), at most HTTP_BACKOFF_CAP; and up to
    RATE_LIMIT_RETRIES more after 429s, with no wait of its own. Each kind counts its own
    failures: a 429 does not use up a transient failure's tries, nor the reverse.
    `before_retry(failure)` is told of each failure that will be tried again."""
    tally = _Tally(
        {Transient: retries, RateLimited: RATE_LIMIT_RETRIES},
        {
            Transient: lambda n: min(
                backoff * 2.0 ** (n - 1) * random.uniform(0.5, 1.5), HTTP_BACKOFF_CAP
            )
        },
    )
    return AsyncRetrying(
        retry=tally.retry,
        stop=tally.stop,
        wait=tally.wait,
        before_sleep=lambda state: before_retry(_failed(state)),
        reraise=True,
    )


def bad_page() -> AsyncRetrying:
    """A page that failed the checks (ResponseFormatError) is asked again: PAGE_ATTEMPTS in
    all, waiting PAGE_DELAY seconds, doubling."""
    return AsyncRetrying(
        retry=retry_if_exception_type(ResponseFormatError),
        stop=stop_after_attempt(PAGE_ATTEMPTS),
        wait=wait_exponential(multiplier=PAGE_DELAY),
        reraise=True,
    )


class Link(Protocol):
    """What the trade stream knows between its connections (websocket.py keeps it)."""

    connected_once: bool
    failures: int  # connections lost or refused since the last one that subscribed
    errors: int  # transient error frames with no trade in between


def reconnect(link: Link) -> AsyncRetrying:
    """The stream connects again after each drop (`Dropped`), forever once it has connected;
    one that never did gives up after FIRST_CONNECT_TRIES. The wait starts at a quarter
    second and doubles with each failure (or error frame) in a row, at most RECONNECT_CAP,
    times 1-1.5 (jitter): Upbit allows 5 new connections a second."""

    def stop(state: RetryCallState) -> bool:
        return not link.connected_once and link.failures >= FIRST_CONNECT_TRIES

    def wait(state: RetryCallState) -> float:
        backoff = min(RECONNECT_CAP, 0.25 * 2.0 ** (max(link.failures, link.errors) - 1))
        return backoff * random.uniform(1.0, 1.5)

    return AsyncRetrying(retry=retry_if_exception_type(Dropped), stop=stop, wait=wait, reraise=True)


def write_race() -> Retrying:
    """A write that lost to another host's writer (WriteConflict) reads, merges and writes
    again: WRITE_ATTEMPTS in all, waiting 10-50 ms times the attempt (apart, at random)."""
    return Retrying(
        retry=retry_if_exception_type(WriteConflict),
        stop=stop_after_attempt(WRITE_ATTEMPTS),
        wait=lambda state: random.uniform(0.01, 0.05) * state.attempt_number,
        reraise=True,
    )


def walk_race() -> Retrying:
    """A folder listing pyarrow gave up on (FileNotFoundError: a folder another writer
    created or emptied mid-walk) is listed again at once: WALK_TRIES in all."""
    return Retrying(
        retry=retry_if_exception_type(FileNotFoundError),
        stop=stop_after_attempt(WALK_TRIES),
        reraise=True,
    )


@dataclass
class _Tally:
    """Retry limits and waits per kind of failure, for one policy: tenacity counts every
    attempt together, so each kind's failures are counted here (by `retry`, which tenacity
    asks first after every attempt)."""

    limits: Mapping[type[BaseException], int]  # kind -> retries allowed
    waits: Mapping[type[BaseException], Callable[[int], float]]  # kind -> n-th retry's wait
    counts: dict[type[BaseException], int] = field(default_factory=dict)
    last: type[BaseException] | None = None

    def retry(self, state: RetryCallState) -> bool:
        failure = state.outcome.exception() if state.outcome is not None else None
        kind = next((k for k in self.limits if isinstance(failure, k)), None)
        if kind is None:
            return False
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.last = kind
        return True

    def stop(self, state: RetryCallState) -> bool:
        assert self.last is not None
        return self.counts[self.last] > self.limits[self.last]

    def wait(self, state: RetryCallState) -> float:
        assert self.last is not None
        wait = self.waits.get(self.last)
        return wait(self.counts[self.last]) if wait is not None else 0.0


def _failed(state: RetryCallState) -> BaseException:
    """The exception a failed attempt ended with."""
    failure = state.outcome.exception() if state.outcome is not None else None
    assert failure is not None
    return failure
