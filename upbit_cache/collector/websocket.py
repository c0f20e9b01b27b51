"""Upbit's WebSocket trade stream: one connection, one subscription, reconnects with backoff.

The stream says when it is (re)connected and when it dropped, so its user can repair the
hole through REST; it never hides a gap. Pings keep the connection alive (Upbit closes idle
ones after about 120 s). Upbit allows 5 new connections a second: the backoff starts at a
quarter second and stays at most a second (and a half, with jitter), so a stream is back
soon after the server is.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import aiohttp

from upbit_cache.errors import ExchangeError

_FIRST_CONNECT_TRIES = 3
_MAX_BACKOFF = 1.0  # seconds: back within about 1.5 s of the server's return


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
    """Trades of `markets` for as long as the caller iterates, reconnecting after drops."""
    request = [{"ticket": str(uuid.uuid4())}, {"type": "trade", "codes": list(markets)}]
    request.append({"format": "DEFAULT"})
    connected_once, failures = False, 0
    while True:
        reason = "connection closed"
        try:
            async with session.ws_connect(url, heartbeat=heartbeat) as ws:
                await ws.send_str(json.dumps(request))
                yield Connected(again=connected_once)
                connected_once, failures = True, 0
                async for message in ws:
                    if message.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                        trade = _parse(message.data, time.monotonic())
                        if trade is not None:
                            yield trade
                    elif message.type == aiohttp.WSMsgType.ERROR:
                        reason = f"connection error: {ws.exception()}"
                        break
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        failures += 1
        if not connected_once and failures >= _FIRST_CONNECT_TRIES:
            raise ExchangeError(f"cannot open Upbit's WebSocket at {url} ({reason})")
        if connected_once:
            yield Disconnected(reason)
        # Upbit allows 5 new connections a second; one every second or so is well inside it.
        delay = min(_MAX_BACKOFF, 0.25 * 2 ** (failures - 1)) * random.uniform(1.0, 1.5)
        await asyncio.sleep(delay)


def _parse(data: str | bytes, received: float) -> Trade | None:
    """A trade message; None for anything else (status answers); errors raise."""
    try:
        body = json.loads(data)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    if "error" in body:
        error = body["error"]
        detail = error.get("message") or error.get("name") if isinstance(error, dict) else error
        raise ExchangeError(f"Upbit's WebSocket refused the subscription: {detail}")
    if body.get("type") != "trade":
        return None
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
