"""Keeping series fresh while `serve` runs (`serve --keep KRW -t 1h,15m`).

A `Keeper` is `live` without the screen: the named series are built trade by trade from the
WebSocket stream (manager/live.py: the CandleBook, closes written provisional, then
settled through REST by its `_Settler`, the hole after a drop repaired), so a screener run
on the same host, with its own UpbitCache on the same data dir, finds every closed and
settled period in the store and sends no candle request. Its trades come from the serve's
shared upstream connection (collector/stream_hub.py) when it is given the hub, so serve
holds one WebSocket in all; without one it opens its own, as `live` does.

`in_progress(market, tf)` is the open candle of a kept series, as Upbit's REST answers it
(for the REST server's newest page).

The markets of a quote are those Upbit lists when the Keeper starts; a market listed later
is kept from the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from upbit_cache.collector.client import MAX_PAGE
from upbit_cache.collector.stream_hub import StreamHub, Want
from upbit_cache.collector.websocket import StreamEvent
from upbit_cache.errors import UsageError
from upbit_cache.manager.live import check_timeframes, live_candles
from upbit_cache.markets import validate_markets, validate_quote
from upbit_cache.timeframes import Timeframe
from upbit_cache.timeframes.live import Candle, CandleBook

if TYPE_CHECKING:
    from upbit_cache.manager.cache import UpbitCache

_KST_MS = 9 * 3_600_000


class Keeper:
    """Keeps `markets` (names, a string of them such as "KRW-BTC,KRW-ETH", or a quote such
    as "KRW") x `timeframes` current while it runs: `start()`, then `close()`; `wait()`
    raises what stopped it (a 418, a full disk)."""

    def __init__(
        self,
        cache: UpbitCache,
        markets: Sequence[str] | str,
        timeframes: Sequence[Timeframe] | str,
        *,
        hub: StreamHub | None = None,
        keep: int = MAX_PAGE,
    ) -> None:
        tfs = Timeframe.parse_list(timeframes) if isinstance(timeframes, str) else timeframes
        check_timeframes(tfs)
        self.cache = cache
        self.timeframes = list(tfs)
        self.hub = hub
        self.keep = keep
        self.quote: str | None = None
        if isinstance(markets, str) and "-" not in markets:  # a quote: "KRW"
            self.quote, self.named = validate_quote(markets.strip()), []
        else:  # names, or one string of them: "KRW-BTC,KRW-ETH"
            names = markets.replace(",", " ").split() if isinstance(markets, str) else markets
            self.named = validate_markets(names)
            if not self.named:
                raise UsageError("name the markets to keep, or a quote such as KRW")
        self.markets: list[str] = []  # resolved once running
        self.book: CandleBook | None = None
        self.closes = 0  # candles closed so far (for the log and tests)
        self._task: asyncio.Task[None] | None = None

    # ---- running ------------------------------------------------------------------------

    def start(self) -> None:
        """Start keeping, in the background of the running loop."""
        if self._task is None:
            self._task = asyncio.create_task(self.run())

    async def wait(self) -> None:
        """Until the Keeper stops; raises what stopped it."""
        if self._task is not None:
            await self._task

    async def close(self) -> None:
        """Stop: closes written so far stay; what is left provisional, the next fetch settles."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        """Keep the series current, forever."""
        if self.quote is not None:
            listings = await self.cache.amarkets(self.quote)
            self.markets = [listing.market for listing in listings if listing.listed]
            if not self.markets:
                raise UsageError(f"Upbit lists no {self.quote} market to keep")
        else:
            self.markets = self.named
        self.book = CandleBook(self.markets, self.timeframes, self.keep)
        events = live_candles(
            self.markets,
            self.timeframes,
            config=self.cache.config,
            store=self.cache.store,
            keep=self.keep,
            stream=self._hub_trades if self.hub is not None else None,
            book=self.book,
        )
        async with contextlib.aclosing(events):
            async for item in events:
                if item.event.kind == "close":
                    self.closes += 1

    async def _hub_trades(self, markets: list[str]) -> AsyncIterator[StreamEvent]:
        """The trade stream of `markets` from the shared hub (no snapshots: `live` seeds
        its book from REST)."""
        assert self.hub is not None
        sub = self.hub.subscribe({("trade", m): Want(snapshot=False) for m in markets})
        try:
            async for event in sub.trades():
                yield event
        finally:
            sub.close()

    # ---- the open candle ------------------------------------------------------------------

    def in_progress(self, market: str, tf: Timeframe) -> dict[str, Any] | None:
        """The open candle of a kept series as Upbit's REST JSON (None: not kept, not
        known yet, or no trade in its period yet)."""
        book = self.book
        if book is None or market not in self.markets or tf not in self.timeframes:
            return None
        candle = book.current(market, tf)
        if candle is None:
            return None
        recent = book.recent(market, tf)
        return upbit_candle(candle, recent[-1].close if recent else None)


def upbit_candle(candle: Candle, prev_close: float | None = None) -> dict[str, Any]:
    """`candle` with the fields, names and order of Upbit's candle answers for its
    timeframe (`prev_close`: the day before's close, for day candles)."""
    tf = candle.timeframe
    row: dict[str, Any] = {
        "market": candle.market,
        "candle_date_time_utc": _iso(candle.time),
        "candle_date_time_kst": _iso(candle.time + _KST_MS),
        "opening_price": candle.open,
        "high_price": candle.high,
        "low_price": candle.low,
        "trade_price": candle.close,
        "timestamp": candle.last_trade,
        "candle_acc_trade_price": candle.value,
        "candle_acc_trade_volume": candle.volume,
    }
    if tf.kind == "minute":
        row["unit"] = tf.count
    elif tf.kind == "day":
        prev = candle.open if prev_close is None else prev_close
        change = candle.close - prev
        row["prev_closing_price"] = prev
        row["change_price"] = change
        row["change_rate"] = round(change / prev, 8) if prev else 0.0
    elif tf.kind in ("week", "month", "year"):
        row["first_day_of_period"] = time.strftime("%Y-%m-%d", time.gmtime(candle.time // 1000))
    return row


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000))
