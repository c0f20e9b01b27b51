"""1y candles: Upbit's /v1/candles/years, and years derived from months, with parity."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from conftest import NOW, candle_requests, run_fetch, truth
from typer.testing import CliRunner

import upbit_cache
from upbit_cache.cli import app
from upbit_cache.simulator import SimulatorServer
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

YEAR = Timeframe.parse("1y")
MARKETS = ["KRW-BTC", "KRW-CYP"]  # KRW-CYP was listed in June 2021: its first year is partial
SINCE = to_ms("2015-01-01")


def assert_parity(got: pd.DataFrame, native: pd.DataFrame) -> None:
    """Equal to Upbit's own candles: OHLC and times exactly; sums to float rounding."""
    assert len(got) == len(native) > 0
    exact = ["time", "open", "high", "low", "close", "timestamp"]
    pd.testing.assert_frame_equal(got[exact], native[exact])
    pd.testing.assert_frame_equal(got[["volume", "value"]], native[["volume", "value"]], rtol=1e-9)


def test_native_years_are_one_page_and_the_closed_years_only(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    report = run_fetch(sim.url, tmp_path, MARKETS, "1y", start=SINCE)
    assert report.plan is not None and report.plan.base == YEAR
    assert candle_requests(sim) == len(MARKETS)
    assert set(sim.stats()["by_path"]) == {"/v1/market/all", "/v1/candles/years"}
    for market in MARKETS:
        got = CandleStore(tmp_path).load(market, YEAR)
        assert_parity(got, truth(sim, market, "1y", SINCE, NOW))
        assert got["time"].iloc[-1] == pd.Timestamp("2025-01-01", tz="UTC")  # 2026 is open
    assert CandleStore(tmp_path).load("KRW-CYP", YEAR)["time"].iloc[0].year == 2021


def test_years_derived_from_months_equal_native_years(sim: SimulatorServer, tmp_path: Path) -> None:
    # A planned fetch asks for months only and derives the years from them.
    report = run_fetch(sim.url, tmp_path / "planned", MARKETS, "1M,1y", start=SINCE)
    assert report.plan is not None and report.plan.base.name == "1M"
    assert set(sim.stats()["by_path"]) == {"/v1/market/all", "/v1/candles/months"}
    # An on-the-fly `load` from stored months, and `resample`, do the same.
    months = tmp_path / "months"
    run_fetch(sim.url, months, MARKETS, "1M", start=SINCE)
    for market in MARKETS:
        native = truth(sim, market, "1y", SINCE, NOW)
        assert_parity(CandleStore(tmp_path / "planned").load(market, YEAR), native)
        assert_parity(upbit_cache.load(market, "1y", "2015-01-01", NOW, data_dir=months), native)
    result = CliRunner().invoke(app, ["resample", *MARKETS, "-t", "1y", "--data-dir", str(months)])
    assert result.exit_code == 0, result.stderr
    assert "1y from 1M" in result.stdout
    for market in MARKETS:
        assert_parity(CandleStore(months).load(market, YEAR), truth(sim, market, "1y", SINCE, NOW))
    info = CliRunner().invoke(
        app, ["info", "KRW-BTC", "-t", "1y", "--json", "--data-dir", str(tmp_path / "planned")]
    )
    assert info.exit_code == 0, info.stderr
    series = json.loads(info.stdout)["series"][0]
    assert series["candles"] == len(truth(sim, "KRW-BTC", "1y", SINCE, NOW))
    assert [b["base"] for b in series["bases"]] == ["1M"]
