"""The Upbit REST client: one aiohttp session, the shared rate limiter, retries, error mapping."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from types import SimpleNamespace, TracebackType
from typing import TYPE_CHECKING, Any

import aiohttp

from upbit_cache import retry
from upbit_cache.collector.config import ClientConfig
from upbit_cache.collector.listing import (
    MarketInfo,
    block_seconds,
    blocked_message,
    parse_error,
    parse_last_trades,
    parse_markets,
)
from upbit_cache.collector.ratelimit import RateLimiter, Schedule, Send
from upbit_cache.errors import (
    ExchangeError,
    IPBlockedError,
    RateLimitedError,
    ServerError,
    UnknownMarketError,
    UpbitCacheError,
)
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import iso

if TYPE_CHECKING:
    import pyarrow as pa

MAX_PAGE = 200  # Upbit's largest `count`
MARKETS_MAX_AGE = 60.0  # seconds a market list is reused within one client
TICKERS_MAX_AGE = 60.0  # seconds a ticker list (last trades) is reused within one client
_MINUTE_MS = 60_000
_DAY_MS = 86_400_000
# Pages this close to the 1s horizon are not asked for: our view of Upbit's clock may lag
# it by a second or two, and a page half past the edge would come back short.
_HORIZON_MARGIN_MS = 600_000
_USER_AGENT = "upbit-cache/0.1"


@dataclass
class ClientStats:
    """What the client sent and what came back."""

    candle_requests: int = 0
    rate_limited: int = 0


class UpbitClient:
    """Async access to Upbit's quotation API; use as `async with UpbitClient(cfg) as c`."""

    def __init__(
        self,
        config: ClientConfig,
        limiter: RateLimiter | None = None,
        schedule: Schedule | None = None,
    ) -> None:
        """`schedule`: send times shared with other processes of the host (one IP, one
        budget); by default this process paces alone."""
        self.config = config
        self.limiter = limiter or RateLimiter(config.rate, schedule=schedule)
        self.stats = ClientStats()
        self._session: aiohttp.ClientSession | None = None
        self._clock_offset_ms: int | None = None
        self._listing: tuple[float, list[MarketInfo]] | None = None
        self._tickers: dict[str, tuple[float, asyncio.Future[tuple[int, dict[str, int]]]]] = {}

    async def __aenter__(self) -> UpbitClient:
        # The limiter counts each candle request from when it really went out and what its
        # answer says of when Upbit got it, not from when it was let go.
        trace = aiohttp.TraceConfig()
        trace.on_request_headers_sent.append(self._on_headers_sent)
        trace.on_request_end.append(self._on_answer)
        trace.on_request_exception.append(self._on_failure)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.timeout),
            connector=aiohttp.TCPConnector(limit=self.config.max_in_flight),
            headers={"Accept": "application/json", "User-Agent": _USER_AGENT},
            trace_configs=[trace],
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _on_headers_sent(
        self, _: aiohttp.ClientSession, ctx: SimpleNamespace, __: Any
    ) -> None:
        if isinstance(ctx.trace_request_ctx, Send):
            # Just before the write: a send put off since its slot takes one anew.
            await self.limiter.sending(ctx.trace_request_ctx)

    async def _on_answer(self, _: aiohttp.ClientSession, ctx: SimpleNamespace, __: Any) -> None:
        if isinstance(ctx.trace_request_ctx, Send):
            self.limiter.answered(ctx.trace_request_ctx)

    async def _on_failure(self, _: aiohttp.ClientSession, ctx: SimpleNamespace, __: Any) -> None:
        if isinstance(ctx.trace_request_ctx, Send):
            self.limiter.answered(ctx.trace_request_ctx, failed=True)

    @property
    def session(self) -> aiohttp.ClientSession:
        """The client's HTTP session (also used for the WebSocket)."""
        assert self._session is not None, "use UpbitClient as an async context manager"
        return self._session

    def now_ms(self) -> int:
        """Upbit's clock as last seen in a `Date` header (never ahead of it), else ours."""
        return int(time.time() * 1000) + (self._clock_offset_ms or 0)

    def see_time(self, upbit_ms: int) -> None:
        """A moment Upbit's clock has passed (a streamed trade's time): our view of its
        clock is never behind it, even between REST answers."""
        sample = upbit_ms - int(time.time() * 1000)
        if self._clock_offset_ms is None or sample > self._clock_offset_ms:
            self._clock_offset_ms = sample

    def settled_ms(self) -> int:
        """Upbit's clock less `config.settle`: periods ended before it are final at Upbit (it
        stores trades into its candles a little after they happen)."""
        return self.now_ms() - round(self.config.settle * 1000)

    def earliest(self, timeframe: Timeframe) -> int | None:
        """The oldest period start Upbit serves for `timeframe` now; None: no limit.

        Only 1s candles have one (`config.seconds_horizon_days`), and it moves with the clock:
        ask again before each page of a long run.
        """
        if timeframe.kind != "second":
            return None
        horizon = round(self.config.seconds_horizon_days * _DAY_MS)
        edge = self.now_ms() - horizon + _HORIZON_MARGIN_MS
        # To the nearest minute: our view of Upbit's clock is only good to a second, and
        # runs a moment apart should name the same edge.
        return timeframe.ceil_one(round(edge / _MINUTE_MS) * _MINUTE_MS)

    async def markets(self, max_age: float = MARKETS_MAX_AGE) -> list[MarketInfo]:
        """Every market Upbit lists (/v1/market/all); also sets the server clock.

        An answer younger than `max_age` seconds is reused: one run asks once.
        """
        if self._listing is not None and time.monotonic() - self._listing[0] < max_age:
            return list(self._listing[1])
        # `is_details` is Upbit's current name (`isDetails` the older one). Should Upbit ignore
        # it, the list comes without `market_event` and every market reads as not warned.
        body = await self._get(
            "market/all", {"is_details": "true"}, limited=False, what="market list"
        )
        listing = parse_markets(body)
        self._listing = (time.monotonic(), listing)
        return list(listing)

    async def last_trade(self, market: str) -> tuple[int, int | None]:
        """(Upbit's clock before asking, `market`'s last trade in epoch ms, or None).

        One ticker request per quote currency answers every market, and every caller of
        this client shares it for TICKERS_MAX_AGE seconds (not a candle request).
        """
        quote = market.partition("-")[0]
        cached = self._tickers.get(quote)
        if cached is None or time.monotonic() - cached[0] > TICKERS_MAX_AGE:
            cached = (time.monotonic(), asyncio.ensure_future(self._last_trades(quote)))
            self._tickers[quote] = cached
        try:
            seen_at, trades = await asyncio.shield(cached[1])
        except UpbitCacheError:
            self._tickers.pop(quote, None)
            raise
        return seen_at, trades.get(market)

    async def _last_trades(self, quote: str) -> tuple[int, dict[str, int]]:
        asked_at = self.now_ms()
        body = await self._get(
            "ticker/all", {"quote_currencies": quote}, limited=False, what="ticker list"
        )
        return asked_at, parse_last_trades(body)

    async def candles(
        self, market: str, timeframe: Timeframe, to_ms: int | None, count: int
    ) -> pa.Table:
        """One page: up to `count` candles starting before `to_ms` (exclusive), oldest first."""
        if timeframe.endpoint is None:
            raise ValueError(f"{timeframe} is not served by Upbit")
        params: dict[str, str] = {"market": market, "count": str(min(count, MAX_PAGE))}
        if to_ms is not None:
            params["to"] = iso(to_ms)
        body = await self._get(
            timeframe.endpoint, params, limited=True, what=f"{market} {timeframe}"
        )
        # Imported here: only candle pages need pyarrow, the market list does not. Parsed on
        # a worker thread: the loop keeps pacing sends meanwhile (the first parse also
        # imports pandas, through pyarrow, which takes longer than a send interval).
        from upbit_cache.collector.parse import parse_candles

        return await asyncio.to_thread(parse_candles, body, market, timeframe)

    async def _get(self, path: str, params: dict[str, str], *, limited: bool, what: str) -> Any:
        assert self._session is not None, "use UpbitClient as an async context manager"
        url = f"{self.config.api_url}/v1/{path}"
        policy = retry.http(self.config.retries, self.config.backoff, self._before_retry)
        try:
            async for attempt in policy:
                with attempt:
                    return await self._ask(url, params, limited=limited, what=what)
        except retry.Transient as exc:
            tries = self.config.retries + 1
            raise ServerError(
                f"{what}: Upbit kept failing ({exc}); gave up after {tries} tries"
            ) from None
        except retry.RateLimited:
            tries = retry.RATE_LIMIT_RETRIES + 1
            raise RateLimitedError(
                f"{what}: Upbit still answers 429 after {tries} slower tries"
            ) from None
        raise AssertionError("unreachable")

    async def _ask(self, url: str, params: dict[str, str], *, limited: bool, what: str) -> Any:
        """One try of a request (see `_get`)."""
        # Every request waits out a 429 pause; candle requests also take a paced slot.
        send = await self.limiter.acquire() if limited else None
        sent_at = send.released if send is not None else await self.limiter.unpaused()
        self.stats.candle_requests += limited
        status, headers, body = await self._send(url, params, send)
        if status == 429:
            self.stats.rate_limited += 1
            raise retry.RateLimited(sent_at)
        if send is not None:
            # Not after a 429: its count says the window was full when it came, not that
            # another client sent: its pause answers it (on_429), not phantom sends.
            self.limiter.observe(_remaining(headers), send)
        return self._interpret(status, headers, body, what, params)

    def _before_retry(self, failure: BaseException) -> None:
        if isinstance(failure, retry.RateLimited):
            self.limiter.on_429(failure.sent_at)

    async def _send(
        self, url: str, params: dict[str, str], send: Send | None
    ) -> tuple[int, Any, bytes]:
        assert self._session is not None
        try:
            async with self._session.get(url, params=params, trace_request_ctx=send) as resp:
                body = await resp.read()
                self._see_date(resp.headers.get("Date"))
                return resp.status, resp.headers, body
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise retry.Transient(type(exc).__name__ + (f": {exc}" if str(exc) else "")) from exc
        finally:
            if send is not None:  # however it ended (cancelled too): no send stays "now"
                self.limiter.answered(send, failed=True)

    def _interpret(
        self, status: int, headers: Any, raw: bytes, what: str, params: dict[str, str]
    ) -> Any:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if status == 200:
            if body is None and raw.strip() != b"null":
                raise retry.Transient(f"undecodable answer ({len(raw)} bytes: {raw[:40]!r}...)")
            return body
        message = parse_error(body) or raw[:120].decode("utf-8", "replace")
        if status == 418:
            # Upbit's clock: the block ends by it, and it names the end in a Retry-After date.
            now = self.now_ms()
            seconds = block_seconds(body, raw, headers.get("Retry-After"), now)
            error = IPBlockedError(blocked_message(seconds, now), retry_after=seconds)
            self.limiter.block(error)
            raise error
        if status == 404 and "market" in params:
            raise UnknownMarketError(f"Upbit does not list market {params['market']} ({message})")
        if status >= 500:
            raise retry.Transient(f"HTTP {status} {message}")
        raise ExchangeError(f"{what}: Upbit refused the request (HTTP {status} {message})")

    def _see_date(self, header: str | None) -> None:
        if not header:
            return
        try:
            server_ms = int(parsedate_to_datetime(header).timestamp() * 1000)
        except (TypeError, ValueError):
            return
        sample = server_ms - int(time.time() * 1000)
        # `Date` is truncated to the second, so each sample is at most the true offset;
        # keep the largest, unless the server clock visibly jumped.
        current = self._clock_offset_ms
        if current is None or abs(sample - current) > 1500:
            self._clock_offset_ms = sample
        else:
            self._clock_offset_ms = max(current, sample)


def _remaining(headers: Any) -> int | None:
    """The `sec=` count of `Remaining-Req: group=candles; min=600; sec=9`."""
    value = headers.get("Remaining-Req")
    if not value:
        return None
    for part in value.split(";"):
        key, _, number = part.strip().partition("=")
        if key == "sec" and number.isdigit():
            return int(number)
    return None
