"""`/websocket/v1` of `upbit-cache serve`: Upbit's public stream, relayed.

A local client speaks to it as to Upbit: one subscribe array (`[{"ticket":..},{"type":..,
"codes":[..]},{"format":..}]`, text or binary), and gets the messages of its types and
codes, in its format, as binary frames of UTF-8 JSON. Every local client shares the one
upstream connection of a `StreamHub` (collector/stream_hub.py: the union of subscriptions,
paced re-subscribes, reconnects, snapshots from the latest message seen).

As Upbit: a new subscribe message replaces the connection's previous one; a bad one gets
an error frame (WRONG_FORMAT, NO_TICKET, NO_TYPE, NO_CODES, INVALID_PARAM) and changes
nothing; more than 5 subscribe messages a second or 100 a minute get TOO_MANY_SUBSCRIBE;
the text `PING` is answered `{"status":"UP"}`, ping frames with pongs; a connection that
sends nothing for `idle_timeout` seconds (120, Upbit's) is closed with code 1000.
Formats: DEFAULT (Upbit's bytes, untouched), SIMPLE (Upbit's short field names), and the
list forms JSON_LIST / SIMPLE_LIST (each message as a one-element array).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from upbit_cache.collector.stream_hub import Key, Message, Refused, StreamHub, Subscription, Want

__all__ = ["FORMATS", "TYPES", "Relay", "parse_subscribe"]

MINUTE_UNITS = (1, 3, 5, 10, 15, 30, 60, 240)
TYPES = frozenset(
    {"ticker", "trade", "orderbook", "candle.1s", *(f"candle.{u}m" for u in MINUTE_UNITS)}
)
FORMATS = ("DEFAULT", "SIMPLE", "JSON_LIST", "SIMPLE_LIST")
IDLE_TIMEOUT = 120.0
_PONG_TEXT = '{"status":"UP"}'

# Upbit's SIMPLE names, per type (its docs' tables); a field not listed keeps its name.
_COMMON = {"type": "ty", "code": "cd", "timestamp": "tms", "stream_type": "st"}
_SIMPLE: dict[str, dict[str, str]] = {
    "trade": {
        **_COMMON,
        "trade_date": "td",
        "trade_time": "ttm",
        "trade_timestamp": "ttms",
        "trade_price": "tp",
        "trade_volume": "tv",
        "ask_bid": "ab",
        "prev_closing_price": "pcp",
        "change": "c",
        "change_price": "cp",
        "sequential_id": "sid",
        "best_ask_price": "bap",
        "best_ask_size": "bas",
        "best_bid_price": "bbp",
        "best_bid_size": "bbs",
    },
    "candle": {
        **_COMMON,
        "candle_date_time_utc": "cdttmu",
        "candle_date_time_kst": "cdttmk",
        "opening_price": "op",
        "high_price": "hp",
        "low_price": "lp",
        "trade_price": "tp",
        "candle_acc_trade_volume": "catv",
        "candle_acc_trade_price": "catp",
    },
    "ticker": {
        **_COMMON,
        "opening_price": "op",
        "high_price": "hp",
        "low_price": "lp",
        "trade_price": "tp",
        "prev_closing_price": "pcp",
        "change": "c",
        "change_price": "cp",
        "signed_change_price": "scp",
        "change_rate": "cr",
        "signed_change_rate": "scr",
        "trade_volume": "tv",
        "acc_trade_volume": "atv",
        "acc_trade_volume_24h": "atv24h",
        "acc_trade_price": "atp",
        "acc_trade_price_24h": "atp24h",
        "trade_date": "tdt",
        "trade_time": "ttm",
        "trade_timestamp": "ttms",
        "ask_bid": "ab",
        "acc_ask_volume": "aav",
        "acc_bid_volume": "abv",
        "highest_52_week_price": "h52wp",
        "highest_52_week_date": "h52wdt",
        "lowest_52_week_price": "l52wp",
        "lowest_52_week_date": "l52wdt",
        "market_state": "ms",
        "is_trading_suspended": "its",
        "delisting_date": "dd",
        "market_warning": "mw",
    },
    "orderbook": {
        **_COMMON,
        "total_ask_size": "tas",
        "total_bid_size": "tbs",
        "orderbook_units": "obu",
        "ask_price": "ap",
        "bid_price": "bp",
        "ask_size": "as",
        "bid_size": "bs",
        "level": "lv",
    },
}


class SubscribeError(Exception):
    """A refused subscribe message; `name` is Upbit's error name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name

    def frame(self) -> bytes:
        return _error_frame(self.name, str(self))


def _error_frame(name: str, message: str) -> bytes:
    return json.dumps({"error": {"name": name, "message": message}}).encode()


def _flag(item: Mapping[str, Any], snake: str, camel: str) -> bool:
    value = item.get(snake, item.get(camel, False))
    if not isinstance(value, bool):
        raise SubscribeError("INVALID_PARAM", f"{snake} must be true or false")
    return value


