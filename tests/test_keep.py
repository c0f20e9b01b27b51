"""`serve --keep`'s Keeper (manager/keep.py) against the simulator: series kept current
through the shared stream hub, so another cache on the same data dir asks Upbit for none."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pandas as pd
import pytest
from conftest import FAST_RATE, NOW, request, truth

from upbit_cache import UpbitCache
from upbit_cache.collector.stream_hub import StreamHub
from upbit_cache.errors import UsageError
from upbit_cache.manager.keep import Keeper
from upbit_cache.manager.scope import ScreenRequest, Window
from upbit_cache.ranges import TimeRange
from upbit_cache.simulator import SimulatorServer
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

MARKETS = ["KRW-BTC", "KRW-ETH"]
H1, M15 = Timeframe.parse("1h"), Timeframe.parse("15m")
MINUTE = 60_000


def seeded(keeper: Keeper) -> bool:
    """The Keeper's book is seeded from REST (and its settler told so): the clock may jump.
    A jump before would be a clock moving under the sync, which Upbit's does not."""
    book = keeper.book
    return book is not None and all(
        book.recent(m, tf) for m in keeper.markets for tf in keeper.timeframes
    )


async def until(done: Callable[[], bool], keeper: Keeper, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if keeper._task is not None and keeper._task.done():
            keeper._task.result()  # raises what stopped it
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_kept_series_cost_another_cache_no_candle_request(
    sim: SimulatorServer, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    start = to_ms(NOW)
    hour = TimeRange(start, start + 60 * MINUTE)

    async def scenario() -> dict[str, object]:
        async with aiohttp.ClientSession() as session:
            hub = StreamHub(session, sim.ws_url)
            hub.start()
            cache = UpbitCache(tmp_path, api_url=sim.url, ws_url=sim.ws_url, rate=FAST_RATE)
            keeper = Keeper(cache, MARKETS, "1h,15m", hub=hub)
            keeper.start()

            def covered(span: TimeRange) -> bool:  # a new store each time: what is on disk
                store = CandleStore(tmp_path)
                return all(store.fetched(tf, m).covers(span) for m in MARKETS for tf in (H1, M15))

            before = TimeRange(start - 10 * 60 * MINUTE, start)
            await until(lambda: covered(before) and hub.subscribes > 0, keeper)
            await until(lambda: sim.stats()["ws_subscribes"] >= 1 and seeded(keeper), keeper)
            sim.clock.advance(61 * 60)
            await until(lambda: keeper.in_progress("KRW-BTC", M15) is not None, keeper)
            sim.clock.advance(60)  # past the settle time of the hour's end
            await until(lambda: covered(hour), keeper)
            open_candle = keeper.in_progress("KRW-BTC", M15)
            gauges = {"ws": sim.stats()["ws_connections"], "closes": keeper.closes}
            await keeper.close()
            await hub.close()
            cache.close()
            return {"open": open_candle, **gauges}

    got = asyncio.run(scenario())
    assert got["ws"] == 1  # the Keeper's trades came through the hub's one connection
    # The hour (and its four quarters) closed from the stream and settled through REST.
    for market in MARKETS:
        for tf in ("1h", "15m"):
            stored = CandleStore(tmp_path).load(market, Timeframe.parse(tf), hour)
            pd.testing.assert_frame_equal(stored, truth(sim, market, tf, *hour), rtol=1e-9)
    # The open candle, as Upbit's REST answers it: its fields, names and order; its values.
    mine = got["open"]
    assert isinstance(mine, dict)
    theirs = request(sim.url, "/v1/candles/minutes/15", {"market": "KRW-BTC", "count": 1})
    upbit = theirs.json()[0]
    assert list(mine) == list(upbit)
    for name, value in upbit.items():
        if isinstance(value, float):
            assert mine[name] == pytest.approx(value, rel=1e-9), name
        else:
            assert mine[name] == value, name

    # Another cache on the same data dir, as an hourly screener run on this host.
    sim.reset_stats()
    with UpbitCache(tmp_path, api_url=sim.url, rate=FAST_RATE) as other:
        report = other.fetch(MARKETS, timeframes="1h,15m", window=Window(days=0.25))
        frame = other.load("KRW-BTC", "15m", start, start + 60 * MINUTE)
        screen = ScreenRequest(markets=tuple(MARKETS), timeframe=H1, days=0.25)
        out = tmp_path_factory.mktemp("screen") / "screen.csv"
        other.screen_prep(screen, out=str(out))
    assert sim.stats()["candle_requests"] == 0, report
    assert len(frame) == 4
    assert "KRW-ETH" in out.read_text()


def test_a_dropped_upstream_is_repaired_and_the_open_candle_stays_upbits(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    start = to_ms(NOW)
    quarter = TimeRange(start, start + 15 * MINUTE)

    async def scenario() -> dict[str, object]:
        async with aiohttp.ClientSession() as session:
            hub = StreamHub(session, sim.ws_url)
            cache = UpbitCache(tmp_path, api_url=sim.url, ws_url=sim.ws_url, rate=FAST_RATE)
            keeper = Keeper(cache, MARKETS, [M15], hub=hub)
            keeper.start()
            await until(lambda: hub.subscribes > 0 and sim.stats()["ws_subscribes"] >= 1, keeper)
            await until(lambda: seeded(keeper), keeper)
            sim.clock.advance(5 * 60)
            await until(lambda: keeper.in_progress("KRW-ETH", M15) is not None, keeper)
            assert sim.drop_websockets() == 1
            sim.clock.advance(12 * 60)  # these trades happen while the hub is away
            await until(lambda: hub.connections == 2, keeper)

            def covered() -> bool:
                store = CandleStore(tmp_path)
                return all(store.fetched(M15, m).covers(quarter) for m in MARKETS)

            await until(covered, keeper)
            await until(
                lambda: (
                    (keeper.in_progress("KRW-ETH", M15) or {}).get("candle_date_time_utc")
                    == "2026-11-20T00:15:00"
                ),
                keeper,
            )
            mine = keeper.in_progress("KRW-ETH", M15)
            await keeper.close()
            await hub.close()
            cache.close()
            return {"open": mine, "ws": sim.stats()["ws_connections"]}

    got = asyncio.run(scenario())
    assert got["ws"] == 2
    for market in MARKETS:
        stored = CandleStore(tmp_path).load(market, M15, quarter)
        pd.testing.assert_frame_equal(stored, truth(sim, market, "15m", *quarter), rtol=1e-9)
    mine = got["open"]
    assert isinstance(mine, dict)
    upbit = request(sim.url, "/v1/candles/minutes/15", {"market": "KRW-ETH", "count": 1}).json()
    assert list(mine) == list(upbit[0])
    assert mine["trade_price"] == upbit[0]["trade_price"]
    assert mine["candle_acc_trade_volume"] == pytest.approx(upbit[0]["candle_acc_trade_volume"])


def test_what_to_keep_is_checked_before_anything_runs(tmp_path: Path) -> None:
    cache = UpbitCache(tmp_path, api_url="http://127.0.0.1:9")  # nothing may be asked
    assert Keeper(cache, "KRW-BTC,KRW-ETH", "1h").named == ["KRW-BTC", "KRW-ETH"]
    assert Keeper(cache, ["KRW-BTC"], [H1, M15]).timeframes == [H1, M15]
    assert Keeper(cache, "krw", "15m").quote == "KRW"
    assert Keeper(cache, "krw-btc", "15m").named == ["KRW-BTC"]
    for markets, tfs in [("KRW", "2h"), ("KRW", "1h,7m"), ([], "1h"), ("KRW-", "1h")]:
        with pytest.raises(UsageError):
            Keeper(cache, markets, tfs)
    with pytest.raises(UsageError):
        Keeper(cache, "K RW", "1h")
    cache.close()
