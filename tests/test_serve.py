"""`upbit-cache serve` answers as its upstream does: every candle page byte for byte under
both page readings (a sparse market included), Upbit's error bodies, the pass-through calls;
a page asked twice costs Upbit nothing; the in-progress candle is reused for `fresh`
seconds or taken from a kept series; the command prints its address and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from conftest import DEADLINE, FAST_RATE, Procs, read_until, request
from serving import SERVE_NOW, serving

from upbit_cache import UpbitCache
from upbit_cache.server.app import make_app
from upbit_cache.simulator import SimulatorConfig, SimulatorServer
from upbit_cache.timeframes import Timeframe

# Roughly half of BTC-CEX's hours have no trade: the two page readings answer differently.
SPARSE = "BTC-CEX"
PAGES = [
    "/v1/candles/minutes/60?market=KRW-BTC&count=200",
    "/v1/candles/minutes/60?market=KRW-BTC&count=5&to=2026-11-19T10:00:00Z",
    "/v1/candles/minutes/60?market=KRW-BTC&count=3&to=2026-11-19T19:30:00%2B09:00",
    "/v1/candles/minutes/60?market=KRW-BTC&count=3&to=2026-11-19%2010:30:00",
    "/v1/candles/minutes/60?market=KRW-BTC&count=250&to=2026-11-10T00:00:00Z",
    f"/v1/candles/minutes/60?market={SPARSE}&count=30",
    f"/v1/candles/minutes/60?market={SPARSE}&count=30&to=2026-11-15T00:00:00Z",
    f"/v1/candles/minutes/15?market={SPARSE}&count=40&to=2026-11-18T06:00:00Z",
    "/v1/candles/minutes/1?market=KRW-ETH",
    "/v1/candles/minutes/240?market=KRW-ETH&count=12",
    "/v1/candles/seconds?market=KRW-BTC&count=20",
    "/v1/candles/days?market=KRW-BTC&count=10",
    f"/v1/candles/days?market={SPARSE}&count=10&converting_price_unit=KRW",
    "/v1/candles/days?market=KRW-ETH&count=3&converting_price_unit=KRW&to=2026-11-10T00:00:00Z",
    "/v1/candles/weeks?market=KRW-BTC&count=4",
    "/v1/candles/months?market=KRW-BTC&count=3",
    "/v1/candles/years?market=KRW-BTC&count=2",
]
# Our view of Upbit's clock runs on while the simulator's is frozen: a second page asked a
# second later is a new page (its newest closed second moved), as it is at Upbit.
REPEATABLE = [p for p in PAGES if "/seconds" not in p]
BAD = [
    "/v1/candles/minutes/7?market=KRW-BTC",
    "/v1/candles/minutes/1?market=KRW-NOPE",
    "/v1/candles/minutes/1?market=krw-btc",
    "/v1/candles/minutes/1",
    "/v1/candles/minutes/1?market=KRW-BTC&count=abc",
    "/v1/candles/minutes/1?market=KRW-BTC&count=0",
    "/v1/candles/minutes/1?market=KRW-BTC&to=yesterday",
    "/v1/candles/days?market=KRW-BTC&converting_price_unit=USD",
    "/v1/ticker?markets=KRW-NOPE",
]
PASSED = [
    "/v1/market/all",
    "/v1/market/all?is_details=true",
    "/v1/market/all?isDetails=true",
    "/v1/ticker?markets=KRW-BTC,KRW-ETH",
    "/v1/ticker/all?quote_currencies=KRW,BTC",
]


@pytest.fixture(scope="module", params=["window", "newest"])
def upstream(request: pytest.FixtureRequest) -> Iterator[SimulatorServer]:
    """The simulator in one page reading; counts above 200 answered with 200, as Upbit."""
    config = SimulatorConfig(
        rate=FAST_RATE,
        clock_start=SERVE_NOW,
        frozen=True,
        pages=request.param,
        clamp_count=True,
    )
    with SimulatorServer(config) as server:
        yield server


@pytest.fixture
def sim(upstream: SimulatorServer) -> SimulatorServer:
    upstream.clock.set(SERVE_NOW)
    upstream.clock.freeze()
    upstream.faults.clear()
    upstream.reset_stats()
    return upstream


def get(base: str, target: str) -> tuple[int, str, bytes]:
    """GET `target` (path and query as sent) on a fresh connection: status, type, body."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=DEADLINE)
    try:
        conn.request("GET", target)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    finally:
        conn.close()


