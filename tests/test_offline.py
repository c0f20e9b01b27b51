"""The offline route: `upbit-cache simulator`, and one setting (UPBIT_API_URL) for every
command, the WebSocket URL following from it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEADLINE, Procs, plain, read_until
from typer.testing import CliRunner

from upbit_cache.cli import app
from upbit_cache.collector.config import DEFAULT_WS_URL, ClientConfig, ws_url_for
from upbit_cache.errors import UsageError
from upbit_cache.manager.cache import UpbitCache
from upbit_cache.simulator import SimulatorServer

CLI = [sys.executable, "-m", "upbit_cache"]


@pytest.mark.parametrize(
    ("api", "ws"),
    [
        ("http://127.0.0.1:8123", "ws://127.0.0.1:8123/websocket/v1"),
        ("https://api.upbit.com", "wss://api.upbit.com/websocket/v1"),
        ("HTTPS://proxy.lan/upbit/", "wss://proxy.lan/upbit/websocket/v1"),
    ],
)
def test_the_websocket_url_follows_the_api_url(api: str, ws: str) -> None:
    assert ws_url_for(api) == ws


def test_one_setting_points_rest_and_websocket_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UPBIT_WS_URL", raising=False)
    monkeypatch.delenv("UPBIT_API_URL", raising=False)
    assert ClientConfig.from_env().ws_url == DEFAULT_WS_URL
    monkeypatch.setenv("UPBIT_API_URL", "http://127.0.0.1:9")
    assert ClientConfig.from_env().ws_url == "ws://127.0.0.1:9/websocket/v1"
    assert ClientConfig.from_env("http://h:1").ws_url == "ws://h:1/websocket/v1"
    # Given, the WebSocket URL wins; given empty, it is refused rather than derived.
    monkeypatch.setenv("UPBIT_WS_URL", "ws://elsewhere:2/ws")
    assert ClientConfig.from_env().ws_url == "ws://elsewhere:2/ws"
    assert ClientConfig.from_env(ws_url="wss://x/y").ws_url == "wss://x/y"
    with pytest.raises(UsageError, match="--ws-url must be a URL"):
        ClientConfig.from_env(ws_url="")


def test_live_with_only_the_api_url_streams_from_the_simulator(
    sim: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UPBIT_WS_URL", raising=False)
    monkeypatch.setenv("UPBIT_API_URL", sim.url)
    cache = UpbitCache(tmp_path)
    assert cache.config.ws_url == sim.ws_url

    async def first() -> str:
        events = cache.live(["KRW-BTC"], "1m", store=False)
        async with contextlib.aclosing(events):
            async for item in events:
                return item.event.kind
        return "nothing"

    assert asyncio.run(first()) == "snapshot"
    assert sim.stats()["ws_connections"] >= 1


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPBIT_")}
    return env | {"UPBIT_SETTLE_SECONDS": "0"} | extra


def _start(procs: Procs, *args: str) -> tuple[subprocess.Popen[str], str]:
    """`upbit-cache simulator --port 0 ...` started; its URL, read from what it printed."""
    proc = procs.popen(
        [*CLI, "simulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    lines = read_until(proc, lambda got: any(line.startswith("export ") for line in got))
    assert lines[0].startswith("# upbit-cache simulator: an offline Upbit at http://127.0.0.1:")
    assert "ws://127.0.0.1:" in lines[1] and lines[1].rstrip().endswith("/websocket/v1):")
    url = lines[2].removeprefix("export UPBIT_API_URL=").strip()
    assert lines[2] == f"export UPBIT_API_URL={url}\n" and len(lines) == 3
    return proc, url


@pytest.mark.slow
def test_the_simulator_command_serves_a_fetch_and_stops_on_sigterm_with_143(
    procs: Procs, tmp_path: Path
) -> None:
    proc, url = _start(procs, "--frozen")
    fetch = subprocess.run(
        [*CLI, "fetch", "KRW-BTC", "KRW-ETH", "-t", "1h", "--days", "2", "-q"],
        capture_output=True,
        text=True,
        env=_env(UPBIT_API_URL=url, UPBIT_CACHE_DIR=str(tmp_path)),
        timeout=DEADLINE,
    )
    assert fetch.returncode == 0, fetch.stderr
    assert fetch.stdout.startswith("2 markets, 96 candles written, 2 requests, 0 429s, ")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 143, err
    assert out == "" and plain(err) == "upbit-cache: simulator stopped (SIGTERM)\n"


@pytest.mark.slow
def test_ctrl_c_stops_the_simulator_with_130(procs: Procs) -> None:
    proc, _ = _start(procs)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 130, err
    assert plain(err) == "upbit-cache: simulator stopped (interrupted)\n"


@pytest.mark.slow
def test_cli_live_with_only_upbit_api_url_connects_to_the_simulators_websocket(
    procs: Procs, tmp_path: Path
) -> None:
    sim, url = _start(procs, "--frozen")
    command = [*CLI, "live", "KRW-BTC", "-t", "1m", "--jsonl", "--no-store"]
    env = _env(UPBIT_API_URL=url, UPBIT_CACHE_DIR=str(tmp_path))
    proc = procs.popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = read_until(proc, lambda got: len(got) >= 1, "a snapshot")
    event = json.loads(lines[0])
    assert event["event"] == "snapshot" and event["market"] == "KRW-BTC"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=DEADLINE)
    assert "wss://" not in err and "api.upbit.com" not in err, err
    assert proc.returncode in (0, 143), err  # 143 once live follows the signal convention
    sim.send_signal(signal.SIGTERM)
    sim.communicate(timeout=DEADLINE)


def test_simulator_mistakes_are_one_line_and_exit_2() -> None:
    for args in (["--bogus"], ["--speed", "0"], ["--listing", "KRW-NOPE=2026-01-01"]):
        done = CliRunner().invoke(app, ["simulator", *args])
        assert done.exit_code == 2, done.output
        err = plain(done.stderr)
        assert err.startswith("upbit-cache: error: ") and err.count("\n") == 1, err


def test_a_port_in_use_is_one_line(sim: SimulatorServer) -> None:
    port = sim.url.rpartition(":")[2]
    done = CliRunner().invoke(app, ["simulator", "--port", port])
    assert done.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}: " in plain(done.stderr)
    assert "--port 0 picks a free port" in done.stderr
