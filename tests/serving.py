"""`upbit-cache serve` in a test: a server over a fresh data dir, in front of a simulator, on
a loop of its own in a helper thread (so that blocking clients can call it)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from conftest import DEADLINE

from upbit_cache import UpbitCache
from upbit_cache.manager.keep import Keeper
from upbit_cache.server.app import serve
from upbit_cache.timeframes import Timeframe

# Mid-hour, just into a minute: pages without `to` have an in-progress candle, and our view
# of Upbit's clock (which runs on while the simulator's is frozen) stays in the same minute
# for the 55 s a test may take on a loaded machine.
SERVE_NOW = "2026-11-20T00:30:05Z"


class Serving:
    """A running `serve`; `url` is where it listens, `stop()` ends it."""

    def __init__(
        self,
        upstream: str,
        data_dir: Path,
        *,
        pages: str = "window",
        fresh: float = 60.0,
        rate: float = 200.0,
        in_progress: Callable[[str, Timeframe], dict[str, Any] | None] | None = None,
        ws_url: str | None = None,
        keep: tuple[list[str], str] | None = None,
    ) -> None:
        """`ws_url`: the relay at /websocket/v1 over that upstream; `keep`: (markets,
        timeframes) kept fresh by a Keeper on the same stream."""
        self.cache = UpbitCache(data_dir, api_url=upstream, ws_url=ws_url, rate=rate)
        self.keeper = Keeper(self.cache, *keep) if keep is not None else None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self.url = ""

        def ready(url: str) -> None:
            self.url = url
            self._ready.set()

        async def main() -> None:
            self._task = asyncio.current_task()  # type: ignore[assignment]
            await serve(
                self.cache,
                "127.0.0.1",
                0,
                pages=pages,
                fresh=fresh,
                in_progress=in_progress,
                relay=ws_url is not None,
                keeper=self.keeper,
                on_ready=ready,
            )

        def run() -> None:
            try:
                self._loop.run_until_complete(main())
            except asyncio.CancelledError:
                pass
            finally:
                self._ready.set()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not self._ready.wait(DEADLINE) or not self.url:
            raise RuntimeError("serve did not start")

    def stop(self) -> None:
        if self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(DEADLINE)
        self._loop.close()
        self.cache.close()


@contextmanager
def serving(upstream: str, data_dir: Path, **options: Any) -> Iterator[Serving]:
    server = Serving(upstream, data_dir, **options)
    try:
        yield server
    finally:
        server.stop()
