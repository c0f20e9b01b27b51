"""Upbit's candle pages answered from the store, for `upbit-cache serve`.

A server keeps one `Upstream` for its life: one client (one session, the host's one rate
budget). A page (`market`, timeframe, `to`, `count`) is read from the store; what the store
lacks of it is fetched through the planner first (one fill of the missing span; asks for
the same span at once share it), so the same page asked again costs Upbit nothing.

Upbit's paging is unverified (collector/quiet.py): a page is either the `count` periods
before `to` ("window": quiet periods are simply missing) or the `count` newest candles
before `to`, reaching back past quiet periods ("newest"). The two answer differently
wherever a market had quiet periods, so the server is told which its upstream uses
(`newest`) and answers the same way; the store's records of what was fetched (absences
included) make either exact.

The in-progress candle is never stored: it is the newest candle of an upstream page, asked
at most once per `fresh` seconds per series (Upbit itself updates a candle at most once a
second), or what a kept series says of it (`in_progress`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from upbit_cache.collector.client import MAX_PAGE, UpbitClient
from upbit_cache.collector.listing import MarketInfo
from upbit_cache.manager.session import new_client
from upbit_cache.ranges import TimeRange
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

if TYPE_CHECKING:
    import pandas as pd

    from upbit_cache.manager.cache import UpbitCache

# How long the newest upstream page's in-progress candle is reused (seconds).
FRESH_SECONDS = 1.0
# How long a market list is reused; a market missing from it is looked up again, at most
# this often, before it is answered as unknown (a listing since).
LISTING_MAX_AGE = 600.0
LISTING_RECHECK = 10.0
# Upbit opened in October 2017: the "newest" reading never reaches back before this.
EXCHANGE_START_MS = to_ms("2017-09-01")
# Upbit's quotation groups: each has its own 10 requests a second.
GROUPS: tuple[tuple[str, str], ...] = (
    ("/v1/candles/", "candles"),
    ("/v1/market/", "market"),
    ("/v1/ticker", "ticker"),
    ("/v1/trades/", "trade"),
    ("/v1/orderbook", "orderbook"),
)
# Headers of an upstream answer that a pass-through relays.
RELAYED_HEADERS = ("Content-Type", "Remaining-Req", "Retry-After", "Date")

InProgress = Callable[[str, Timeframe], dict[str, Any] | None]


def group_of(path: str) -> str:
    """The rate-limit group of a request path."""
    return next((group for prefix, group in GROUPS if path.startswith(prefix)), "default")


@dataclass(frozen=True)
class Page:
    """One page's candles in the store's columns, oldest first: the closed ones, the
    in-progress one (0 or 1 row), and for day pages the close before the first one."""

    closed: pd.DataFrame
    live: pd.DataFrame
    prev_close: float | None = None
    convert: bool = False  # days asked with converting_price_unit=KRW
    converted: pd.DataFrame | None = None  # ... of a non-KRW market: KRW-{quote}'s candles


@dataclass(frozen=True)
class Relayed:
    """An upstream answer passed through: status, the headers that matter, the body."""

    status: int
    headers: dict[str, str]
    body: bytes


class _Pacer:
    """Sends of one group at most `rate` a second from this process."""

    def __init__(self, rate: float) -> None:
        self.gap = 1.0 / rate
        self.next = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self.lock:
            now = time.monotonic()
            if self.next > now:
                await asyncio.sleep(self.next - now)
            self.next = max(now, self.next) + self.gap


class Upstream:
    """What a server asks of the store and of Upbit; use as `async with Upstream(...)`."""

    def __init__(
        self,
        cache: UpbitCache,
        *,
        newest: bool = False,
        fresh: float = FRESH_SECONDS,
        in_progress: InProgress | None = None,
    ) -> None:
        self.cache = cache
        self.newest = newest
        self.fresh = fresh
        self.in_progress = in_progress
        self._client: UpbitClient | None = None
        self._fills: dict[tuple[str, Timeframe, TimeRange], asyncio.Future[None]] = {}
        self._live: dict[tuple[str, Timeframe], tuple[float, asyncio.Future[Any]]] = {}
        self._listing: tuple[float, dict[str, MarketInfo]] | None = None
        self._looked = 0.0
        self._pacers: dict[str, _Pacer] = {}
        self._kept: dict[tuple[str, str], tuple[float, Relayed]] = {}

    async def __aenter__(self) -> Upstream:
        self._client = new_client(self.cache.config)
        await self._client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.__aexit__(None, None, None)
            self._client = None

    @property
    def open(self) -> bool:
        """Whether the client is up (between enter and exit)."""
        return self._client is not None

    @property
    def client(self) -> UpbitClient:
        assert self._client is not None, "use Upstream as an async context manager"
        return self._client

    # Markets

    async def listed(self, market: str) -> bool:
        """Whether Upbit lists `market` (a reused list, asked again for a market not in it)."""
        now = time.monotonic()
        if self._listing is None or now - self._listing[0] > LISTING_MAX_AGE:
            await self._list()
        assert self._listing is not None
        if market not in self._listing[1] and now - self._looked > LISTING_RECHECK:
            await self._list()
        return market in self._listing[1]

    async def _list(self) -> None:
        self._looked = time.monotonic()
        listing = await self.client.markets(max_age=0.0)
        self._listing = (self._looked, {m.market: m for m in listing})

    # Candle pages

    def now_ms(self) -> int:
        """Upbit's clock as last seen."""
        return self.client.now_ms()

    async def page(
        self, market: str, tf: Timeframe, to: int | None, count: int, *, convert: bool = False
    ) -> Page:
        """Upbit's page of `count` candles of `tf` starting before `to` (None: the newest,
        the in-progress one included), read as the upstream reads pages."""
        now = self.now_ms()
        current = tf.floor_one(now)
        top = current if to is None else min(tf.ceil_one(to), current)  # closed: start < top
        live = await self._in_progress(market, tf, top, to) if to is None or to > current else None
        live = _empty() if live is None else live
        earliest = self.client.earliest(tf)
        floor = EXCHANGE_START_MS if earliest is None else earliest
        if self.newest:
            closed = await self.newest_before(market, tf, top, count - len(live), floor)
        else:
            last = tf.floor_one(now if to is None else min(to - 1, now))
            lo = max(tf.shift_one(last, -(count - 1)), floor)
            closed = await self.span(market, tf, TimeRange(lo, top)) if lo < top else _empty()
            if len(live) and int(_ms(live["time"])[0]) < lo:
                live = live.iloc[:0]
        prev = None
        converted = None
        if tf.kind == "day":
            first = closed if len(closed) else live
            if len(first):
                start = int(_ms(first["time"])[0])
                before = await self.newest_before(market, tf, start, 1, floor)
                prev = float(before["close"].iloc[-1]) if len(before) else None
            quote = market.partition("-")[0]
            if convert and quote != "KRW" and (len(closed) or len(live)):
                converted = await self._krw_closes(quote, tf, closed, live, top)
        return Page(closed, live, prev, convert, converted)

    async def _krw_closes(
        self, quote: str, tf: Timeframe, closed: pd.DataFrame, live: pd.DataFrame, top: int
    ) -> pd.DataFrame:
        """KRW-{quote}'s day candles over the page's days (for converted_trade_price)."""
        import pandas as pd

        rows = pd.concat([closed, live]) if len(live) else closed
        lo = int(_ms(rows["time"])[0])
        frames = [await self.span(f"KRW-{quote}", tf, TimeRange(lo, top))] if lo < top else []
        if len(live):
            theirs = await self._in_progress(f"KRW-{quote}", tf, top, None)
            if theirs is not None:
                frames.append(theirs)
        return pd.concat(frames) if frames else _empty()

    async def newest_before(
        self, market: str, tf: Timeframe, top: int, need: int, floor: int
    ) -> pd.DataFrame:
        """The `need` newest closed candles starting before `top`: the last `need` periods
        first, then spans four times as long, back to `floor` (fewer if that is all)."""
        if need <= 0 or top <= floor:
            return _empty()
        periods = max(need, MAX_PAGE)
        while True:
            lo = max(floor, tf.shift_one(top, -periods))
            frame = await self.span(market, tf, TimeRange(lo, top))
            if len(frame) >= need or lo <= floor:
                return frame.iloc[-need:].reset_index(drop=True)
            periods *= 4

    async def span(self, market: str, tf: Timeframe, span: TimeRange) -> pd.DataFrame:
        """The closed candles of `span`, fetched first where the store lacks them. Only the
        timeframe's own candles, never derived ones: a page is Upbit's to the last bit (a
        turnover summed from days differs from Upbit's month in its last digits)."""
        store = self.cache.store
        known = await asyncio.to_thread(store.coverage, [(tf, market)])
        if not known.fetched(tf, market).covers(span):
            await self._fill(market, tf, span)
        with self.cache.layers.request():
            return await asyncio.to_thread(store.load, market, tf, span)

    async def _fill(self, market: str, tf: Timeframe, span: TimeRange) -> None:
        key = (market, tf, span)
        task = self._fills.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fetch(market, tf, span))
            self._fills[key] = task
            task.add_done_callback(lambda _: self._fills.pop(key, None))
        await asyncio.shield(task)

    async def _fetch(self, market: str, tf: Timeframe, span: TimeRange) -> None:
        from upbit_cache.manager.fetch import fetch_with
        from upbit_cache.manager.scope import Window

        window = Window(span.start, span.end)
        report = await fetch_with(
            self.client, self.cache.store, [market], [tf], window, native=True
        )
        self.cache._asked(report)
        errors = [o.error for o in report.failed] + [d.error for d in report.failed_derived]
        if errors:
            assert errors[0] is not None
            raise errors[0]

    async def _in_progress(
        self, market: str, tf: Timeframe, top: int, to: int | None
    ) -> pd.DataFrame | None:
        """The candle starting at or after `top` (and before `to`), if one is trading: from
        the kept series, else the newest upstream page, reused for `fresh` seconds."""
        from upbit_cache.collector.parse import parse_candles

        table: Any = None
        if self.in_progress is not None:
            kept = self.in_progress(market, tf)
            if kept is not None:
                table = await asyncio.to_thread(parse_candles, [kept], market, tf)
        if table is None:
            key = (market, tf)
            cached = self._live.get(key)
            if cached is None or time.monotonic() - cached[0] > self.fresh:
                ask = asyncio.ensure_future(self.client.candles(market, tf, None, 1))
                cached = (time.monotonic(), ask)
                self._live[key] = cached
            try:
                table = await asyncio.shield(cached[1])
            except BaseException:
                self._live.pop(key, None)
                raise
        frame = table.to_pandas()
        if not len(frame):
            return None
        starts = _ms(frame["time"])
        keep = starts >= top
        if to is not None:
            keep &= starts < to
        frame = frame[keep]
        return frame.reset_index(drop=True) if len(frame) else None

    # Pass-through

    async def relay(self, path: str, query: Mapping[str, str], *, max_age: float = 0.0) -> Relayed:
        """Ask Upbit `path` with `query` as given, paced within its group's rate, and give
        back its status, headers and body; `max_age`: reuse an answer this young."""
        key = (path, "&".join(f"{k}={v}" for k, v in query.items()))
        kept = self._kept.get(key)
        if kept is not None and time.monotonic() - kept[0] < max_age:
            return kept[1]
        group = group_of(path)
        pacer = self._pacers.setdefault(group, _Pacer(self.cache.config.rate))
        await pacer.wait()
        url = self.cache.config.api_url + path
        async with self.client.session.get(url, params=list(query.items())) as resp:
            body = await resp.read()
            headers = {h: resp.headers[h] for h in RELAYED_HEADERS if h in resp.headers}
            answer = Relayed(resp.status, headers, body)
        if max_age > 0 and answer.status == 200:
            self._kept[key] = (time.monotonic(), answer)
        return answer


def _empty() -> pd.DataFrame:
    from upbit_cache.candles import empty_candles

    return empty_candles()


def _ms(times: pd.Series) -> np.ndarray:
    """A time column as epoch ms."""
    values: np.ndarray = times.dt.as_unit("ms").astype("int64").to_numpy()
    return values
