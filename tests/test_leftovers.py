"""No temp file outlives a killed command: the next run of the same command removes it."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAST_RATE, run_fetch
from typer.testing import CliRunner

from upbit_cache.cli import app
from upbit_cache.simulator import SimulatorServer

runner = CliRunner()


def aged(path: Path, seconds: float) -> Path:
    """Create `path`, `seconds` older than a file written now (the folder's own clock)."""
    path.write_bytes(b"half")
    reference = path.with_name(".reference")
    reference.write_bytes(b"")
    then = reference.stat().st_mtime_ns - int(seconds * 1e9)
    reference.unlink()
    os.utime(path, ns=(then, then))
    return path


def test_a_killed_writers_temps_go_with_the_next_write_there(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "1m", days=1)
    done = runner.invoke(app, ["resample", "KRW-BTC", "-t", "1h", "--data-dir", str(tmp_path)])
    assert done.exit_code == 0, done.output
    hour = next((tmp_path / "candles" / "timeframe=1h" / "market=KRW-BTC").iterdir())
    data_temp = aged(hour / ".part-0.parquet.0123456789abcdef.tmp", 0)  # a kill just now
    record_temp = aged(tmp_path / "fetched" / "1h" / ".KRW-BTC.json.0123456789abcdef.tmp", 0)
    other = aged(tmp_path / "fetched" / "1h" / ".KRW-ETH.json.0123456789abcdef.tmp", 0)
    sim.clock.advance(3600)
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "1m", days=1)
    done = runner.invoke(app, ["resample", "KRW-BTC", "-t", "1h", "--data-dir", str(tmp_path)])
    assert done.exit_code == 0, done.output
    # Written under the series' lock: any temp there is a killed writer's, whatever its age.
    assert not data_temp.exists() and not record_temp.exists()
    assert other.exists()  # another series' writer may be at work: left to its own runs


@pytest.mark.slow
def test_a_killed_screen_preps_temps_go_with_the_next_run(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    out = tmp_path / "out" / "screen.csv"
    out.parent.mkdir()
    stale = aged(out.parent / ".screen.csv.0123456789abcdef.tmp", 3600)
    killed = aged(out.parent / ".screen.csv.0123456789abcdee.tmp", 0)  # killed just now
    young = aged(out.parent / ".screen.csv.fedcba9876543210.tmp", 5)  # a run writing now:
    writing = os.open(young, os.O_RDWR)  # it holds its temp file's lock
    fcntl.flock(writing, fcntl.LOCK_EX)
    command = [sys.executable, "-m", "upbit_cache", "screen-prep", "KRW-BTC", "--days", "2"]
    command += ["--out", str(out), "--api-url", sim.url, "--data-dir", str(tmp_path / "data")]
    command += ["--rate", str(FAST_RATE)]
    screens = tmp_path / "data" / "screens"
    screens.mkdir(parents=True)
    kept_stale = aged(screens / ".0123.csv.0123456789abcdef.tmp", 3600)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    finally:
        os.close(writing)
    assert done.returncode == 0, done.stderr
    assert out.exists() and not stale.exists() and not killed.exists() and young.exists()
    assert kept_stale.exists()  # another table's: removed by prune, not by this run
    names = {p.name for p in screens.iterdir()}
    assert not [n for n in names if n.endswith(".tmp") and not n.startswith(".0123.")]
