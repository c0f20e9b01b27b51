"""The aiohttp.web application imitating api.upbit.com: handlers, rate limits, faults, counters."""

from __future__ import annotations

import asyncio
import bisect
import json
import math
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import numpy as np
from aiohttp import web
from aiohttp.typedefs import Middleware

from .clock import SimClock, format_utc, to_epoch_ms
from .control import FAULT_KINDS, WS_FAULT_KINDS, Fault, FaultQueue, Stats
from .history import (
    DAY_MS,
    MINUTE_UNITS,
    CandleBars,
    History,
    Unit,
    period_floor,
    period_shift,
)
from .stamps import received_at
from .ws import WS_PATH, WsHub, WsSettings

__all__ = [
    "DETAILS_MODES",
    "FAULT_KINDS",
    "PAGE_MODES",
    "TOO_MANY_REQUESTS",
    "WS_FAULT_KINDS",
    "FaultQueue",
    "RateLimiter",
    "RestSettings",
    "SimState",
    "Stats",
    "Verdict",
    "ban_message",
    "build_app",
    "parse_to",
]

MAX_COUNT = 200
# Rate limit window, and the span in which too many 429s earn a 418 ban (seconds).
_WINDOW_S = 1.0
_ABUSE_WINDOW_S = 10.0
# Upbit keeps second candles for about three months only.
SECONDS_RETENTION_MS = 90 * DAY_MS
_KST_MS = 9 * 3_600_000
# Seconds may carry a fraction: ccxt sends `2026-11-20T13:06:40.000Z`, which Upbit takes.
_TO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})?$")
_HTML = "<html><head><title>Service Unavailable</title></head><body>maintenance</body></html>"
# The text of a 429 (plain text at Upbit, JSON's message here by default).
TOO_MANY_REQUESTS = "Too many API requests."
# Readings of Upbit's docs where they are unverified (see SimulatorConfig).
PAGE_MODES: tuple[str, ...] = ("window", "newest")
DETAILS_MODES: tuple[str, ...] = ("both", "is_details", "ignored")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The body-altering fault ("bad_types", "missing_field", "truncate") the handler must apply.
_VARIANT: ContextVar[str | None] = ContextVar("upbit_sim_variant", default=None)


def parse_to(text: str) -> int:
    """Parse Upbit's `to` (`…T…Z`, `…T…+09:00`, `YYYY-MM-DD HH:MM:SS` = UTC) to epoch ms."""
    if not _TO_RE.match(text):
        raise ValueError(f"invalid 'to': {text!r}")
    return to_epoch_ms(text)


def error_response(status: int, name: int | str, message: str) -> web.Response:
    """Upbit-style JSON error: {"error": {"name": ..., "message": ...}}."""
    return web.json_response({"error": {"name": name, "message": message}}, status=status)


class _BadRequest(Exception):
    """A request parameter is invalid; becomes an Upbit-style JSON error."""

    def __init__(self, status: int, name: int | str, message: str) -> None:
        super().__init__(message)
        self.response = error_response(status, name, message)


# --------------------------------------------------------------------------------------------
# Rate limiting


@dataclass(frozen=True)
class Verdict:
    """Outcome of a rate-limit check: HTTP status (200, 429, 418), requests left, and for a
    418 how many (real) seconds the block still lasts."""

    status: int
    remaining: int
    blocked_for: float = 0.0


def ban_message(seconds: float) -> str:
    """The message of a 418: how long the block lasts, in whole seconds rounded up, e.g.
    "Too many API requests. This IP is blocked for 30 seconds." (always "seconds", for one
    pattern to parse). Upbit sends no Retry-After: a client must read the body."""
    return f"{TOO_MANY_REQUESTS} This IP is blocked for {max(1, math.ceil(seconds))} seconds."