def parse_subscribe(text: str) -> tuple[dict[Key, Want], str]:
    """The keys a subscribe message wants and its format; raises SubscribeError."""
    try:
        items = json.loads(text)
    except ValueError:
        raise SubscribeError("WRONG_FORMAT", "the request must be a JSON array") from None
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        raise SubscribeError("WRONG_FORMAT", "the request must be a JSON array of objects")
    ticket = next((i["ticket"] for i in items if "ticket" in i), None)
    if not isinstance(ticket, str) or not ticket:
        raise SubscribeError("NO_TICKET", "a ticket object is required")
    fmt = "DEFAULT"
    wants: dict[Key, Want] = {}
    typed = False
    for item in items:
        if "format" in item:
            if item["format"] not in FORMATS:
                raise SubscribeError("INVALID_PARAM", f"unsupported format: {item['format']!r}")
            fmt = item["format"]
        if "type" not in item:
            continue
        typed = True
        kind = item["type"]
        if kind not in TYPES:
            raise SubscribeError("INVALID_PARAM", f"unsupported type: {kind!r}")
        codes = item.get("codes")
        if not isinstance(codes, list) or not codes:
            raise SubscribeError("NO_CODES", f"codes are required for {kind}")
        if not all(isinstance(c, str) and c for c in codes):
            raise SubscribeError("INVALID_PARAM", f"codes of {kind} must be names")
        only_snapshot = _flag(item, "is_only_snapshot", "isOnlySnapshot")
        only_realtime = _flag(item, "is_only_realtime", "isOnlyRealtime")
        for code in codes:
            old = wants.get((kind, code))
            want = Want(snapshot=not only_realtime, realtime=not only_snapshot)
            if old is not None:  # named twice: both wishes
                want = Want(old.snapshot or want.snapshot, old.realtime or want.realtime)
            wants[kind, code] = want
    if not typed:
        raise SubscribeError("NO_TYPE", "at least one type object is required")
    return wants, fmt


def render(message: Message, fmt: str) -> bytes:
    """`message` as a client of format `fmt` gets it."""
    if fmt == "DEFAULT":
        return message.default_bytes()
    body = dict(message.body)
    body["stream_type"] = message.stream_type
    if fmt.startswith("SIMPLE"):
        names = _SIMPLE.get(message.key[0].split(".")[0], _COMMON)
        body = {names.get(k, k): _simple_value(v, names) for k, v in body.items()}
    out: Any = [body] if fmt.endswith("_LIST") else body
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode()


def _simple_value(value: Any, names: Mapping[str, str]) -> Any:
    if isinstance(value, list):  # orderbook units
        return [
            {names.get(k, k): v for k, v in u.items()} if isinstance(u, dict) else u for u in value
        ]
    return value


class Relay:
    """The `/websocket/v1` handler over one StreamHub."""

    def __init__(
        self,
        hub: StreamHub,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        per_second: int = 5,
        per_minute: int = 100,
    ) -> None:
        self.hub = hub
        self.idle_timeout = idle_timeout
        self.per_second = per_second
        self.per_minute = per_minute
        self._locals: set[_Local] = set()

    def start(self) -> None:
        """Start the upstream hub (its connection opens with the first subscription)."""
        self.hub.start()

    async def close(self) -> None:
        """Close every local connection, then the hub."""
        for local in list(self._locals):
            await local.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        await self.hub.close()

    @property
    def clients(self) -> int:
        """Local connections open now."""
        return len(self._locals)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """GET /websocket/v1: upgrade, then serve the local connection until it ends."""
        ws = web.WebSocketResponse(autoping=False, compress=False, timeout=1.0)
        if not ws.can_prepare(request).ok:
            body = {"error": {"name": 400, "message": "WebSocket upgrade expected"}}
            return web.json_response(body, status=400)
        await ws.prepare(request)
        local = _Local(self, ws)
        self._locals.add(local)
        try:
            await local.serve()
        finally:
            self._locals.discard(local)
            await local.stop()
        return ws


class _Local:
    """One local client: its frames, its subscription, and the task sending it messages."""

    def __init__(self, relay: Relay, ws: web.WebSocketResponse) -> None:
        self.relay = relay
        self.ws = ws
        self.sub: Subscription | None = None
        self.task: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()
        self.sends: deque[float] = deque()

    async def serve(self) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                try:
                    msg = await self.ws.receive(timeout=self.relay.idle_timeout)
                except TimeoutError:
                    await self.ws.close(code=WSCloseCode.OK, message=b"idle timeout")
                    return
                if msg.type is WSMsgType.PING:
                    await self.ws.pong(msg.data)
                elif msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    data = msg.data
                    text = data if isinstance(data, str) else data.decode("utf-8", "replace")
                    if text.strip() == "PING":
                        async with self.lock:
                            await self.ws.send_str(_PONG_TEXT)
                    else:
                        await self.subscribe(text)
                elif msg.type is not WSMsgType.PONG:
                    return  # CLOSE, CLOSING, CLOSED or ERROR

    async def send(self, payload: bytes) -> None:
        async with self.lock:
            await self.ws.send_bytes(payload)

    def admit(self) -> bool:
        """Upbit's subscribe limits, per connection."""
        now = time.monotonic()
        while self.sends and self.sends[0] <= now - 60.0:
            self.sends.popleft()
        last_second = sum(1 for t in self.sends if t > now - 1.0)
        if last_second >= self.relay.per_second or len(self.sends) >= self.relay.per_minute:
            return False
        self.sends.append(now)
        return True

    async def subscribe(self, text: str) -> None:
        if not self.admit():
            relay = self.relay
            message = (
                f"Too many subscribe messages (at most {relay.per_second}/s "
                f"and {relay.per_minute}/min)."
            )
            await self.send(_error_frame("TOO_MANY_SUBSCRIBE", message))
            return
        try:
            wants, fmt = parse_subscribe(text)
        except SubscribeError as exc:
            await self.send(exc.frame())
            return
        await self.stop()
        self.sub = self.relay.hub.subscribe(wants)
        self.task = asyncio.create_task(self.forward(self.sub, fmt))

    async def forward(self, sub: Subscription, fmt: str) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            async for item in sub.items():
                if isinstance(item, Message):
                    await self.send(render(item, fmt))
                elif isinstance(item, Refused):
                    await self.send(item.raw)
            if sub.cut:  # it fell too far behind: as Upbit, drop it
                await self.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"too slow")

    async def stop(self) -> None:
        sub, self.sub = self.sub, None
        task, self.task = self.task, None
        if sub is not None:
            sub.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
