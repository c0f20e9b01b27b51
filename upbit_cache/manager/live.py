"""Live candles: the WebSocket trade stream, built into candles, backed by REST and the store.

On every (re)connection the book is synced first: the recent closed candles come from the
store topped up through the collector (or straight from REST with `store=None`), the open
candle from REST; trades already in that open candle are skipped. So the first state is
complete, and after a drop the hole is repaired: candles that closed meanwhile come from
REST (emitted once, as closes), and no trade is counted twice (sequential ids, REST cut).
Closed candles are appended to the store with their fetched ranges, so later fetches do
not ask for them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from upbit_cache.candles import CANDLE_SCHEMA, TIME_TYPE
from upbit_cache.collector.client import MAX_PAGE, UpbitClient
from upbit_cache.collector.config import ClientConfig
from upbit_cache.collector.websocket import (
    Connected,
    Disconnected,
    StreamEvent,
    Trade,
    trade_stream,
)
from upbit_cache.errors import IPBlockedError, UsageError
from upbit_cache.manager.fetch import sync_markets
from upbit_cache.manager.scope import resolve_markets
from upbit_cache.manager.session import new_client
from upbit_cache.markets import validate_markets
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import SUPPORTED, Timeframe
from upbit_cache.timeframes.live import Candle, CandleBook, CandleEvent

TICK_SECONDS = 0.5  # how often quiet periods are closed and closed candles written
GRACE_MS = 2_000  # a period is closed by the clock this long after its end, if no trade did
# Each write of closes is a file of its own (files are written once: store/parts.py), and
# settling a period through REST is a request per series: 1s closes are written (and 1s
# periods settled) this often, and at the end, so a day of 1s is thousands of small writes,
# not 86,400. What a kill loses of them, `fetch -t 1s` gets back from REST.
SECONDS_FLUSH = 15.0
# Where trades come from: given the markets, a stream of Trade / Connected / Disconnected
# (default: a connection of our own, `trade_stream`; serve's Keeper: the shared StreamHub).
TradeSource = Callable[[list[str]], AsyncIterator[StreamEvent]]


@dataclass(frozen=True)
class LiveEvent:
    """A candle event, and when the trade frame that caused it arrived (monotonic seconds)."""

    event: CandleEvent
    received: float | None = None


@dataclass
class _Writer:
    """Closed candles waiting to be appended to the store, and what is settled so far."""

    store: CandleStore
    settled: dict[tuple[str, Timeframe], int] = field(default_factory=dict)
    pending: dict[tuple[str, Timeframe], list[Candle]] = field(default_factory=dict)
    busy: asyncio.Lock = field(default_factory=asyncio.Lock)
    written: dict[tuple[str, Timeframe], float] = field(default_factory=dict)  # monotonic

    def add(self, candle: Candle) -> None:
        self.pending.setdefault((candle.market, candle.timeframe), []).append(candle)

    async def flush(self, upto: dict[tuple[str, Timeframe], int], final: bool = False) -> None:
        """Write what closed, as provisional over [settled, upto) for each series (1s series
        every SECONDS_FLUSH only, unless `final`).

        Rows leave `pending` only once written: a flush cancelled half-way (Ctrl-C) leaves
        them for the final one. Writing a row twice is harmless (rows merge by time).
        """
        async with self.busy:
            for key, end in upto.items():
                market, tf = key
                rows = list(self.pending.get(key, []))
                start = self.settled.get(key, end)
                if not rows and start >= end:
                    continue
                due = self.written.get(key, -SECONDS_FLUSH) + SECONDS_FLUSH
                if tf.kind == "second" and not final and time.monotonic() < due:
                    continue
                self.written[key] = time.monotonic()
                closes = Ranges.of([(start, end)]) if start < end else Ranges()
                async with self.store.lock(tf, market):
                    await asyncio.to_thread(
                        self.store.write, market, tf, _table(rows), Ranges(), provisional=closes
                    )
                del self.pending.get(key, [])[: len(rows)]
                self.settled[key] = max(start, end)


@dataclass
class _Settler:
    """Settles closed periods through REST once Upbit has (the settle time after their end),
    in the background, one round at a time."""

    store: CandleStore
    markets: list[str]
    timeframes: Sequence[Timeframe]
    keep: int
    upto: dict[Timeframe, int] = field(default_factory=dict)  # settled through REST before
    seconds_due: float = 0.0  # monotonic: 1s periods are settled every SECONDS_FLUSH
    task: asyncio.Task[None] | None = None

    def synced(self, client: UpbitClient) -> None:
        """A (re)connection's sync has settled what was final then."""
        self.upto.update({tf: tf.floor_one(client.settled_ms()) for tf in self.timeframes})

    def tick(self, client: UpbitClient) -> None:
        """Start a round for the timeframes with a newly final period, unless one runs."""
        if self.task is not None:
            if not self.task.done():
                return
            self.task.result()  # a 418 stops the stream
        due = []
        for tf in self.timeframes:
            boundary = tf.floor_one(client.settled_ms())
            if boundary <= self.upto.get(tf, boundary):
                continue
            if tf.kind == "second":
                if time.monotonic() < self.seconds_due:
                    continue
                self.seconds_due = time.monotonic() + SECONDS_FLUSH
            self.upto[tf] = boundary
            due.append(tf)
        if due:
            self.task = asyncio.create_task(self._settle(client, due))

    async def _settle(self, client: UpbitClient, due: list[Timeframe]) -> None:
        for tf in due:
            period = tf.floor_one(client.now_ms())
            recent = TimeRange(tf.shift_one(period, -self.keep), period)
            report = await sync_markets(self.store, client, self.markets, [tf], recent)
            if report.blocked is not None:
                raise IPBlockedError(report.blocked)

    async def stop(self) -> None:
        """Let a round under way finish (a few requests); none is started at the end: what
        is left provisional, the next fetch settles."""
        if self.task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.task)