def test_every_page_equals_the_upstreams_and_costs_nothing_the_second_time(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    mode = _mode(sim)
    with serving(sim.url, tmp_path / "data", pages=mode) as server:
        for path in PAGES:
            assert get(server.url, path) == get(sim.url, path), path
        sim.reset_stats()
        again = [get(server.url, path) for path in REPEATABLE]
        assert sim.stats()["requests"] == 0
    assert again == [get(sim.url, path) for path in REPEATABLE]


def test_the_sparse_page_differs_between_the_readings(sim: SimulatorServer, tmp_path: Path) -> None:
    """So that the test above means something under both: half the hours are quiet."""
    path = f"/v1/candles/minutes/60?market={SPARSE}&count=30&to=2026-11-15T00:00:00Z"
    with serving(sim.url, tmp_path / "data", pages=_mode(sim)) as server:
        status, _, body = get(server.url, path)
    assert status == 200
    candles = json.loads(body)
    if _mode(sim) == "window":
        assert 5 < len(candles) < 30
    else:
        assert len(candles) == 30
        assert candles[-1]["candle_date_time_utc"] < "2026-11-13T22:00:00"


def test_errors_are_upbits_status_and_body(sim: SimulatorServer, tmp_path: Path) -> None:
    with serving(sim.url, tmp_path / "data", pages=_mode(sim)) as server:
        for path in BAD:
            mine, theirs = get(server.url, path), get(sim.url, path)
            assert mine[0] == theirs[0] and json.loads(mine[2]) == json.loads(theirs[2]), path
        assert json.loads(get(server.url, BAD[1])[2]) == {
            "error": {"name": 404, "message": "Code not found"}
        }


def test_pass_through_relays_status_headers_and_body(sim: SimulatorServer, tmp_path: Path) -> None:
    with serving(sim.url, tmp_path / "data", pages=_mode(sim)) as server:
        for path in PASSED:
            split = urlsplit(path)
            params = dict(p.split("=", 1) for p in split.query.split("&")) if split.query else None
            mine, theirs = (
                request(server.url, split.path, params),
                request(sim.url, split.path, params),
            )
            assert (mine.status, mine.body) == (theirs.status, theirs.body), path
            assert mine.headers["Remaining-Req"].startswith("group=")
        # The market list is reused for a minute; tickers are asked each time.
        sim.reset_stats()
        request(server.url, "/v1/market/all", {"is_details": "true"})
        request(server.url, "/v1/ticker", {"markets": "KRW-BTC"})
        assert sim.stats()["by_path"] == {"/v1/ticker": 1}


def test_the_in_progress_candle_is_reused_for_fresh_seconds(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    path = "/v1/candles/minutes/1?market=KRW-BTC&count=3"
    with serving(sim.url, tmp_path / "data", pages=_mode(sim), fresh=0.5) as server:
        began = time.monotonic()
        get(server.url, path)
        sim.reset_stats()
        assert get(server.url, path) == get(sim.url, path)
        # The direct ask only; on a machine too loaded to ask again within 0.5 s, maybe
        # the newest page anew too.
        reused = time.monotonic() - began < 0.5
        assert sim.stats()["candle_requests"] in ((1,) if reused else (1, 2))
        time.sleep(0.6)
        sim.clock.advance(10)  # the same minute, more trades
        sim.reset_stats()
        assert get(server.url, path) == get(sim.url, path)
        assert sim.stats()["candle_requests"] == 2  # the newest page anew, and the direct one


def test_a_kept_series_answers_the_in_progress_candle(sim: SimulatorServer, tmp_path: Path) -> None:
    status, _, body = get(sim.url, "/v1/candles/minutes/60?market=KRW-BTC&count=1")
    live = json.loads(body)[0]
    kept = dict(live, trade_price=live["trade_price"] + 1000, timestamp=live["timestamp"] + 1)
    asked: list[tuple[str, str]] = []

    def in_progress(market: str, tf: Timeframe) -> dict[str, Any] | None:
        asked.append((market, tf.name))
        return kept if market == "KRW-BTC" else None

    with serving(sim.url, tmp_path / "data", pages=_mode(sim), in_progress=in_progress) as server:
        get(server.url, "/v1/candles/minutes/60?market=KRW-BTC&count=5")  # fills the store
        sim.reset_stats()
        status, _, body = get(server.url, "/v1/candles/minutes/60?market=KRW-BTC&count=5")
    assert status == 200 and sim.stats()["requests"] == 0
    newest = json.loads(body)[0]
    assert newest["trade_price"] == kept["trade_price"]
    assert newest["timestamp"] == kept["timestamp"]
    assert ("KRW-BTC", "1h") in asked


def test_identical_asks_at_once_share_one_fill(sim: SimulatorServer, tmp_path: Path) -> None:
    path = "/v1/candles/minutes/60?market=KRW-XRP&count=200&to=2026-11-10T00:00:00Z"
    with serving(sim.url, tmp_path / "data", pages=_mode(sim)) as server:

        async def many() -> list[bytes]:
            async with aiohttp.ClientSession() as session:

                async def one() -> bytes:
                    async with session.get(server.url + path) as resp:
                        return await resp.read()

                return await asyncio.gather(*(one() for _ in range(8)))

        bodies = asyncio.run(many())
    asked = sim.stats()["by_path"]["/v1/candles/minutes/60"]
    assert len(set(bodies)) == 1 and bodies[0] == get(sim.url, path)[2]
    assert asked <= 3  # one fill (its page, and a witness at most), not eight


def test_a_websocket_handler_is_mounted_where_upbit_has_it(tmp_path: Path) -> None:
    async def ws(request: web.Request) -> web.StreamResponse:
        return web.Response(text="relay")

    app = make_app(UpbitCache(tmp_path), ws_handler=ws)
    routes = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}
    assert ("GET", "/websocket/v1") in routes
    assert ("GET", "/websocket/v1") not in {
        (r.method, r.resource.canonical)
        for r in make_app(UpbitCache(tmp_path)).router.routes()
        if r.resource
    }


def test_the_command_prints_its_address_and_stops_on_sigterm(
    sim: SimulatorServer, tmp_path: Path, procs: Procs
) -> None:
    proc = procs.popen(
        [
            sys.executable,
            "-m",
            "upbit_cache",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path / "data"),
            "--api-url",
            sim.url,
        ],
        stdout=-1,
        stderr=-1,
        text=True,
    )
    lines = read_until(proc, lambda lines: any("UPBIT_SERVE_URL=" in line for line in lines))
    url = next(line for line in lines if "UPBIT_SERVE_URL=" in line).split("=", 1)[1].strip()
    path = "/v1/candles/days?market=KRW-BTC&count=5"
    assert get(url, path) == get(sim.url, path)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(DEADLINE) == 143
    assert "serve stopped (SIGTERM)" in proc.stderr.read()


