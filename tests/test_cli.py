"""The command line through typer's CliRunner: output, exit codes, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FAST_RATE, candle_requests, plain
from typer.main import get_command
from typer.testing import CliRunner

from upbit_cache.cli import app
from upbit_cache.simulator import SimulatorServer

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, plain(result.stderr)


def test_every_command_has_help_with_an_example() -> None:
    group = get_command(app)
    assert group.commands  # type: ignore[attr-defined]
    for name in group.commands:  # type: ignore[attr-defined]
        code, out, _ = invoke(name, "--help")
        assert code == 0
        assert "Example: upbit-cache " + name in out


def test_fetch_prints_a_summary_and_plain_lines_off_a_terminal(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    code, out, err = invoke(
        "fetch",
        "KRW-BTC",
        "krw-eth",
        "-t",
        "1h,4h",
        "--days",
        "30",
        "--api-url",
        sim.url,
        "--data-dir",
        str(tmp_path),
        "--rate",
        str(FAST_RATE),
    )
    assert code == 0, err
    assert out.startswith("2 markets, 1,440 candles written, 8 requests, 0 429s, "), out
    assert "; plan: base 1h (8 requests planned), derived 4h (360 candles)" in out
    assert "KRW-BTC 1h: 720 candles, 4 requests" in err
    assert "KRW-ETH 1h: 720 candles, 4 requests" in err
    assert "\x1b[" not in out + err  # no terminal control codes on a pipe
    code, out, _ = invoke(
        "fetch",
        "KRW-BTC",
        "--days",
        "30",
        "-q",
        "--api-url",
        sim.url,
        "--data-dir",
        str(tmp_path),
    )
    assert code == 0
    assert out.startswith("1 market, 0 candles written, 0 requests")


def test_fetch_uses_the_environment(
    sim: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPBIT_API_URL", sim.url)
    monkeypatch.setenv("UPBIT_CACHE_DIR", str(tmp_path))
    code, _out, err = invoke("fetch", "KRW-BTC", "--days", "2", "--rate", str(FAST_RATE))
    assert code == 0, err
    assert (tmp_path / "candles" / "timeframe=1h" / "market=KRW-BTC").is_dir()


@pytest.mark.slow
def test_failed_markets_exit_1_and_are_listed(sim: SimulatorServer, tmp_path: Path) -> None:
    sim.faults.inject("500", count=100, market="KRW-ETH")
    code, out, err = invoke(
        "fetch",
        "KRW-BTC",
        "KRW-ETH",
        "--days",
        "30",
        "--api-url",
        sim.url,
        "--data-dir",
        str(tmp_path),
        "--rate",
        str(FAST_RATE),
    )
    assert code == 1
    assert "1 failed: KRW-ETH 1h" in out
    assert "KRW-ETH 1h: FAILED:" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["KRW/BTC"], "invalid market code 'KRW/BTC'"),
        (["../etc"], "invalid market code '../etc'"),
        (["KRW-BTC", "-t", "2m"], "unsupported timeframe '2m'"),
        (["KRW-BTC", "--since", "2026-02-01", "--until", "2026-01-01"], "is not before --until"),
        (["KRW-BTC", "--since", "last tuesday"], "cannot read time 'last tuesday'"),
        (["KRW-BTC", "--days", "3", "--since", "2026-01-01"], "give --days or --since, not both"),
        (["KRW-BTC", "--quote", "KRW"], "give markets or --quote, not both"),
        (["--quote", "EUR"], "invalid quote currency 'EUR'"),
        (["KRW-NOPE"], "Upbit does not list KRW-NOPE"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    sim: SimulatorServer, tmp_path: Path, args: list[str], message: str
) -> None:
    code, out, err = invoke("fetch", *args, "--api-url", sim.url, "--data-dir", str(tmp_path))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("upbit-cache: error: ")
    assert message in err
    assert "Traceback" not in out + err
    assert candle_requests(sim) == 0
    assert not (tmp_path / "candles").exists()


def test_unwritable_data_dir_is_one_line(sim: SimulatorServer) -> None:
    code, _, err = invoke("fetch", "KRW-BTC", "--api-url", sim.url, "--data-dir", "/proc/nope")
    assert code == 2
    assert err.startswith("upbit-cache: error: data dir /proc/nope is not writable")
    assert err.count("\n") == 1


@pytest.mark.slow
def test_unreachable_api_fails_the_run_clearly(tmp_path: Path) -> None:
    code, _, err = invoke(
        "fetch", "KRW-BTC", "--api-url", "http://127.0.0.1:9", "--data-dir", str(tmp_path)
    )
    assert code == 1
    assert err.startswith("upbit-cache: error: market list: Upbit kept failing")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["screen-prep", "--days", "1e9"], "'--days': Input should be less than or equal to 36500"),
        (["screen-prep", "--days", "inf"], "'--days'"),
        (["screen-prep", "--days", "nan"], "'--days'"),
        (["screen-prep", "--top", "0"], "'--top'"),
        (["screen-prep", "--min-value", "-1"], "'--min-value'"),
        (["fetch", "-t", "1M", "--days", "1000000"], "'--days'"),
        (["fetch", "--days", "1e12"], "'--days'"),
        (["fetch", "--rate", "0"], "'--rate'"),
        (["fetch", "--rate", "1e9"], "'--rate'"),
        (["fetch", "--lock-timeout", "-1"], "'--lock-timeout'"),
        (["prune", "--keep", "99999999999d"], "--keep: 99999999999d is more than 100 years"),
        (["prune", "--compact-after", "1e3d"], "--compact-after: cannot read '1e3d'"),
        (["fetch", "--nope"], "No such option: --nope"),
    ],
)
def test_bad_numbers_are_bad_usage_in_one_line(
    sim: SimulatorServer, tmp_path: Path, args: list[str], message: str
) -> None:
    code, out, err = invoke(*args, *api(args, sim), "--data-dir", str(tmp_path))
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("upbit-cache: error: "), err
    assert message in err and "Traceback" not in out + err
    assert candle_requests(sim) == 0


def test_a_data_dir_that_is_a_file_is_one_line_for_every_command(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    for command in (["prune"], ["screen-prep", "--no-refresh"], ["info"], ["verify"]):
        code, _, err = invoke(*command, "--data-dir", str(not_a_dir))
        assert code == 2
        assert err == f"upbit-cache: error: data dir {not_a_dir} is a file, not a directory\n"


def api(args: list[str], sim: SimulatorServer) -> list[str]:
    return [] if args[0] == "prune" else ["--api-url", sim.url]
