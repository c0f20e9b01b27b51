"""One set of conventions across every command, through the real CLI: -h, -q/-v, --data-dir
before the command, --days, repeated -t, placeholders, plurals, completion, timestamps on
stderr off a terminal, and --tz wherever times are shown as text."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import pytest
from conftest import DEADLINE, FAST_RATE, NOW, STAMP, Procs, plain, read_until, run_fetch
from typer.main import get_command
from typer.testing import CliRunner

from upbit_cache.cli import app
from upbit_cache.simulator import SimulatorServer
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms
from upbit_cache.words import plural

runner = CliRunner()
COMMANDS = sorted(get_command(app).commands)  # type: ignore[attr-defined]
# `simulator` takes the simulator's own options (its `--quiet MARKET=START/END` is a stretch
# without trades) and has no data dir: the conventions of the store's commands are not its.
STORE_COMMANDS = [c for c in COMMANDS if c != "simulator"]
H1 = Timeframe.parse("1h")


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The command's exit code, stdout, and stderr as written (timestamps included)."""
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def upbit_cache(
    *args: str,
    env: dict[str, str] | None = None,
    stdout: int | TextIO = subprocess.PIPE,
    stderr: int | TextIO = subprocess.PIPE,
) -> subprocess.CompletedProcess[str]:
    """The tool in its own process, stdout and stderr to pipes unless given."""
    command = [sys.executable, "-m", "upbit_cache", *args]
    return subprocess.run(command, stdout=stdout, stderr=stderr, env=env, text=True, timeout=120)


def api(sim: SimulatorServer) -> list[str]:
    return ["--api-url", sim.url, "--rate", str(FAST_RATE)]


# -h, -q/-v, placeholders


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_h_is_help_everywhere(command: list[str]) -> None:
    code, short, _ = invoke(*command, "-h")
    assert code == 0 and short.startswith("Usage: ")
    assert short == invoke(*command, "--help")[1]


@pytest.mark.parametrize("command", STORE_COMMANDS)
def test_every_command_has_quiet_and_verbose_and_readable_placeholders(command: str) -> None:
    _, text, _ = invoke(command, "-h")
    assert "-q, --quiet" in text and "-v, --verbose" in text
    # Python types (`<str>`, `<list[str]>`, `<float range>`) are not placeholders.
    assert not re.search(r"<(str|int|float|bool|list|path)\b", text), text
    assert "--data-dir DIR|URI" in text


def test_placeholders_read_as_the_values_they_take() -> None:
    text = invoke("fetch", "-h")[1]
    assert "Usage: upbit-cache fetch [OPTIONS] [MARKET...]" in text
    assert "  MARKET...  " in text
    for placeholder in ("-t, --timeframe TF[,TF...]", "--days DAYS", "--since TIME", "--rate N"):
        assert placeholder in text
    assert "Usage: upbit-cache live [OPTIONS] MARKET..." in invoke("live", "-h")[1]
    screen = invoke("screen-prep", "-h")[1]
    assert "-t, --timeframe TF " in screen and "-o, --out FILE|-" in screen
    assert "--tz ZONE" in screen and "-f, --format csv|jsonl|parquet" in screen


def test_quiet_and_verbose_together_are_refused(tmp_path: Path) -> None:
    for command in STORE_COMMANDS:
        args = [command, "KRW-BTC"] if command in ("live", "show") else [command]
        code, _, err = invoke(*args, "-q", "-v", "--data-dir", str(tmp_path))
        assert code == 2 and plain(err) == "upbit-cache: error: give -q or -v, not both\n"


