"""A fetch killed mid-run, and two fetches at once on one data dir (real processes)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import NOW, Procs, candle_requests, truth, wait_for

from upbit_cache.ranges import TimeRange
from upbit_cache.simulator import SimulatorConfig, SimulatorServer
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.store.locks import FileLock
from upbit_cache.timeframes import Timeframe

# Every test here runs fetches in processes of their own, some at Upbit's real rate.
pytestmark = pytest.mark.slow

H1 = Timeframe.parse("1h")


def cli(
    procs: Procs, sim: SimulatorServer, data_dir: Path, markets: list[str], *extra: str
) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "upbit_cache", "fetch", *markets, "-t", "1h", "--days", "60"]
    args += ["--api-url", sim.url, "--data-dir", str(data_dir), "--rate", "60", *extra]
    return procs.popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def check_store_is_exact(sim: SimulatorServer, data_dir: Path, markets: list[str]) -> None:
    """No partial file, no duplicate, and every recorded range holds exactly Upbit's candles."""
    assert not [p for p in data_dir.rglob("*.parquet") if not p.name.startswith("part-")]
    store = CandleStore(data_dir)
    for market in markets:
        everything = store.load(market, H1)
        assert everything["time"].is_unique
        for start, end in store.fetched(H1, market):
            got = store.load(market, H1, TimeRange(start, end))
            pd.testing.assert_frame_equal(got, truth(sim, market, "1h", start, end))


# Pages a killed run may have had in flight, not yet written: the rate limiter's burst and
# the pages answered in the instant before the kill.
IN_FLIGHT = 16
PAGES = 30 * 8  # 30 markets x 60 days of 1h, 200 hours a page


def kill_after(
    procs: Procs, sim: SimulatorServer, data_dir: Path, markets: list[str], requests: int, how: int
) -> tuple[int, str]:
    """Start a fetch, send it `how` once the simulator has seen `requests` candle requests;
    its exit code and stderr."""
    victim = cli(procs, sim, data_dir, markets)
    wait_for(
        lambda: candle_requests(sim) >= requests,
        f"{requests} candle requests",
        running=[victim],
        interval=0.005,
    )
    assert victim.poll() is None, "the kill should land mid-run"
    os.kill(victim.pid, how)
    _out, err = victim.communicate(timeout=60)
    return victim.returncode, err


def test_sigkill_at_any_moment_loses_only_the_pages_in_flight(
    sim: SimulatorServer, tmp_path: Path, procs: Procs
) -> None:
    markets = [m.market for m in sim.history.markets if m.market.startswith("KRW-")][:30]
    sent, rng = 0, random.Random(7)
    for _ in range(3):  # 3 kills, each at a random point of what is left to fetch
        left = PAGES - sent + IN_FLIGHT
        sim.reset_stats()
        kill_after(procs, sim, tmp_path, markets, int(left * rng.uniform(0.1, 0.6)), signal.SIGKILL)
        sent += candle_requests(sim)
        for market in markets:  # readable, no duplicate, after every kill
            assert CandleStore(tmp_path).load(market, H1)["time"].is_unique
    sim.reset_stats()
    again = cli(procs, sim, tmp_path, markets)
    _out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    sent += candle_requests(sim)
    assert sent - PAGES <= 3 * IN_FLIGHT  # re-sent: only what each killed run had in flight
    check_store_is_exact(sim, tmp_path, markets)
    for market in markets:
        assert CandleStore(tmp_path).fetched(H1, market).total() == 60 * 86_400_000


