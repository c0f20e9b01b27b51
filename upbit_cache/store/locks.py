"""Writer locks per (timeframe, market).

Writer locks keep overlapping runs from interleaving their writes; readers never lock, every
file appears by an atomic rename. On a local disk they are advisory `flock`s, released by
the kernel when a process dies (a SIGKILLed run never leaves a stale lock behind); on S3 the
writer lock is a lease object (store/lease.py); on any other filesystem, one writing
process at a time (store/claim.py).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from upbit_cache.errors import StorageError

if TYPE_CHECKING:
    import filelock

_POLL_SECONDS = 0.05
_READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)  # what a store we may only read says


class WriterLock:
    """An exclusive writer lock, taken with `async with` (polling, never blocking the loop).

    If another process holds it, `on_wait` is called once, and after `timeout` seconds
    (None: no limit) the wait ends with a StorageError naming `what`.
    """

    poll_seconds = _POLL_SECONDS

    def __init__(
        self,
        *,
        what: str,
        timeout: float | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.what, self.timeout, self.on_wait = what, timeout, on_wait

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never waits."""
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    async def _attempt(self) -> bool:
        return self.try_acquire()

    async def _release(self) -> None:
        self.release()

    async def __aenter__(self) -> WriterLock:
        if await self._attempt():
            return self
        if self.on_wait is not None:
            self.on_wait(self.what)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while not await self._attempt():
            if deadline is not None and time.monotonic() >= deadline:
                raise StorageError(
                    f"{self.what}: another upbit-cache run still holds its lock after "
                    f"{self.timeout:g} s (--lock-timeout); nothing was changed"
                )
            await asyncio.sleep(self.poll_seconds)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._release()


class FileLock(WriterLock):
    """A writer lock on a local disk: an advisory `flock` on one file, held by the kernel for
    as long as this process lives (a SIGKILLed run leaves no stale lock).

    The exclusive lock is `filelock`'s (polled without blocking, so the event loop never
    waits in the kernel). `shared`: a reader's lock (`verify`), held with other readers but
    never with a writer; `filelock` has no shared mode (its ReadWriteLock is an SQLite
    database, which would not exclude our writers' flocks) and always opens its file for
    writing, so that one is ours: it needs no write where the lock file cannot be created (a
    store this process may only read), it is opened read-only, and where there is none,
    there is nothing to lock.
    """

    def __init__(
        self,
        path: str,
        *,
        what: str = "",
        timeout: float | None = None,
        on_wait: Callable[[str], None] | None = None,
        shared: bool = False,
    ) -> None:
        super().__init__(what=what or path, timeout=timeout, on_wait=on_wait)
        self.path = path
        self.shared = shared
        self._fd: int | None = None  # a shared lock's
        self._exclusive: filelock.FileLock | None = None

    def try_acquire(self) -> bool:
        if self.shared:
            return self._try_shared()
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create lock file {self.path}: {exc.strerror}") from exc
        import filelock  # 25 ms: only a writer pays for it

        if self._exclusive is None:
            # One lock object per holder, not per process: two jobs of this process on one
            # series exclude each other as two processes do (flock is per open file).
            self._exclusive = filelock.FileLock(
                self.path, mode=0o644, thread_local=False, fallback_to_soft=False
            )
        try:
            self._exclusive.acquire(blocking=False)
        except filelock.Timeout:
            return False
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise StorageError(f"cannot lock {self.path} ({self.what}): {why}") from exc
        return True

    def _try_shared(self) -> bool:
        fd = self._open_shared()
        if fd is None:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def _open_shared(self) -> int | None:
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno not in _READ_ONLY:
                raise StorageError(f"cannot create lock file {self.path}: {exc.strerror}") from exc
        try:
            return os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None  # no writer ever locked it here, and this process cannot create it
        except OSError as exc:
            raise StorageError(f"cannot open lock file {self.path}: {exc.strerror}") from exc

    def release(self) -> None:
        if self._exclusive is not None and self._exclusive.is_locked:
            self._exclusive.release()
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