class RateLimiter:
    """Per-(IP, group) sliding 1-second windows plus Upbit's 418 ban for persistent abusers.

    A request counts from when it arrived (`check(at=...)`: the kernel's receive time, see
    stamps.py), which may come before that of a request already admitted: it is admitted
    only if every one-second window holding it, earlier and later ones too, stays within
    `rate`. Uses real monotonic time, never the simulated clock.
    """

    def __init__(
        self, rate: int = 10, *, ban_after_429s: int = 15, ban_seconds: float = 30.0
    ) -> None:
        self.rate = rate
        self.ban_after_429s = ban_after_429s
        self.ban_seconds = ban_seconds
        self._lock = threading.Lock()
        self._hits: dict[tuple[str, str], list[float]] = {}  # admitted arrivals, sorted
        self._rejections: dict[str, deque[float]] = {}
        self._banned_until: dict[str, float] = {}
        self._offences: Counter[str] = Counter()

    def check(self, ip: str, group: str, at: float | None = None) -> Verdict:
        """Admit or reject one request that arrived `at` (monotonic seconds; None: now);
        admitted requests use up the window."""
        now = time.monotonic()
        at = now if at is None else min(at, now)
        with self._lock:
            until = self._banned_until.get(ip, 0.0)
            if until > now:
                return Verdict(418, 0, until - now)
            hits = self._hits.setdefault((ip, group), [])
            # Kept longer than a window: a request handled late may have arrived well before now.
            del hits[: bisect.bisect_right(hits, now - 3 * _WINDOW_S)]
            if self._fits(hits, at):
                bisect.insort(hits, at)
                held = len(hits) - bisect.bisect_right(hits, at - _WINDOW_S)
                return Verdict(200, max(0, self.rate - held))
            rejections = self._rejections.setdefault(ip, deque())
            while rejections and rejections[0] <= now - _ABUSE_WINDOW_S:
                rejections.popleft()
            if len(rejections) < self.ban_after_429s:
                rejections.append(now)
                return Verdict(429, 0)
            # Repeat offenders are banned twice as long each time.
            self._offences[ip] += 1
            ban = self.ban_seconds * 2 ** (self._offences[ip] - 1)
            self._banned_until[ip] = now + ban
            rejections.clear()
            return Verdict(418, 0, ban)

    def _fits(self, hits: list[float], at: float) -> bool:
        """One more arrival at `at` leaves every window (end - 1 s, end] within the rate."""
        # The fullest windows holding `at` end at `at` or at a later arrival within a second.
        ends = [at, *hits[bisect.bisect_right(hits, at) : bisect.bisect_left(hits, at + _WINDOW_S)]]
        for end in ends:
            held = bisect.bisect_right(hits, end) - bisect.bisect_right(hits, end - _WINDOW_S)
            if held + 1 > self.rate:
                return False
        return True

    def reset(self) -> None:
        """Forget all windows, bans and offences."""
        with self._lock:
            self._hits.clear()
            self._rejections.clear()
            self._banned_until.clear()
            self._offences.clear()


@dataclass(frozen=True)
class RestSettings:
    """REST readings and strictness (see SimulatorConfig): page semantics, which market/all
    parameter gives details, plain-text 429 bodies, counts above 200 clamped."""

    pages: str = "window"
    details: str = "both"
    plain_429: bool = False
    clamp_count: bool = False


@dataclass
class SimState:
    """Everything the handlers share."""

    history: History
    clock: SimClock
    limiter: RateLimiter
    faults: FaultQueue
    stats: Stats
    latency: float = 0.0
    jitter: float = 0.0
    ws_settings: WsSettings = field(default_factory=WsSettings)
    rest: RestSettings = field(default_factory=RestSettings)
    ws: WsHub = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random()
        self.ws = WsHub(self.history, self.clock, self.faults, self.stats, self.ws_settings)

    def delay(self) -> float:
        """Artificial latency for one request."""
        return self.latency + (self._random.uniform(0.0, self.jitter) if self.jitter else 0.0)

    def reset(self) -> None:
        """Counters, pending faults and rate limits back to zero (clock and sockets are kept)."""
        self.stats.reset()
        self.faults.clear()
        self.limiter.reset()
        self.ws.reset_limits()


# --------------------------------------------------------------------------------------------
# Rendering


def _datetimes(ms: np.ndarray) -> list[str]:
    text: list[str] = np.datetime_as_string(
        ms.astype("datetime64[ms]").astype("datetime64[s]")
    ).tolist()
    return text


@dataclass(frozen=True)
class _Column:
    name: str
    kind: str  # "str", "price" (8 decimals), "float" (shortest repr), "int", "raw" (preformatted)
    values: Sequence[Any]


_FORMATS = {"str": '"%s"', "price": "%.8f", "float": "%r", "int": "%d", "raw": "%s"}


def _render(columns: list[_Column], variant: str | None) -> str:
    """JSON array text, one object per row; `variant` is a body-altering fault or None."""
    parts: list[str] = []
    values: list[Sequence[Any]] = []
    for column in columns:
        if variant == "missing_field" and column.name == "trade_price":
            continue
        fmt = _FORMATS[column.kind]
        if variant == "bad_types" and column.kind != "str":
            fmt = f'"{fmt}"'
        parts.append(f'"{column.name}":{fmt}')
        values.append(column.values)
    template = "{" + ",".join(parts) + "}"
    return "[" + ",".join(template % row for row in zip(*values, strict=True)) + "]"


