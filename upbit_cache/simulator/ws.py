"""Upbit's WebSocket at `/websocket/v1`: trade and candle streams that follow the simulated clock.

What a client sees:

- It subscribes with one JSON array (text or binary frame), e.g.
  `[{"ticket":"t1"},{"type":"trade","codes":["KRW-BTC"]},{"type":"candle.1m","codes":["KRW-BTC"]},
  {"format":"DEFAULT"}]`. Types: `trade`, `candle.1s`, `candle.{1,3,5,10,15,30,60,240}m`; a type
  object may say `"is_only_snapshot": true` or `"is_only_realtime": true`. A new subscribe
  message replaces the connection's previous one. Unknown codes are accepted and stay silent.
- Every data message is UTF-8 JSON in a binary frame. First the SNAPSHOT ones (per stream and
  code: the latest trade, or the latest candle, before the subscribe time), then REALTIME ones.
- A trade is pushed once the clock has passed its `trade_timestamp`, in time order, at once
  (REST may count it up to the history's store lag later); a frozen clock pushes nothing until
  it is advanced or set.
- A candle is pushed when a pushed trade changed it, at most once per `candle_interval` real
  seconds per (code, unit); after a jump of the clock every changed period is pushed (up to
  200), oldest first. Values come from the same aggregation as the REST candles.
- Text `PING` is answered with the text `{"status":"UP"}`; ping frames with pong frames. A
  connection without client traffic for `idle_timeout` seconds is closed (code 1000).
- Errors are binary frames `{"error":{"name":...,"message":...}}`: TOO_MANY_SUBSCRIBE (over a
  limit, the subscription is unchanged), WRONG_FORMAT, NO_TICKET, NO_TYPE, NO_CODES,
  INVALID_PARAM. Too many new connections get HTTP 429 on the upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from .clock import SimClock
from .control import FaultQueue, Stats
from .history import DAY_MS, MINUTE_MS, MINUTE_UNITS, History, Unit, period_floor, period_shift

__all__ = ["CANDLE_TYPES", "LIMITS_PER", "WS_PATH", "WsHub", "WsSettings"]

WS_PATH = "/websocket/v1"
# Faults served on the WebSocket: "ws_duplicate" sends each of the next trade messages twice,
# "ws_error" answers the next subscribe messages with an error frame.
TRADE = "trade"
CANDLE_TYPES: dict[str, Unit] = {
    "candle.1s": "seconds",
    **{f"candle.{unit}m": unit for unit in MINUTE_UNITS},
}
_FORMATS = ("DEFAULT",)
# Trades are generated at most this much simulated time at a time.
_CHUNK_MS = 3_600_000
# After a clock jump, at most this many periods of one candle stream are pushed.
_MAX_CANDLE_PERIODS = 200
# How far back a snapshot looks for the latest trade or candle.
_SNAPSHOT_LOOKBACK_MS = (3_600_000, DAY_MS, 30 * DAY_MS)
_KST_S = 9 * 3600
_PREV_CLOSE_CACHE = 10_000

_TRADE_TEMPLATE = (
    '{"type":"trade","code":"%s","timestamp":%d,"trade_date":"%s","trade_time":"%s",'
    '"trade_timestamp":%d,"trade_price":%r,"trade_volume":%r,"ask_bid":"%s",'
    '"prev_closing_price":%r,"change":"%s","change_price":%r,"sequential_id":%d,'
    '"stream_type":"%s"}'
)
# The same number formats as the REST candles: 8 decimals, turnover as the shortest repr.
_CANDLE_TEMPLATE = (
    '{"type":"%s","code":"%s","candle_date_time_utc":"%s","candle_date_time_kst":"%s",'
    '"opening_price":%.8f,"high_price":%.8f,"low_price":%.8f,"trade_price":%.8f,'
    '"candle_acc_trade_volume":%.8f,"candle_acc_trade_price":%r,"timestamp":%d,'
    '"stream_type":"%s"}'
)
_PONG_TEXT = '{"status":"UP"}'
# What the subscribe limits are counted per: Upbit's older docs say per IP, the 2026 ones per
# connection.
LIMITS_PER: tuple[str, ...] = ("ip", "connection")
_CONNECTION_IDS = itertools.count(1)

# A trade as the pump holds it: (time ms, code index, price, volume, "ASK"/"BID", sequential_id).
_Trade = tuple[int, int, float, float, str, int]
# A candle's state: (start, open, high, low, close, volume, value, timestamp).
_CandleState = tuple[int, float, float, float, float, float, float, int]


@dataclass(frozen=True)
class WsSettings:
    """WebSocket behaviour: idle timeout (real s), Upbit's limits (connections per IP,
    subscribes per `limits_per`: "ip" or "connection"), candle push interval."""

    idle_timeout: float = 120.0
    connect_rate: int = 5
    subscribe_rate: int = 5
    subscribe_per_minute: int = 100
    candle_interval: float = 1.0
    limits_per: str = "ip"


class _WsError(Exception):
    """A subscribe message is refused; sent to the client as an Upbit-style error."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def _error_bytes(name: str, message: str) -> bytes:
    return json.dumps({"error": {"name": name, "message": message}}).encode()


