"""The real clients users already run (pyupbit, ccxt, upbit-sdk), pointed at `upbit-cache
serve` in front of the simulator: each answer equals the same call made straight to the
simulator, the second identical call sends Upbit nothing, and three client processes at
once earn no 429."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ccxt
import pandas as pd
import pytest
import pyupbit
import pyupbit.quotation_api
from conftest import DEADLINE, FAST_RATE, Procs
from serving import SERVE_NOW, serving
from upbit import Upbit

from upbit_cache.simulator import SimulatorConfig, SimulatorServer

TO = "2026-11-19 12:00:00"  # pyupbit's form of `to` (UTC)
MARKETS = ["KRW-BTC", "KRW-ETH", "BTC-CEX"]

# pyupbit names api.upbit.com in each function: its one door, `_call_public_api`, is
# pointed elsewhere (what docs/existing-code.md shows).
_CALL = pyupbit.quotation_api._call_public_api


def point_pyupbit(base: str) -> None:
    def call(url: str, **params: Any) -> Any:
        return _CALL(url.replace("https://api.upbit.com", base), **params)

    pyupbit.quotation_api._call_public_api = call  # type: ignore[assignment]


@pytest.fixture(scope="module", params=["window", "newest"])
def upstream(request: pytest.FixtureRequest) -> Iterator[SimulatorServer]:
    config = SimulatorConfig(
        rate=FAST_RATE, clock_start=SERVE_NOW, frozen=True, pages=request.param, clamp_count=True
    )
    with SimulatorServer(config) as server:
        yield server


@pytest.fixture
def sim(upstream: SimulatorServer) -> Iterator[SimulatorServer]:
    upstream.clock.set(SERVE_NOW)
    upstream.clock.freeze()
    upstream.reset_stats()
    yield upstream
    pyupbit.quotation_api._call_public_api = _CALL  # type: ignore[assignment]


def test_pyupbit_get_ohlcv(sim: SimulatorServer, tmp_path: Path) -> None:
    asks: list[dict[str, Any]] = [
        {"interval": "minute60", "count": 450, "to": TO},
        {"interval": "minute60", "count": 300},  # to: pyupbit's now, past the frozen clock
        {"interval": "day", "count": 30},
        {"interval": "minute15", "count": 60, "to": TO},
        {"interval": "week", "count": 5},
    ]

    def frames(base: str) -> list[pd.DataFrame]:
        point_pyupbit(base)
        return [pyupbit.get_ohlcv(m, **a) for m in MARKETS for a in asks]

    with serving(sim.url, tmp_path / "data", pages=sim.config.pages) as server:
        served = frames(server.url)
        sim.reset_stats()
        again = frames(server.url)
        assert sim.stats()["requests"] == 0
    straight = frames(sim.url)
    for mine, theirs, repeat in zip(served, straight, again, strict=True):
        assert mine is not None and len(mine) > 0
        pd.testing.assert_frame_equal(mine, theirs, check_exact=True)
        pd.testing.assert_frame_equal(repeat, theirs, check_exact=True)


def test_ccxt_fetch_ohlcv(sim: SimulatorServer, tmp_path: Path) -> None:
    since = 1_795_000_000_000  # 2026-11-18T09:46:40Z

    def lists(base: str) -> list[list[list[float]]]:
        exchange = ccxt.upbit({"enableRateLimit": False})
        exchange.urls["api"]["public"] = base  # as docs/existing-code.md shows
        out = []
        for symbol in ("BTC/KRW", "ETH/KRW", "CEX/BTC"):
            out.append(exchange.fetch_ohlcv(symbol, "1h", limit=200))
            out.append(exchange.fetch_ohlcv(symbol, "1h", since=since, limit=50))
            out.append(exchange.fetch_ohlcv(symbol, "1d", limit=20))
        return out

    with serving(sim.url, tmp_path / "data", pages=sim.config.pages) as server:
        served = lists(server.url)
        sim.reset_stats()
        again = lists(server.url)
        candles = sim.stats()["candle_requests"]
    assert candles == 0
    assert served == again == lists(sim.url)
    assert all(served)


def test_upbit_sdk_candles(sim: SimulatorServer, tmp_path: Path) -> None:
    def answers(base: str) -> list[Any]:
        client = Upbit(base_url=base, max_retries=0)
        out: list[Any] = []
        for market in MARKETS:
            out.append(client.candles.list_minutes(60, market=market, count=200))
            out.append(client.candles.list_minutes(60, market=market, count=50, to=TO))
            out.append(client.candles.list_days(market=market, count=10))
            out.append(client.candles.list_weeks(market=market, count=3))
            out.append(client.candles.list_months(market=market, count=2))
        return [[c.model_dump() for c in page] for page in out]

    with serving(sim.url, tmp_path / "data", pages=sim.config.pages) as server:
        served = answers(server.url)
        sim.reset_stats()
        again = answers(server.url)
        assert sim.stats()["requests"] == 0
    assert served == again == answers(sim.url)
    assert all(served)


# One screener process: pyupbit over the markets, as a cron job would run it.
SCREENER = textwrap.dedent(
    """
    import json, sys
    import pyupbit, pyupbit.quotation_api as q
    base, markets = sys.argv[1], sys.argv[2].split(",")
    call = q._call_public_api
    q._call_public_api = lambda url, **p: call(url.replace("https://api.upbit.com", base), **p)
    out = {}
    for market in markets:
        frame = pyupbit.get_ohlcv(market, "minute60", count=200, to="2026-11-19 00:00:00")
        out[market] = None if frame is None else frame["close"].tolist()
    print(json.dumps(out))
    """
)


def test_three_client_processes_at_once_earn_no_429(tmp_path: Path, procs: Procs) -> None:
    """Upbit's own limit (10 a second per group) at the simulator; three screeners at once
    through one serve: every one gets every market, and Upbit answers no 429."""
    config = SimulatorConfig(clock_start=SERVE_NOW, frozen=True)  # rate 10, as Upbit
    with SimulatorServer(config) as sim:
        listed = [m.market for m in sim.history.listed_markets(sim.clock.now_ms())]
        markets = [m for m in listed if m.startswith("KRW-")][:24]
        with serving(sim.url, tmp_path / "data", rate=10.0) as server:
            started = [
                procs.popen(
                    [sys.executable, "-c", SCREENER, server.url, ",".join(markets)],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for _ in range(3)
            ]
            results = [json.loads(p.communicate(timeout=DEADLINE * 2)[0]) for p in started]
        stats = sim.stats()
    assert stats["rate_limited"] == 0 and "429" not in stats["by_status"]
    assert results[0] == results[1] == results[2]
    assert all(results[0][m] and len(results[0][m]) == 200 for m in markets)
    assert stats["candle_requests"] <= 3 * len(markets)  # each market filled once
