"""Rate limits, bans, server faults and malformed answers, against the simulator."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import DEADLINE, NOW, Procs, read_until, run_fetch, truth

from upbit_cache.collector.ratelimit import MAX_MARGIN, RateLimiter
from upbit_cache.ranges import TimeRange
from upbit_cache.simulator import SimulatorConfig, SimulatorServer
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

H1 = Timeframe.parse("1h")
MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP"]


class SimProcess:
    """The simulator in a process of its own: its timing is not at the mercy of this
    process's GIL (an in-process server would see our sends bunched by our own work)."""

    def __init__(self, procs: Procs, *args: str) -> None:
        command = [sys.executable, "-m", "upbit_cache.simulator", "--port", "0", *args]
        self.proc = procs.popen(command, stdout=subprocess.PIPE, text=True)
        line = read_until(self.proc, lambda lines: len(lines) >= 1, "the URL line")[0]
        self.url = line.rsplit(" ", 1)[1].strip()

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_sim/stats", timeout=10) as answer:
            return dict(json.loads(answer.read()))


@pytest.fixture
def strict(procs: Procs) -> Iterator[SimProcess]:
    """A simulator enforcing Upbit's real 10 requests/s, in its own process."""
    sim = SimProcess(procs, "--rate", "10", "--clock", NOW, "--frozen")
    yield sim
    sim.proc.terminate()
    sim.proc.wait(timeout=DEADLINE)


@pytest.mark.slow
def test_the_limiter_keeps_under_10_per_second_with_zero_429s(
    strict: SimProcess, tmp_path: Path
) -> None:
    report = run_fetch(strict.url, tmp_path, MARKETS, "1h", days=60, rate=10)  # 8 pages each
    assert report.failed == []
    stats = strict.stats()
    assert stats["rate_limited"] == 0 and report.rate_limited == 0, stats["by_status"]
    assert report.candle_requests == 24, stats["by_path"]
    # 24 requests at 10/s: the first 10 go at once, the rest one window later each.
    assert report.seconds >= 1.9


def test_the_margin_starts_tight_and_widens_with_each_429() -> None:
    limiter = RateLimiter(10)
    assert limiter.spacing == pytest.approx(0.1005)
    limiter.on_429()
    assert limiter.window == pytest.approx(1.015)
    for _ in range(6):
        limiter.on_429()
    assert limiter.margin == MAX_MARGIN


@pytest.mark.slow
def test_429s_slow_the_client_down_and_every_candle_arrives(tmp_path: Path) -> None:
    # Latency keeps `Remaining-Req` from arriving before the next sends: 429s happen.
    config = SimulatorConfig(
        rate=2, latency=0.25, clock_start=NOW, frozen=True, ban_after_429s=1000
    )
    with SimulatorServer(config) as server:
        report = run_fetch(server.url, tmp_path, MARKETS, "1h", days=30, rate=10)
        assert report.failed == []
        assert report.rate_limited > 0
        assert server.stats()["rate_limited"] == report.rate_limited
        for market in MARKETS:
            got = CandleStore(tmp_path).load(market, H1)
            pd.testing.assert_frame_equal(
                got, truth(server, market, "1h", to_ms(NOW) - 30 * 86_400_000, NOW)
            )


def test_418_stops_the_run_and_keeps_what_was_fetched(tmp_path: Path) -> None:
    config = SimulatorConfig(
        rate=3, latency=0.2, clock_start=NOW, frozen=True, ban_after_429s=2, ban_seconds=60
    )
    with SimulatorServer(config) as server:
        markets = [m.market for m in server.history.markets if m.market.startswith("KRW-")][:12]
        report = run_fetch(server.url, tmp_path, markets, "1h", days=60, rate=50)
        assert report.blocked is not None and "418" in report.blocked
        assert report.failed
        store = CandleStore(tmp_path)
        for market in markets:
            # Whatever a record claims is on disk, exactly.
            for start, end in store.fetched(H1, market):
                got = store.load(market, H1, TimeRange(start, end))
                pd.testing.assert_frame_equal(got, truth(server, market, "1h", start, end))


@pytest.mark.parametrize("kind", ["500", "drop", "truncate", "non_json", "slow"])
def test_transient_faults_are_retried(sim: SimulatorServer, tmp_path: Path, kind: str) -> None:
    sim.faults.inject(kind, count=2, market="KRW-ETH", seconds=0.2)
    report = run_fetch(sim.url, tmp_path, ["KRW-BTC", "KRW-ETH"], days=30)
    assert report.failed == []
    got = CandleStore(tmp_path).load("KRW-ETH", H1)
    pd.testing.assert_frame_equal(
        got, truth(sim, "KRW-ETH", "1h", to_ms(NOW) - 30 * 86_400_000, NOW)
    )


def test_a_market_that_keeps_failing_is_reported_and_others_complete(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    sim.faults.inject("500", count=100, market="KRW-ETH")
    report = run_fetch(sim.url, tmp_path, MARKETS, days=30)
    assert [(o.market, type(o.error).__name__) for o in report.failed] == [
        ("KRW-ETH", "ServerError")
    ]
    assert "HTTP 500" in str(report.failed[0].error)
    assert len(CandleStore(tmp_path).load("KRW-BTC", H1)) == 720
    assert len(CandleStore(tmp_path).load("KRW-XRP", H1)) == 720


LIES = [
    ("empty", "an empty answer for"),
    ("shift", "last trade outside its period"),
    ("wrong_market", "another market"),
    ("impossible", "zero or less"),
    ("bad_types", "non-numbers"),
    ("missing_field", "lack field"),
]
HOURLY = "/v1/candles/minutes/60"  # the 1h pages only: a day-candle witness stays honest


@pytest.mark.parametrize(("kind", "_message"), LIES)
def test_an_answer_that_lies_once_is_asked_again(
    sim: SimulatorServer, tmp_path: Path, kind: str, _message: str
) -> None:
    sim.faults.inject(kind, count=1, market="KRW-ETH", path=HOURLY)
    report = run_fetch(sim.url, tmp_path, ["KRW-BTC", "KRW-ETH"], days=30)
    assert report.failed == [] and sim.stats()["faults_served"] == 1
    start = to_ms(NOW) - 30 * 86_400_000
    got = CandleStore(tmp_path).load("KRW-ETH", H1)
    pd.testing.assert_frame_equal(got, truth(sim, "KRW-ETH", "1h", start, NOW))
    assert CandleStore(tmp_path).fetched(H1, "KRW-ETH").covers(TimeRange(start, to_ms(NOW)))


@pytest.mark.slow  # its retries wait out real backoff
@pytest.mark.parametrize(("kind", "message"), LIES)
def test_an_answer_that_keeps_lying_fails_its_market_and_nothing_of_it_is_stored(
    sim: SimulatorServer, tmp_path: Path, kind: str, message: str
) -> None:
    sim.faults.inject(kind, count=1000, market="KRW-ETH", path=HOURLY)
    report = run_fetch(sim.url, tmp_path, ["KRW-BTC", "KRW-ETH"], days=30)
    [failed] = report.failed
    assert failed.market == "KRW-ETH"
    assert type(failed.error).__name__ == "ResponseFormatError"
    assert message in str(failed.error) and "failed the checks 3 times" in str(failed.error)
    store = CandleStore(tmp_path)
    assert store.load("KRW-ETH", H1).empty and not store.fetched(H1, "KRW-ETH")
    assert len(store.load("KRW-BTC", H1)) == 720
