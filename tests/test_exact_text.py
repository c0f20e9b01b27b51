"""Text output is exact: every number of CSV and JSON lines reads back to the Parquet float64,
over every stored row of a fixture of BTC-quoted markets (tiny prices, long fractions)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import FAST_RATE

from upbit_cache.simulator import SimulatorServer
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe

# Every test here runs the CLI in processes of its own over weeks of candles.
pytestmark = pytest.mark.slow

NUMBERS = ["open", "high", "low", "close", "volume", "value"]


def cli(sim: SimulatorServer, data_dir: Path, *args: str) -> bytes:
    command = [sys.executable, "-m", "upbit_cache", *args]
    command += ["--api-url", sim.url, "--data-dir", str(data_dir), "--rate", str(FAST_RATE)]
    done = subprocess.run(command, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def from_csv(data: bytes) -> dict[str, np.ndarray]:
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    return {c: np.array([float(r[c]) for r in rows]) for c in NUMBERS}


def from_jsonl(data: bytes) -> dict[str, np.ndarray]:
    rows = [json.loads(line) for line in data.decode().splitlines()]
    return {c: np.array([float(r[c]) for r in rows]) for c in NUMBERS}


def from_parquet(data: bytes) -> dict[str, np.ndarray]:
    table = pq.read_table(io.BytesIO(data))
    return {c: table[c].to_numpy() for c in NUMBERS}


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.dtype == b.dtype == np.float64 and a.view(np.int64).tolist() == b.view(np.int64).tolist()
    )


@pytest.fixture(scope="module")
def btc_store(
    simulator: SimulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[str]]:
    """A week of 1h and a day of 1m of six BTC-quoted markets, fetched from the simulator."""
    simulator.clock.set("2026-11-20T00:00:00Z")
    simulator.clock.freeze()
    markets = [m.market for m in simulator.history.markets if m.market.startswith("BTC-")][:6]
    data_dir = tmp_path_factory.mktemp("btc")
    cli(simulator, data_dir, "fetch", *markets, "-t", "1h", "--days", "7")
    cli(simulator, data_dir, "fetch", *markets, "-t", "1m", "--days", "1")
    return data_dir, markets


@pytest.mark.parametrize("tf", ["1h", "1m"])
def test_export_text_reads_back_to_the_parquet_floats(
    simulator: SimulatorServer, btc_store: tuple[Path, list[str]], tf: str
) -> None:
    data_dir, markets = btc_store
    args = ["export", *markets, "-t", tf, "--timerange", "20200101-", "--no-refresh"]
    parquet = from_parquet(cli(simulator, data_dir, *args, "-f", "parquet"))
    jsonl_text = cli(simulator, data_dir, *args, "-f", "jsonl")
    csv_text = cli(simulator, data_dir, *args, "-f", "csv")
    # Every stored row, in the store's own float64s.
    store = CandleStore(data_dir)
    stored = pa.concat_tables([store.load_table(m, Timeframe.parse(tf)) for m in markets])
    assert len(parquet["close"]) == stored.num_rows > 1000
    for column in NUMBERS:
        want = stored[column].to_numpy()
        assert same_bits(parquet[column], want), column
        assert same_bits(from_csv(csv_text)[column], want), column
        assert same_bits(from_jsonl(jsonl_text)[column], want), column
    # The fixture has teeth: values that 10 decimals (pandas' to_json) would have rounded.
    longest = max(len(v.rpartition(".")[2]) for v in jsonl_text.decode().replace(",", " ").split())
    assert longest > 10


def test_screen_prep_text_reads_back_to_the_parquet_floats(
    simulator: SimulatorServer, btc_store: tuple[Path, list[str]]
) -> None:
    data_dir, markets = btc_store
    args = ["screen-prep", *markets, "--days", "7", "--no-refresh"]
    parquet = from_parquet(cli(simulator, data_dir, *args, "-f", "parquet"))
    assert len(parquet["value"]) == 6 * 7 * 24
    for read, fmt in ((from_csv, "csv"), (from_jsonl, "jsonl")):
        got = read(cli(simulator, data_dir, *args, "-f", fmt))
        assert all(same_bits(got[c], parquet[c]) for c in NUMBERS), fmt