def check_timeframes(timeframes: Sequence[Timeframe]) -> None:
    """Live candles are built for the timeframes Upbit serves (REST backs them up)."""
    if not timeframes or not all(tf.native for tf in timeframes):
        names = " ".join(tf.name for tf in SUPPORTED if tf.native)
        raise UsageError(f"live builds the timeframes Upbit serves: {names}")


async def live_candles(
    markets: Sequence[str],
    timeframes: Sequence[Timeframe],
    *,
    config: ClientConfig,
    store: CandleStore | None,
    keep: int = MAX_PAGE,
    stream: TradeSource | None = None,
    book: CandleBook | None = None,
) -> AsyncGenerator[LiveEvent, None]:
    """Snapshots, updates and closes of the candles of `markets` x `timeframes`, forever
    (trades from `stream`, else a connection of its own; built in `book` if given)."""
    wanted = validate_markets(markets)
    if not wanted:
        raise UsageError("name the markets to watch, e.g. KRW-BTC KRW-ETH")
    check_timeframes(timeframes)
    if store is not None:  # before streaming, not at the first close a minute later
        store.ensure_writable()
    book = book if book is not None else CandleBook(wanted, timeframes, keep)
    writer = _Writer(store) if store is not None else None
    settler = _Settler(store, wanted, timeframes, keep) if store is not None else None
    async with new_client(config) as client:
        resolve_markets([m.market for m in await client.markets()], wanted)
        queue: asyncio.Queue[Trade | Connected | Disconnected | BaseException] = asyncio.Queue()
        source = stream(wanted) if stream is not None else None
        reader = asyncio.create_task(_pump(client, config.ws_url, wanted, queue, source))
        connected, latest, due = False, 0, 0.0
        flushing: asyncio.Task[None] | None = None
        try:
            while True:
                try:  # not wait_for: on 3.11 it swallows a cancel that meets a queued item
                    async with asyncio.timeout(TICK_SECONDS):
                        item = await queue.get()
                except TimeoutError:
                    item = None
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, Connected):
                    if item.again:  # Upbit's clock moved on while we were away: look again
                        await client.markets(max_age=0)
                    for event in await _sync(client, store, book, wanted, timeframes, keep):
                        if event.kind == "close" and writer is not None:
                            writer.add(event.candle)
                        yield LiveEvent(event)
                    if writer is not None:
                        writer.settled.update(_open_periods(client, wanted, timeframes))
                    if settler is not None:
                        settler.synced(client)
                    connected = True
                elif isinstance(item, Disconnected):
                    connected = False
                elif isinstance(item, Trade):
                    latest = max(latest, item.time)
                    client.see_time(item.time)
                    for event in book.apply(
                        item.market, item.time, item.price, item.volume, item.seq
                    ):
                        if event.kind == "close" and writer is not None:
                            writer.add(event.candle)
                        yield LiveEvent(event, item.received)
                if connected and time.monotonic() >= due:  # at most every TICK_SECONDS
                    due = time.monotonic() + TICK_SECONDS
                    for event in book.close_until(max(latest, client.now_ms()) - GRACE_MS):
                        if writer is not None:
                            writer.add(event.candle)
                        yield LiveEvent(event)
                    if writer is not None and (flushing is None or flushing.done()):
                        if flushing is not None:
                            flushing.result()  # a failed write (disk full...) stops the stream
                        # In the background: the stream never waits for the disk.
                        upto = _open_periods(client, wanted, timeframes, latest)
                        flushing = asyncio.create_task(writer.flush(upto))
                    if settler is not None:
                        settler.tick(client)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            if settler is not None:
                await settler.stop()
            if flushing is not None:
                await asyncio.shield(flushing)
            if writer is not None and connected:
                await asyncio.shield(
                    writer.flush(_open_periods(client, wanted, timeframes, latest), final=True)
                )


