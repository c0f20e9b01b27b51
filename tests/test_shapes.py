"""The shapes users already have: freqtrade's files (read back by freqtrade's own data
handler), ccxt's `fetch_ohlcv` and pyupbit's `get_ohlcv` (each beside the real library's
answer from the same simulator), and many markets at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import ccxt
import pandas as pd
import pytest
import pyupbit
from conftest import FAST_RATE, candle_requests, plain, truth

from upbit_cache import UpbitCache
from upbit_cache.compat import get_ohlcv
from upbit_cache.errors import UsageError
from upbit_cache.simulator import SimulatorServer
from upbit_cache.times import to_ms

LO, HI = "2026-11-10T00:00:00Z", "2026-11-19T00:00:00Z"


def cli(sim: SimulatorServer, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "upbit_cache", *args, "--data-dir", str(data_dir)]
    if args[0] in ("fetch", "export", "screen-prep", "verify"):  # the commands that ask Upbit
        command += ["--api-url", sim.url, "--rate", str(FAST_RATE)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_freqtrade_reads_the_exported_folder(sim: SimulatorServer, tmp_path: Path) -> None:
    from freqtrade.data.history.datahandlers.featherdatahandler import FeatherDataHandler
    from freqtrade.enums import CandleType, TradingMode

    out = tmp_path / "user_data" / "data" / "upbit"
    out.parent.mkdir(parents=True)
    done = cli(sim, tmp_path / "data", "export", "KRW-BTC", "KRW-ETH", "-t", "1h,1d,1M")
    assert done.returncode == 2 and "give the range" in done.stderr  # no window: refused
    args = ["KRW-BTC", "KRW-ETH", "-t", "1h,1M", "--since", "2026-08-01", "--until", HI]
    done = cli(sim, tmp_path / "data", "export", *args, "--format", "freqtrade", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "4 freqtrade files in" in plain(done.stderr)
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "BTC_KRW-1Mo.feather",
        "BTC_KRW-1h.feather",
        "ETH_KRW-1Mo.feather",
        "ETH_KRW-1h.feather",
    ]
    handler = FeatherDataHandler(out)
    found = set(handler.ohlcv_get_available_data(out, TradingMode.SPOT))
    assert found == {
        (p, tf, CandleType.SPOT) for p in ("BTC/KRW", "ETH/KRW") for tf in ("1h", "1M")
    }
    for market, pair in (("KRW-BTC", "BTC/KRW"), ("KRW-ETH", "ETH/KRW")):
        for tf in ("1h", "1M"):
            got = handler.ohlcv_load(pair, tf, CandleType.SPOT, fill_missing=False)
            want = truth(sim, market, tf, "2026-08-01T00:00:00Z", HI)
            want = want.rename(columns={"time": "date"})[list(got.columns)]
            pd.testing.assert_frame_equal(got.reset_index(drop=True), want)
            assert got["date"].dtype == "datetime64[ms, UTC]"
    # The raw file: freqtrade's columns and types, nothing else.
    raw = pd.read_feather(out / "BTC_KRW-1h.feather")
    assert list(raw.columns) == ["date", "open", "high", "low", "close", "volume"]
    assert [str(t) for t in raw.dtypes] == ["datetime64[ms, UTC]"] + ["float64"] * 5
    # Not a folder: refused before anything is fetched.
    before = candle_requests(sim)
    for bad in ("-", str(tmp_path / "nowhere" / "upbit"), str(out / "BTC_KRW-1h.feather")):
        done = cli(sim, tmp_path / "data", "export", *args, "-f", "freqtrade", "-o", bad)
        assert done.returncode == 2, done.stderr
        assert "freqtrade" in done.stderr and "Traceback" not in done.stderr
    assert candle_requests(sim) == before


def ccxt_upbit(sim: SimulatorServer) -> Any:
    exchange = ccxt.upbit({"enableRateLimit": False})
    exchange.urls["api"] = {"public": sim.url, "private": sim.url}  # sign() joins /v1/...
    return exchange


def test_fetch_ohlcv_is_ccxts(sim: SimulatorServer, tmp_path: Path) -> None:
    exchange = ccxt_upbit(sim)
    since = to_ms("2026-11-15T00:00:00Z")
    with UpbitCache(tmp_path, api_url=sim.url, rate=FAST_RATE) as cache:
        for tf, limit in (("1h", 50), ("15m", 120), ("1d", 3)):
            theirs = exchange.fetch_ohlcv("BTC/KRW", tf, since=since, limit=limit)
            ours = cache.fetch_ohlcv("BTC/KRW", tf, since=since, limit=limit)
            assert ours == theirs and len(ours) == limit
            assert all(isinstance(row[0], int) for row in ours)
        # Not aligned: since is inclusive, the first candle starts at or after it.
        theirs = exchange.fetch_ohlcv("ETH/KRW", "1h", since=since + 1_800_000, limit=5)
        assert cache.fetch_ohlcv("ETH/KRW", "1h", since=since + 1_800_000, limit=5) == theirs
        before = candle_requests(sim)
        assert cache.fetch_ohlcv("BTC/KRW", "1h", since=since, limit=50) == ours_1h(cache, since)
        assert candle_requests(sim) == before  # the second time: from the store
        newest = cache.fetch_ohlcv("BTC/KRW", "1h", limit=3)
        # ccxt's newest page ends in the candle still in progress; ours in the last closed.
        assert newest == exchange.fetch_ohlcv("BTC/KRW", "1h", limit=4)[:3]
        with pytest.raises(UsageError, match="BASE/QUOTE"):
            cache.fetch_ohlcv("KRW-BTC", "1h")


def ours_1h(cache: UpbitCache, since: int) -> list[list[float]]:
    frame = cache.load("KRW-BTC", "1h", since, since + 50 * 3_600_000)
    times = (frame["time"].astype("int64")).tolist()
    cols = ["open", "high", "low", "close", "volume"]
    return [[t, *v] for t, v in zip(times, frame[cols].to_numpy().tolist(), strict=True)]


def test_get_ohlcv_is_pyupbits(
    sim: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = pyupbit.quotation_api._call_public_api

    def to_simulator(url: str, **params: Any) -> Any:  # pyupbit hard-codes Upbit's host
        return real(url.replace("https://api.upbit.com", sim.url), **params)

    monkeypatch.setattr(pyupbit.quotation_api, "_call_public_api", to_simulator)
    with UpbitCache(tmp_path, api_url=sim.url, rate=FAST_RATE) as cache:
        cases = [("minute60", 250, "2026-11-19 00:00:00"), ("minute15", 30, "2026-11-18 07:30:00")]
        cases += [("day", 20, "2026-11-19"), ("minute240", 10, "2026-11-18 09:10:00")]
        for interval, count, to in cases:
            theirs = pyupbit.get_ohlcv("KRW-BTC", interval=interval, count=count, to=to, period=0)
            ours = get_ohlcv("KRW-BTC", interval=interval, count=count, to=to, cache=cache)
            assert theirs is not None and len(ours) == count
            pd.testing.assert_frame_equal(ours, theirs)
        before = candle_requests(sim)
        get_ohlcv("KRW-BTC", "minute60", 250, "2026-11-19 00:00:00", cache=cache)
        assert candle_requests(sim) == before
        with pytest.raises(UsageError, match="unknown interval"):
            get_ohlcv("KRW-BTC", interval="hour", cache=cache)


def test_many_markets_at_once(sim: SimulatorServer, tmp_path: Path) -> None:
    markets = ["KRW-ETH", "KRW-BTC", "KRW-XRP"]
    with UpbitCache(tmp_path, api_url=sim.url, rate=FAST_RATE) as cache:
        long = cache.get(markets, "1h", LO, HI)
        asked = candle_requests(sim)
        singles = {m: cache.get(m, "1h", LO, HI) for m in markets}
        assert candle_requests(sim) == asked  # one fetch filled them all
        want = pd.concat([f.assign(market=m) for m, f in singles.items()], ignore_index=True)[
            ["market", *singles["KRW-BTC"].columns]
        ]
        pd.testing.assert_frame_equal(long, want, check_dtype=False)
        assert list(long["market"].unique()) == markets
        split = cache.load(markets, "1h", LO, HI, as_dict=True)
        assert list(split) == markets
        for m in markets:
            pd.testing.assert_frame_equal(split[m], singles[m])
            pd.testing.assert_frame_equal(
                cache.load(m, "1h", LO, HI, index=True), singles[m].set_index("time")
            )
        indexed = cache.load(markets, "1h", LO, HI, index=True)
        assert isinstance(indexed.index, pd.DatetimeIndex) and indexed.index.name == "time"
        assert str(indexed.index.tz) == "UTC" and len(indexed) == len(long)
        with pytest.raises(UsageError):
            cache.load([], "1h")


@pytest.mark.slow
def test_every_summary_has_a_json_document(sim: SimulatorServer, tmp_path: Path) -> None:
    import json

    data = tmp_path / "data"
    window = ["--since", "2026-11-17", "--until", "2026-11-19"]

    def document(*args: str) -> dict[str, Any]:
        done = cli(sim, data, *args, "--json")
        assert done.returncode == 0, done.stderr
        found: dict[str, Any] = json.loads(done.stdout)  # one object, nothing else on stdout
        assert found["version"] >= 1
        return found

    fetched = document("fetch", "KRW-BTC", "KRW-ETH", "-t", "1m", *window)
    assert fetched["command"] == "fetch" and fetched["candles"] == 2 * 2 * 1440
    assert {s["market"] for s in fetched["series"]} == {"KRW-BTC", "KRW-ETH"}
    assert fetched["requests"] == candle_requests(sim)
    derived = document("resample", "KRW-BTC", "-t", "1h", "--from", "1m")
    assert derived["command"] == "resample" and derived["candles"] == 48
    out = tmp_path / "rows.csv"
    exported = document("export", "KRW-BTC", "-t", "1h", *window, "-o", str(out))
    assert exported["rows"] == 48 and exported["fetch"]["requests"] == 0
    assert exported["bytes"] == out.stat().st_size
    folder = tmp_path / "ft"
    exported = document(
        "export", "KRW-BTC", "-t", "1h", *window, "-f", "freqtrade", "-o", str(folder)
    )
    assert exported["format"] == "freqtrade"
    assert exported["files"] == [str(folder / "BTC_KRW-1h.feather")]
    screened = document("screen-prep", "KRW-BTC", "-t", "1h", "--days", "1", "-o", str(out))
    assert screened["command"] == "screen-prep" and screened["rows"] == 24
    pruned = document("prune", "--dry-run")
    assert pruned["command"] == "prune" and pruned["dry_run"] is True
    assert document("verify")["healthy"] is True
    assert document("info")["series"]
    done = cli(sim, data, "export", "KRW-BTC", "-t", "1h", *window, "--json")
    assert done.returncode == 2 and "give --out FILE" in done.stderr and not done.stdout