class _Windows:
    """Per-key sliding windows over real time: (limit, span seconds) pairs, all must admit."""

    def __init__(self, limits: Sequence[tuple[int, float]]) -> None:
        self._limits = tuple(limits)
        self._span = max(span for _, span in self._limits)
        self._hits: dict[str, deque[float]] = {}

    def admit(self, key: str) -> bool:
        """Admit one event now (it then counts) or refuse it (it does not)."""
        now = time.monotonic()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self._span:
            hits.popleft()
        for limit, span in self._limits:
            if sum(1 for t in hits if t > now - span) >= limit:
                return False
        hits.append(now)
        return True

    def reset(self) -> None:
        """Forget every window."""
        self._hits.clear()

    def forget(self, key: str) -> None:
        """Forget one key's window (a connection that closed)."""
        self._hits.pop(key, None)


# --------------------------------------------------------------------------------------------
# Subscriptions


@dataclass(frozen=True)
class _Stream:
    """One type object of a subscribe message."""

    type: str
    codes: tuple[str, ...]
    snapshot: bool
    realtime: bool


def parse_subscribe(text: str) -> list[_Stream]:
    """The streams of a subscribe message; raises _WsError with Upbit's error names."""
    try:
        items = json.loads(text)
    except ValueError:
        raise _WsError("WRONG_FORMAT", "the request must be a JSON array") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise _WsError("WRONG_FORMAT", "the request must be a JSON array of objects")
    if not any("ticket" in i for i in items):
        raise _WsError("NO_TICKET", "a ticket object is required")
    streams: list[_Stream] = []
    for item in items:
        if "format" in item and item["format"] not in _FORMATS:
            raise _WsError("INVALID_PARAM", f"unsupported format: {item['format']!r}")
        if "type" not in item:
            continue
        kind = item["type"]
        if kind != TRADE and kind not in CANDLE_TYPES:
            raise _WsError("INVALID_PARAM", f"unsupported type: {kind!r}")
        codes = item.get("codes")
        if not isinstance(codes, list) or not codes or not all(isinstance(c, str) for c in codes):
            raise _WsError("NO_CODES", f"codes are required for {kind}")
        only_snapshot = bool(item.get("is_only_snapshot", False))
        only_realtime = bool(item.get("is_only_realtime", False))
        streams.append(
            _Stream(
                kind,
                tuple(dict.fromkeys(codes)),
                snapshot=not only_realtime,
                realtime=not only_snapshot,
            )
        )
    if not streams:
        raise _WsError("NO_TYPE", "at least one type object is required")
    return streams


@dataclass(eq=False)
class _CandleTrack:
    """A realtime candle stream of one code: what was pushed last and when it may push again."""

    type: str
    code: str
    unit: Unit
    start: int  # the period pushed last (or the subscribe time's period)
    state: _CandleState | None = None  # its state when pushed, None if never
    next_allowed: float = 0.0


# --------------------------------------------------------------------------------------------
# The hub: connections, limits, shared look-ups