def test_sigterm_writes_what_arrived_says_so_and_exits_143(
    sim: SimulatorServer, tmp_path: Path, procs: Procs
) -> None:
    markets = [m.market for m in sim.history.markets if m.market.startswith("KRW-")][:30]
    code, err = kill_after(procs, sim, tmp_path, markets, PAGES // 2, signal.SIGTERM)
    assert code == 143 and "stopped (SIGTERM); what was fetched is kept" in err, err
    first = candle_requests(sim)
    check_store_is_exact(sim, tmp_path, markets)
    assert not list(tmp_path.rglob("*.tmp"))
    sim.reset_stats()
    again = cli(procs, sim, tmp_path, markets)
    _out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert first + candle_requests(sim) - PAGES <= IN_FLIGHT


def test_two_fetches_at_once_neither_corrupt_nor_double_fetch(
    sim: SimulatorServer, tmp_path: Path, procs: Procs
) -> None:
    markets = [m.market for m in sim.history.markets if m.market.startswith("KRW-")][:12]
    runs = [cli(procs, sim, tmp_path, markets), cli(procs, sim, tmp_path, markets)]
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        assert "12 markets" in out
    # Each (market, timeframe) was fetched by one run; the other found nothing missing.
    assert candle_requests(sim) == 12 * 8
    check_store_is_exact(sim, tmp_path, markets)
    for market in markets:
        assert len(CandleStore(tmp_path).load(market, H1)) == 60 * 24


def test_processes_on_one_host_share_one_budget_with_no_429(tmp_path: Path, procs: Procs) -> None:
    # Upbit's real 10 requests/s, and five processes that each may send 10 a second.
    config = SimulatorConfig(rate=10, clock_start=NOW, frozen=True, ban_after_429s=1000)
    with SimulatorServer(config) as strict:
        markets = [m.market for m in strict.history.markets if m.market.startswith("KRW-")]
        runs = []
        for i in range(4):
            group = markets[i * 3 : i * 3 + 3]
            args = ["fetch", *group, "-t", "1h", "--days", "30", "--rate", "10"]
            runs.append(upbit_cache_cli(procs, strict, tmp_path / f"d{i}", *args))
        screen = ["screen-prep", *markets[12:15], "--days", "30", "--out", str(tmp_path / "s.csv")]
        runs.append(upbit_cache_cli(procs, strict, tmp_path / "d4", *screen, "--rate", "10"))
        for run in runs:
            _out, err = run.communicate(timeout=120)
            assert run.returncode == 0, err
        stats = strict.stats()
        assert stats["candle_requests"] >= 5 * 3 * 4 and stats["rate_limited"] == 0


def test_the_market_list_waits_after_a_429(tmp_path: Path, procs: Procs) -> None:
    # Two requests a second per group: five processes asking for the market list at once.
    config = SimulatorConfig(rate=2, clock_start=NOW, frozen=True, ban_after_429s=1000)
    with SimulatorServer(config) as tight:
        runs = [
            upbit_cache_cli(procs, tight, tmp_path / f"d{i}", "fetch", "KRW-BTC", "--days", "1")
            for i in range(5)
        ]
        for run in runs:
            _out, err = run.communicate(timeout=120)
            assert run.returncode == 0, err
        assert tight.stats()["by_path"]["/v1/market/all"] >= 5


def test_a_run_waiting_for_a_lock_says_so_once_and_lock_timeout_bounds_it(
    sim: SimulatorServer, tmp_path: Path, procs: Procs
) -> None:
    async def hold() -> FileLock:
        lock = CandleStore(tmp_path).lock(H1, "KRW-BTC")
        await lock.__aenter__()
        return lock

    held = asyncio.run(hold())
    try:
        args = ["fetch", "KRW-BTC", "KRW-ETH", "--days", "3", "--lock-timeout", "0.5"]
        run = upbit_cache_cli(procs, sim, tmp_path, *args)
        out, err = run.communicate(timeout=60)
    finally:
        held.release()
    assert run.returncode == 1
    assert err.count("waiting for another run writing 1h KRW-BTC") == 1
    assert "still holds its lock after 0.5 s" in err and "1 failed: KRW-BTC 1h" in out
    assert len(CandleStore(tmp_path).load("KRW-ETH", H1)) == 72  # the other market went on


def upbit_cache_cli(
    procs: Procs, sim: SimulatorServer, data_dir: Path, *args: str
) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "upbit_cache", *args, "--api-url", sim.url]
    command += ["--data-dir", str(data_dir)]
    return procs.popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