@pytest.mark.slow
def test_quiet_keeps_stderr_for_errors_only(sim: SimulatorServer, tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    code, out, err = invoke("fetch", "KRW-BTC", "KRW-ETH", "--days", "2", "-q", *api(sim), *data)
    assert code == 0 and err == "" and out.startswith("2 markets, 96 candles written")
    code, out, err = invoke("screen-prep", "KRW-BTC", "--days", "2", "-q", *api(sim), *data)
    assert code == 0 and err == "" and out.startswith("market,time,")
    code, _, err = invoke("screen-prep", "KRW-BTC", "--days", "2", *api(sim), *data)
    assert code == 0 and "1 market, 48 rows" in err  # without -q: the summary
    sim.faults.inject("500", count=100, market="KRW-ETH")
    code, _, err = invoke("fetch", "KRW-ETH", "--days", "3", "-q", *api(sim), *data)
    assert code == 1 and "KRW-ETH 1h: FAILED:" in err  # a failure is always said


def test_verbose_adds_a_line_per_market_or_series(sim: SimulatorServer, tmp_path: Path) -> None:
    run_fetch(sim.url, tmp_path, ["KRW-BTC", "KRW-ETH"], "1h", days=2)
    data = ["--data-dir", str(tmp_path)]
    code, out, _ = invoke("resample", "-t", "4h", "-v", *data)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("KRW-BTC 4h from 1h: 12 candles written, 1 base partition ")
    assert lines[1].startswith("KRW-ETH 4h from 1h: 12 candles written")
    assert lines[2].startswith("2 markets, 4h from 1h: 24 candles written")
    code, out, _ = invoke("verify", "-v", "-t", "1h", *data)
    assert code == 0
    assert out.splitlines()[:2] == [
        " 1h KRW-BTC: 1 file, 48 rows, 0 problems",
        " 1h KRW-ETH: 1 file, 48 rows, 0 problems",
    ]
    code, out, _ = invoke("verify", "-t", "1h", *data)
    assert out.startswith("healthy: 2 series, 2 files, 96 rows checked")


# --data-dir before the command, --days, -t


def test_data_dir_before_the_command(
    sim: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    there, elsewhere = tmp_path / "there", tmp_path / "elsewhere"
    elsewhere.mkdir()  # an empty data dir (one that does not exist is refused)
    code, _, err = invoke("--data-dir", str(there), "fetch", "KRW-BTC", "--days", "1", *api(sim))
    assert code == 0, err
    assert CandleStore(there).timeframes() == [H1]
    code, out, _ = invoke("--data-dir", str(there), "info")
    assert code == 0 and "KRW-BTC" in out
    # The command's own --data-dir wins; the one before the command beats UPBIT_CACHE_DIR.
    code, out, _ = invoke("--data-dir", str(there), "info", "--data-dir", str(elsewhere))
    assert out == f"the store at {elsewhere} is empty: nothing fetched yet\n"
    monkeypatch.setenv("UPBIT_CACHE_DIR", str(elsewhere))
    assert "KRW-BTC" in invoke("--data-dir", str(there), "info")[1]
    assert "is empty" in invoke("info")[1]


def test_days_are_fractional_in_every_command(sim: SimulatorServer, tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    code, out, err = invoke("fetch", "KRW-BTC", "--days", "1.5", *api(sim), *data)
    assert code == 0, err
    assert out.startswith("1 market, 36 candles written, 1 request, 0 429s, ")  # and plurals
    code, out, err = invoke("screen-prep", "KRW-BTC", "--days", "1.5", "--no-refresh", *data)
    assert code == 0 and len(out.splitlines()) == 1 + 36, err
    # Out of range: the same one line whichever command.
    errors = set()
    for command in ("fetch", "screen-prep"):
        code, _, err = invoke(command, "--days", "0", *data)
        assert code == 2 and len(err.splitlines()) == 1
        errors.add(plain(err))
    assert len(errors) == 1 and "'--days'" in errors.pop()


def test_a_repeated_t_adds_timeframes(sim: SimulatorServer, tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    code, out, err = invoke(
        "fetch", "KRW-BTC", "-t", "1m", "-t", "1h", "--days", "0.5", *api(sim), *data
    )
    assert code == 0, err
    assert "; plan: base 1m (" in out and "derived 1h (12 candles)" in out  # as -t 1m,1h
    assert {tf.name for tf in CandleStore(tmp_path).timeframes()} == {"1m", "1h"}
    code, out, _ = invoke("info", "-t", "1m", "-t", "1h", *data)
    assert code == 0 and [line.split()[0] for line in out.splitlines()[1:3]] == ["1m", "1h"]
    # screen-prep takes one timeframe: a second is refused, not dropped.
    code, _, err = invoke("screen-prep", "-t", "1m", "-t", "1h", "--no-refresh", *data)
    assert code == 2
    assert plain(err) == "upbit-cache: error: screen-prep takes one timeframe (-t), not 1m, 1h\n"


def test_plural() -> None:
    assert plural(1, "market") == "1 market"
    assert plural(0, "market") == "0 markets"
    assert plural(1440, "candle") == "1,440 candles"
    assert plural(1.5, "day") == "1.5 days" and plural(1.0, "day") == "1 day"
    assert plural(1, "series", "series") == "1 series" and plural(2, "miss", "misses") == "2 misses"


# completion


@pytest.mark.slow
def test_shell_completion_script_and_timeframes() -> None:
    assert "--install-completion" in invoke("-h")[1]
    # For bash, whatever shell started the suite (make's sh is not one Typer supports): with
    # detection off, --show-completion takes the shell's name.
    named = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    shown = upbit_cache("--show-completion", "bash", env=named)
    assert shown.returncode == 0 and "_UPBIT_CACHE_COMPLETE=complete_bash" in shown.stdout
    env = {**os.environ, "_UPBIT_CACHE_COMPLETE": "complete_bash", "COMP_CWORD": "3"}
    done = upbit_cache(env={**env, "COMP_WORDS": "upbit-cache fetch -t 15m,1"})
    offered = done.stdout.split()
    assert "15m,1h" in offered and "15m,1d" in offered and "15m,15m" not in offered
    done = upbit_cache(env={**env, "COMP_WORDS": "upbit-cache info --tz Asia/Seo"})
    assert done.stdout.split() == ["Asia/Seoul"]


# timestamps on stderr


@pytest.mark.slow
def test_stderr_lines_are_timestamped_off_a_terminal(sim: SimulatorServer, tmp_path: Path) -> None:
    done = upbit_cache(
        "fetch", "KRW-BTC", "KRW-ETH", "--days", "1", *api(sim), "--data-dir", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and all(STAMP.match(line) for line in lines), lines
    assert sorted(plain(done.stderr).splitlines()) == [
        "KRW-BTC 1h: 24 candles, 1 request",
        "KRW-ETH 1h: 24 candles, 1 request",
    ]
    assert not STAMP.search(done.stdout)  # stdout is output, not a log
    written = datetime.strptime(lines[0][:20], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(written.timestamp() - time.time()) < 120  # this host's clock, in UTC
    done = upbit_cache("info", "--tz", "Mars/Olympus", "--data-dir", str(tmp_path))
    assert done.returncode == 2
    assert re.fullmatch(STAMP.pattern + r"upbit-cache: error: .*Mars/Olympus.*\n", done.stderr)


@pytest.mark.slow
def test_a_log_of_both_streams_is_stamped_throughout(sim: SimulatorServer, tmp_path: Path) -> None:
    # The README's cron line: `>> upbit-cache.log 2>&1`; the summary is a log line there too.
    log = tmp_path / "upbit-cache.log"
    for _ in range(2):
        with log.open("a") as sink:
            args = ["fetch", "KRW-BTC", "--days", "1", *api(sim), "--data-dir", str(tmp_path)]
            assert upbit_cache(*args, stdout=sink, stderr=sink).returncode == 0
    lines = log.read_text().splitlines()
    assert len(lines) == 4 and all(STAMP.match(line) for line in lines), lines
    assert plain(lines[1]).startswith("1 market, 24 candles written, 1 request, ")
    assert plain(lines[3]).startswith("1 market, 0 candles written, 0 requests, ")


@pytest.mark.slow
def test_a_terminal_and_the_journal_get_lines_as_they_are(tmp_path: Path) -> None:
    expected = "upbit-cache: error: give -q or -v, not both"
    leader, follower = pty.openpty()
    try:
        done = upbit_cache("info", "-q", "-v", stderr=follower)
        assert done.returncode == 2
        assert os.read(leader, 4096).decode().replace("\r\n", "\n") == expected + "\n"
    finally:
        os.close(leader)
        os.close(follower)
    # systemd's journal stamps lines itself: JOURNAL_STREAM names it (device:inode).
    log = tmp_path / "journal"
    with log.open("w") as sink:
        found = os.fstat(sink.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{found.st_dev}:{found.st_ino}"}
        upbit_cache("info", "-q", "-v", stderr=sink, env=env)
    assert log.read_text() == expected + "\n"


# --tz


def test_info_shows_times_in_the_zone_asked(sim: SimulatorServer, tmp_path: Path) -> None:
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "1h", days=1)
    code, out, _ = invoke("info", "--tz", "Asia/Seoul", "--data-dir", str(tmp_path))
    assert code == 0
    assert " 2026-11-19T09:00:00+09:00→2026-11-20T09:00:00+09:00 " in out.splitlines()[1]
    code, out, _ = invoke("info", "--json", "--tz", "Asia/Seoul", "--data-dir", str(tmp_path))
    series = json.loads(out)["series"][0]
    assert series["fetched"] == [
        {
            "start": "2026-11-19T09:00:00+09:00",
            "end": "2026-11-20T09:00:00+09:00",
            "start_ms": to_ms(NOW) - 86_400_000,
            "end_ms": to_ms(NOW),
        }
    ]
    assert series["last"] == "2026-11-20T08:00:00+09:00"
    utc = json.loads(invoke("info", "--json", "--data-dir", str(tmp_path))[1])["series"][0]
    assert utc["last"] == "2026-11-19T23:00:00Z" and utc["last_ms"] == series["last_ms"]


def test_verify_names_the_span_of_a_bad_file_in_the_zone_asked(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "1m", days=1)
    day = tmp_path / "candles" / "timeframe=1m" / "market=KRW-BTC" / "date=2026-11-19"
    (day / "part-0.parquet").write_bytes(b"")
    code, out, _ = invoke("verify", "--tz", "Asia/Seoul", "--data-dir", str(tmp_path))
    assert code == 1
    assert "holding 2026-11-19T09:00:00+09:00→2026-11-20T09:00:00+09:00" in out
    assert (
        "holding 2026-11-19T00:00:00Z→2026-11-20T00:00:00Z"
        in invoke("verify", "--data-dir", str(tmp_path))[1]
    )


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_screen_prep_writes_text_times_in_the_zone_asked(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    args = ["screen-prep", "KRW-BTC", "--days", "1", *api(sim), "--data-dir", str(tmp_path)]
    code, out, err = invoke(*args)
    assert code == 0, err
    utc = rows(out)
    assert utc[0]["time"] == "2026-11-19T00:00:00.000Z"
    for _ in range(2):  # built, then copied from the kept table (of its own zone)
        code, out, err = invoke(*args, "--tz", "Asia/Seoul")
        assert code == 0, err
        seoul = rows(out)
        assert seoul[0]["time"] == "2026-11-19T09:00:00.000+09:00"
        assert [to_ms(r["time"].replace(".000", "")) for r in seoul] == [
            to_ms(r["time"].replace(".000Z", "+00:00")) for r in utc
        ]
        assert [r["close"] for r in seoul] == [r["close"] for r in utc]
    assert "kept table" in err
    code, out, _ = invoke(*args, "-f", "jsonl", "--tz", "Asia/Seoul")
    assert json.loads(out.splitlines()[0])["time"] == "2026-11-19T09:00:00.000+09:00"


@pytest.mark.parametrize("command", ["info", "verify", "screen-prep", "live"])
def test_a_bad_zone_is_one_line_and_exit_2(command: str, tmp_path: Path) -> None:
    args = [command, "KRW-BTC"] if command == "live" else [command]
    code, _, err = invoke(*args, "--tz", "Seoul", "--data-dir", str(tmp_path))
    assert code == 2 and len(err.splitlines()) == 1
    assert plain(err).startswith("upbit-cache: error: Invalid value for '--tz': unknown time zone")


@pytest.mark.slow
def test_live_json_lines_in_the_zone_asked(
    sim: SimulatorServer, tmp_path: Path, procs: Procs
) -> None:
    command = [sys.executable, "-m", "upbit_cache", "live", "KRW-BTC", "-t", "1m", "--jsonl"]
    command += ["--tz", "Asia/Seoul", "-v", "--no-store", "--api-url", sim.url]
    command += ["--ws-url", sim.ws_url]
    proc = procs.popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = json.loads(read_until(proc, lambda lines: len(lines) >= 1, "the first line")[0])
    proc.terminate()
    _, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 143, err
    assert first["time"] == "2026-11-20T08:59:00.000+09:00" and first["event"] == "snapshot"
    said = plain(err).splitlines()
    assert said[0] == "upbit-cache: stopped (SIGTERM); nothing stored (--no-store)"
    assert re.fullmatch(r"events: [0-9]+ snapshots?, [0-9]+ updates?, [0-9]+ closes?", said[1])
    assert all(STAMP.match(line) for line in err.splitlines())
