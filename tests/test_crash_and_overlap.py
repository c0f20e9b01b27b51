"""A fetch killed mid-run, and two fetches at once on one data dir (real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from conftest import candle_requests, truth

from upbit_cache.ranges import TimeRange
from upbit_cache.simulator import SimulatorServer
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe

H1 = Timeframe.parse("1h")


def cli(
    sim: SimulatorServer, data_dir: Path, markets: list[str], *extra: str
) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "upbit_cache", "fetch", *markets, "-t", "1h", "--days", "60"]
    args += ["--api-url", sim.url, "--data-dir", str(data_dir), "--rate", "40", *extra]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def check_store_is_exact(sim: SimulatorServer, data_dir: Path, markets: list[str]) -> None:
    """No partial file, no duplicate, and every recorded range holds exactly Upbit's candles."""
    assert not [p for p in data_dir.rglob("*.parquet") if p.name != "part-0.parquet"]
    store = CandleStore(data_dir)
    for market in markets:
        everything = store.load(market, H1)
        assert everything["time"].is_unique
        for start, end in store.fetched(H1, market):
            got = store.load(market, H1, TimeRange(start, end))
            pd.testing.assert_frame_equal(got, truth(sim, market, "1h", start, end))


def test_sigkill_mid_fetch_leaves_a_readable_store_and_the_next_run_completes(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    markets = [m.market for m in sim.history.markets if m.market.startswith("KRW-")][:30]
    victim = cli(sim, tmp_path, markets)
    deadline = time.monotonic() + 30
    while candle_requests(sim) < 40 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate()
    first = candle_requests(sim)
    assert 40 <= first < 30 * 8, "the kill should land mid-run"
    check_store_is_exact(sim, tmp_path, markets)

    sim.reset_stats()
    again = cli(sim, tmp_path, markets)
    _out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert (
        candle_requests(sim) <= 30 * 8 - first + 30 * 4
    )  # only what the killed run had not stored
    check_store_is_exact(sim, tmp_path, markets)
    for market in markets:
        assert CandleStore(tmp_path).fetched(H1, market).total() == 60 * 86_400_000


def test_two_fetches_at_once_neither_corrupt_nor_double_fetch(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    markets = [m.market for m in sim.history.markets if m.market.startswith("KRW-")][:12]
    runs = [cli(sim, tmp_path, markets), cli(sim, tmp_path, markets)]
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        assert "12 markets" in out
    # Each (market, timeframe) was fetched by one run; the other found nothing missing.
    assert candle_requests(sim) == 12 * 8
    check_store_is_exact(sim, tmp_path, markets)
    for market in markets:
        assert len(CandleStore(tmp_path).load(market, H1)) == 60 * 24
