"""Exact against an Upbit as strict as its documentation says it is.

The simulator stores each trade into its REST candles up to 2 s after it happens, pages are
read both ways ("the candles inside the `count` periods before `to`" and "the `count` newest
candles before `to`"), thin BTC- markets go quiet for weeks, a market is listed, trades, then
goes quiet for eleven days, and 30% of candle answers come back empty. After one faulty run
started at a boundary (as cron starts runs) and one clean rerun, every stored candle equals
Upbit's settled one, every fetched range is recorded, and `verify` finds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FAST_RATE, NOW, bars_frame, candle_requests, reset, run_fetch

from upbit_cache.collector.config import DEFAULT_SETTLE_SECONDS, ClientConfig
from upbit_cache.manager.live import live_candles
from upbit_cache.manager.verify import verify
from upbit_cache.ranges import TimeRange
from upbit_cache.simulator import SimulatorConfig, SimulatorServer
from upbit_cache.simulator.history import History
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
NOW_MS = to_ms(NOW)
UNITS = {"1m": 1, "1h": 60}
# Listed 20 days ago, two days of trading, then eleven days without a trade.
RELISTED = "KRW-ONDO"
LISTINGS = {RELISTED: NOW_MS - 20 * DAY}
QUIET = {RELISTED: [(NOW_MS - 18 * DAY, NOW_MS - 7 * DAY)]}
CANDLES = "/v1/candles/"


@pytest.fixture(scope="module", params=["window", "newest"])
def upbit_strict(request: pytest.FixtureRequest) -> Iterator[SimulatorServer]:
    config = SimulatorConfig.strict(
        pages=request.param,
        rate=FAST_RATE,
        clock_start=NOW,
        frozen=True,
        listings=LISTINGS,
        quiet=QUIET,
    )
    with SimulatorServer(config) as server:
        yield server


@pytest.fixture
def upbit(upbit_strict: SimulatorServer) -> SimulatorServer:
    """The strict simulator, reset: at NOW (a boundary), frozen, no faults, counters zero."""
    return reset(upbit_strict)


def thin_market(history: History, days: int) -> str:
    """A BTC- market with more than a week without a trade in the last `days` days."""
    for info in history.markets:
        if not (info.sparse and info.quote == "BTC"):
            continue
        bars = history.settled_candles(info.market, "days", NOW_MS - days * DAY, NOW_MS)
        if len(bars) and (np.diff(bars.start) > 7 * DAY).any():
            return info.market
    raise AssertionError("no thin market quiet for more than a week")


def settled(upbit: SimulatorServer, market: str, tf: str, start: int, end: int) -> pd.DataFrame:
    """Upbit's settled candles (every trade stored) of the periods in [start, end)."""
    return bars_frame(upbit.history.settled_candles(market, UNITS[tf], start, end).to_frame())


def fetch(upbit: SimulatorServer, data_dir: Path, markets: list[str], tf: str, days: float):
    return run_fetch(upbit.url, data_dir, markets, tf, days=days, settle=DEFAULT_SETTLE_SECONDS)


def assert_exact(upbit: SimulatorServer, data_dir: Path, markets: list[str], tf: str, start: int):
    """Everything of [start, NOW) is recorded, and every stored candle is the settled one."""
    store = CandleStore(data_dir)
    timeframe = Timeframe.parse(tf)
    for market in markets:
        record = store.record(timeframe, market)
        assert record.fetched.covers(TimeRange(start, NOW_MS)), (market, record.fetched)
        assert not record.provisional, (market, record.provisional)
        got = store.load(market, timeframe, TimeRange(start, NOW_MS))
        want = settled(upbit, market, tf, start, NOW_MS)
        pd.testing.assert_frame_equal(got, want, rtol=1e-9, obj=f"{market} {tf}")
    report = asyncio.run(verify(store))
    assert not report.problems, report.problems


def faulty_then_clean(
    upbit: SimulatorServer, data_dir: Path, markets: list[str], tf: str, days: float
) -> None:
    """A run at a boundary with 30% of candle answers empty, then a clean one 30 s later."""
    upbit.faults.inject("empty", count=1_000_000, path=CANDLES, probability=0.3)
    fetch(upbit, data_dir, markets, tf, days)  # some markets may fail: nothing false is kept
    assert upbit.stats()["faults_by_kind"].get("empty", 0) > 0
    upbit.faults.clear()
    upbit.clock.set(NOW_MS + 30_000)
    report = fetch(upbit, data_dir, markets, tf, days)
    assert report.failed == [] and report.rate_limited == 0


@pytest.mark.slow
def test_1h_of_four_kinds_of_market_is_exact_after_a_faulty_run(
    upbit: SimulatorServer, tmp_path: Path
) -> None:
    days = 120
    sparse = next(m.market for m in upbit.history.markets if m.sparse and m.quote == "KRW")
    markets = ["KRW-BTC", sparse, thin_market(upbit.history, days), RELISTED]
    faulty_then_clean(upbit, tmp_path, markets, "1h", days)
    assert_exact(upbit, tmp_path, markets, "1h", NOW_MS - days * DAY)


