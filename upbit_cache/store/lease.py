"""The writer lock of an S3 data dir: a lease object that holds across hosts.

S3 has no locks, so a writer creates `locks/<tf>/<market>.lock` with `If-None-Match: *`
and, while it works, rewrites it every third of its time-to-live over its own version
(`If-Match`); it deletes it, over that version, when done. A waiter takes a lease over
(again `If-Match`, so only one waiter wins) when its holder has died on this host, or when
the lease has not changed for its time-to-live by the waiter's own clock: no clocks of two
hosts are ever compared. A holder that stalled past its time-to-live loses the lease, not
data: every write stays conditional on the version it read (objects.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass

from upbit_cache.errors import StorageError, WriteConflict
from upbit_cache.host import boot_id, process_start
from upbit_cache.store.locks import WriterLock
from upbit_cache.store.objects import ABSENT, ObjectClient

LEASE_SECONDS = 30.0


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, as written in it."""

    host: str
    boot: str
    pid: int
    started: str  # the process's start time: a reused pid is another process
    token: str
    ttl: float

    @classmethod
    def me(cls, ttl: float) -> Holder:
        pid = os.getpid()
        return cls(socket.gethostname(), boot_id(), pid, process_start(pid), uuid.uuid4().hex, ttl)

    @classmethod
    def parse(cls, raw: bytes) -> Holder | None:
        try:
            fields = json.loads(raw)
            return cls(**{k: fields[k] for k in cls.__dataclass_fields__})
        except (ValueError, TypeError, KeyError):
            return None  # damaged or foreign: treated as stale after a time-to-live

    def encode(self, beat: int = 0) -> bytes:
        """The lease's body; each renewal a new `beat`, so a new version (S3's ETag is the
        content's hash: the same bytes again would look like a holder that stopped)."""
        return json.dumps({**asdict(self), "beat": beat}).encode()

    def died_here(self) -> bool:
        """Whether this holder was a process of this host (this boot) that is gone."""
        if (self.host, self.boot) != (socket.gethostname(), boot_id()) or not self.boot:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # alive, another user's
        return process_start(self.pid) != self.started


class ObjectLease(WriterLock):
    """The lease on one object key, with the interface of every writer lock."""

    poll_seconds = 0.25

    def __init__(
        self,
        objects: ObjectClient,
        path: str,
        *,
        what: str,
        timeout: float | None = None,
        on_wait: Callable[[str], None] | None = None,
        ttl: float = LEASE_SECONDS,
    ) -> None:
        super().__init__(what=what, timeout=timeout, on_wait=on_wait)
        self.objects, self.path, self.ttl = objects, path, ttl
        self._version: str | None = None  # of our lease, while we hold it
        self._holder = Holder.me(ttl)
        self._beat = 0
        self._watched = ("", 0.0)  # the other holder's version, and since when (monotonic)
        self._guard = threading.Lock()  # a renewal and the release never cross
        self._renewal: asyncio.Task[None] | None = None
        self.lost = False

    def try_acquire(self) -> bool:
        try:
            self._version = self.objects.put(self.path, self._holder.encode(), ABSENT)
            return True
        except WriteConflict:
            pass
        raw, version = self.objects.get(self.path)
        if raw is None:
            return False  # released just now: the next attempt creates it
        now = time.monotonic()
        if version != self._watched[0]:
            self._watched = (version, now)
        holder = Holder.parse(raw)
        ttl = holder.ttl if holder is not None else self.ttl
        if not (now - self._watched[1] >= ttl or (holder is not None and holder.died_here())):
            return False
        try:
            self._version = self.objects.put(self.path, self._holder.encode(), version)
            return True
        except WriteConflict:
            return False  # another waiter took it over first

    def release(self) -> None:
        with self._guard:
            version, self._version = self._version, None
        if version is None:
            return
        with contextlib.suppress(WriteConflict):  # taken over after we stalled: not ours
            self.objects.delete(self.path, version)

    def renew(self) -> None:
        """Rewrite the lease over our version, so waiters see it alive."""
        with self._guard:
            if self._version is None:
                return
            self._beat += 1
            try:
                body = self._holder.encode(self._beat)
                self._version = self.objects.put(self.path, body, self._version)
            except WriteConflict:
                self._version, self.lost = None, True

    async def _attempt(self) -> bool:
        if not await asyncio.to_thread(self.try_acquire):
            return False
        self._renewal = asyncio.create_task(self._keep_alive())
        return True

    async def _keep_alive(self) -> None:
        while not self.lost:
            await asyncio.sleep(self.ttl / 3)
            try:
                await asyncio.to_thread(self.renew)
            except StorageError:
                continue  # a hiccup of the store: the next renewal is still in time

    async def _release(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            self._renewal = None
        await asyncio.to_thread(self.release)
