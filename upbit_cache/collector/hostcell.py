"""The host's shared send schedule: a few numbers every upbit-cache process of this host and
user reads and updates in place, so that processes on one IP share Upbit's one budget.

A small file in the runtime dir (UPBIT_CACHE_RUNTIME_DIR, else a folder of this user's in
the temp dir), one per API, under an exclusive `flock` held for microseconds. Not the data
dir: the budget is this host's, whichever data dirs its runs use.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from collections.abc import Callable

from upbit_cache.errors import StorageError
from upbit_cache.settings import ENV_RUNTIME_DIR

_CELL_BYTES = 4096


class HostCell:
    """A few numbers shared by every upbit-cache process of this host and user, updated in
    place under an exclusive flock (held for microseconds): the rate limiter's schedule and
    recent sends, so that processes on one IP share one budget (collector/ratelimit.py)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    @classmethod
    def for_api(cls, api_url: str, runtime_dir: str | None = None) -> HostCell:
        """The cell of one API (a test simulator on another port has its own), in
        `runtime_dir` (None: a folder of this user's in the temp dir)."""
        folder = runtime_dir or os.path.join(tempfile.gettempdir(), f"upbit-cache-{os.getuid()}")
        name = hashlib.sha1(api_url.encode(), usedforsecurity=False).hexdigest()[:16]
        return cls(os.path.join(folder, f"pace-{name}"))

    def update(self, step: Callable[[list[float]], tuple[float, list[float]]]) -> float:
        """Replace the values v with step(v)[1] atomically; return step(v)[0]."""
        fd = self._open()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            try:
                values = [float(x) for x in os.pread(fd, _CELL_BYTES, 0).decode().split()]
            except ValueError:
                values = []  # damaged: start afresh (it only paces requests)
            answer, values = step(values)
            text = " ".join(f"{v:.6f}" for v in values).encode()
            os.pwrite(fd, text.ljust(_CELL_BYTES)[:_CELL_BYTES], 0)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        return answer

    def check(self) -> None:
        """Open the cell now: a runtime dir that cannot hold it fails the run once, before
        any work (StorageError, exit 2), not each market at its first request."""
        self._open()

    def _open(self) -> int:
        if self._fd is None:
            folder = os.path.dirname(self.path)
            try:
                os.makedirs(folder, mode=0o700, exist_ok=True)
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                why = exc.strerror or str(exc)
                if isinstance(exc, FileExistsError | NotADirectoryError):
                    why = "it is not a folder"  # a file where the folder (or a parent) goes
                raise StorageError(
                    f"cannot use the runtime dir {folder} ({ENV_RUNTIME_DIR}), where this "
                    f"host's runs share Upbit's request budget: {why}"
                ) from exc
        return self._fd
