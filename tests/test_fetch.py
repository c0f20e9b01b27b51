"""The collector and the store together, against the simulator on loopback."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import FAST_RATE, NOW, candle_requests, request, run_fetch, truth

from upbit_cache.collector.client import UpbitClient
from upbit_cache.collector.config import ClientConfig
from upbit_cache.collector.listing import MarketInfo, parse_markets
from upbit_cache.errors import InvalidRangeError, UnknownMarketError
from upbit_cache.simulator import SimulatorServer
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

H1 = Timeframe.parse("1h")
DAY = 86_400_000
START = to_ms(NOW) - 30 * DAY


def sparse_market(sim: SimulatorServer) -> str:
    return next(m.market for m in sim.history.markets if m.sparse and m.market.startswith("KRW-"))


def recent_market(sim: SimulatorServer) -> str:
    return next(
        m.market
        for m in sim.history.markets
        if START < m.listed_ms < to_ms(NOW) and m.market.startswith("KRW-")
    )


def stored(tmp_path: Path, market: str, tf: str = "1h") -> pd.DataFrame:
    return CandleStore(tmp_path).load(market, Timeframe.parse(tf))


def test_cold_fetch_stores_exactly_upbits_closed_candles(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    markets = ["KRW-BTC", "KRW-ETH", sparse_market(sim), recent_market(sim)]
    report = run_fetch(sim.url, tmp_path, markets)
    assert report.failed == []
    for market in markets:
        got = stored(tmp_path, market)
        pd.testing.assert_frame_equal(got, truth(sim, market, "1h", START, NOW))
    # Liquid markets: 720 hourly candles in 4 pages (200, 200, 200, 120).
    by_market = {o.market: o for o in report.outcomes}
    assert by_market["KRW-BTC"].candles == 720
    assert by_market["KRW-BTC"].requests == 4


def test_second_run_sends_nothing_and_an_hour_later_one_request_per_market(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    markets = ["KRW-BTC", "KRW-ETH", sparse_market(sim), recent_market(sim)]
    run_fetch(sim.url, tmp_path, markets)
    sim.reset_stats()
    again = run_fetch(sim.url, tmp_path, markets)
    assert again.candle_requests == 0 and candle_requests(sim) == 0
    sim.clock.advance(3600)
    later = run_fetch(sim.url, tmp_path, markets)
    assert candle_requests(sim) == len(markets)
    assert later.candle_requests == len(markets)
    newest = stored(tmp_path, "KRW-BTC")["time"].iloc[-1]
    assert newest == pd.Timestamp(NOW)  # the hour that just closed
    assert stored(tmp_path, "KRW-BTC")["time"].is_unique


def test_in_progress_candle_is_never_stored(sim: SimulatorServer, tmp_path: Path) -> None:
    sim.clock.set("2026-11-20T10:30:00Z")
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], days=1)
    assert stored(tmp_path, "KRW-BTC")["time"].iloc[-1] == pd.Timestamp("2026-11-20T09:00Z")
    sim.clock.set("2026-11-20T11:00:05Z")
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], days=1)
    got = stored(tmp_path, "KRW-BTC")
    assert got["time"].iloc[-1] == pd.Timestamp("2026-11-20T10:00Z")
    final = truth(sim, "KRW-BTC", "1h", "2026-11-20T10:00Z", "2026-11-20T11:00Z")
    pd.testing.assert_frame_equal(got.tail(1).reset_index(drop=True), final)


def test_sparse_market_gaps_are_recorded_as_fetched(sim: SimulatorServer, tmp_path: Path) -> None:
    market = sparse_market(sim)
    run_fetch(sim.url, tmp_path, [market], "15m", days=10)
    got = stored(tmp_path, market, "15m")
    assert 0 < len(got) < 10 * 96  # periods without trades have no candle
    fetched = CandleStore(tmp_path).fetched(Timeframe.parse("15m"), market)
    assert len(fetched) == 1  # one contiguous fetched range despite the gaps
    sim.reset_stats()
    run_fetch(sim.url, tmp_path, [market], "15m", days=10)
    assert candle_requests(sim) == 0


@pytest.mark.slow
def test_a_century_of_1m_costs_no_memory_and_stops_at_the_listing(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    market = recent_market(sim)
    listed = sim.history.market_info(market).listed_ms
    command = [sys.executable, "-m", "upbit_cache", "fetch", market, "-t", "1m"]
    command += ["--days", "36500", "--api-url", sim.url, "--data-dir", str(tmp_path), "-q"]
    command += ["--rate", str(FAST_RATE)]
    # The fetch runs as a grandchild, so its peak memory is the only child's peak here.
    measure = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
    measure += "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    done = subprocess.run(
        [sys.executable, "-c", measure, *command], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    peak_mib = int(done.stdout.splitlines()[-1]) / 1024
    assert peak_mib < 400  # the pages of 100 years are planned as they are needed
    pages = -(-(to_ms(NOW) - listed) // 60_000 // 200) + 1
    week = 7 * 1440 // 200 + 1  # the empty week that shows where the history starts
    assert candle_requests(sim) <= pages + 2 * (week + 4)  # each empty page with its witness
    got = stored(tmp_path, market, "1m")
    assert got["time"].iloc[0] >= pd.Timestamp(listed, unit="ms", tz="UTC").floor("min")


def test_recently_listed_market_stops_at_the_listing(sim: SimulatorServer, tmp_path: Path) -> None:
    market = recent_market(sim)
    listed = sim.history.market_info(market).listed_ms
    report = run_fetch(sim.url, tmp_path, [market], "1h", days=365)
    pages_with_history = -(-(to_ms(NOW) - listed) // 3_600_000 // 200) + 1
    # + the pages already in flight, each empty one with its witness (a day candle page)
    assert report.candle_requests <= pages_with_history + 2 * 4
    assert report.candle_requests < 365 * 24 // 200
    got = stored(tmp_path, market)
    assert got["time"].iloc[0] >= pd.Timestamp(listed, unit="ms", tz="UTC").floor("h")
    sim.reset_stats()
    run_fetch(sim.url, tmp_path, [market], "1h", days=365)
    assert candle_requests(sim) == 0


def test_since_until_window_is_exact(sim: SimulatorServer, tmp_path: Path) -> None:
    run_fetch(
        sim.url, tmp_path, ["KRW-ETH"], "4h", start=to_ms("2026-10-01"), end=to_ms("2026-10-08")
    )
    got = stored(tmp_path, "KRW-ETH", "4h")
    assert got["time"].iloc[0] == pd.Timestamp("2026-10-01T00:00Z")
    assert got["time"].iloc[-1] == pd.Timestamp("2026-10-07T20:00Z")
    assert len(got) == 42


def test_refetch_after_lost_records_does_not_duplicate(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], days=3)
    for record in (tmp_path / "fetched").rglob("*.json"):
        record.unlink()  # as if the run had died before recording
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], days=5)
    got = stored(tmp_path, "KRW-BTC")
    assert got["time"].is_unique and len(got) == 5 * 24
    pd.testing.assert_frame_equal(got, truth(sim, "KRW-BTC", "1h", to_ms(NOW) - 5 * DAY, NOW))


def test_unknown_market_is_refused_before_fetching(sim: SimulatorServer, tmp_path: Path) -> None:
    with pytest.raises(UnknownMarketError, match="KRW-NOPE"):
        run_fetch(sim.url, tmp_path, ["KRW-BTC", "KRW-NOPE"])
    assert candle_requests(sim) == 0
    assert not (tmp_path / "candles").exists()


def test_a_range_in_the_future_is_refused(sim: SimulatorServer, tmp_path: Path) -> None:
    with pytest.raises(InvalidRangeError, match="future"):
        run_fetch(sim.url, tmp_path, ["KRW-BTC"], start=to_ms("2026-12-01"))


@pytest.mark.slow
def test_quote_means_every_market_of_that_quote(sim: SimulatorServer, tmp_path: Path) -> None:
    report = run_fetch(sim.url, tmp_path, [], "1d", days=3)
    krw = [m.market for m in sim.history.listed_markets(to_ms(NOW)) if m.market.startswith("KRW-")]
    assert sorted(o.market for o in report.outcomes) == sorted(krw)
    assert report.failed == []


def test_the_market_list_asks_for_details_and_reads_a_list_without_them(
    sim: SimulatorServer,
) -> None:
    async def listing() -> list[MarketInfo]:
        async with UpbitClient(ClientConfig(api_url=sim.url)) as client:
            return await client.markets()

    markets = asyncio.run(listing())
    warned = {m.market for m in sim.history.markets if m.warning}
    assert warned and {m.market for m in markets if m.warning} == warned
    # An Upbit that ignored `is_details` would answer without `market_event`: none warned.
    plain = parse_markets(request(sim.url, "/v1/market/all").json())
    assert [m.market for m in plain] == [m.market for m in markets]
    assert not any(m.warning for m in plain)