def _lie(columns: list[_Column], variant: str, unit: Unit, bars: CandleBars) -> list[_Column]:
    """A candle page that parses but is wrong, for the "shift", "wrong_market", "impossible"
    faults (others pass through)."""
    out = []
    for column in columns:
        values = list(column.values)
        if variant == "shift" and column.name.startswith("candle_date_time"):
            offset = _KST_MS if column.name.endswith("kst") else 0
            older = np.array([period_shift(unit, int(t), -1000) for t in bars.start])
            values = _datetimes(older + offset)
        elif variant == "wrong_market" and column.name == "market":
            values = ["KRW-WRONG"] * len(values)
        elif variant == "impossible" and column.name in ("trade_price", "high_price"):
            values[-1] = -1.0 if column.name == "trade_price" else 0.0
        out.append(_Column(column.name, column.kind, values))
    return out


def _candle_columns(market: str, bars: CandleBars) -> list[_Column]:
    """Columns shared by every timeframe, in Upbit's field order."""
    return [
        _Column("market", "str", [market] * len(bars)),
        _Column("candle_date_time_utc", "str", _datetimes(bars.start)),
        _Column("candle_date_time_kst", "str", _datetimes(bars.start + _KST_MS)),
        _Column("opening_price", "price", bars.open.tolist()),
        _Column("high_price", "price", bars.high.tolist()),
        _Column("low_price", "price", bars.low.tolist()),
        _Column("trade_price", "price", bars.close.tolist()),
        _Column("timestamp", "int", bars.timestamp.tolist()),
        _Column("candle_acc_trade_price", "float", bars.value.tolist()),
        _Column("candle_acc_trade_volume", "price", bars.volume.tolist()),
    ]


# --------------------------------------------------------------------------------------------
# Handlers


# Upbit's quotation rate-limit groups by path prefix; anything else counts as "default".
_GROUPS: tuple[tuple[str, str], ...] = (
    ("/v1/candles/", "candles"),
    ("/v1/market/", "market"),
    ("/v1/ticker", "ticker"),
    ("/v1/trades/", "trade"),
    ("/v1/orderbook", "orderbook"),
)


def _group(path: str) -> str:
    return next((group for prefix, group in _GROUPS if path.startswith(prefix)), "default")


def _count(request: web.Request, clamp: bool) -> int:
    raw = request.query.get("count", "1")
    try:
        count = int(raw)
    except ValueError:
        raise _BadRequest(400, 400, f"count must be an integer: {raw!r}") from None
    if clamp and count > MAX_COUNT:
        return MAX_COUNT
    if not 1 <= count <= MAX_COUNT:
        raise _BadRequest(400, 400, f"count must be between 1 and {MAX_COUNT}")
    return count


def _to(request: web.Request) -> int | None:
    raw = request.query.get("to", "")
    if not raw:
        return None
    try:
        return parse_to(raw)
    except ValueError:
        raise _BadRequest(400, 400, f"invalid 'to': {raw!r}") from None


