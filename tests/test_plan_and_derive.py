"""Planned fetches, derived timeframes on disk, and parity with Upbit's native candles."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import NOW, candle_requests, plain, run_fetch, truth
from typer.testing import CliRunner

import upbit_cache
from upbit_cache.cli import app
from upbit_cache.simulator import SimulatorServer
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

DAY = 86_400_000
runner = CliRunner()


def stored(data_dir: Path, market: str, tf: str) -> pd.DataFrame:
    return CandleStore(data_dir).load(market, Timeframe.parse(tf))


def assert_parity(got: pd.DataFrame, native: pd.DataFrame) -> None:
    """Equal to Upbit's own candles: OHLC and times exactly; sums to float rounding."""
    assert len(got) == len(native) > 0
    exact = ["time", "open", "high", "low", "close", "timestamp"]
    pd.testing.assert_frame_equal(got[exact], native[exact])
    pd.testing.assert_frame_equal(got[["volume", "value"]], native[["volume", "value"]], rtol=1e-9)


def resample_cli(data_dir: Path, *args: str) -> str:
    result = runner.invoke(app, ["resample", *args, "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_fetch_15m_1h_4h_asks_only_for_15m(sim: SimulatorServer, tmp_path: Path) -> None:
    report = run_fetch(sim.url, tmp_path, ["KRW-BTC", "KRW-ETH"], "15m,1h,4h", days=10)
    assert report.plan is not None
    assert report.plan.base.name == "15m"
    assert [t.name for t in report.plan.derived] == ["1h", "4h"]
    assert report.plan.planned_requests == 2 * 5  # 960 quarter hours = 5 pages per market
    assert candle_requests(sim) == 10
    assert set(sim.stats()["by_path"]) == {"/v1/market/all", "/v1/candles/minutes/15"}
    start = to_ms(NOW) - 10 * DAY
    for market in ["KRW-BTC", "KRW-ETH"]:
        for tf in ["1h", "4h"]:
            assert_parity(stored(tmp_path, market, tf), truth(sim, market, tf, start, NOW))
    record = CandleStore(tmp_path).record(Timeframe.parse("4h"), "KRW-BTC")
    assert record.bases() == {"15m": record.fetched}


def test_a_lone_1h_is_fetched_natively_and_2h_is_derived_from_it(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    alone = run_fetch(sim.url, tmp_path / "a", ["KRW-BTC"], "1h", days=5)
    assert alone.plan is not None and alone.plan.base.name == "1h" and not alone.plan.derived
    sim.reset_stats()
    two = run_fetch(sim.url, tmp_path / "b", ["KRW-BTC"], "2h", days=5)
    assert two.plan is not None and two.plan.base.name == "1h"
    assert set(sim.stats()["by_path"]) == {"/v1/market/all", "/v1/candles/minutes/60"}
    hours = truth(sim, "KRW-BTC", "1h", to_ms(NOW) - 5 * DAY, NOW)
    pairs = hours.groupby(hours["time"].dt.floor("2h"), sort=True)
    expected = pd.DataFrame(
        {
            "time": pairs["time"].first().index.astype("datetime64[ms, UTC]"),
            "open": pairs["open"].first().to_numpy(),
            "high": pairs["high"].max().to_numpy(),
            "low": pairs["low"].min().to_numpy(),
            "close": pairs["close"].last().to_numpy(),
            "volume": pairs["volume"].sum().to_numpy(),
            "value": pairs["value"].sum().to_numpy(),
            "timestamp": pairs["timestamp"].last().to_numpy(),
        }
    )
    assert_parity(stored(tmp_path / "b", "KRW-BTC", "2h"), expected)


def test_the_plan_uses_what_is_stored(sim: SimulatorServer, tmp_path: Path) -> None:
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "15m", days=3)
    sim.reset_stats()
    report = run_fetch(sim.url, tmp_path, ["KRW-BTC"], "1h", days=3)
    assert report.plan is not None and report.plan.base.name == "15m"
    assert report.plan.planned_requests == 0
    assert candle_requests(sim) == 0
    assert_parity(
        stored(tmp_path, "KRW-BTC", "1h"), truth(sim, "KRW-BTC", "1h", to_ms(NOW) - 3 * DAY, NOW)
    )


@pytest.mark.parametrize(
    ("base", "targets", "days"),
    [
        ("1m", "3m,5m,10m,15m,30m,1h,4h", 2),
        ("1h", "4h", 20),
        ("4h", "1d", 60),
        ("1d", "1w,1M", 400),
    ],
)
def test_derived_equals_native_for_every_native_pair(
    sim: SimulatorServer, tmp_path: Path, base: str, targets: str, days: int
) -> None:
    markets = ["KRW-BTC", next(m.market for m in sim.history.markets if m.sparse)]
    run_fetch(sim.url, tmp_path, markets, base, days=days)
    out = resample_cli(tmp_path, *markets, "-t", targets, "--from", base)
    assert out.startswith("2 markets")
    start = to_ms(NOW) - days * DAY
    for market in markets:
        for tf in targets.split(","):
            got = stored(tmp_path, market, tf)
            lo = Timeframe.parse(tf).ceil_one(Timeframe.parse(base).floor_one(start))
            native = truth(sim, market, tf, lo, NOW)
            if got.empty and native.empty:
                continue  # a sparse market may have no trade in so short a window
            assert_parity(got, native)


def test_resample_is_incremental(sim: SimulatorServer, tmp_path: Path) -> None:
    run_fetch(sim.url, tmp_path, ["KRW-BTC", "KRW-ETH"], "15m", days=40)  # two 15m partitions
    first = resample_cli(tmp_path, "-t", "1h,4h")
    assert "2 markets, 1h from 15m, 4h from 15m" in first
    assert "0 unchanged" in first
    again = resample_cli(tmp_path, "-t", "1h,4h")
    assert ": 0 candles written, 0 base partitions recomputed" in again
    sim.clock.advance(6 * 3600)
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "15m", days=40)
    later = resample_cli(tmp_path, "-t", "4h")
    assert "1 base partition recomputed" in later  # only KRW-BTC's newest 15m month
    got = stored(tmp_path, "KRW-BTC", "4h")
    assert got["time"].iloc[-1] == pd.Timestamp(NOW)  # 00:00-04:00 closed at 06:00
    assert got["time"].is_unique


def test_the_open_period_is_derived_only_once_it_closes(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    sim.clock.set("2026-11-20T10:30:00Z")
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "15m,4h", days=1)
    assert stored(tmp_path, "KRW-BTC", "4h")["time"].iloc[-1] == pd.Timestamp("2026-11-20T04:00Z")
    sim.clock.set("2026-11-20T12:00:01Z")
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "15m,4h", days=1)
    got = stored(tmp_path, "KRW-BTC", "4h")
    assert got["time"].iloc[-1] == pd.Timestamp("2026-11-20T08:00Z")
    assert_parity(
        got.tail(1).reset_index(drop=True),
        truth(sim, "KRW-BTC", "4h", "2026-11-20T08:00Z", "2026-11-20T12:00Z"),
    )


