"""Where output goes: a reader that leaves early ends every command quietly (status 141), and
Parquet never goes to a terminal. Through the real CLI, with a real pipe and a real pty."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DEADLINE, FAST_RATE, Procs, plain, run_fetch

from upbit_cache.simulator import SimulatorServer

# Every test here runs the CLI in processes of its own, on real pipes and ptys.
pytestmark = pytest.mark.slow

CLOSED_PIPE = 141  # 128 + SIGPIPE
MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP"]


def command(sim: SimulatorServer, data_dir: Path, *args: str) -> list[str]:
    extra = ["--data-dir", str(data_dir)]
    if args[0] not in ("info", "--help"):
        extra += ["--api-url", sim.url, "--rate", str(FAST_RATE)]
    return [sys.executable, "-m", "upbit_cache", *args, *(extra if args[0] != "--help" else [])]


def reader_leaves(
    procs: Procs, argv: list[str], after: int, unbuffered: bool
) -> tuple[int, bytes, bytes]:
    """Run `argv` with stdout into a pipe whose reader takes `after` bytes (0: none, the pipe
    is closed before the command writes), then closes it; exit status, bytes taken, stderr."""
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)
    if unbuffered:  # sys.stdout.buffer is then a raw stream that may take part of a write
        env["PYTHONUNBUFFERED"] = "1"
    read_end, write_end = os.pipe()
    if after == 0:
        os.close(read_end)
    process = procs.popen(argv, stdout=write_end, stderr=subprocess.PIPE, env=env)
    os.close(write_end)
    taken = b""
    if after:
        try:
            deadline = time.monotonic() + DEADLINE
            while len(taken) < after:
                assert select.select([read_end], [], [], max(0, deadline - time.monotonic()))[0], (
                    f"waited {DEADLINE:g} s for output"
                )
                chunk = os.read(read_end, after - len(taken))
                if not chunk:
                    break
                taken += chunk
        finally:
            os.close(read_end)
    _, err = process.communicate(timeout=120)
    return process.returncode, taken, err


@pytest.fixture
def stored(sim: SimulatorServer, tmp_path: Path) -> Path:
    run_fetch(sim.url, tmp_path, MARKETS, "1h", days=30)
    run_fetch(sim.url, tmp_path, MARKETS[:2], "1m", days=3)
    return tmp_path


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize(
    ("args", "after"),
    [
        # Output far larger than a pipe holds, cut after 100 bytes (`| head -c 100`).
        (["export", *MARKETS[:2], "-t", "1m", "--days", "3", "-q"], 100),
        (["export", *MARKETS[:2], "-t", "1m", "--days", "3", "-f", "jsonl"], 100),
        (["export", *MARKETS[:2], "-t", "1m", "--days", "3", "-f", "parquet", "-q"], 100),
        (["screen-prep", *MARKETS, "--days", "30", "-f", "csv"], 100),
        (["screen-prep", *MARKETS, "--days", "30", "-f", "jsonl", "--no-refresh"], 100),
        # A reader gone before the first write (`| head -0`).
        (["info"], 0),
        (["fetch", *MARKETS, "-t", "1h", "--days", "30", "-q"], 0),
        (["export", "KRW-BTC", "-t", "1h", "--days", "1", "-q"], 0),
        (["--help"], 0),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_a_closed_pipe_is_status_141_and_silence(
    sim: SimulatorServer, stored: Path, args: list[str], after: int, unbuffered: bool, procs: Procs
) -> None:
    progress = args[0] == "export" and "-q" not in args  # per-market lines, before any output
    code, taken, err = reader_leaves(procs, command(sim, stored, *args), after, unbuffered)
    assert code == CLOSED_PIPE, err.decode()
    assert len(taken) == after
    lines = plain(err.decode()).splitlines()
    assert lines == [] or (progress and all(": 0 candles, 0 requests" in x for x in lines)), lines


def test_screen_prep_kept_table_into_a_closed_pipe(
    sim: SimulatorServer, stored: Path, procs: Procs
) -> None:
    argv = command(sim, stored, "screen-prep", *MARKETS, "--days", "30", "-f", "csv")
    assert subprocess.run(argv, capture_output=True, timeout=120).returncode == 0
    # Copied out from the kept table.
    code, _, err = reader_leaves(procs, argv, 100, unbuffered=False)
    assert (code, err) == (CLOSED_PIPE, b"")


def on_a_terminal(procs: Procs, argv: list[str]) -> tuple[int, bytes, str]:
    """Run `argv` with stdout on a pseudo-terminal (read as it comes, as a screen would);
    exit status, what reached the terminal, stderr."""
    main, secondary = os.openpty()
    shown = b""
    try:
        process = procs.popen(argv, stdout=secondary, stderr=subprocess.PIPE)
        os.close(secondary)
        deadline, exited = time.monotonic() + DEADLINE, False
        while True:
            assert time.monotonic() < deadline, f"waited {DEADLINE:g} s for the end: {shown!r}"
            if select.select([main], [], [], 0.1)[0]:
                try:
                    chunk = os.read(main, 65536)
                except OSError:  # EIO: the command closed its side, nothing more comes
                    break
                if not chunk:
                    break
                shown += chunk
            elif exited:  # quiet since it exited: what it wrote before has all been read
                break
            else:
                exited = process.poll() is not None
        _, err = process.communicate(timeout=DEADLINE)
    finally:
        os.close(main)
    return process.returncode, shown, plain(err.decode())


REFUSED = (
    "upbit-cache: error: will not write Parquet to a terminal: give --out FILE or --format csv"
)


@pytest.mark.parametrize(
    "args",
    [
        ["screen-prep", *MARKETS, "--days", "30"],
        ["screen-prep", *MARKETS, "--days", "30", "--out", "-", "--no-refresh"],
        ["export", *MARKETS, "-t", "1h", "--days", "30"],
        # Without a refresh "now" is this host's clock: a fixed range, so any date passes.
        ["export", *MARKETS, "-t", "1h", "--timerange", "20261021-20261120", "--no-refresh"],
        ["export", *MARKETS, "-t", "1h", "--days", "30", "--out", "/dev/stdout"],
    ],
    ids=" ".join,
)
def test_parquet_never_goes_to_a_terminal(
    sim: SimulatorServer, stored: Path, args: list[str], procs: Procs
) -> None:
    if args[0] == "screen-prep":
        # A kept Parquet table exists (the same arguments into a file): the path that
        # used to copy it onto the terminal.
        to_file = [*args[:6], "-f", "parquet", "--out", str(stored / "screen.parquet")]
        kept = subprocess.run(command(sim, stored, *to_file), capture_output=True, timeout=120)
        assert kept.returncode == 0, kept.stderr
    sim.reset_stats()
    code, shown, err = on_a_terminal(procs, command(sim, stored, *args, "-f", "parquet"))
    assert (code, shown, err) == (2, b"", REFUSED + "\n")
    assert sim.stats()["requests"] == 0  # refused before anything was asked of Upbit
    code, shown, err = on_a_terminal(procs, command(sim, stored, *args, "-f", "csv"))
    assert code == 0 and shown.startswith(b"market,"), err