class WsHub:
    """Every WebSocket connection of one simulator, its limits and its data look-ups."""

    def __init__(
        self,
        history: History,
        clock: SimClock,
        faults: FaultQueue,
        stats: Stats,
        settings: WsSettings | None = None,
    ) -> None:
        self.history = history
        self.clock = clock
        self.faults = faults
        self.stats = stats
        self.settings = settings or WsSettings()
        self._connections: set[_Connection] = set()
        self._down_until = 0.0  # an outage: refuse new connections until then
        self._connects = _Windows([(self.settings.connect_rate, 1.0)])
        self._subscribes = _Windows(
            [(self.settings.subscribe_rate, 1.0), (self.settings.subscribe_per_minute, 60.0)]
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._prev_close: dict[tuple[str, int], float] = {}

    # ---- lifecycle ----------------------------------------------------------------------------

    async def on_startup(self, app: web.Application) -> None:
        """Start following the clock (aiohttp startup hook)."""
        self._loop = asyncio.get_running_loop()
        self.clock.add_listener(self._clock_changed)

    async def on_shutdown(self, app: web.Application) -> None:
        """Stop following the clock and drop every connection (aiohttp shutdown hook)."""
        self.clock.remove_listener(self._clock_changed)
        self.drop_all()

    def _clock_changed(self) -> None:
        # Called from whichever thread changed the clock.
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._wake_all)

    def _wake_all(self) -> None:
        for connection in self._connections:
            connection.wake()

    def drop_all(self, down_for: float = 0.0) -> int:
        """Close every open connection abruptly (no close frame); returns how many. With
        `down_for`, new connections are refused (HTTP 503) for that many seconds: an outage."""
        self._down_until = time.monotonic() + down_for
        connections = list(self._connections)
        for connection in connections:
            connection.drop()
        return len(connections)

    def reset_limits(self) -> None:
        """Forget the connection and subscribe windows."""
        self._connects.reset()
        self._subscribes.reset()

    def admit_subscribe(self, key: str) -> bool:
        """Check the subscribe limits of `key` (an IP or a connection) for one more message."""
        return self._subscribes.admit(key)

    # ---- the endpoint ---------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """GET /websocket/v1: upgrade, then serve the connection until it ends."""
        ws = web.WebSocketResponse(autoping=False, compress=False, timeout=1.0)
        if not ws.can_prepare(request).ok:
            body = {"error": {"name": 400, "message": "WebSocket upgrade expected"}}
            return web.json_response(body, status=400)
        if time.monotonic() < self._down_until:
            body = {"error": {"name": 503, "message": "Service unavailable (simulated outage)"}}
            return web.json_response(body, status=503)
        if not self._connects.admit(request.remote or ""):
            self.stats.ws_event("rejected")
            message = f"Too many WebSocket connections (at most {self.settings.connect_rate}/s)."
            body = {"error": {"name": "too_many_requests", "message": message}}
            return web.json_response(body, status=429)
        await ws.prepare(request)
        connection = _Connection(self, request, ws)
        self._connections.add(connection)
        self.stats.ws_opened()
        try:
            await connection.serve()
        finally:
            self._connections.discard(connection)
            if connection.limit_key != connection.ip:
                self._subscribes.forget(connection.limit_key)
            self.stats.ws_closed()
        return ws

    # ---- data ---------------------------------------------------------------------------------

    def known(self, code: str) -> bool:
        """Whether `code` is a market of the simulated exchange."""
        try:
            self.history.market_info(code)
        except KeyError:
            return False
        return True

    def load_trades(self, codes: Sequence[str], t0: int, t1: int) -> list[_Trade]:
        """Trades of `codes` in [t0, t1), in time order (ties: in the order of `codes`)."""
        frames = [(i, self.history.trades(code, t0, t1)) for i, code in enumerate(codes)]
        frames = [(i, df) for i, df in frames if len(df)]
        if not frames:
            return []
        times = np.concatenate([df["timestamp"].to_numpy(np.int64) for _, df in frames])
        index = np.concatenate([np.full(len(df), i, dtype=np.int64) for i, df in frames])
        order = np.lexsort((index, times))

        def column(name: str) -> list[Any]:
            values: list[Any] = np.concatenate([df[name].to_numpy() for _, df in frames])[
                order
            ].tolist()
            return values

        return list(
            zip(
                times[order].tolist(),
                index[order].tolist(),
                column("price"),
                column("volume"),
                column("ask_bid"),
                column("sequential_id"),
                strict=True,
            )
        )

    def latest_trade(self, code: str, before: int) -> _Trade | None:
        """The last trade of `code` before `before` (None if it has not traded yet)."""
        listed = self.history.market_info(code).listed_ms
        for back in _SNAPSHOT_LOOKBACK_MS:
            trades = self.load_trades([code], before - back, before)
            if trades:
                return trades[-1]
            if before - back <= listed:
                return None
        day = self._last_day(code, before)
        trades = [] if day is None else self.load_trades([code], day, min(day + DAY_MS, before))
        return trades[-1] if trades else None

    def _last_day(self, code: str, before: int) -> int | None:
        """Start of the last UTC day with a trade before `before` (a quiet market's last)."""
        day = self.history.last_day(code, before, before, stored=False)
        return int(day.start[0]) if len(day) else None

    def candles(
        self, code: str, unit: Unit, start: int, now: int, end: int | None = None
    ) -> list[_CandleState]:
        """Candles of `unit` starting in [start, end or now) at `now`, every trade counted at
        once (as REST shows them once stored)."""
        bars = self.history.candle_bars(
            code, unit, start, now if end is None else end, now, stored=False
        )
        return list(
            zip(
                bars.start.tolist(),
                bars.open.tolist(),
                bars.high.tolist(),
                bars.low.tolist(),
                bars.close.tolist(),
                bars.volume.tolist(),
                bars.value.tolist(),
                bars.timestamp.tolist(),
                strict=True,
            )
        )

    def latest_candle(self, code: str, unit: Unit, before: int) -> _CandleState | None:
        """The last candle of `code` with trades before `before` (as seen then), or None."""
        listed = self.history.market_info(code).listed_ms
        for back in _SNAPSHOT_LOOKBACK_MS:
            found = self.candles(code, unit, period_floor(unit, before - back), before)
            if found:
                return found[-1]
            if before - back <= listed:
                return None
        day = self._last_day(code, before)
        if day is None:
            return None
        found = self.candles(code, unit, period_floor(unit, day), before, day + DAY_MS)
        return found[-1] if found else None

    def prev_close(self, code: str, trade_ms: int, now: int) -> float:
        """Close of the UTC day before the trade's (the day's open for a market's first day)."""
        day = trade_ms // DAY_MS * DAY_MS
        key = (code, day)
        cached = self._prev_close.get(key)
        if cached is not None:
            return cached
        close = self.history.prev_day_close(code, day, now, stored=False)
        if close is None:
            today = self.history.candle_bars(code, "days", day, day + 1, now, stored=False)
            close = float(today.open[0]) if len(today) else 0.0
        if len(self._prev_close) >= _PREV_CLOSE_CACHE:
            self._prev_close.clear()
        self._prev_close[key] = close
        return close

    def trade_message(self, code: str, trade: _Trade, stream_type: str, now: int) -> bytes:
        """The DEFAULT-format trade message."""
        ts, _, price, volume, ask_bid, sequential_id = trade
        prev = self.prev_close(code, ts, now)
        change = "RISE" if price > prev else "FALL" if price < prev else "EVEN"
        moment = time.gmtime(ts // 1000)
        return (
            _TRADE_TEMPLATE
            % (
                code,
                now,
                time.strftime("%Y-%m-%d", moment),
                time.strftime("%H:%M:%S", moment),
                ts,
                price,
                volume,
                ask_bid,
                prev,
                change,
                round(abs(price - prev), 8),
                sequential_id,
                stream_type,
            )
        ).encode()


def candle_message(kind: str, code: str, state: _CandleState, stream_type: str) -> bytes:
    """The DEFAULT-format candle message."""
    start, open_, high, low, close, volume, value, ts = state
    utc = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start // 1000))
    kst = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start // 1000 + _KST_S))
    return (
        _CANDLE_TEMPLATE
        % (kind, code, utc, kst, open_, high, low, close, volume, value, ts, stream_type)
    ).encode()


# --------------------------------------------------------------------------------------------
# One connection


@dataclass
class _Realtime:
    """What the pump of one subscription follows."""

    trade_codes: set[str] = field(default_factory=set)
    tracks: list[_CandleTrack] = field(default_factory=list)


class _Connection:
    """One client: reads its frames, answers them, and runs the pump of its subscription."""

    def __init__(self, hub: WsHub, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.hub = hub
        self.request = request
        self.ws = ws
        self.ip = request.remote or ""
        # The key the subscribe limits are counted under.
        self.limit_key = (
            self.ip if hub.settings.limits_per == "ip" else f"connection {next(_CONNECTION_IDS)}"
        )
        self._send_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """The clock changed: let the pump look again."""
        self._wake.set()

    def drop(self) -> None:
        """Cut the TCP connection without a close frame."""
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    async def serve(self) -> None:
        """Read client frames until the connection ends or idles out."""
        idle = self.hub.settings.idle_timeout
        try:
            while True:
                try:
                    msg = await self.ws.receive(timeout=idle)
                except TimeoutError:
                    await self.ws.close(code=WSCloseCode.OK, message=b"idle timeout")
                    return
                if msg.type is WSMsgType.PING:
                    await self.ws.pong(msg.data)
                elif msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    data = msg.data
                    text = data if isinstance(data, str) else data.decode("utf-8", "replace")
                    if text.strip() == "PING":
                        async with self._send_lock:
                            await self.ws.send_str(_PONG_TEXT)
                    else:
                        await self._subscribe(text)
                elif msg.type is not WSMsgType.PONG:
                    return  # CLOSE, CLOSING, CLOSED or ERROR
        except ConnectionError:
            return
        finally:
            await self._stop_pump()

    async def _send(self, payload: bytes, *, data: bool = True) -> None:
        async with self._send_lock:
            await self.ws.send_bytes(payload)
        if data:
            self.hub.stats.ws_event("messages")

    async def _stop_pump(self) -> None:
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.cancel()
            try:
                await pump
            except asyncio.CancelledError:
                if not pump.cancelled():
                    raise

    async def _subscribe(self, text: str) -> None:
        hub = self.hub
        if not hub.admit_subscribe(self.limit_key):
            hub.stats.ws_event("rejected")
            settings = hub.settings
            message = (
                f"Too many subscribe messages (at most {settings.subscribe_rate}/s "
                f"and {settings.subscribe_per_minute}/min)."
            )
            await self._send(_error_bytes("TOO_MANY_SUBSCRIBE", message), data=False)
            return
        try:
            streams = parse_subscribe(text)
        except _WsError as exc:
            await self._send(_error_bytes(exc.name, str(exc)), data=False)
            return
        codes = [code for stream in streams for code in stream.codes]
        if any(hub.faults.take(WS_PATH, c, ("ws_error",)) is not None for c in codes):
            hub.stats.fault("ws_error")  # injected: a transient failure, nothing subscribed
            await self._send(_error_bytes("INTERNAL_ERROR", "try again (injected)"), data=False)
            return
        hub.stats.ws_event("subscribes")
        await self._stop_pump()
        t0 = hub.clock.now_ms()
        realtime = _Realtime()
        for stream in streams:
            for code in stream.codes:
                if hub.known(code):
                    await self._start_stream(stream, code, t0, realtime)
        if realtime.trade_codes or realtime.tracks:
            self._pump = asyncio.create_task(self._run_pump(realtime, t0))

    async def _start_stream(self, stream: _Stream, code: str, t0: int, realtime: _Realtime) -> None:
        """Send the snapshot of one (stream, code) and register its realtime part."""
        hub = self.hub
        if stream.type == TRADE:
            if stream.snapshot:
                trade = hub.latest_trade(code, t0)
                if trade is not None:
                    await self._send(hub.trade_message(code, trade, "SNAPSHOT", t0))
            if stream.realtime:
                realtime.trade_codes.add(code)
            return
        unit = CANDLE_TYPES[stream.type]
        latest = hub.latest_candle(code, unit, t0)
        if stream.snapshot and latest is not None:
            await self._send(candle_message(stream.type, code, latest, "SNAPSHOT"))
        if stream.realtime:
            if latest is None:
                track = _CandleTrack(stream.type, code, unit, period_floor(unit, t0))
            else:
                track = _CandleTrack(stream.type, code, unit, latest[0], latest)
            realtime.tracks.append(track)

    async def _run_pump(self, realtime: _Realtime, t0: int) -> None:
        # The connection may go away under a send; serve() notices and cleans up.
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._pump_loop(realtime, t0)

    async def _pump_loop(self, realtime: _Realtime, t0: int) -> None:
        """Push trades as the clock passes them, and the candles they change."""
        hub, clock = self.hub, self.hub.clock
        trade_codes = realtime.trade_codes
        codes = list(dict.fromkeys([*sorted(trade_codes), *(t.code for t in realtime.tracks)]))
        tracks_of: dict[str, list[_CandleTrack]] = {}
        for track in realtime.tracks:
            tracks_of.setdefault(track.code, []).append(track)
        pending: deque[_Trade] = deque()
        loaded = cursor = t0  # trades before `loaded` are in `pending` or sent
        dirty: set[_CandleTrack] = set()
        interval = hub.settings.candle_interval
        while True:
            self._wake.clear()
            now = clock.now_ms()
            while cursor < now:
                end = min(now, cursor + _CHUNK_MS)
                if loaded < end:
                    upto = _ceil_minute(end)
                    pending.extend(hub.load_trades(codes, loaded, upto))
                    loaded = upto
                while pending and pending[0][0] < end:
                    trade = pending.popleft()
                    code = codes[trade[1]]
                    if code in trade_codes:
                        await self._send_trade(code, trade, now)
                    dirty.update(tracks_of.get(code, ()))
                cursor = end
                if cursor < now:
                    await asyncio.sleep(0)  # a long catch-up must not starve the loop
            if dirty:
                real = time.monotonic()
                for track in [t for t in dirty if t.next_allowed <= real]:
                    dirty.discard(track)
                    if await self._push_candles(track, cursor):
                        track.next_allowed = real + interval
            timeout = None
            if not clock.frozen:
                lookahead = min(_CHUNK_MS, max(MINUTE_MS, round(clock.speed * 500)))
                while not pending and loaded < cursor + lookahead:
                    upto = _ceil_minute(max(cursor + lookahead, loaded + 1))
                    pending.extend(hub.load_trades(codes, loaded, upto))
                    loaded = upto
                due = pending[0][0] + 1 if pending else loaded
                timeout = clock.real_seconds_until(due)
            if dirty:
                wait = max(0.0, min(t.next_allowed for t in dirty) - time.monotonic())
                timeout = wait if timeout is None else min(timeout, wait)
            await _wait(self._wake, timeout)

    async def _send_trade(self, code: str, trade: _Trade, now: int) -> None:
        hub = self.hub
        message = hub.trade_message(code, trade, "REALTIME", now)
        await self._send(message)
        fault = hub.faults.take(WS_PATH, code, ("ws_duplicate",))
        if fault is not None:
            hub.stats.fault(fault.kind)
            await self._send(message)

    async def _push_candles(self, track: _CandleTrack, seen: int) -> bool:
        """Push the periods of `track` changed since its last push; True if any was."""
        unit = track.unit
        oldest = period_shift(unit, period_floor(unit, seen - 1), 1 - _MAX_CANDLE_PERIODS)
        states = self.hub.candles(track.code, unit, max(track.start, oldest), seen)
        pushed = False
        for state in states:
            if state[0] == track.start and state == track.state:
                continue
            await self._send(candle_message(track.type, track.code, state, "REALTIME"))
            pushed = True
        if states:
            track.start, track.state = states[-1][0], states[-1]
        return pushed


def _ceil_minute(ms: int) -> int:
    return -(-ms // MINUTE_MS) * MINUTE_MS


async def _wait(event: asyncio.Event, timeout: float | None) -> None:
    """Wait for `event`, at most `timeout` seconds (None: no limit)."""
    if timeout is None:
        await event.wait()
        return
    if math.isinf(timeout):
        timeout = 3600.0
    with contextlib.suppress(TimeoutError):  # not wait_for: on 3.11 it can swallow a cancel
        async with asyncio.timeout(timeout):
            await event.wait()
