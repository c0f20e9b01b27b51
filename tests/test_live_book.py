"""The live candle book against the simulator's own trades and candles (no network)."""

from __future__ import annotations

import numpy as np
import pytest

from upbit_cache.simulator.history import History
from upbit_cache.timeframes import Timeframe
from upbit_cache.timeframes.live import Candle, CandleBook
from upbit_cache.times import to_ms

HISTORY = History()
TFS = Timeframe.parse_list("1m,15m,1h")
UNITS = {"1m": 1, "15m": 15, "1h": 60}
START, END = to_ms("2026-11-19T21:00Z"), to_ms("2026-11-20T00:00Z")


def trades(market: str, start: int, end: int) -> list[tuple[int, float, float, int]]:
    frame = HISTORY.trades(market, start, end)
    return list(
        zip(
            frame["timestamp"].tolist(),
            frame["price"].tolist(),
            frame["volume"].tolist(),
            frame["sequential_id"].tolist(),
            strict=True,
        )
    )


def rest(market: str, tf: Timeframe, start: int, end: int) -> list[Candle]:
    bars = HISTORY.candles(market, UNITS[tf.name], start, end, end)
    return [
        Candle(market, tf, int(t), o, h, lo, c, v, val, int(ts))
        for t, o, h, lo, c, v, val, ts in zip(
            bars["start"], bars["open"], bars["high"], bars["low"], bars["close"],
            bars["volume"], bars["value"], bars["timestamp"], strict=True,
        )
    ]  # fmt: skip


def same(got: list[Candle], want: list[Candle]) -> None:
    assert [(c.time, c.open, c.high, c.low, c.close, c.last_trade) for c in got] == [
        (c.time, c.open, c.high, c.low, c.close, c.last_trade) for c in want
    ]
    np.testing.assert_allclose([c.volume for c in got], [c.volume for c in want], rtol=1e-12)
    np.testing.assert_allclose([c.value for c in got], [c.value for c in want], rtol=1e-9)


@pytest.mark.parametrize("market", ["KRW-BTC", "KRW-XRP"])
def test_closed_live_candles_equal_rest_candles(market: str) -> None:
    book = CandleBook([market], TFS)
    closes = []
    for trade in trades(market, START, END):
        closes += [e.candle for e in book.apply(market, *trade) if e.kind == "close"]
    closes += [e.candle for e in book.close_until(END)]
    for tf in TFS:
        want = rest(market, tf, START, END)
        same(book.recent(market, tf), want)
        same([c for c in closes if c.timeframe == tf], want)  # each closed exactly once


def test_duplicate_trades_are_ignored() -> None:
    market = "KRW-BTC"
    book, twice = CandleBook([market], TFS), CandleBook([market], TFS)
    for trade in trades(market, START, START + 3_600_000):
        book.apply(market, *trade)
        twice.apply(market, *trade)
        assert twice.apply(market, *trade) == []
    for tf in TFS:
        assert book.current(market, tf) == twice.current(market, tf)


def test_a_rest_seed_is_not_counted_twice() -> None:
    market, tf = "KRW-ETH", Timeframe.parse("15m")
    period = to_ms("2026-11-19T23:45Z")
    middle = period + 7 * 60_000
    [seed] = rest(market, tf, period, middle)  # what REST said of the open candle mid-period
    book = CandleBook([market], [tf])
    book.seed(market, tf, [], seed, period)
    for trade in trades(market, period, period + 15 * 60_000):  # the stream replays from the start
        book.apply(market, *trade)
    got = book.current(market, tf)
    assert got is not None
    same([got], rest(market, tf, period, period + 15 * 60_000))
