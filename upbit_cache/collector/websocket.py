"""Upbit's WebSocket trade stream: one connection, one subscription, reconnects with backoff.

The stream says when it is (re)connected and when it dropped, so its user can repair the
hole through REST; it never hides a gap. Pings keep the connection alive (Upbit closes idle
ones after about 120 s). The waits between connections are `retry.reconnect`'s: from a
quarter second to at most a second and a half, so a stream is back soon after the server is.

An error frame that says our request is wrong (PERMANENT_ERRORS: the same subscription would
get the same answer) ends the stream; any other (a rate limit, a name we do not know) is a
reconnect like a drop, until ERRORS_IN_A_ROW of them come with no trade in between.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from upbit_cache import retry
from upbit_cache.errors import ExchangeError

# Upbit's names for a malformed or refused request (its docs list these six): resending it
# cannot help.
PERMANENT_ERRORS = frozenset(
    {"INVALID_AUTH", "WRONG_FORMAT", "NO_TICKET", "NO_TYPE", "NO_CODES", "INVALID_PARAM"}
)
ERRORS_IN_A_ROW = 6  # transient error frames with no trade between, before giving up
_ERROR_MEMORY = 60.0  # seconds: an error frame this long after the last one starts afresh


@dataclass(frozen=True)
class Trade:
    """One trade as the stream delivered it; `received` is our monotonic clock at arrival."""

    market: str
    time: int  # trade_timestamp, epoch ms (Upbit's clock)
    price: float
    volume: float
    seq: int  # sequential_id: unique per trade
    received: float


@dataclass(frozen=True)
class Connected:
    """Subscribed, on the first connection or again after a drop (`again`)."""

    again: bool


@dataclass(frozen=True)
class Disconnected:
    """The connection dropped: trades from now until the next `Connected` may be missing."""

    reason: str


StreamEvent = Trade | Connected | Disconnected


async def trade_stream(
    session: aiohttp.ClientSession,
    url: str,
    markets: Sequence[str],
    *,
    heartbeat: float = 30.0,
) -> AsyncIterator[StreamEvent]:
    """Trades of `markets` for as long as the caller iterates, reconnecting after drops
    (`retry.reconnect`)."""
    request: list[dict[str, object]] = [
        {"ticket": str(uuid.uuid4())},
        {"type": "trade", "codes": list(markets)},
    ]
    request.append({"format": "DEFAULT"})
    link = _Link()
    try:
        async for attempt in retry.reconnect(link):
            with attempt:
                connection = _connection(session, url, request, markets, heartbeat, link)
                async with contextlib.aclosing(connection) as events:
                    async for event in events:
                        yield event
    except retry.Dropped as exc:  # never connected, and the tries ran out
        raise ExchangeError(f"cannot open Upbit's WebSocket at {url} ({exc})") from None


@dataclass
class _Link:
    """What the stream knows between its connections (`retry.Link`, and the last error
    frame's time and words)."""

    connected_once: bool = False
    failures: int = 0  # connections lost or refused since the last one that subscribed
    errors: int = 0  # transient error frames with no trade in between
    last_error: float = 0.0
    detail: str = ""


async def _connection(
    session: aiohttp.ClientSession,
    url: str,
    request: list[dict[str, object]],
    markets: Sequence[str],
    heartbeat: float,
    link: _Link,
) -> AsyncGenerator[StreamEvent, None]:
    """One connection's events; it ends with `retry.Dropped` (its reason) to be connected
    again, or with ExchangeError where connecting again cannot help."""
    reason = "connection closed"
    try:
        async with session.ws_connect(url, heartbeat=heartbeat) as ws:
            await ws.send_str(json.dumps(request))
            yield Connected(again=link.connected_once)
            link.connected_once, link.failures = True, 0
            async for message in ws:
                if message.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                    try:
                        trade = _parse(message.data, time.monotonic())
                    except _ErrorFrame as exc:
                        if exc.name in PERMANENT_ERRORS:
                            raise ExchangeError(
                                f"Upbit's WebSocket refused the subscription ({exc}); "
                                f"markets {', '.join(markets) or 'none'}"
                            ) from None
                        now = time.monotonic()
                        fresh = now - link.last_error > _ERROR_MEMORY
                        link.errors = 1 if fresh else link.errors + 1
                        link.last_error, link.detail = now, str(exc)
                        reason = f"Upbit's WebSocket sent an error ({link.detail})"
                        break  # closed on leaving the block; connected again after
                    if trade is not None:
                        link.errors = 0
                        yield trade
                elif message.type == aiohttp.WSMsgType.ERROR:
                    reason = f"connection error: {ws.exception()}"
                    break
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    if link.errors >= ERRORS_IN_A_ROW:
        raise ExchangeError(
            f"Upbit's WebSocket answered with an error {link.errors} times in a row with no "
            f"trade in between (last: {link.detail}); stopped. Run again later."
        )
    link.failures += 1
    if link.connected_once:
        yield Disconnected(reason)
    raise retry.Dropped(reason)


class _ErrorFrame(Exception):
    """Upbit's `{"error": {"name": ..., "message": ...}}` on the WebSocket."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}" if message else name)
        self.name = name


def _parse(data: str | bytes, received: float) -> Trade | None:
    """A trade message; None for anything else (status answers); an error frame raises
    _ErrorFrame, a garbled trade ExchangeError."""
    try:
        body = json.loads(data)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    if "error" in body:
        error = body["error"]
        if isinstance(error, dict):
            raise _ErrorFrame(str(error.get("name", "?")), str(error.get("message") or ""))
        raise _ErrorFrame(str(error), "")
    if body.get("type") != "trade":
        return None
    return trade_of(body, received)


def trade_of(body: dict[str, Any], received: float) -> Trade:
    """The Trade of a parsed trade message (the stream hub's too); a garbled one raises
    ExchangeError."""
    try:
        return Trade(
            market=str(body["code"]),
            time=int(body["trade_timestamp"]),
            price=float(body["trade_price"]),
            volume=float(body["trade_volume"]),
            seq=int(body["sequential_id"]),
            received=received,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ExchangeError(f"a trade message lacks or garbles a field ({exc}): {body}") from exc
