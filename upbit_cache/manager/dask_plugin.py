"""A Dask worker plugin of `fetch --dask`: no statistical profiler where it can hang the worker.

Dask's workers sample every thread's stack every 10 ms (`sys._current_frames()`). On CPython
before 3.11.9 and 3.12.3 a garbage collection during that call can deadlock the interpreter
(the runtime's thread-list lock against the GIL, python/cpython#106883): a fetch task then
stops mid-run with no error, its worker alive and silent. Seen here on 3.11.7 in about one
run of 13. The plugin stops the profiler on such workers (also on one a nanny starts again
later); newer interpreters keep it. Imported only by manager/distributed.py, once
`distributed` is known to be installed.
"""

from __future__ import annotations

import sys
from typing import Any

from distributed import WorkerPlugin

NAME = "upbit-cache-no-profiler"


def profiler_may_deadlock(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> bool:
    """Whether `sys._current_frames()` can deadlock on this CPython (python/cpython#106883)."""
    return version < (3, 11, 9) or (3, 12) <= version < (3, 12, 3)


class NoProfiler(WorkerPlugin):
    """Stops the worker's statistical profiler where it may deadlock the interpreter."""

    def setup(self, worker: Any) -> None:
        if profiler_may_deadlock():
            for name in ("profile", "profile-cycle"):
                callback = worker.periodic_callbacks.pop(name, None)
                if callback is not None:
                    callback.stop()
