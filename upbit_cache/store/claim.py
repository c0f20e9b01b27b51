"""Writer locks where the filesystem has none (`OtherBackend`): one writing process at a time.

A filesystem that is neither a local disk nor S3 (`gs://`, `hdfs://`, `mock://`, a
`PyFileSystem`) offers no lock and no conditional write, so two processes writing one
series could each replace the other's file and lose rows. Such a data dir takes one writer
at a time, and says so rather than let a second one in:

- inside this process, the jobs of one series exclude each other (`InProcessLock`);
- the first writer lock this process takes writes a claim, `locks/writer.json`, naming it
  (host, boot, pid, start time, a token); it is rewritten every third of its time-to-live
  while held and removed when the last lock is released. A process that finds another's
  claim there gets a StorageError and writes nothing, unless that claim is provably dead:
  its holder was a process of this host that is gone, or the claim has not been rewritten
  for its time-to-live by the data dir's own clock (a host that died).

Without a create-only-if-absent, two processes starting in the same instant could both take
the claim: the claim is read back after it is written (the later write stands, its writer
goes on, the other stops), which leaves only the time between one's read-back and the
other's write. It guards against the mistake (two cron jobs overlapping), not a race
designed to win; a store that needs many writers is a local disk or S3.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, ClassVar, Protocol

from upbit_cache.errors import StorageError
from upbit_cache.store.lease import LEASE_SECONDS, Holder
from upbit_cache.store.locks import WriterLock

if TYPE_CHECKING:
    import pyarrow as pa


class _Files(Protocol):
    """What a claim needs of its backend (backends.OtherBackend)."""

    def stat_many(self, paths: list[str]) -> list[Any]: ...
    def read(self, path: str, *, for_update: bool = False) -> bytes | None: ...
    def write(self, path: str, write: Callable[[IO[bytes] | pa.NativeFile], object]) -> None: ...
    def delete(self, path: str) -> bool: ...
    def clock_ms(self, root: str) -> int: ...


MANY_WRITERS = "only a local disk (flock) or s3:// (conditional writes and leases) takes many"


class WriterClaim:
    """This process as the one writer of a data dir whose filesystem has no locks."""

    def __init__(self, backend: _Files, path: str, kind: str, ttl: float = LEASE_SECONDS) -> None:
        self.backend, self.path, self.kind, self.ttl = backend, path, kind, ttl
        self._holder = Holder.me(ttl)
        self._beat = 0
        self._held = 0  # writer locks of this process now holding the claim
        self._guard = threading.Lock()
        self._stop = threading.Event()

    def check(self, what: str) -> None:
        """Raise StorageError if another live process holds the claim (nothing is written);
        `what` this process would do (`lock 1h KRW-BTC`, `write`)."""
        other = self._other()
        if other is not None:
            raise StorageError(self._refusal(what, other))

    def take(self, what: str) -> None:
        """Hold the claim for one more writer lock of this process, or raise StorageError."""
        with self._guard:
            if self._held:
                self._held += 1
                return
            self.check(what)
            self.backend.write(self.path, lambda sink: sink.write(self._body()))
            back = Holder.parse(self.backend.read(self.path) or b"")
            if back is None or back.token != self._holder.token:
                # Another process wrote its claim between our look and our write: it goes on.
                raise StorageError(self._refusal(what, back))
            self._held = 1
            self._stop.clear()
            threading.Thread(target=self._keep_alive, name="writer-claim", daemon=True).start()

    def drop(self) -> None:
        """One writer lock fewer; the last one removes the claim (if it is still ours)."""
        with self._guard:
            self._held -= 1
            if self._held:
                return
            self._stop.set()
            found = Holder.parse(self.backend.read(self.path) or b"")
            if found is not None and found.token == self._holder.token:
                self.backend.delete(self.path)

    def _body(self) -> bytes:
        self._beat += 1
        return self._holder.encode(self._beat)

    def _keep_alive(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            with self._guard:
                if not self._held or self._stop.is_set():
                    return
                try:
                    found = Holder.parse(self.backend.read(self.path) or b"")
                    if found is not None and found.token != self._holder.token:
                        return  # lapsed while this process stalled, and taken: not ours
                    self.backend.write(self.path, lambda sink: sink.write(self._body()))
                except StorageError:
                    continue  # a hiccup of the store: the next rewrite is still in time

    def _other(self) -> Holder | None:
        """Another process's live claim, if there is one."""
        found = self.backend.stat_many([self.path])[0]
        if found is None:
            return None
        raw = self.backend.read(self.path)
        holder = Holder.parse(raw) if raw is not None else None
        if holder is not None and holder.token == self._holder.token:
            return None
        if holder is not None and holder.died_here():
            return None
        ttl = holder.ttl if holder is not None else self.ttl
        age = self.backend.clock_ms(self.path.rsplit("/", 2)[0]) - found.mtime_ms
        return holder if age < ttl * 1000 else None

    def _refusal(self, what: str, other: Holder | None) -> str:
        who = f"pid {other.pid} on {other.host}" if other is not None else "another process"
        return (
            f"cannot {what} on {self.kind}: another upbit-cache run ({who}) is writing "
            f"this data dir, and {self.kind} has no locks of its own, so it takes one writer "
            f"at a time ({MANY_WRITERS}); wait for that run to end (if it died on another "
            f"host, its claim {self.path} lapses {self.ttl:g} s after it stopped)"
        )


class InProcessLock(WriterLock):
    """A writer lock among the jobs of this process, with the data dir's writer claim."""

    _held: ClassVar[dict[str, int]] = {}  # path -> -1 (a writer) or the number of readers
    _guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        path: str,
        claim: WriterClaim,
        *,
        what: str,
        timeout: float | None = None,
        on_wait: Callable[[str], None] | None = None,
        shared: bool = False,
    ) -> None:
        super().__init__(what=what or path, timeout=timeout, on_wait=on_wait)
        self.path, self.claim, self.shared = path, claim, shared
        self._key = ""
        self._mine = False

    def try_acquire(self) -> bool:
        # Keyed by the claim too: two data dirs (or two stores standing for two processes)
        # never share a lock.
        key = f"{id(self.claim)}:{self.path}"
        with self._guard:
            now = self._held.get(key, 0)
            if now < 0 or (now > 0 and not self.shared):
                return False
            self._held[key] = now + 1 if self.shared else -1
        try:
            if self.shared:
                self.claim.check(f"lock {self.what}")  # a reader keeps out of a writer's way
            else:
                self.claim.take(f"lock {self.what}")
        except BaseException:
            self._give_back(key)
            raise
        self._key, self._mine = key, True
        return True

    async def _attempt(self) -> bool:
        return await asyncio.to_thread(self.try_acquire)  # the claim is read and written

    async def _release(self) -> None:
        await asyncio.to_thread(self.release)

    def release(self) -> None:
        if not self._mine:
            return
        self._mine = False
        try:
            if not self.shared:
                self.claim.drop()
        finally:
            self._give_back(self._key)

    def _give_back(self, key: str) -> None:
        with self._guard:
            now = self._held.get(key, 0)
            left = now - 1 if now > 0 else 0
            if left:
                self._held[key] = left
            else:
                self._held.pop(key, None)
