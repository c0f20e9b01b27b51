"""Writer locks per (timeframe, market), so overlapping runs never interleave their writes.

Readers never lock: every file appears by an atomic rename. Locks are advisory `flock`s on
files under the data dir, released by the kernel when a process dies (a SIGKILLed run never
leaves a stale lock behind).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from types import TracebackType

from upbit_cache.errors import StorageError

_POLL_SECONDS = 0.05


class FileLock:
    """An exclusive lock on one file, taken with `async with` (polling, never blocking the loop)."""

    def __init__(self, path: str | None) -> None:
        self.path = path  # None: nothing to lock (a store that is not on local disk)
        self._fd: int | None = None

    def _open(self) -> int:
        assert self.path is not None
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot create lock file {self.path}: {exc.strerror}") from exc

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never waits."""
        if self.path is None:
            return True
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
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

    async def __aenter__(self) -> FileLock:
        while not self.try_acquire():
            await asyncio.sleep(_POLL_SECONDS)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
