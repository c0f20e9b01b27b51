"""`upbit-cache serve`: Upbit's public quotation API over the store, on a local port.

Candle pages come from the store, filled through the planner where it lacks them (manager/
pages.py); the market list, tickers, trades and order books are passed through to Upbit,
each group paced within its rate. Existing clients (pyupbit, ccxt, upbit-sdk) work
unchanged once their base URL points here, and every process of the host shares one
connection to Upbit and one rate budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from upbit_cache.collector.stream_hub import StreamHub
from upbit_cache.errors import UpbitCacheError
from upbit_cache.manager.keep import Keeper
from upbit_cache.manager.pages import FRESH_SECONDS, Upstream, group_of
from upbit_cache.server.candles import render_page
from upbit_cache.server.errors import (
    BadRequest,
    count_of,
    error_response,
    not_found,
    to_of,
    unit_of,
    upstream_failed,
)
from upbit_cache.server.relay import Relay
from upbit_cache.timeframes import Timeframe

if TYPE_CHECKING:
    from upbit_cache.manager.cache import UpbitCache

__all__ = ["KEEPER", "PAGE_READINGS", "RELAY", "UPSTREAM", "WS_PATH", "make_app", "serve"]

WS_PATH = "/websocket/v1"
PAGE_READINGS = ("window", "newest")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8124
MARKETS_MAX_AGE = 60.0  # seconds a market list answer is reused
# Answers from the store cost Upbit nothing; clients that pace themselves by this header
# (pyupbit requires it) see a second's full budget.
_REMAINING = "group={group}; min=600; sec=9"
_NAMED = {"seconds": "1s", "days": "1d", "weeks": "1w", "months": "1M", "years": "1y"}
_MINUTES = {1: "1m", 3: "3m", 5: "5m", 10: "10m", 15: "15m", 30: "30m", 60: "1h", 240: "4h"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
InProgress = Callable[[str, Timeframe], dict[str, Any] | None]
# The app's Upstream (one client, one session): `request.app[UPSTREAM].client.session` is
# the session a WebSocket relay can share.
UPSTREAM = web.AppKey("upstream", Upstream)
# The WebSocket relay and the series kept fresh, both over one upstream stream (StreamHub).
RELAY = web.AppKey("relay", Relay)
KEEPER = web.AppKey("keeper", Keeper)


def make_app(
    cache: UpbitCache,
    *,
    ws_handler: Handler | None = None,
    in_progress: InProgress | None = None,
    pages: str = "window",
    fresh: float = FRESH_SECONDS,
    relay: bool = False,
    keeper: Keeper | None = None,
) -> web.Application:
    """The server as an aiohttp application. `ws_handler` is mounted at GET /websocket/v1;
    `in_progress(market, tf)` gives a kept series' in-progress candle as Upbit's JSON dict
    (None: not kept, the newest upstream page's is used, reused `fresh` seconds); `pages`:
    how the upstream reads a page ("window" or "newest", see manager/pages.py).
    `relay`: /websocket/v1 relays Upbit's stream (server/relay.py); `keeper`: series kept
    fresh while the app runs, whose in-progress candles the pages answer with. Both share
    one upstream WebSocket connection and the Upstream's one HTTP session."""
    if pages not in PAGE_READINGS:
        raise ValueError(f"pages must be one of {PAGE_READINGS}: {pages!r}")
    app = web.Application(middlewares=[_errors])

    def current(market: str, tf: Timeframe) -> dict[str, Any] | None:
        if in_progress is not None:
            return in_progress(market, tf)
        return keeper.in_progress(market, tf) if keeper is not None else None

    async def upstream(app: web.Application) -> AsyncIterator[None]:
        async with Upstream(
            cache, newest=pages == "newest", fresh=fresh, in_progress=current
        ) as up:
            app[UPSTREAM] = up
            if not (relay or keeper):
                yield
                return
            hub = StreamHub(up.client.session, cache.config.ws_url)
            app[RELAY] = Relay(hub)
            app[RELAY].start()
            if keeper is not None:
                keeper.hub = hub
                app[KEEPER] = keeper
                keeper.start()
            try:
                yield
            finally:
                if keeper is not None:
                    await keeper.close()
                await app[RELAY].close()

    app.cleanup_ctx.append(upstream)
    app.router.add_get("/v1/market/all", _market_all)
    app.router.add_get("/v1/candles/minutes/{unit}", _minutes)
    for name, tf in _NAMED.items():
        app.router.add_get(f"/v1/candles/{name}", _named(Timeframe.parse(tf)))
    for path in ("/v1/ticker", "/v1/ticker/all", "/v1/trades/ticks", "/v1/orderbook"):
        app.router.add_get(path, _relay)
    if ws_handler is not None:
        app.router.add_get(WS_PATH, ws_handler)
    elif relay:
        app.router.add_get(WS_PATH, _websocket)
    app.on_response_prepare.append(_date)
    return app


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BadRequest as exc:
        return exc.response()
    except web.HTTPException as exc:
        return error_response(exc.status, exc.status, exc.reason)


async def _date(request: web.Request, response: web.StreamResponse) -> None:
    # Clients (ours too) take Upbit's time from Date: it follows the upstream's clock.
    up = request.app.get(UPSTREAM)
    if up is not None and up.open:
        moment = datetime.fromtimestamp(up.now_ms() / 1000, tz=UTC)
        response.headers["Date"] = format_datetime(moment, usegmt=True)


async def _minutes(request: web.Request) -> web.StreamResponse:
    unit = unit_of(request.match_info["unit"])
    return await _candles(request, Timeframe.parse(_MINUTES[unit]))


def _named(tf: Timeframe) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await _candles(request, tf)

    return handler


async def _candles(request: web.Request, tf: Timeframe) -> web.StreamResponse:
    """One candle page, checked as Upbit checks it (market, then count, then `to`)."""
    up = request.app[UPSTREAM]
    query = request.query
    market = query.get("market")
    if not market:
        raise BadRequest(400, 400, "market is missing")
    try:
        if not await up.listed(market):
            raise not_found()
        count = count_of(query.get("count"))
        to = to_of(query.get("to"))
        convert = query.get("converting_price_unit") if tf.kind == "day" else None
        if convert not in (None, "KRW"):
            raise BadRequest(400, 400, f"unsupported converting_price_unit: {convert!r}")
        page = await up.page(market, tf, to, count, convert=convert is not None)
    except UpbitCacheError as exc:
        return upstream_failed(exc)
    body = await asyncio.to_thread(render_page, market, tf, page)
    response = web.Response(text=body, content_type="application/json")
    response.headers["Remaining-Req"] = _REMAINING.format(group="candles")
    return response


async def _websocket(request: web.Request) -> web.StreamResponse:
    return await request.app[RELAY].handle(request)


async def _market_all(request: web.Request) -> web.StreamResponse:
    return await _pass(request, MARKETS_MAX_AGE)


async def _relay(request: web.Request) -> web.StreamResponse:
    return await _pass(request, 0.0)


async def _pass(request: web.Request, max_age: float) -> web.StreamResponse:
    """Upbit's answer to the same request: status, body and the headers that matter."""
    up = request.app[UPSTREAM]
    try:
        answer = await up.relay(request.path, request.query, max_age=max_age)
    except (OSError, TimeoutError) as exc:
        return error_response(502, 502, f"upbit-cache serve: Upbit unreachable ({exc})")
    headers = {k: v for k, v in answer.headers.items() if k != "Date"}
    if answer.status != 418 and "Remaining-Req" not in headers:
        headers["Remaining-Req"] = _REMAINING.format(group=group_of(request.path))
    return web.Response(status=answer.status, body=answer.body, headers=headers)


async def serve(
    cache: UpbitCache,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    ws_handler: Handler | None = None,
    in_progress: InProgress | None = None,
    pages: str = "window",
    fresh: float = FRESH_SECONDS,
    relay: bool = False,
    keeper: Keeper | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until cancelled, or until the `keeper` stops (what stopped it is raised: a
    418, a full disk); `on_ready(url)` is told the address once it listens."""
    app = make_app(
        cache,
        ws_handler=ws_handler,
        in_progress=in_progress,
        pages=pages,
        fresh=fresh,
        relay=relay,
        keeper=keeper,
    )
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        if on_ready is not None:
            bound = runner.addresses[0] if runner.addresses else (host, port)
            on_ready(f"http://{_host(bound[0])}:{bound[1]}")
        if keeper is not None:
            await keeper.wait()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address
