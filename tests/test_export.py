"""`export`: any range, streamed market by market, against the simulator and the real CLI."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import FAST_RATE, NOW, candle_requests, plain, seed, truth

from upbit_cache.manager.export import EXPORT_SCHEMA, series
from upbit_cache.ranges import TimeRange
from upbit_cache.simulator import SimulatorServer
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

# Every test here runs export (or fetch) in processes of their own.
pytestmark = pytest.mark.slow

DAY = 86_400_000
PRICES = ["open", "high", "low", "close", "volume", "value"]


def export(
    sim: SimulatorServer, data_dir: Path, *args: str, stdin: bytes | None = None
) -> tuple[int, bytes, str]:
    """export in a real process, so stdout is exactly what a pipe gets."""
    command = [sys.executable, "-m", "upbit_cache", "export", *args]
    command += ["--api-url", sim.url, "--data-dir", str(data_dir), "--rate", str(FAST_RATE)]
    done = subprocess.run(command, input=stdin, capture_output=True, timeout=120)
    return done.returncode, done.stdout, plain(done.stderr.decode())


def read(data: bytes, fmt: str = "csv") -> pd.DataFrame:
    if fmt == "parquet":
        return pd.read_parquet(io.BytesIO(data))
    if fmt == "csv":
        frame = pd.read_csv(io.BytesIO(data))
    else:
        frame = pd.read_json(io.BytesIO(data), lines=True, dtype=False, precise_float=True)
    frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    return frame.astype({"time": "datetime64[ms, UTC]"})


def expected(
    sim: SimulatorServer, markets: list[str], tfs: list[str], lo: str, hi: str
) -> pd.DataFrame:
    parts = [
        truth(sim, m, tf, lo, hi).assign(market=m, timeframe=tf) for m in markets for tf in tfs
    ]
    return pd.concat(parts, ignore_index=True)[EXPORT_SCHEMA.names]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_a_range_market_by_market_each_ascending(
    sim: SimulatorServer, tmp_path: Path, fmt: str
) -> None:
    markets = ["KRW-ETH", "KRW-BTC"]  # the order given is the order written
    code, out, err = export(
        sim, tmp_path, *markets, "-t", "1h,4h", "--timerange", "20261110-20261113", "-f", fmt
    )
    assert code == 0, err
    got = read(out, fmt)
    want = expected(sim, markets, ["1h", "4h"], "2026-11-10", "2026-11-13")
    assert len(got) == 2 * 3 * (24 + 6)
    # Derived 4h sums are exact on Upbit's 8 decimals; the simulator sums in plain floats.
    pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-12)
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith(f"2 markets × 1h,4h, 180 rows, {len(out) / 1000:.1f} kB to stdout")
    )


def test_refresh_fetches_only_what_is_missing(sim: SimulatorServer, tmp_path: Path) -> None:
    code, _, err = export(
        sim, tmp_path, "KRW-BTC", "-t", "1h", "--days", "5", "-o", str(tmp_path / "a.csv")
    )
    assert code == 0, err
    assert candle_requests(sim) == 1
    sim.reset_stats()
    code, out, err = export(sim, tmp_path, "KRW-BTC", "-t", "1h", "--days", "3")
    assert code == 0, err
    assert candle_requests(sim) == 0 and "fetched 0 candles, 0 requests" in err
    assert len(read(out)) == 72
    assert (tmp_path / "a.csv").read_bytes().endswith(out.split(b"\n", 1)[1])
    sim.reset_stats()
    # Without a refresh "now" is this host's clock, whatever day it is: absolute times here.
    code, out, err = export(
        sim, tmp_path, "KRW-BTC", "-t", "1h", "--timerange", "20261101-", "--no-refresh"
    )
    assert code == 0, err
    assert sim.stats()["requests"] == 0  # the store only
    assert len(read(out)) == 5 * 24 and "fetched" not in err


def test_relative_times_count_back_from_upbits_clock(sim: SimulatorServer, tmp_path: Path) -> None:
    sim.clock.set("2026-11-20T06:30:00Z")
    code, out, err = export(
        sim, tmp_path, "KRW-BTC", "-t", "1h", "--since", "-2d", "--until", "-1h"
    )
    assert code == 0, err
    got = read(out)
    # From the period holding 06:30 two days ago to the last one closed by 05:30 today.
    assert got["time"].iloc[0] == pd.Timestamp("2026-11-18T06:00Z")
    assert got["time"].iloc[-1] == pd.Timestamp("2026-11-20T04:00Z")
    assert len(got) == 47


def test_fetch_takes_relative_times_and_timeranges(sim: SimulatorServer, tmp_path: Path) -> None:
    common = [
        "-t",
        "1h",
        "--api-url",
        sim.url,
        "--data-dir",
        str(tmp_path),
        "--rate",
        str(FAST_RATE),
    ]
    for when in (["--since", "-2d"], ["--timerange", "20261110-20261112"]):
        done = subprocess.run(
            [sys.executable, "-m", "upbit_cache", "fetch", "KRW-BTC", *common, *when],
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(b"1 market, 48 candles written"), done.stdout


def test_times_in_a_zone(sim: SimulatorServer, tmp_path: Path) -> None:
    args = ["KRW-BTC", "-t", "1d", "--timerange", "20261110-20261112"]
    code, utc, _ = export(sim, tmp_path, *args)
    code, seoul, err = export(sim, tmp_path, *args, "--tz", "Asia/Seoul", "-f", "jsonl")
    assert code == 0, err
    assert b'"time":"2026-11-10T09:00:00.000+09:00"' in seoul  # Upbit's days start 09:00 KST
    assert b"\nKRW-BTC,1d,2026-11-10T00:00:00.000Z," in utc
    pd.testing.assert_frame_equal(read(seoul, "jsonl"), read(utc))
    code, out, _ = export(sim, tmp_path, *args, "--tz", "Asia/Seoul", "-f", "parquet")
    assert str(pq.read_table(io.BytesIO(out)).schema.field("time").type) == "timestamp[ms, tz=UTC]"


def test_fill_gives_every_period_between_the_first_and_last_candle(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    # A sparse market with a gap across a month's start: where a 1m export's spans meet.
    month = to_ms("2026-11-01")
    lo, hi = month - 6 * 3_600_000, month + 6 * 3_600_000
    market = next(
        m.market
        for m in sim.history.markets
        if m.sparse and m.market.startswith("KRW-") and _gap_across(sim, m.market, lo, hi, month)
    )
    args = [
        market,
        "-t",
        "1m",
        "--since",
        str(pd.Timestamp(lo, unit="ms")),
        "--until",
        str(pd.Timestamp(hi, unit="ms")),
    ]
    code, sparse, err = export(sim, tmp_path, *args)
    assert code == 0, err
    code, out, err = export(sim, tmp_path, *args, "--fill", "--no-refresh")
    assert code == 0, err
    real, filled = read(sparse), read(out)
    grid = pd.date_range(real["time"].iloc[0], real["time"].iloc[-1], freq="1min", unit="ms")
    assert list(filled["time"]) == list(grid)
    made = ~filled["time"].isin(real["time"])
    assert made.sum() == len(grid) - len(real) > 0
    pd.testing.assert_frame_equal(filled[~made].reset_index(drop=True), real)
    previous_close = filled["close"].shift()
    for column in ("open", "high", "low", "close"):
        assert (filled.loc[made, column] == previous_close[made]).all()
    assert (filled.loc[made, ["volume", "value"]] == 0).all().all()
    assert (filled.loc[~made, "volume"] > 0).all()  # so volume 0 marks a made-up candle


def _gap_across(sim: SimulatorServer, market: str, lo: int, hi: int, at: int) -> bool:
    times = truth(sim, market, "1m", lo, hi)["time"]
    return (
        bool(len(times))
        and (times < pd.Timestamp(at, unit="ms", tz="UTC")).any()
        and pd.Timestamp(at, unit="ms", tz="UTC") not in set(times)
    )


def test_markets_from_a_file_or_stdin(sim: SimulatorServer, tmp_path: Path) -> None:
    listing = b"KRW-BTC  # the big one\n\nkrw-eth\n"
    code, out, err = export(
        sim, tmp_path, "--markets-file", "-", "-t", "1d", "--days", "3", stdin=listing
    )
    assert code == 0, err
    assert list(read(out)["market"].unique()) == ["KRW-BTC", "KRW-ETH"]
    (tmp_path / "markets.txt").write_bytes(listing)
    code, again, _ = export(
        sim, tmp_path, "--markets-file", str(tmp_path / "markets.txt"), "-t", "1d", "--days", "3"
    )
    assert again == out


def test_out_into_a_pipe_or_through_a_link(sim: SimulatorServer, tmp_path: Path) -> None:
    args = ["KRW-BTC", "-t", "1h", "--timerange", "20261110-20261112", "-q"]
    code, want, err = export(sim, tmp_path, *args)
    assert code == 0, err
    # A named pipe (as `>(cmd)` gives) is written in place: there is no file to replace.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    code, out, err = export(sim, tmp_path, *args, "--out", str(fifo))
    reader.join(timeout=60)
    assert (code, out, got) == (0, b"", [want]), err
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    # A link is written through: its target is replaced, the link stays.
    (tmp_path / "old.csv").write_bytes(b"old")
    (tmp_path / "latest.csv").symlink_to(tmp_path / "old.csv")
    code, _, err = export(sim, tmp_path, *args, "--out", str(tmp_path / "latest.csv"))
    assert code == 0, err
    assert (tmp_path / "latest.csv").is_symlink()
    assert (tmp_path / "old.csv").read_bytes() == want


def test_no_markets_means_every_market_of_the_quote(sim: SimulatorServer, tmp_path: Path) -> None:
    days = ["-t", "1d", "--timerange", "20261118-20261120"]
    code, out, err = export(sim, tmp_path, "--quote", "USDT", *days, "-q")
    assert code == 0 and err == ""
    listed = sorted(
        m.market
        for m in sim.history.markets
        if m.market.startswith("USDT-") and m.listed_ms < to_ms(NOW) - 2 * DAY
    )
    assert list(read(out)["market"].unique()) == listed
    code, again, _ = export(sim, tmp_path, "--quote", "USDT", *days, "--no-refresh")
    assert again == out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["KRW-NOPE", "--days", "2"], "Upbit does not list KRW-NOPE"),
        (["KRW-NOPE", "--days", "2", "--no-refresh"], "nothing stored for KRW-NOPE (1h)"),
        (["BTC", "--days", "2"], "invalid market code 'BTC'"),
        (["KRW-BTC"], "give the range"),
        (["KRW-BTC", "--since", "-1d", "--until", "-2d"], "is not before"),
        (["KRW-BTC", "--since", "2027-01-01"], "the range starts in the future"),
        (["KRW-BTC", "--timerange", "2025-01-01"], "cannot read time range"),
        (["KRW-BTC", "--days", "2", "--timerange", "20250101-"], "not both"),
        (["KRW-BTC", "--days", "2", "--tz", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
        (["KRW-BTC", "--days", "2", "-f", "xml"], "unknown format 'xml'"),
        (["KRW-BTC", "--days", "2", "--markets-file", "-"], "one of them"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    sim: SimulatorServer, tmp_path: Path, args: list[str], message: str
) -> None:
    code, out, err = export(sim, tmp_path, *args, stdin=b"KRW-ETH\n")
    assert (code, out) == (2, b""), err
    assert err.count("\n") == 1 and err.startswith("upbit-cache: error: ") and message in err, err
    assert candle_requests(sim) == 0


def test_reads_a_bounded_span_at_a_time(sim: SimulatorServer, tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    start, end = to_ms("2026-08-20"), to_ms("2026-11-10")
    seed(store, sim.history, "KRW-BTC", "1m", start, end)
    tables = list(series(store, "KRW-BTC", Timeframe.parse("1m"), TimeRange(start, end)))
    # A cold partition (a month of 1m) at most, however long the range.
    assert len(tables) == 4 and max(t.num_rows for t in tables) <= 31 * 1440
    times = np.concatenate([t["time"].to_numpy() for t in tables])
    assert len(times) == store.load_table("KRW-BTC", Timeframe.parse("1m")).num_rows
    assert (np.diff(times.astype(np.int64)) > 0).all()


@pytest.mark.parametrize("tz", ["UTC", "Asia/Seoul"])
def test_a_range_with_no_candles_is_an_empty_table(
    sim: SimulatorServer, tmp_path: Path, tz: str
) -> None:
    code, _, err = export(sim, tmp_path, "KRW-BTC", "-t", "1h", "--days", "2")
    assert code == 0, err
    empty = ("KRW-BTC", "-t", "1h", "--timerange", "20200101-20200102", "--no-refresh")
    code, out, err = export(sim, tmp_path, *empty, "--tz", tz)
    assert code == 0, err
    assert out.decode().splitlines() == ["market,timeframe,time,open,high,low,close,volume,value"]
    code, out, err = export(sim, tmp_path, *empty, "--tz", tz, "-f", "jsonl")
    assert (code, out) == (0, b""), err
    code, out, err = export(sim, tmp_path, *empty, "-f", "parquet", "-o", str(tmp_path / "e.pq"))
    assert code == 0 and len(pd.read_parquet(tmp_path / "e.pq")) == 0, err
