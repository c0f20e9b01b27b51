"""Upbit's WebSocket trade stream: one connection, one subscription, reconnects with backoff.

The stream says when it is (re)connected and when it dropped, so its user can repair the
hole through REST; it never hides a gap. Pings keep the connection alive (Upbit closes idle
ones after about 120 s). Upbit allows 5 new connections a second: the backoff starts at a
quarter second and stays at most a second (and a half, with jitter), so a stream is back
soon after the server is.

An error frame that says our request is wrong (PERMANENT_ERRORS: the same subscription would
get the same answer) ends the stream; any other (a rate limit, a name we do not know) is a
reconnect like a drop, until ERRORS_IN_A_ROW of them come with no trade in between.
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
    """Trades of `markets` for as long as the caller iterates, reconnecting after drops."""
    request = [{"ticket": str(uuid.uuid4())}, {"type": "trade", "codes": list(markets)}]
    request.append({"format": "DEFAULT"})
    connected_once, failures = False, 0
    errors, last_error, detail = 0, 0.0, ""  # transient error frames since the last trade
    while True:
        reason = "connection closed"
        try:
            async with session.ws_connect(url, heartbeat=heartbeat) as ws:
                await ws.send_str(json.dumps(request))
                yield Connected(again=connected_once)
                connected_once, failures = True, 0
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
                            errors = 1 if now - last_error > _ERROR_MEMORY else errors + 1
                            last_error, detail = now, str(exc)
                            reason = f"Upbit's WebSocket sent an error ({detail})"
                            break  # closed on leaving the block; connected again below
                        if trade is not None:
                            errors = 0
                            yield trade
                    elif message.type == aiohttp.WSMsgType.ERROR:
                        reason = f"connection error: {ws.exception()}"
                        break
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        if errors >= ERRORS_IN_A_ROW:
            raise ExchangeError(
                f"Upbit's WebSocket answered with an error {errors} times in a row with no "
                f"trade in between (last: {detail}); stopped. Run again later."
            )
        failures += 1
        if not connected_once and failures >= _FIRST_CONNECT_TRIES:
            raise ExchangeError(f"cannot open Upbit's WebSocket at {url} ({reason})")
        if connected_once:
            yield Disconnected(reason)
        # Upbit allows 5 new connections a second; one every second or so is well inside it.
        backoff = min(_MAX_BACKOFF, 0.25 * 2 ** (max(failures, errors) - 1))
        await asyncio.sleep(backoff * random.uniform(1.0, 1.5))


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