class _Handlers:
    def __init__(self, state: SimState, executor: ThreadPoolExecutor) -> None:
        self.state = state
        self.executor = executor

    def _market(self, request: web.Request, now_ms: int) -> str:
        market = request.query.get("market")
        if not market:
            raise _BadRequest(400, 400, "market is missing")
        return self._market_code(market, now_ms)

    def _market_code(self, market: str, now_ms: int) -> str:
        try:
            info = self.state.history.market_info(market)
        except KeyError:
            info = None
        # A market that is not listed yet does not exist at the exchange.
        if info is None or info.listed_ms > now_ms:
            raise _BadRequest(404, 404, "Code not found")
        return market

    async def ticker_all(self, request: web.Request) -> web.Response:
        """GET /v1/ticker/all?quote_currencies=KRW,BTC: each listed market's last trade."""
        quotes = request.query.get("quote_currencies", "")
        wanted = {q.strip().upper() for q in quotes.split(",") if q.strip()}
        if not wanted:
            raise _BadRequest(400, 400, "quote_currencies is required")
        now = self.state.clock.now_ms()
        listed = self.state.history.listed_markets(now)
        codes = [m.market for m in listed if m.market.split("-")[0] in wanted]
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(self.executor, self._tickers, codes, now)
        return web.json_response(rows)

    async def ticker(self, request: web.Request) -> web.Response:
        """GET /v1/ticker?markets=KRW-BTC,KRW-ETH: those markets' last trades."""
        codes = [c.strip() for c in request.query.get("markets", "").split(",") if c.strip()]
        if not codes:
            raise _BadRequest(400, 400, "markets is required")
        now = self.state.clock.now_ms()
        for code in codes:
            self._market_code(code, now)
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(self.executor, self._tickers, codes, now)
        return web.json_response(rows)

    def _tickers(self, codes: list[str], now: int) -> list[dict[str, Any]]:
        """Ticker rows (the fields upbit-cache reads, and the trade's time and price)."""
        rows = []
        for code in codes:
            candle = self.state.ws.latest_candle(code, 1, now) or self.state.ws.latest_candle(
                code, "days", now
            )
            last = (
                candle[7] if candle is not None else self.state.history.market_info(code).listed_ms
            )
            at = datetime.fromtimestamp(last / 1000, tz=UTC)
            rows.append(
                {
                    "market": code,
                    "trade_date": at.strftime("%Y%m%d"),
                    "trade_time": at.strftime("%H%M%S"),
                    "trade_timestamp": int(last),
                    "trade_price": candle[4] if candle is not None else None,
                    "timestamp": now,
                }
            )
        return rows

    def _details(self, request: web.Request) -> bool:
        """Whether market/all is asked for `market_event`, by the names the mode honours."""
        names = {"both": ("isDetails", "is_details"), "is_details": ("is_details",)}
        honoured = names.get(self.state.rest.details, ())
        return any(request.query.get(name, "false").lower() == "true" for name in honoured)

    async def market_all(self, request: web.Request) -> web.Response:
        details = self._details(request)
        rows: list[dict[str, Any]] = []
        for info in self.state.history.listed_markets(self.state.clock.now_ms()):
            row: dict[str, Any] = {
                "market": info.market,
                "korean_name": info.korean_name,
                "english_name": info.english_name,
            }
            if details:
                row["market_event"] = {"warning": info.warning, "caution": dict(info.caution)}
            rows.append(row)
        variant = _VARIANT.get()
        if variant == "missing_field":
            for row in rows:
                del row["market"]
        elif variant == "bad_types":
            for row in rows:
                if "market_event" in row:
                    row["market_event"]["warning"] = str(row["market_event"]["warning"]).lower()
        return web.json_response(rows, dumps=lambda obj: json.dumps(obj, ensure_ascii=False))

    async def minutes(self, request: web.Request) -> web.Response:
        raw = request.match_info["unit"]
        if not raw.isdigit() or int(raw) not in MINUTE_UNITS:
            raise _BadRequest(400, 400, f"unit must be one of {list(MINUTE_UNITS)}: {raw!r}")
        return await self._candles(request, int(raw))

    def named(self, unit: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            return await self._candles(request, unit)

        return handler

    async def _candles(self, request: web.Request, unit: Unit) -> web.Response:
        now = self.state.clock.now_ms()
        market = self._market(request, now)
        count = _count(request, self.state.rest.clamp_count)
        to = _to(request)
        convert = request.query.get("converting_price_unit") if unit == "days" else None
        if convert not in (None, "KRW"):
            raise _BadRequest(400, 400, f"unsupported converting_price_unit: {convert!r}")
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(
            self.executor,
            self._candle_body,
            market,
            unit,
            count,
            to,
            now,
            convert is not None,
            _VARIANT.get(),
        )
        return web.Response(text=body, content_type="application/json")

    def _candle_body(
        self,
        market: str,
        unit: Unit,
        count: int,
        to: int | None,
        now: int,
        convert: bool,
        variant: str | None,
    ) -> str:
        """The JSON text of one candle page (runs in a worker thread)."""
        bars = self._page(market, unit, count, to, now)
        if variant == "empty":
            return "[]"
        columns = _candle_columns(market, bars)
        if variant is not None and len(bars):
            columns = _lie(columns, variant, unit, bars)
        if isinstance(unit, int):
            columns.append(_Column("unit", "int", [unit] * len(bars)))
        elif unit == "days":
            columns += self._day_columns(market, bars, now, convert)
        elif unit != "seconds":
            days = np.datetime_as_string(
                bars.start.astype("datetime64[ms]").astype("datetime64[D]")
            )
            columns.append(_Column("first_day_of_period", "str", days.tolist()))
        newest_first = [_Column(c.name, c.kind, c.values[::-1]) for c in columns]
        return _render(newest_first, variant)

    def _page(self, market: str, unit: Unit, count: int, to: int | None, now: int) -> CandleBars:
        """The candles of one page, oldest first, in the configured page reading."""
        history = self.state.history
        floor = period_floor(unit, now - SECONDS_RETENTION_MS) if unit == "seconds" else None
        if self.state.rest.pages == "newest":
            # The `count` newest candles before `to`, reaching back past empty periods.
            end = now if to is None else min(to, now)
            return history.newest_bars(market, unit, end, count, now, floor_ms=floor)
        # Upbit windows: the `count` periods ending with the latest one starting before `to`
        # (exclusive) and not after now; periods without trades are simply missing.
        last = period_floor(unit, now if to is None else min(to - 1, now))
        first = period_shift(unit, last, -(count - 1))
        if floor is not None:
            first = max(first, floor)
        return history.candle_bars(market, unit, first, last + 1, now)

    def _day_columns(self, market: str, bars: CandleBars, now: int, convert: bool) -> list[_Column]:
        history = self.state.history
        prev = np.empty(len(bars))
        if len(bars):
            before = history.prev_day_close(market, int(bars.start[0]), now)
            # A market's first day has no previous close; Upbit uses the listing price.
            prev[0] = bars.open[0] if before is None else before
            prev[1:] = bars.close[:-1]
        change = bars.close - prev
        columns = [
            _Column("prev_closing_price", "price", prev.tolist()),
            _Column("change_price", "price", change.tolist()),
            _Column("change_rate", "price", np.round(change / prev, 8).tolist()),
        ]
        if convert:
            quote = history.market_info(market).quote
            rate = np.ones(len(bars))
            if quote != "KRW" and len(bars):
                krw = history.candle_bars(
                    f"KRW-{quote}", "days", int(bars.start[0]), int(bars.start[-1]) + 1, now
                )
                rate = np.full(len(bars), np.nan)
                _, mine, theirs = np.intersect1d(bars.start, krw.start, return_indices=True)
                rate[mine] = krw.close[theirs]
            converted = bars.close * rate
            text = ["null" if np.isnan(v) else f"{v:.8f}" for v in converted.tolist()]
            columns.append(_Column("converted_trade_price", "raw", text))
        return columns

    # ---- control --------------------------------------------------------------------------

    def _clock_state(self) -> dict[str, Any]:
        now = self.state.clock.now_ms()
        clock = self.state.clock
        return {"now_ms": now, "now": format_utc(now), "frozen": clock.frozen, "speed": clock.speed}

    async def sim_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.stats.snapshot())

    async def sim_clock_get(self, request: web.Request) -> web.Response:
        return web.json_response(self._clock_state())

    async def sim_clock(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        clock = self.state.clock
        try:
            if "set" in body:
                clock.set(body["set"])
            if "advance" in body:
                clock.advance(float(body["advance"]))
            if "speed" in body:
                clock.set_speed(float(body["speed"]))
            if "freeze" in body:
                if body["freeze"]:
                    clock.freeze()
                else:
                    clock.run()
        except (TypeError, ValueError) as exc:
            raise _BadRequest(400, 400, str(exc)) from None
        return web.json_response(self._clock_state())

    async def sim_faults(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        try:
            self.state.faults.inject(
                str(body["kind"]),
                int(body.get("count", 1)),
                market=body.get("market"),
                path=body.get("path"),
                seconds=body.get("seconds"),
                probability=float(body.get("probability", 1.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _BadRequest(400, 400, f"bad fault: {exc}") from None
        return web.json_response({"pending": self.state.faults.pending()})

    async def sim_reset(self, request: web.Request) -> web.Response:
        self.state.reset()
        return web.json_response({"ok": True})

    async def sim_ws_drop(self, request: web.Request) -> web.Response:
        body = await _json_body(request) if request.can_read_body else {}
        down_for = float(body.get("seconds", 0.0))
        return web.json_response({"dropped": self.state.ws.drop_all(down_for)})


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _BadRequest(400, 400, "body must be a JSON object") from None
    if not isinstance(body, dict):
        raise _BadRequest(400, 400, "body must be a JSON object")
    return body


# --------------------------------------------------------------------------------------------
# Middleware and application


def _api_middleware(state: SimState) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_sim/") or request.path == WS_PATH:
            # The WebSocket has its own limits and counters (see ws.py).
            return await _guarded(request, handler)
        state.stats.request(request.path)
        group = _group(request.path)
        # Counted from when it arrived, however long this process waited for a CPU since.
        arrived = received_at(request.transport)
        verdict = state.limiter.check(request.remote or "", group, arrived)
        # Rejected requests never reach the exchange, so they do not consume faults.
        fault = (
            state.faults.take(request.path, request.query.get("market"))
            if verdict.status == 200
            else None
        )
        delay = state.delay() + (fault.seconds if fault and fault.kind == "slow" else 0.0)
        if delay > 0:
            await asyncio.sleep(delay)
        response = await _answer(request, handler, verdict, fault, state)
        if request.transport is None or request.transport.is_closing():
            return response  # dropped: the client gets nothing, so nothing is counted
        if verdict.status != 418:
            response.headers["Remaining-Req"] = f"group={group}; min=600; sec={verdict.remaining}"
        state.stats.status(response.status)
        return response

    return middleware


async def _answer(
    request: web.Request,
    handler: Handler,
    verdict: Verdict,
    fault: Fault | None,
    state: SimState,
) -> web.StreamResponse:
    if verdict.status == 418:
        return error_response(418, 418, ban_message(verdict.blocked_for))
    if verdict.status == 429:
        if state.rest.plain_429:
            return web.Response(status=429, text=TOO_MANY_REQUESTS, content_type="text/plain")
        return error_response(429, "too_many_requests", TOO_MANY_REQUESTS)
    if fault is None or fault.kind == "slow":
        if fault is not None:
            state.stats.fault(fault.kind)
        return await _guarded(request, handler)
    state.stats.fault(fault.kind)
    if fault.kind == "500":
        return error_response(500, 500, "Internal server error (injected)")
    if fault.kind == "drop":
        # Closing the transport before anything is written: the client sees a disconnect.
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=200)
    if fault.kind == "non_json":
        return web.Response(text=_HTML, content_type="text/html")
    token = _VARIANT.set(fault.kind)
    try:
        response = await _guarded(request, handler)
    finally:
        # Keep-alive requests may share a task: the variant must not outlive this one.
        _VARIANT.reset(token)
    if fault.kind == "truncate" and isinstance(response, web.Response):
        body = response.body
        if isinstance(body, bytes) and body:
            response.body = body[: max(1, len(body) // 2)]
    return response


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run a handler, turning parameter errors and HTTP exceptions into JSON errors."""
    try:
        return await handler(request)
    except _BadRequest as exc:
        return exc.response
    except web.HTTPException as exc:
        return error_response(exc.status, exc.status, exc.reason)


def build_app(state: SimState) -> web.Application:
    """The simulator as an aiohttp application."""
    # Candle computation runs off the event loop so a slow page never stalls other requests
    # (rate limiting, control endpoints, artificial latency).
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="upbit-sim")
    handlers = _Handlers(state, executor)
    app = web.Application(middlewares=[_api_middleware(state)])
    app.router.add_get("/v1/market/all", handlers.market_all)
    app.router.add_get("/v1/ticker/all", handlers.ticker_all)
    app.router.add_get("/v1/ticker", handlers.ticker)
    app.router.add_get("/v1/candles/minutes/{unit}", handlers.minutes)
    for unit in ("seconds", "days", "weeks", "months", "years"):
        app.router.add_get(f"/v1/candles/{unit}", handlers.named(unit))
    app.router.add_get("/_sim/stats", handlers.sim_stats)
    app.router.add_get("/_sim/clock", handlers.sim_clock_get)
    app.router.add_post("/_sim/clock", handlers.sim_clock)
    app.router.add_post("/_sim/faults", handlers.sim_faults)
    app.router.add_post("/_sim/reset", handlers.sim_reset)
    app.router.add_post("/_sim/ws/drop", handlers.sim_ws_drop)
    app.router.add_get(WS_PATH, state.ws.handle)
    app.on_startup.append(state.ws.on_startup)
    app.on_shutdown.append(state.ws.on_shutdown)

    async def sim_date(request: web.Request, response: web.StreamResponse) -> None:
        # Clients take the server's time from Date, so it must follow the simulated clock.
        moment = datetime.fromtimestamp(state.clock.now_ms() / 1000, tz=UTC)
        response.headers["Date"] = format_datetime(moment, usegmt=True)

    app.on_response_prepare.append(sim_date)

    async def stop_executor(_: web.Application) -> None:
        executor.shutdown(wait=False, cancel_futures=True)

    app.on_cleanup.append(stop_executor)
    return app