def test_load_derives_on_the_fly_when_not_materialised(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    run_fetch(sim.url, tmp_path, ["KRW-ETH"], "15m", days=4)
    assert not (tmp_path / "candles" / "timeframe=1h").exists()
    got = upbit_cache.load("KRW-ETH", "1h", "2026-11-17", "2026-11-19", data_dir=tmp_path)
    assert_parity(got, truth(sim, "KRW-ETH", "1h", "2026-11-17", "2026-11-19"))
    weekly = upbit_cache.load("KRW-ETH", "6h", data_dir=tmp_path)
    assert len(weekly) == 4 * 4


def test_resample_errors_are_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["resample", "-t", "4h", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert (
        plain(result.stderr)
        == "upbit-cache: error: nothing stored to derive 4h from; fetch a finer timeframe first\n"
    )
    result = runner.invoke(
        app, ["resample", "-t", "6h", "--from", "4h", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "cannot derive 6h from 4h" in result.stderr


def test_load_can_fill_gaps_on_request(sim: SimulatorServer, tmp_path: Path) -> None:
    market = next(m.market for m in sim.history.markets if m.sparse)
    run_fetch(sim.url, tmp_path, [market], "1h", days=5)
    plain = upbit_cache.load(market, "1h", "2026-11-16", "2026-11-20", data_dir=tmp_path)
    grid = upbit_cache.load(market, "1h", "2026-11-16", "2026-11-20", data_dir=tmp_path, fill=True)
    assert len(plain) < 96
    assert grid["filled"].sum() == len(grid) - len(plain)
    real = grid[~grid["filled"]].drop(columns="filled").reset_index(drop=True)
    pd.testing.assert_frame_equal(real, plain)
    assert grid["time"].diff().dropna().nunique() == 1  # a regular grid