@pytest.mark.slow
def test_1m_across_a_listing_and_eleven_quiet_days_is_exact_after_a_faulty_run(
    upbit: SimulatorServer, tmp_path: Path
) -> None:
    days = 22  # from before the listing
    sparse = next(m.market for m in upbit.history.markets if m.sparse and m.quote == "KRW")
    faulty_then_clean(upbit, tmp_path, [RELISTED, sparse], "1m", days)
    assert_exact(upbit, tmp_path, [RELISTED, sparse], "1m", NOW_MS - days * DAY)
    # The quiet days and the time before the listing are recorded (fetched, no candles).
    got = CandleStore(tmp_path).load(RELISTED, Timeframe.parse("1m"))
    assert got["time"].iloc[0] >= pd.Timestamp(LISTINGS[RELISTED], unit="ms", tz="UTC")


def test_quiet_weeks_and_the_time_before_a_listing_cost_a_few_requests(
    upbit: SimulatorServer, tmp_path: Path
) -> None:
    # 22 days of 1m: 159 pages, 90 of them wholly before the listing or in the quiet days.
    upbit.clock.set(NOW_MS + 30_000)
    fetch(upbit, tmp_path, [RELISTED], "1m", 22)
    trading = (2 + 7) * 1440 // 200 + 2
    assert candle_requests(upbit) <= trading + 20
    assert_exact(upbit, tmp_path, [RELISTED], "1m", NOW_MS - 22 * DAY)


def test_a_run_at_a_boundary_keeps_the_unsettled_candle_provisional(
    upbit: SimulatorServer, tmp_path: Path
) -> None:
    # A minute boundary at which REST does not have the just-ended candle's last trade yet.
    def early(market: str, at: int) -> bool:
        seen = upbit.history.candles(market, 1, at - MINUTE, at, at)
        return not bars_frame(seen).equals(settled(upbit, market, "1m", at - MINUTE, at))

    market, at = next(
        (market, at)
        for at in range(NOW_MS, NOW_MS - 6 * HOUR, -MINUTE)
        for market in ("KRW-BTC", "KRW-ETH")
        if early(market, at)
    )
    minute = TimeRange(at - MINUTE, at)
    upbit.clock.set(at)
    fetch(upbit, tmp_path, [market], "1m", 1)
    store = CandleStore(tmp_path)
    m1 = Timeframe.parse("1m")
    record = store.record(m1, market)
    assert record.fetched.hull == TimeRange(at - DAY, minute.start)
    assert list(record.provisional) == [(minute.start, minute.end)]
    assert not store.load(market, m1, minute).equals(settled(upbit, market, "1m", *minute))
    # The next run, after the settle time, asks once (its newest page) and keeps the truth.
    upbit.clock.set(at + 30_000)
    upbit.reset_stats()
    again = fetch(upbit, tmp_path, [market], "1m", 1)
    assert again.candle_requests == 1
    got = store.load(market, m1, TimeRange(at - DAY, at))
    pd.testing.assert_frame_equal(got, settled(upbit, market, "1m", at - DAY, at), rtol=1e-9)
    assert store.fetched(m1, market).covers(TimeRange(at - DAY, at))
    assert not store.record(m1, market).provisional


def test_answers_empty_everywhere_record_nothing(upbit: SimulatorServer, tmp_path: Path) -> None:
    # A broken proxy answers every candle page of one market with []: no witness is
    # believed, so nothing of it is recorded as quiet; the other market is untouched.
    upbit.faults.inject("empty", count=1_000_000, market="KRW-XRP", path=CANDLES)
    upbit.clock.set(NOW_MS + 30_000)
    report = fetch(upbit, tmp_path, ["KRW-BTC", "KRW-XRP"], "1h", 30)
    assert [o.market for o in report.failed] == ["KRW-XRP"]
    assert "did not corroborate" in str(report.failed[0].error)
    store = CandleStore(tmp_path)
    assert not store.fetched(Timeframe.parse("1h"), "KRW-XRP")
    assert_exact(upbit, tmp_path, ["KRW-BTC"], "1h", NOW_MS - 30 * DAY)


def test_live_closes_settle_through_rest_with_upbits_timestamps(
    upbit: SimulatorServer, tmp_path: Path
) -> None:
    m1 = Timeframe.parse("1m")
    config = ClientConfig(
        api_url=upbit.url, rate=FAST_RATE, backoff=0.01, ws_url=upbit.ws_url, settle=3.0
    )
    closes: dict[int, int] = {}  # candle start -> its last trade, as the stream built it
    span = TimeRange(NOW_MS, NOW_MS + 3 * MINUTE)

    async def scenario() -> None:
        store = CandleStore(tmp_path)
        stream = live_candles(["KRW-BTC"], [m1], config=config, store=store)

        async def watch() -> None:
            async with contextlib.aclosing(stream):
                async for item in stream:
                    if item.event.kind == "snapshot":
                        upbit.clock.advance(4 * 60)  # trades flow, periods close and settle
                    elif item.event.kind == "close":
                        closes[item.event.candle.time] = item.event.candle.last_trade

        task = asyncio.create_task(watch())
        try:
            async with asyncio.timeout(60):
                while not store.fetched(m1, "KRW-BTC").covers(span):
                    assert not task.done(), task.result()
                    await asyncio.sleep(0.05)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
    got = CandleStore(tmp_path).load("KRW-BTC", m1, span)
    want = settled(upbit, "KRW-BTC", "1m", *span)
    pd.testing.assert_frame_equal(got, want, rtol=1e-9)
    # Built from the stream, a close has its last trade's time; the store has Upbit's, when
    # that trade was stored.
    times = want["time"].astype("int64").tolist()
    stored_at = dict(zip(times, want["timestamp"].astype("int64").tolist(), strict=True))
    assert any(stored_at[t] > closes[t] for t in times if t in closes)
