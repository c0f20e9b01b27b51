"""Writer locks per (timeframe, market).

Writer locks keep overlapping runs from interleaving their writes; readers never lock, every
file appears by an atomic rename. On a local disk they are advisory `flock`s, released by
the kernel when a process dies (a SIGKILLed run never leaves a stale lock behind); on S3 the
writer lock is a lease object (store/lease.py).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import time
from collections.abc import Callable
from types import TracebackType

from upbit_cache.errors import StorageError

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
    """A writer lock on a local disk: an advisory `flock` on one file.

    `shared`: a reader's lock (`verify`), held with other readers but never with a writer.
    It needs no write: where the lock file cannot be created (a store this process may only
    read) it is opened read-only, and where there is none, there is nothing to lock.
    """

    def __init__(
        self,
        path: str | None,
        *,
        what: str = "",
        timeout: float | None = None,
        on_wait: Callable[[str], None] | None = None,
        shared: bool = False,
    ) -> None:
        super().__init__(what=what or str(path), timeout=timeout, on_wait=on_wait)
        self.path = path  # None: nothing to lock (a filesystem with no locks of its own)
        self.shared = shared
        self._fd: int | None = None

    def _open(self) -> int | None:
        assert self.path is not None
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if not (self.shared and exc.errno in _READ_ONLY):
                raise StorageError(f"cannot create lock file {self.path}: {exc.strerror}") from exc
        try:
            return os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None  # no writer ever locked it here, and this process cannot create it
        except OSError as exc:
            raise StorageError(f"cannot open lock file {self.path}: {exc.strerror}") from exc

    def try_acquire(self) -> bool:
        if self.path is None:
            return True
        fd = self._open()
        if fd is None:
            return True
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
