"""The data dir on S3 (moto's server on loopback): every command, and many writers at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest
from conftest import DEADLINE, FAST_RATE, NOW, Procs, S3Server, read_until, truth, wait_for
from typer.testing import CliRunner

from upbit_cache import UpbitCache
from upbit_cache.cli import app
from upbit_cache.simulator.server import SimulatorServer
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe

MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP"]


def cli(sim: SimulatorServer, data_dir: str, *args: str) -> tuple[int, str]:
    done = CliRunner().invoke(
        app, [*args, "--data-dir", data_dir, "--api-url", sim.url, "--rate", str(FAST_RATE)]
    )
    return done.exit_code, done.output


def cli_local(data_dir: str, *args: str) -> tuple[int, str]:
    done = CliRunner().invoke(app, [*args, "--data-dir", data_dir])
    return done.exit_code, done.output


def dataset(uri: str) -> pd.DataFrame:
    """The whole `candles/` tree as a plain Hive reader sees it."""
    fs, path = pafs.FileSystem.from_uri(uri)
    found = ds.dataset(f"{path}/candles", filesystem=fs, format="parquet", partitioning="hive")
    return found.to_table().to_pandas()


def same(stored: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(
        stored.reset_index(drop=True), expected.reset_index(drop=True), rtol=1e-9
    )


@pytest.mark.slow
def test_every_command_on_s3(sim: SimulatorServer, s3: S3Server, tmp_path: Path) -> None:
    data = s3.new_dir()
    code, out = cli(sim, data, "fetch", *MARKETS, "-t", "1h,1m", "--days", "2")
    assert code == 0, out
    code, out = cli(sim, data, "fetch", *MARKETS[:2], "-t", "1h", "--days", "40")
    assert code == 0, out
    store = CandleStore(data)
    for market in MARKETS[:2]:
        got = store.load(market, Timeframe.parse("1h"))
        same(got, truth(sim, market, "1h", got["time"].iloc[0].value // 10**6, NOW))
    assert not [k for k in s3.keys(data) if k.endswith(".tmp")]

    code, out = cli_local(data, "resample", *MARKETS[:2], "-t", "4h")
    assert code == 0, out
    four = store.load("KRW-BTC", Timeframe.parse("4h"))
    same(four, truth(sim, "KRW-BTC", "4h", four["time"].iloc[0].value // 10**6, NOW))

    kept = tmp_path / "screen.csv"
    for _ in range(2):  # the second one from the kept table in the bucket
        code, out = cli(sim, data, "screen-prep", *MARKETS, "--days", "2", "-o", str(kept))
        assert code == 0, out
    assert any("/screens/" in k for k in s3.keys(data))
    assert len(pd.read_csv(kept)) == 3 * 48
    code, out = cli(sim, data, "screen-prep", *MARKETS, "--days", "2", "-o", f"{data}/out.parquet")
    assert code == 0, out
    assert (
        len(pd.read_parquet(f"{data}/out.parquet".removeprefix("s3://"), filesystem=fs_of(data)))
        == 144
    )

    code, out = cli_local(data, "info", "--json")
    assert code == 0, out
    assert json.loads(out)["totals"]["series"] == 3 + 3 + 2  # 1h, 1m, 4h
    # 1h: the two days derived from 1m by the first fetch, the older ones native (the second).
    series = json.loads(out)["series"]
    [btc] = [s for s in series if s["timeframe"] == "1h" and s["market"] == "KRW-BTC"]
    assert [(r["base"], r["start"], r["end"]) for r in btc["bases"]] == [
        ("native", "2026-10-11T00:00:00Z", "2026-11-18T00:00:00Z"),
        ("1m", "2026-11-18T00:00:00Z", "2026-11-20T00:00:00Z"),
    ]

    code, out = cli_local(data, "prune", "--compact-after", "1d", "--as-of", NOW)
    assert code == 0, out
    assert any("/cold-" in k for k in s3.keys(data))
    code, out = cli_local(data, "verify")
    assert code == 0, out
    rows = dataset(data)
    assert set(rows["timeframe"]) == {"1m", "1h", "4h"}
    assert not rows.duplicated(["timeframe", "market", "time"]).any()
    got = store.load("KRW-BTC", Timeframe.parse("1h"))
    same(got, truth(sim, "KRW-BTC", "1h", got["time"].iloc[0].value // 10**6, NOW))


def fs_of(uri: str) -> pafs.FileSystem:
    return pafs.FileSystem.from_uri(uri)[0]


def test_live_appends_closes_to_s3(sim: SimulatorServer, s3: S3Server) -> None:
    data = s3.new_dir()
    cache = UpbitCache(data, api_url=sim.url, ws_url=sim.ws_url)

    async def watch() -> int:
        closes, advanced = 0, False
        stream = cache.live(["KRW-BTC"], "1m")
        async with contextlib.aclosing(stream):
            async for item in stream:
                if item.event.kind == "snapshot" and not advanced:
                    advanced = True
                    sim.clock.advance(5 * 60)
                closes += item.event.kind == "close"
                if closes >= 3:
                    break
        return closes

    assert asyncio.run(asyncio.wait_for(watch(), 60)) >= 3
    stored = CandleStore(data).load("KRW-BTC", Timeframe.parse("1m"))
    assert len(stored) >= 200 and stored["time"].is_unique
    assert stored["time"].iloc[-1] >= pd.Timestamp(NOW) + pd.Timedelta(minutes=2)


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("nope://bucket/x", "cannot use nope://bucket/x as a location"),
        ("s3://", "cannot use s3:// as a location"),
    ],
)
def test_a_location_that_cannot_be_served_is_one_line(location: str, message: str) -> None:
    code, out = cli_local(location, "info")
    assert code == 2 and message in out and "Traceback" not in out
    assert not Path("nope:").exists()


def writer(
    procs: Procs, sim: SimulatorServer, data: str, runtime: Path, *args: str
) -> subprocess.Popen[str]:
    """A writer process as another host would run it: its own rate budget, no local lock in
    common (the writer locks of an S3 data dir are lease objects in the bucket)."""
    env = {**os.environ, "UPBIT_CACHE_RUNTIME_DIR": str(runtime)}
    command = [sys.executable, "-m", "upbit_cache", *args, "--data-dir", data]
    if args[0] in ("fetch", "live"):
        command += ["--api-url", sim.url]
    if args[0] == "fetch":
        command += ["--rate", str(FAST_RATE)]
    if args[0] == "live":
        command += ["--ws-url", sim.ws_url, "--jsonl"]
    return procs.popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_many_writers_with_kills_lose_and_double_nothing(
    sim: SimulatorServer, s3: S3Server, tmp_path: Path, procs: Procs
) -> None:
    """fetch, resample, prune and live at once on overlapping series, two of them killed."""
    data = s3.new_dir("many")
    jobs = [
        ["fetch", "KRW-BTC", "KRW-ETH", "-t", "1m", "--days", "3"],
        ["fetch", "KRW-ETH", "KRW-XRP", "-t", "1m,1h", "--days", "3"],
        ["fetch", "KRW-BTC", "KRW-XRP", "-t", "1h", "--days", "60"],
        ["fetch", "KRW-BTC", "KRW-ETH", "KRW-XRP", "-t", "1m", "--days", "2"],
        ["resample", *MARKETS, "-t", "15m", "--from", "1m"],
        ["prune", "--compact-after", "1d", "--as-of", NOW],
    ]
    rng = random.Random(7)
    for rounds in range(2):  # first with kills in the middle, then to the end
        runs = [
            writer(procs, sim, data, tmp_path / f"host{i}", *job) for i, job in enumerate(jobs[:4])
        ]
        # Something to derive (`resample --from 1m` refuses a store with no 1m) and to compact
        # before they start, with fetches still running.
        wait_for(
            lambda: all(CandleStore(data).fetched(Timeframe.parse("1m"), m) for m in MARKETS),
            "the first 1m pages of every market",
            running=runs,
            interval=0.5,  # each look is a few requests to the bucket the writers share
        )
        runs += [
            writer(procs, sim, data, tmp_path / f"host{i}", *job) for i, job in enumerate(jobs[4:])
        ]
        live = writer(procs, sim, data, tmp_path / "live", "live", "KRW-BTC", "-t", "1m,15m")
        if rounds == 0:
            # Not a wait: the kills land wherever the runs are by then (any moment is safe).
            time.sleep(0.4)
            for run in rng.sample(runs, 2):
                run.send_signal(signal.SIGKILL)
        for run in runs:
            _out, err = run.communicate(timeout=240)
            assert run.returncode in (0, -signal.SIGKILL), err
        # Streaming (its first snapshot shown), so a SIGTERM is its orderly stop, not a kill
        # before Python has even set up its handler.
        read_until(live, lambda lines: len(lines) > 0, "live's first snapshot")
        live.send_signal(signal.SIGTERM)
        _out, err = live.communicate(timeout=DEADLINE)
        assert live.returncode == 143, err  # its orderly stop, then the signal's status
    for job in jobs[-2:]:  # what the first round's kills and races left, done once more
        code, out = cli_local(data, *job)
        assert code == 0, out
    rows = dataset(data)
    assert not rows.duplicated(["timeframe", "market", "time"]).any()
    assert (rows["timeframe"] == "15m").any() and len(s3.keys(data + "/candles")) > 0
    assert any("/cold-" in k for k in s3.keys(data))  # prune compacted
    assert not any(k.endswith(".lock") for k in s3.keys(data))  # every lease released
    code, out = cli_local(data, "verify")
    assert code == 0, out  # no record claims a row that is not stored
    store = CandleStore(data)
    for tf, markets, days in (("1m", MARKETS, 3), ("1h", ["KRW-BTC", "KRW-XRP"], 60)):
        for market in markets:
            got = store.load(market, Timeframe.parse(tf))
            start = Timeframe.parse(tf).floor_one(
                int(pd.Timestamp(NOW).value // 10**6) - days * 86_400_000
            )
            same(
                got[got["time"] >= pd.Timestamp(start, unit="ms", tz="UTC")],
                truth(sim, market, tf, start, NOW),
            )
    for market in MARKETS:  # derived where its record says so, and equal to Upbit's
        covered = store.fetched(Timeframe.parse("15m"), market)
        got = store.load(market, Timeframe.parse("15m"))
        assert len(got) > 0
        for start, end in covered:
            part = got[(got["time"] >= pd.Timestamp(start, unit="ms", tz="UTC"))]
            part = part[part["time"] < pd.Timestamp(end, unit="ms", tz="UTC")]
            same(part, truth(sim, market, "15m", start, end))


def test_an_old_layout_in_a_bucket_is_moved_on_first_use(
    sim: SimulatorServer, s3: S3Server
) -> None:
    data = s3.new_dir("old")
    code, out = cli(sim, data, "fetch", "KRW-BTC", "KRW-ETH", "-t", "1h", "--days", "40")
    assert code == 0, out
    rows = len(dataset(data))
    client, prefix = s3.client(), data.removeprefix(f"s3://{s3.BUCKET}/")
    new_keys = [k for k in s3.keys(data) if "/candles/" in k]
    for i, key in enumerate(new_keys):  # as the version before `timeframe=` left it
        old = key.replace("/candles/timeframe=1h/", "/candles/1h/")
        client.copy_object(Bucket=s3.BUCKET, Key=old, CopySource=f"{s3.BUCKET}/{key}")
        if i:  # the first one in both places: a migration killed half-way
            client.delete_object(Bucket=s3.BUCKET, Key=key)
    assert any(k.startswith(f"{prefix}/candles/1h/") for k in s3.keys(data))

    code, out = cli_local(data, "info")
    assert code == 0, out
    assert not any(k.startswith(f"{prefix}/candles/1h/") for k in s3.keys(data))
    assert sorted(k for k in s3.keys(data) if "/candles/" in k) == sorted(new_keys)
    assert len(dataset(data)) == rows
    sim.reset_stats()  # the records still vouch for every moved file
    code, out = cli(sim, data, "fetch", "KRW-BTC", "KRW-ETH", "-t", "1h", "--days", "40")
    assert code == 0 and sim.stats()["candle_requests"] == 0, out


def test_verify_repair_in_a_bucket_then_a_fetch_restores_parity(
    sim: SimulatorServer, s3: S3Server
) -> None:
    data = s3.new_dir("repair")
    fetch = ("fetch", "KRW-BTC", "-t", "1h", "--days", "5")
    code, out = cli(sim, data, *fetch)
    assert code == 0, out
    client, keys = s3.client(), [k for k in s3.keys(data) if "/part-" in k]
    client.put_object(Bucket=s3.BUCKET, Key=keys[0], Body=b"not parquet")
    code, out = cli_local(data, "verify", "--repair")
    assert code == 0 and "unreadable" in out and "repaired all 1 problem" in out, out
    assert keys[0] not in s3.keys(data)
    assert any("/quarantine/" in k for k in s3.keys(data))
    code, out = cli(sim, data, *fetch)
    assert code == 0, out
    code, out = cli_local(data, "verify")
    assert code == 0, out
    got = CandleStore(data).load("KRW-BTC", Timeframe.parse("1h"))
    same(got, truth(sim, "KRW-BTC", "1h", got["time"].iloc[0].value // 10**6, NOW))
