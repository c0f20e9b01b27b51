"""Sync calls wherever Python runs: a script, a Jupyter cell, an async app.

Every I/O method of `UpbitCache` is a coroutine at heart (`afetch`, `aget`, ...); its sync
twin runs that coroutine here and returns its result. With no event loop running in the
calling thread (a script, cron, the CLI) that is `asyncio.run`, as before. With one running
(a Jupyter cell runs inside the kernel's loop; `asyncio.run` would refuse, and the loop
cannot be re-entered without patching asyncio), the coroutine goes to a private loop in a
helper thread, started on first need and reused, and the caller blocks until it is done:
its result, or its exception as raised, comes back. An aiohttp session belongs to the loop
it was opened on, so every call opens its own on the loop that runs it.

Ctrl-C while waiting cancels the coroutine at its next await (pages that arrived are
written, locks released, as `asyncio.run` does), waits for it to wind down, then raises
KeyboardInterrupt; a second Ctrl-C stops the wait.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from upbit_cache.errors import UsageError

T = TypeVar("T")


class Runner:
    """Runs coroutines to completion for sync callers; one helper loop, made on first need."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._aside: _Aside | None = None
        self._finalizer: weakref.finalize[[], Runner] | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` and return its result (raise its exception), from any thread."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        try:
            aside = self._start()
            # A sync call from inside one of ours would wait on itself.
            if running is aside.loop:
                raise UsageError(
                    "a sync UpbitCache method was called from code the same cache is running "
                    "(a callback): await its async twin (afetch, aget, ...) instead"
                )
        except BaseException:
            coro.close()  # never started: no "never awaited" warning
            raise
        return aside.run(coro)

    def close(self) -> None:
        """Stop the helper loop and its thread, if started (idempotent)."""
        with self._guard:
            finalizer, self._finalizer, self._aside = self._finalizer, None, None
        if finalizer is not None:
            finalizer()

    def _start(self) -> _Aside:
        with self._guard:
            if self._aside is None or not self._aside.thread.is_alive():
                self._aside = _Aside()
                # The thread holds only the loop, never the cache: a cache that is dropped
                # stops its thread (and at exit, any still running).
                self._finalizer = weakref.finalize(self, self._aside.stop)
            return self._aside


class _Aside:
    """An event loop running forever in a daemon thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, name="upbit-cache loop", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            # Stopped: what is left is cancelled and the loop closed, as `asyncio.run` ends.
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop and wait for it; see the module's docstring for Ctrl-C."""
        done: Future[T] = Future()  # settled when the task ends, however it ends
        ended = threading.Event()  # (`wait()` on a future never hears of a cancel)
        tasks: list[asyncio.Task[T]] = []

        def settle(task: asyncio.Task[T]) -> None:
            _settle(done, task)
            ended.set()

        def start() -> None:
            task = self.loop.create_task(coro)
            task.add_done_callback(settle)
            tasks.append(task)

        self.loop.call_soon_threadsafe(start)
        try:
            return done.result()
        except KeyboardInterrupt:
            # Cancelled at its next await, in its own thread, then waited for: its cleanup
            # writes what arrived and releases its locks. Ctrl-C again stops the wait.
            self.loop.call_soon_threadsafe(lambda: [t.cancel() for t in tasks])
            ended.wait()
            raise

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not self.thread:  # a finalizer may run on it
            self.thread.join()


def _settle(done: Future[T], task: asyncio.Task[T]) -> None:
    """Hand the task's outcome to the waiting thread: its result, or its very exception."""
    if task.cancelled():
        done.cancel()
    elif task.exception() is not None:
        done.set_exception(task.exception())
    else:
        done.set_result(task.result())