async def _pump(
    client: UpbitClient,
    url: str,
    markets: list[str],
    queue: asyncio.Queue[Trade | Connected | Disconnected | BaseException],
    source: AsyncIterator[StreamEvent] | None = None,
) -> None:
    if source is None:
        source = trade_stream(client.session, url, markets)
    try:
        async for item in source:
            queue.put_nowait(item)
    except Exception as exc:  # handed to the consumer, which raises it
        queue.put_nowait(exc)


def _open_periods(
    client: UpbitClient, markets: list[str], timeframes: Sequence[Timeframe], latest: int = 0
) -> dict[tuple[str, Timeframe], int]:
    """Per series, the start of the period still open: everything before it is settled."""
    now = max(latest, client.now_ms()) - GRACE_MS
    return {(m, tf): tf.floor_one(now) for m in markets for tf in timeframes}


async def _sync(
    client: UpbitClient,
    store: CandleStore | None,
    book: CandleBook,
    markets: list[str],
    timeframes: Sequence[Timeframe],
    keep: int,
) -> list[CandleEvent]:
    """Seed the book from the store/REST; closes for candles that ended since it last knew."""
    events: list[CandleEvent] = []
    now = client.now_ms()
    for tf in timeframes:
        period = tf.floor_one(now)
        recent = TimeRange(tf.shift_one(period, -keep), period)
        if store is not None:
            await sync_markets(store, client, markets, [tf], recent)
        for market in markets:
            # The newest page holds the open candle; without a store, the closed ones too.
            newest = await client.candles(market, tf, None, 1 if store is not None else keep + 1)
            if store is not None:
                table = await asyncio.to_thread(store.load_table, market, tf, recent)
            else:
                table = newest
            closed = [c for c in _candles(table, market, tf) if c.time < period]
            current = [c for c in _candles(newest, market, tf) if c.time >= period]
            known = book.recent(market, tf)
            last = known[-1].time if known else None
            before = book.current(market, tf)
            if before is not None or last is not None:  # a repair: what closed meanwhile
                since = before.time if before is not None else (last or 0) + 1
                events += [CandleEvent("close", c) for c in closed if c.time >= since]
            book.seed(market, tf, closed, current[0] if current else None, period)
    return events + book.snapshot()


def _candles(table: pa.Table, market: str, tf: Timeframe) -> list[Candle]:
    times = table["time"].cast(pa.int64()).to_pylist()
    last = table["timestamp"].cast(pa.int64()).to_pylist()
    columns = [table[c].to_pylist() for c in ("open", "high", "low", "close", "volume", "value")]
    return [
        Candle(market, tf, t, o, h, lo, c, v, val, ts)
        for t, o, h, lo, c, v, val, ts in zip(times, *columns, last, strict=True)
    ]


def _table(rows: list[Candle]) -> pa.Table:
    if not rows:
        return CANDLE_SCHEMA.empty_table()
    columns: list[pa.Array[Any]] = [pa.array([r.time for r in rows], pa.int64()).cast(TIME_TYPE)]
    columns += [
        pa.array([getattr(r, name) for r in rows], pa.float64())
        for name in ("open", "high", "low", "close", "volume", "value")
    ]
    columns.append(pa.array([r.last_trade for r in rows], pa.int64()).cast(TIME_TYPE))
    return pa.Table.from_arrays(columns, schema=CANDLE_SCHEMA)
