"""`screen-prep` and the `UpbitCache` object, against the simulator."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import FAST_RATE, NOW, candle_requests, plain, truth
from typer.testing import CliRunner

import upbit_cache
from upbit_cache.cli import app
from upbit_cache.simulator import SimulatorServer
from upbit_cache.times import to_ms

runner = CliRunner()
MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP"]
COLUMNS = ["market", "time", "open", "high", "low", "close", "volume", "value"]


def screen(sim: SimulatorServer, data_dir: Path, *args: str) -> tuple[int, bytes, str]:
    """screen-prep in a real process, so stdout is exactly what a pipe gets."""
    command = [sys.executable, "-m", "upbit_cache", "screen-prep", *args]
    command += ["--api-url", sim.url, "--data-dir", str(data_dir), "--rate", str(FAST_RATE)]
    done = subprocess.run(command, capture_output=True, timeout=120)
    return done.returncode, done.stdout, plain(done.stderr.decode())


def read(data: bytes, fmt: str) -> pd.DataFrame:
    if fmt == "csv":
        frame = pd.read_csv(io.BytesIO(data))
    elif fmt == "jsonl":
        frame = pd.read_json(io.BytesIO(data), lines=True, dtype=False)
    else:
        return pd.read_parquet(io.BytesIO(data))
    frame["time"] = pd.to_datetime(frame["time"], utc=True).astype("datetime64[ms, UTC]")
    return frame


def expected(sim: SimulatorServer, markets: list[str], days: int) -> pd.DataFrame:
    start = to_ms(NOW) - days * 86_400_000
    parts = [truth(sim, m, "1h", start, NOW).assign(market=m) for m in sorted(markets)]
    return pd.concat(parts, ignore_index=True)[COLUMNS]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_stdout_carries_the_table_and_nothing_else(
    sim: SimulatorServer, tmp_path: Path, fmt: str
) -> None:
    code, out, err = screen(sim, tmp_path, *MARKETS, "--days", "3", "--format", fmt, "--out", "-")
    assert code == 0, err
    got = read(out, fmt)
    assert list(got.columns) == COLUMNS
    want = expected(sim, MARKETS, 3)
    pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-12)
    assert "3 markets, 216 rows, 3 requests, 0 429s" in err


def test_out_file_format_from_its_name_and_round_trip(sim: SimulatorServer, tmp_path: Path) -> None:
    target = tmp_path / "screen.parquet"
    result = runner.invoke(
        app,
        [
            "screen-prep",
            *MARKETS,
            "--days",
            "3",
            "--out",
            str(target),
            "--api-url",
            sim.url,
            "--data-dir",
            str(tmp_path / "data"),
            "--rate",
            str(FAST_RATE),
        ],
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    got = pd.read_parquet(target)
    pd.testing.assert_frame_equal(got, expected(sim, MARKETS, 3))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_hour_later_refresh_is_one_request_per_market(sim: SimulatorServer, tmp_path: Path) -> None:
    code, _, err = screen(sim, tmp_path, *MARKETS, "--days", "30", "--out", str(tmp_path / "a.csv"))
    assert code == 0, err
    sim.reset_stats()
    code, _, err = screen(sim, tmp_path, *MARKETS, "--days", "30", "--out", str(tmp_path / "a.csv"))
    assert candle_requests(sim) == 0
    sim.clock.advance(3600)
    sim.reset_stats()
    code, _, err = screen(sim, tmp_path, *MARKETS, "--days", "30", "--out", str(tmp_path / "b.csv"))
    assert code == 0, err
    assert candle_requests(sim) == len(MARKETS)
    assert sim.stats()["by_path"]["/v1/market/all"] == 1  # one market list for the whole run
    got = pd.read_csv(tmp_path / "b.csv")
    assert pd.Timestamp(got["time"].max()) == pd.Timestamp(NOW)
    assert len(got) == 3 * 720


@pytest.mark.slow
def test_no_refresh_reads_the_store_only(sim: SimulatorServer, tmp_path: Path) -> None:
    screen(sim, tmp_path, *MARKETS, "--days", "2", "--out", str(tmp_path / "a.csv"))
    sim.reset_stats()
    code, out, err = screen(sim, tmp_path, "--no-refresh", "--days", "2", "-f", "csv")
    assert code == 0, err
    assert sim.stats()["requests"] == 0
    assert sorted(set(read(out, "csv")["market"])) == MARKETS


@pytest.mark.slow
def test_top_and_min_value_keep_the_most_traded(sim: SimulatorServer, tmp_path: Path) -> None:
    screen(sim, tmp_path, *MARKETS, "--days", "2", "--out", str(tmp_path / "a.csv"))
    full = pd.read_csv(tmp_path / "a.csv", parse_dates=["time"])
    last_day = full[full["time"] >= pd.Timestamp(NOW) - pd.Timedelta(days=1)]
    turnover = last_day.groupby("market")["value"].sum().sort_values(ascending=False)
    code, out, _ = screen(sim, tmp_path, *MARKETS, "--days", "2", "--top", "2")
    assert code == 0
    assert sorted(set(read(out, "csv")["market"])) == sorted(turnover.index[:2])
    floor = float(turnover.iloc[1])
    code, out, err = screen(sim, tmp_path, *MARKETS, "--days", "2", "--min-value", str(floor))
    assert sorted(set(read(out, "csv")["market"])) == sorted(turnover.index[:2])
    assert "1 market left out by --top/--min-value" in err


@pytest.mark.slow
def test_include_open_adds_the_candle_in_progress(sim: SimulatorServer, tmp_path: Path) -> None:
    sim.clock.set("2026-11-20T10:30:00Z")
    code, out, err = screen(
        sim, tmp_path, "KRW-BTC", "--days", "1", "-f", "jsonl", "--include-open"
    )
    assert code == 0, err
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert [r["closed"] for r in lines[-2:]] == [True, False]
    assert lines[-1]["time"].startswith("2026-11-20T10:00:00")
    assert "1 request for open candles" in err


@pytest.mark.slow
def test_less_history_is_included_and_said(sim: SimulatorServer, tmp_path: Path) -> None:
    recent = next(
        m.market
        for m in sim.history.markets
        if to_ms(NOW) - 30 * 86_400_000 < m.listed_ms < to_ms(NOW) and m.market.startswith("KRW-")
    )
    code, out, err = screen(sim, tmp_path, "KRW-BTC", recent, "--days", "30")
    assert code == 0, err
    assert set(read(out, "csv")["market"]) == {"KRW-BTC", recent}
    assert f"less history than asked: {recent} (" in err


def test_top_names_less_history_only_among_its_markets(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    recent = next(
        m.market
        for m in sim.history.markets
        if to_ms(NOW) - 10 * 86_400_000 < m.listed_ms < to_ms(NOW) - 86_400_000
        and m.market.startswith("KRW-")
    )
    args = ["screen-prep", "KRW-BTC", "KRW-ETH", recent, "--days", "10", "--top", "2"]
    args += ["--api-url", sim.url, "--data-dir", str(tmp_path), "--rate", str(FAST_RATE)]
    for run in ("built", "kept"):  # the kept table's summary says the same
        done = runner.invoke(app, args)
        assert done.exit_code == 0, done.stderr
        assert set(read(done.stdout_bytes, "csv")["market"]) == {"KRW-BTC", "KRW-ETH"}, run
        err = plain(done.stderr)
        assert recent not in err and "less history" not in err, (run, err)
        assert "1 market left out by --top/--min-value" in err
    # Kept in, it is named.
    done = runner.invoke(app, [*args[:-2], "--top", "3"])
    assert f"less history than asked: {recent} (" in plain(done.stderr)


@pytest.mark.slow
def test_verbose_prints_the_memory_hit_rate(sim: SimulatorServer, tmp_path: Path) -> None:
    code, _, err = screen(
        sim, tmp_path, *MARKETS, "--days", "2", "-v", "--out", str(tmp_path / "x.csv")
    )
    assert code == 0
    # Refresh wrote every partition, so the export read none of them from disk.
    assert "memory: 3 hits, 0 misses (100% hit rate)" in err
    lines = {line.split()[0]: line for line in err.splitlines() if line.startswith("  ")}
    assert " 3 requests, p50 " in lines["memory"] and "3 tables" in lines["memory"]
    assert " 0 requests; 0 tables" in lines["hot"]
    assert "pages" in lines["upbit"] and "of candles served without asking Upbit" in err


@pytest.mark.slow
def test_bad_input(sim: SimulatorServer, tmp_path: Path) -> None:
    code, out, err = screen(sim, tmp_path, "KRW-BTC", "--format", "xml")
    assert code == 2 and out == b"" and "unknown format 'xml'" in err
    code, out, err = screen(sim, tmp_path, "KRW-BTC", "--quote", "KRW")
    assert code == 2 and "not both" in err
    code, out, err = screen(sim, tmp_path, "--no-refresh", "--quote", "BTC")
    assert code == 2 and "nothing stored for BTC-* 1h" in err


def test_cache_get_memory_then_disk_then_upbit(sim: SimulatorServer, tmp_path: Path) -> None:
    cache = upbit_cache.UpbitCache(tmp_path, api_url=sim.url, rate=FAST_RATE)
    frame = cache.get("KRW-BTC", "1h", "2026-11-10", "2026-11-12")
    assert candle_requests(sim) == 1
    pd.testing.assert_frame_equal(frame, truth(sim, "KRW-BTC", "1h", "2026-11-10", "2026-11-12"))
    hits, misses = cache.stats.hits, cache.stats.misses
    again = cache.get("KRW-BTC", "1h", "2026-11-11", "2026-11-12")  # inside: memory only
    assert candle_requests(sim) == 1
    assert (cache.stats.hits, cache.stats.misses) == (hits + 1, misses)
    assert len(again) == 24
    fresh = upbit_cache.UpbitCache(tmp_path, api_url=sim.url, rate=FAST_RATE)
    fresh.get("KRW-BTC", "1h", "2026-11-10", "2026-11-12")  # a new process: disk
    assert candle_requests(sim) == 1
    assert fresh.stats.misses == 1
    wider = cache.get("KRW-BTC", "1h", "2026-11-08", "2026-11-12")  # only the missing two days
    assert candle_requests(sim) == 2
    assert len(wider) == 4 * 24
    assert cache.get("KRW-BTC", "4h", "2026-11-08", "2026-11-12")["time"].is_unique
    assert candle_requests(sim) == 2  # derived from the stored 1h


@pytest.mark.slow
def test_nothing_new_answers_from_the_kept_table(sim: SimulatorServer, tmp_path: Path) -> None:
    code, first, err = screen(sim, tmp_path, *MARKETS, "--days", "3", "-f", "csv")
    assert code == 0 and "kept table" not in err
    sim.reset_stats()
    code, again, err = screen(sim, tmp_path, *MARKETS, "--days", "3", "-f", "csv")
    assert code == 0 and "0 requests (nothing new: kept table)" in err
    assert again == first
    assert sim.stats()["candle_requests"] == 0
    # Another writer touched a market: the table is built again, not served stale.
    result = runner.invoke(
        app,
        [
            "fetch",
            "KRW-ETH",
            "-t",
            "1h",
            "--days",
            "5",
            "--api-url",
            sim.url,
            "--data-dir",
            str(tmp_path),
            "--rate",
            str(FAST_RATE),
        ],
    )
    assert result.exit_code == 0
    code, rebuilt, err = screen(sim, tmp_path, *MARKETS, "--days", "3", "-f", "csv")
    assert "kept table" not in err and rebuilt == first
    sim.clock.advance(3600)
    code, later, err = screen(sim, tmp_path, *MARKETS, "--days", "3", "-f", "csv")
    assert "kept table" not in err and later != first
    assert candle_requests(sim) == len(MARKETS) + 1  # the new hour, plus KRW-ETH's fetch


@pytest.mark.slow
@pytest.mark.parametrize("tf", ["2h", "4h"])
def test_a_derived_timeframe_has_its_rows_on_the_first_run(
    sim: SimulatorServer, tmp_path: Path, tf: str
) -> None:
    if tf == "4h":  # after a 1h fetch, 4h is derived from the stored 1h, not fetched
        code, _, err = screen(sim, tmp_path, "KRW-BTC", "KRW-ETH", "-t", "1h", "--days", "5")
        assert code == 0, err
    code, out, err = screen(sim, tmp_path, "KRW-BTC", "KRW-ETH", "-t", tf, "--days", "5")
    assert code == 0, err
    first = read(out, "csv")
    step = int(tf[0])
    assert len(first) == 2 * 5 * 24 // step and err.startswith("2 markets, "), err
    code, again, _ = screen(sim, tmp_path, "KRW-BTC", "KRW-ETH", "-t", tf, "--days", "5")
    pd.testing.assert_frame_equal(read(again, "csv"), first)
