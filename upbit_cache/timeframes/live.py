"""Candles built trade by trade, for the live stream: pure state, no I/O.

Each (market, timeframe) has one open candle. A trade lands in the period that holds its
time (the same alignment as everywhere else, `Timeframe.floor_one`), so a live candle that
closes equals Upbit's candle of that period. Volume is summed exactly in 1e-8 units (Upbit
prints 8 decimals); turnover is price x volume per trade, summed with compensation.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from upbit_cache.timeframes.timeframe import Timeframe

EventKind = Literal["snapshot", "update", "close"]
_UNITS = 10**8
_SEEN_PER_MARKET = 4096  # recent sequential ids kept to drop duplicate trades


@dataclass(frozen=True)
class Candle:
    """One candle of one market and timeframe; `time` is its period start (epoch ms, UTC)."""

    market: str
    timeframe: Timeframe
    time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    value: float
    last_trade: int  # epoch ms of its last trade


@dataclass(frozen=True)
class CandleEvent:
    """A candle that changed (`update`), ended (`close`) or is shown as it stands (`snapshot`)."""

    kind: EventKind
    candle: Candle


@dataclass
class _Open:
    time: int
    open: float
    high: float
    low: float
    close: float
    volume_units: int
    value: float
    value_error: float  # Neumaier compensation of the turnover sum
    last_trade: int


@dataclass
class _Series:
    tf: Timeframe
    current: _Open | None = None
    after: int = -1  # trades at or before this time are already in `current` (a REST seed)
    recent: deque[Candle] = field(default_factory=deque)


class CandleBook:
    """The open candle and the recent closed ones of every (market, timeframe)."""

    def __init__(self, markets: Sequence[str], timeframes: Sequence[Timeframe], keep: int = 200):
        self.timeframes = list(timeframes)
        self.keep = keep
        self._series = {(m, tf): _Series(tf) for m in markets for tf in timeframes}
        self._seen: dict[str, tuple[deque[int], set[int]]] = {m: (deque(), set()) for m in markets}

    def seed(
        self,
        market: str,
        tf: Timeframe,
        closed: Iterable[Candle],
        current: Candle | None,
        period: int,
    ) -> None:
        """Start from known candles (store, REST) with `period` the one still open.

        Trades already counted are skipped: those of closed periods, and those in `current`.
        """
        series = self._series[market, tf]
        series.recent = deque(closed, maxlen=self.keep)
        series.current = _opened(current) if current is not None else None
        series.after = current.last_trade if current is not None else period - 1

    def apply(
        self, market: str, time_ms: int, price: float, volume: float, seq: int
    ) -> list[CandleEvent]:
        """One trade: closes the candles it ends, updates those it lands in."""
        seen, order = self._seen[market][1], self._seen[market][0]
        if seq in seen:
            return []
        seen.add(seq)
        order.append(seq)
        if len(order) > _SEEN_PER_MARKET:
            seen.discard(order.popleft())
        events: list[CandleEvent] = []
        units = round(volume * _UNITS)
        for tf in self.timeframes:
            series = self._series[market, tf]
            if time_ms <= series.after:
                continue
            period = tf.floor_one(time_ms)
            now = series.current
            if now is not None and period > now.time:
                events.append(self._close(market, series))
                now = None
            if now is None:
                series.current = _Open(period, price, price, price, price, 0, 0.0, 0.0, 0)
                now = series.current
            elif period < now.time:
                continue  # a late trade of a period already closed: Upbit's candle has it
            now.high = max(now.high, price)
            now.low = min(now.low, price)
            now.close = price
            now.volume_units += units
            _add_value(now, price * volume)
            now.last_trade = time_ms
            events.append(CandleEvent("update", _candle(market, tf, now)))
        return events

    def close_until(self, now_ms: int) -> list[CandleEvent]:
        """Close every open candle whose period ended at or before `now_ms` (no later trade)."""
        events = []
        for (market, _), series in self._series.items():
            now = series.current
            if now is not None and series.tf.shift_one(now.time, 1) <= now_ms:
                events.append(self._close(market, series))
        return events

    def current(self, market: str, tf: Timeframe) -> Candle | None:
        now = self._series[market, tf].current
        return _candle(market, tf, now) if now is not None else None

    def recent(self, market: str, tf: Timeframe) -> list[Candle]:
        """The closed candles kept, oldest first."""
        return list(self._series[market, tf].recent)

    def snapshot(self) -> list[CandleEvent]:
        """Each series as it stands: its open candle, else its last closed one."""
        events = []
        for (market, _), series in self._series.items():
            if series.current is not None:
                events.append(CandleEvent("snapshot", _candle(market, series.tf, series.current)))
            elif series.recent:
                events.append(CandleEvent("snapshot", series.recent[-1]))
        return events

    def _close(self, market: str, series: _Series) -> CandleEvent:
        assert series.current is not None
        done = _candle(market, series.tf, series.current)
        series.recent.append(done)
        series.current = None
        return CandleEvent("close", done)


def _add_value(candle: _Open, amount: float) -> None:
    total = candle.value + amount
    if abs(candle.value) >= abs(amount):
        candle.value_error += (candle.value - total) + amount
    else:
        candle.value_error += (amount - total) + candle.value
    candle.value = total


def _opened(candle: Candle) -> _Open:
    units = round(candle.volume * _UNITS)
    return _Open(
        candle.time,
        candle.open,
        candle.high,
        candle.low,
        candle.close,
        units,
        candle.value,
        0.0,
        candle.last_trade,
    )


def _candle(market: str, tf: Timeframe, now: _Open) -> Candle:
    return Candle(
        market,
        tf,
        now.time,
        now.open,
        now.high,
        now.low,
        now.close,
        now.volume_units / _UNITS,
        now.value + now.value_error,
        now.last_trade,
    )
