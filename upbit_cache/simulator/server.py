"""Configuration and runners: the simulator in a background thread, or in the foreground."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web

from .app import DETAILS_MODES, PAGE_MODES, RateLimiter, RestSettings, SimState, build_app
from .clock import SimClock, TimeLike
from .control import FaultQueue, Stats
from .history import History
from .stamps import listening
from .ws import LIMITS_PER, WS_PATH, WsSettings

__all__ = ["SimulatorConfig", "SimulatorServer", "make_history", "make_state", "start_site"]


@dataclass(frozen=True)
class SimulatorConfig:
    """How to run the simulator.

    `clock_start` None means real time; `frozen` stops the clock (at `clock_start`, or at the
    real time of start-up); `clock_speed` N makes simulated time run N x real time (REST and
    WebSocket alike). `listings` overrides listing times (market -> time). The `ws_*` fields
    set the WebSocket's idle timeout (real seconds), its limits (new connections per second
    per IP, subscribe messages per second and per minute, counted per `ws_limits_per`: "ip"
    or "connection") and the shortest real interval between two pushes of one candle stream.

    Strictness, each off by default (today's answers); `strict()` turns on a realistic set:

    - `store_lag`: REST counts each trade up to this many seconds after it happens (a
      deterministic lag per trade), and a candle's `timestamp` is its last trade's stored time;
      the WebSocket and the ticker see trades at once.
    - `pages`: "window" = a page holds the candles inside the `count` periods before `to`;
      "newest" = the `count` newest existing candles before `to`, past any empty periods.
    - `quiet`: market -> spans [start, end) without any trade; `long_quiet`: the sparse BTC-
      and USDT- markets go quiet for 8 to 25 days, three times a year.
    - `details`: which market/all parameter gives `market_event`: "both" (`isDetails` or
      `is_details`), "is_details" (the current name only) or "ignored" (none).
    - `plain_429`: a 429's body is Upbit's plain text, not JSON.
    - `clamp_count`: a `count` above 200 is answered with 200 candles instead of a 400.
    """

    host: str = "127.0.0.1"
    port: int = 0
    latency: float = 0.0
    jitter: float = 0.0
    rate: int = 10
    ban_after_429s: int = 15
    ban_seconds: float = 30.0
    clock_start: TimeLike | None = None
    frozen: bool = False
    listings: Mapping[str, TimeLike] | None = None
    clock_speed: float = 1.0
    ws_idle_timeout: float = 120.0
    ws_connect_rate: int = 5
    ws_subscribe_rate: int = 5
    ws_subscribe_per_minute: int = 100
    ws_candle_interval: float = 1.0
    ws_limits_per: str = "ip"
    store_lag: float = 0.0
    pages: str = "window"
    quiet: Mapping[str, Sequence[tuple[TimeLike, TimeLike]]] | None = None
    long_quiet: bool = False
    details: str = "both"
    plain_429: bool = False
    clamp_count: bool = False

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("pages", self.pages, PAGE_MODES),
            ("details", self.details, DETAILS_MODES),
            ("ws_limits_per", self.ws_limits_per, LIMITS_PER),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if not self.store_lag >= 0:
            raise ValueError(f"store_lag must be >= 0 seconds, got {self.store_lag}")

    @classmethod
    def strict(cls, **overrides: Any) -> SimulatorConfig:
        """As strict as the real Upbit: 2 s store lag, "newest" pages, long quiet stretches,
        only `is_details`, plain-text 429s, counts clamped to 200; `overrides` set any field
        (`pages="window"` keeps the other page reading)."""
        values: dict[str, Any] = {
            "store_lag": 2.0,
            "pages": "newest",
            "long_quiet": True,
            "details": "is_details",
            "plain_429": True,
            "clamp_count": True,
        }
        return cls(**(values | overrides))


def make_history(config: SimulatorConfig) -> History:
    """The market data `config` describes."""
    return History(
        config.listings,
        store_lag_ms=round(config.store_lag * 1000),
        quiet=config.quiet,
        long_quiet=config.long_quiet,
    )


def make_state(config: SimulatorConfig, history: History | None = None) -> SimState:
    """Fresh shared state (history, clock, limiter, faults, counters) for `config`."""
    return SimState(
        history=history if history is not None else make_history(config),
        clock=SimClock(config.clock_start, frozen=config.frozen, speed=config.clock_speed),
        limiter=RateLimiter(
            config.rate, ban_after_429s=config.ban_after_429s, ban_seconds=config.ban_seconds
        ),
        faults=FaultQueue(),
        stats=Stats(),
        latency=config.latency,
        jitter=config.jitter,
        ws_settings=WsSettings(
            idle_timeout=config.ws_idle_timeout,
            connect_rate=config.ws_connect_rate,
            subscribe_rate=config.ws_subscribe_rate,
            subscribe_per_minute=config.ws_subscribe_per_minute,
            candle_interval=config.ws_candle_interval,
            limits_per=config.ws_limits_per,
        ),
        rest=RestSettings(
            pages=config.pages,
            details=config.details,
            plain_429=config.plain_429,
            clamp_count=config.clamp_count,
        ),
    )


async def start_site(state: SimState, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Serve the app on host:port (0 = any free port); returns the runner and the base URL."""
    # A short shutdown timeout: requests parked by "slow" faults must not hold up a stop.
    runner = web.AppRunner(build_app(state), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    # A socket of our own: the rate limit counts each request from the kernel's receive time.
    site = web.SockSite(runner, listening(host, port))
    await site.start()
    bound_host, bound_port = runner.addresses[0][:2]
    if ":" in bound_host:  # IPv6 literal
        bound_host = f"[{bound_host}]"
    return runner, f"http://{bound_host}:{bound_port}"


class SimulatorServer:
    """The simulator on loopback, served from a background thread with its own event loop.

    Every public method may be called from any thread.
    """

    def __init__(
        self, config: SimulatorConfig | None = None, *, history: History | None = None
    ) -> None:
        self.config = config or SimulatorConfig()
        self.state = make_state(self.config, history)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._url: str | None = None

    @property
    def history(self) -> History:
        """The deterministic market data being served."""
        return self.state.history

    @property
    def clock(self) -> SimClock:
        """The simulated clock (drive it with set/advance/freeze/run)."""
        return self.state.clock

    @property
    def faults(self) -> FaultQueue:
        """Pending faults; `faults.inject(kind, count, market, path, seconds)` adds some."""
        return self.state.faults

    @property
    def url(self) -> str:
        """Base URL such as http://127.0.0.1:54321 (only while running)."""
        if self._url is None:
            raise RuntimeError("the simulator is not running")
        return self._url

    @property
    def ws_url(self) -> str:
        """WebSocket URL such as ws://127.0.0.1:54321/websocket/v1 (only while running)."""
        return "ws" + self.url.removeprefix("http") + WS_PATH

    def drop_websockets(self, down_for: float = 0.0) -> int:
        """Cut every open WebSocket abruptly (like POST /_sim/ws/drop); returns how many.
        With `down_for`, new connections are refused for that many seconds (an outage)."""
        loop = self._loop
        if loop is None:
            return 0

        async def drop() -> int:
            return self.state.ws.drop_all(down_for)

        return asyncio.run_coroutine_threadsafe(drop(), loop).result(timeout=10)

    def stats(self) -> dict[str, Any]:
        """Snapshot of the request counters."""
        return self.state.stats.snapshot()

    def reset_stats(self) -> None:
        """Zero the request counters."""
        self.state.stats.reset()

    def reset(self) -> None:
        """Zero counters, drop pending faults and forget rate-limit state (keeps the clock)."""
        self.state.reset()

    def start(self) -> SimulatorServer:
        """Bind and start serving; returns once the port is open."""
        if self._thread is not None:
            raise RuntimeError("already started")
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="upbit-simulator", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError("the simulator failed to start") from self._error
        return self

    def stop(self) -> None:
        """Stop serving and join the thread (idempotent)."""
        if self._thread is None:
            return
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._thread = None
        self._url = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            runner, self._url = loop.run_until_complete(
                start_site(self.state, self.config.host, self.config.port)
            )
        except BaseException as exc:  # reported to start()'s caller
            self._error = exc
            loop.close()
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._loop = None
