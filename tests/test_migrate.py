"""Data dirs of the layout before the `timeframe=` key are moved on first use, losing nothing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow.dataset as ds
from conftest import run_fetch
from typer.testing import CliRunner

from upbit_cache.cli import app
from upbit_cache.simulator.server import SimulatorServer
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe


def fetched_then_made_old(sim: SimulatorServer, root: Path) -> dict[str, int]:
    """A data dir as the previous version left it: `candles/<tf>/market=...`; rows per tf."""
    run_fetch(sim.url, root, ["KRW-BTC", "KRW-ETH"], "1h", days=40)
    run_fetch(sim.url, root, ["KRW-BTC"], "1m", days=2)
    rows = {}
    for tf in ("1h", "1m"):
        folder = root / "candles" / f"timeframe={tf}"
        rows[tf] = ds.dataset(folder, partitioning="hive").count_rows()
        folder.rename(root / "candles" / tf)
    return rows


def dataset_rows(root: Path) -> dict[str, int]:
    """Rows per timeframe as a plain Hive reader of the whole `candles/` tree sees them."""
    table = ds.dataset(root / "candles", format="parquet", partitioning="hive").to_table()
    counts = table.group_by("timeframe").aggregate([("time", "count")]).to_pylist()
    return {str(c["timeframe"]): int(c["time_count"]) for c in counts}


def test_an_old_data_dir_is_moved_on_first_use(sim: SimulatorServer, tmp_path: Path) -> None:
    rows = fetched_then_made_old(sim, tmp_path)
    done = CliRunner().invoke(app, ["info", "--data-dir", str(tmp_path)])
    assert done.exit_code == 0, done.output
    assert sorted(os.listdir(tmp_path / "candles")) == ["timeframe=1h", "timeframe=1m"]
    assert dataset_rows(tmp_path) == rows
    sim.reset_stats()  # the records still vouch for every moved file: nothing is asked again
    run_fetch(sim.url, tmp_path, ["KRW-BTC", "KRW-ETH"], "1h", days=40)
    assert sim.stats()["candle_requests"] <= 2  # at most the newest hour of each


def test_a_killed_migration_is_finished_by_the_next_store(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    rows = fetched_then_made_old(sim, tmp_path)
    old = tmp_path / "candles" / "1m" / "market=KRW-BTC"
    new = tmp_path / "candles" / "timeframe=1m" / "market=KRW-BTC"
    days = sorted(os.listdir(old))
    assert len(days) >= 2
    # Killed half-way: one partition moved, one put in place but not yet removed from the
    # old place, a temp file a killed writer left, the rest not touched.
    (new / days[0]).mkdir(parents=True)
    [first] = os.listdir(old / days[0])  # a settled day is one file
    (old / days[0] / first).rename(new / days[0] / first)
    (new / days[1]).mkdir(parents=True)
    [second] = os.listdir(old / days[1])
    shutil.copy(old / days[1] / second, new / days[1] / second)
    (old / days[1] / f".{second}.dead.tmp").write_bytes(b"half")

    store = CandleStore(tmp_path)
    assert not (tmp_path / "candles" / "1m").exists()
    assert not (tmp_path / "candles" / "1h").exists()
    assert dataset_rows(tmp_path) == rows
    one_minute = store.load("KRW-BTC", Timeframe.parse("1m"))
    assert len(one_minute) == rows["1m"] and one_minute["time"].is_unique
    assert {tf.name for tf in CandleStore(tmp_path).timeframes()} == {"1m", "1h"}