def _mode(sim: SimulatorServer) -> str:
    return str(sim.config.pages)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pages", "both"], "--pages must be one of window, newest: 'both'"),
        (["--port", "PORT_TAKEN"], "cannot listen on 127.0.0.1:"),
        (["-t", "1h"], "-t names what --keep keeps"),
        (["--keep", "KRW-BTC,BTC", "-t", "1h"], "BTC"),
        (["--keep", "KRW-BTC", "-t", "1x"], "1x"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(
    sim: SimulatorServer, tmp_path: Path, args: list[str], message: str
) -> None:
    taken = str(urlsplit(sim.url).port)
    command = [sys.executable, "-m", "upbit_cache", "serve", "--data-dir", str(tmp_path)]
    command += ["--api-url", sim.url, *(taken if a == "PORT_TAKEN" else a for a in args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


STRICT_PAGES = [
    f"/v1/candles/minutes/60?market={SPARSE}&count=200&to=2026-11-19T00:00:00Z",
    f"/v1/candles/minutes/1?market={SPARSE}&count=200&to=2026-11-19T00:00:00Z",
    "/v1/candles/minutes/60?market=KRW-BTC&count=50",
    f"/v1/candles/days?market={SPARSE}&count=30",
    "/v1/candles/minutes/60?market=USDT-BTC&count=200&to=2026-11-18T00:00:00Z",
]


@pytest.mark.parametrize("reading", ["window", "newest"])
def test_exact_in_front_of_a_strict_upbit_with_upbits_settle_time(
    reading: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Store lag, thin markets quiet for weeks (the newest reading reaches back past them),
    and the default settle time (10 s), not the suite's 0."""
    monkeypatch.delenv("UPBIT_SETTLE_SECONDS")
    config = SimulatorConfig.strict(
        rate=FAST_RATE, clock_start=SERVE_NOW, frozen=True, pages=reading
    )
    with SimulatorServer(config) as strict, serving(strict.url, tmp_path, pages=reading) as server:
        for path in STRICT_PAGES:
            assert get(server.url, path) == get(strict.url, path), path
        strict.reset_stats()
        again = [get(server.url, path) for path in STRICT_PAGES]
        assert strict.stats()["candle_requests"] == 0
    assert again[0][0] == 200 and len(json.loads(again[1][2])) == (
        200 if reading == "newest" else 0
    )


def test_a_fill_upbit_keeps_failing_is_a_502_in_upbits_error_shape(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    path = "/v1/candles/minutes/60?market=KRW-BTC&count=5&to=2026-11-19T00:00:00Z"
    with serving(sim.url, tmp_path / "data", pages=_mode(sim)) as server:
        get(server.url, "/v1/candles/days?market=KRW-BTC")  # the market list, asked once
        sim.faults.inject("500", 50, path="/v1/candles/minutes/60")
        status, kind, body = get(server.url, path)
        sim.faults.clear()
        assert (status, kind) == (502, "application/json; charset=utf-8")
        error = json.loads(body)["error"]
        assert error["name"] == 502 and "Upbit kept failing" in error["message"]
        assert get(server.url, path) == get(sim.url, path)  # and once Upbit answers, the page
