"""Shared fixtures: the bundled Upbit simulator on loopback, helpers to run fetches, and the
ways a test waits (on a condition, with a deadline) and starts processes (reaped whatever the
outcome)."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlencode, urlsplit

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pytest

from upbit_cache.collector.config import ClientConfig
from upbit_cache.manager.fetch import SyncReport, fetch
from upbit_cache.manager.scope import Window
from upbit_cache.ranges import Ranges
from upbit_cache.simulator import SimulatorConfig, SimulatorServer
from upbit_cache.simulator.history import CandleBars, History
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.store.files import DataDir
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

NOW = "2026-11-20T00:00:00Z"
FAST_RATE = 200  # requests/s for tests that are not about the rate limit
# The bundled simulator (store lag off) serves every trade at once, so a period is final at
# its end: tests that are not about settling run with no settle time, here and in every
# command they start (tests/test_exact.py turns the lag on and keeps Upbit's settle time).
os.environ["UPBIT_SETTLE_SECONDS"] = "0"
# No test reads the developer's own config file: the default place is an empty folder of
# the session's (configfile.default_path honours XDG_CONFIG_HOME on every platform), and no
# file is named. A test that wants one writes it and names it, or sets these itself.
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="upbit-cache-config-")
os.environ.pop("UPBIT_CACHE_CONFIG", None)
# Off a terminal (CliRunner, a pipe) every stderr line starts with the UTC time.
STAMP = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z ", re.MULTILINE)


# How long a test waits for something that should happen at once on an idle machine. Generous:
# it is only reached when the thing never happens, and a busy machine may take many times as
# long as an idle one.
DEADLINE = 120.0
T = TypeVar("T")


def plain(stderr: str) -> str:
    """stderr without the timestamps that start its lines off a terminal."""
    return STAMP.sub("", stderr)


def wait_for(
    condition: Callable[[], T],
    what: str,
    timeout: float = DEADLINE,
    *,
    running: Sequence[subprocess.Popen[Any]] = (),
    interval: float = 0.02,
) -> T:
    """Poll `condition` until it holds (returns its value); fail after `timeout` seconds, or as
    soon as one of the `running` processes exits with an error (it will not come then)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        failed = [p for p in running if p.poll() not in (None, 0)]
        if failed:
            value = condition()  # what the failed process did before it went
            if value:
                return value
            raise AssertionError(f"waiting for {what}: {describe(failed[0])}")
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}")
        time.sleep(interval)


def describe(proc: subprocess.Popen[Any]) -> str:
    """A finished process's exit status and its stderr, if it was a pipe nobody read."""
    err = proc.stderr.read() if proc.stderr is not None and not proc.stderr.closed else ""
    if isinstance(err, bytes):
        err = err.decode(errors="replace")
    return f"{proc.args!r} exited {proc.returncode}: {err}"


def read_until(
    proc: subprocess.Popen[Any],
    done: Callable[[list[str]], bool],
    what: str = "its output",
    timeout: float = DEADLINE,
) -> list[str]:
    """The lines `proc` writes to its stdout pipe, as they come, until `done(lines)` holds;
    fails after `timeout` seconds, or if the pipe ends first.

    Reads the pipe's descriptor itself, never through the file object's buffer, and stops at
    the end of a line: `proc.communicate()` afterwards gets the rest, none of it lost."""
    assert proc.stdout is not None
    fd, lines, partial = proc.stdout.fileno(), [], b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while partial or not done(lines):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"waited {timeout:g} s for {what}; got {lines}")
            if not selector.select(left):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                proc.wait(timeout=DEADLINE)
                raise AssertionError(f"no {what}: {lines}, then {describe(proc)}")
            *whole, partial = (partial + chunk).split(b"\n")
            lines += [line.decode() + "\n" for line in whole]
    return lines


class StoppedTime:
    """A stand-in for the `time` module where a simulator module reads real monotonic time
    (its rate limits' windows and bans): a clock that moves only when the test sleeps. The
    limits are in real seconds, and on a busy machine real seconds pass between two requests
    too. Anything else is the real `time`."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class Procs:
    """The processes a test starts. At teardown, whatever the outcome, each still running is
    killed, then every one is reaped and its pipes closed (an unreaped process or an open pipe
    is a ResourceWarning, an error under `filterwarnings = error`, in whichever test is running
    when it is collected)."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[Any]] = []

    def popen(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """`subprocess.Popen(args, **kwargs)`, reaped at teardown."""
        proc: subprocess.Popen[Any] = subprocess.Popen(args, **kwargs)
        self.started.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in self.started:
            try:
                proc.wait(timeout=DEADLINE)
            finally:
                for stream in (proc.stdin, proc.stdout, proc.stderr):
                    if stream is not None:
                        stream.close()


@pytest.fixture
def procs() -> Iterator[Procs]:
    """Start a test's subprocesses through this: `procs.popen(args, ...)`."""
    started = Procs()
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorServer]:
    config = SimulatorConfig(rate=FAST_RATE, clock_start=NOW, frozen=True)
    with SimulatorServer(config) as server:
        yield server


def reset(server: SimulatorServer) -> SimulatorServer:
    """`server` with its clock at NOW and frozen, counters zero, no faults queued."""
    server.clock.set(NOW)
    server.clock.freeze()
    server.faults.clear()
    server.reset_stats()
    return server


@pytest.fixture
def sim(simulator: SimulatorServer) -> SimulatorServer:
    """The shared simulator, reset (see `reset`)."""
    return reset(simulator)


def run_fetch(
    url: str,
    data_dir: Path | str,
    markets: Sequence[str],
    timeframe: str = "1h",
    *,
    rate: float = FAST_RATE,
    start: int | None = None,
    end: int | None = None,
    days: float | None = None,
    settle: float = 0.0,
) -> SyncReport:
    """One library fetch against `url`, like `upbit-cache fetch` does (default: 30 days)."""
    config = ClientConfig(api_url=url, rate=rate, backoff=0.01, settle=settle)
    tfs = Timeframe.parse_list(timeframe)
    window = Window(start, end, days if days is not None or start is not None else 30)
    return asyncio.run(fetch(CandleStore(data_dir), config, markets, tfs, window))


def truth(
    sim: SimulatorServer, market: str, tf: str, start: str | int, end: str | int
) -> pd.DataFrame:
    """The simulator's own candles, closed ones only, in the store's columns."""
    unit = {"1m": 1, "3m": 3, "5m": 5, "10m": 10, "15m": 15, "30m": 30, "1h": 60, "4h": 240}.get(
        tf, {"1s": "seconds", "1d": "days", "1w": "weeks", "1M": "months", "1y": "years"}.get(tf)
    )
    now = sim.clock.now_ms()
    lo = to_ms(start) if isinstance(start, str) else start
    hi = min(to_ms(end) if isinstance(end, str) else end, Timeframe.parse(tf).floor_one(now))
    return bars_frame(sim.history.candles(market, unit, lo, hi, now))


def bars_frame(bars: CandleBars) -> pd.DataFrame:
    """Simulator candles in the store's columns."""
    return pd.DataFrame(
        {
            "time": pd.to_datetime(bars["start"].to_numpy(np.int64), unit="ms", utc=True),
            **{c: bars[c] for c in ("open", "high", "low", "close", "volume", "value")},
            "timestamp": pd.to_datetime(bars["timestamp"].to_numpy(np.int64), unit="ms", utc=True),
        }
    ).astype({"time": "datetime64[ms, UTC]", "timestamp": "datetime64[ms, UTC]"})


def data_file(root: Path, day: str, market: str, tf: str = "1m", tier: str = "part") -> Path:
    """The data file of one partition folder (`date=<day>`) of a tier (`part`: hot, `cold`):
    a settled partition is one file (the last by name if there are more; a path that does
    not exist if there is none)."""
    folder = root / "candles" / f"timeframe={tf}" / f"market={market}" / f"date={day}"
    found = sorted(folder.glob(f"{tier}-*.parquet"))
    return found[-1] if found else folder / f"{tier}-none.parquet"


def candle_requests(sim: SimulatorServer) -> int:
    return int(sim.stats()["candle_requests"])


def seed(
    store: CandleStore, history: History, market: str, tf: str, start: str | int, end: str | int
) -> pd.DataFrame:
    """Write the simulator's candles of [start, end) to `store` as fetched; return them."""
    unit = {"1m": 1, "15m": 15, "1h": 60}[tf]
    lo = to_ms(start) if isinstance(start, str) else start
    hi = to_ms(end) if isinstance(end, str) else end
    frame = bars_frame(history.candles(market, unit, lo, hi, hi))
    store.write(market, Timeframe.parse(tf), frame, Ranges.of([(lo, hi)]))
    return frame


class Reply:
    """One HTTP answer, fully read."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


def request(url: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Reply:
    """GET (or POST when `body` is given) on a fresh connection, always closed."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        target = path + ("?" + urlencode(params) if params else "")
        if body is None:
            conn.request("GET", target)
        else:
            payload = json.dumps(body)
            conn.request("POST", target, payload, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return Reply(resp.status, dict(resp.getheaders()), resp.read())
    finally:
        conn.close()


class S3Server:
    """moto's standalone S3 server on loopback (it enforces conditional writes), one bucket.

    Its request log (a line per request) is kept in a file: `requests` says what a piece of
    a test asked of it."""

    BUCKET = "candles"
    LINE = re.compile(r'"(GET|HEAD|PUT|POST|DELETE) (\S+) HTTP')

    def __init__(self) -> None:
        import socket
        import tempfile

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": "us-east-1",
        }
        server = Path(sys.executable).parent / "moto_server"
        self._log = tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log")  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        self._count = 0

    def mark(self) -> int:
        """Where the request log ends now (for `requests`)."""
        return os.path.getsize(self._log.name)

    def requests(self, since: int, uri: str) -> list[tuple[str, str]]:
        """(method, key under `uri`) of every request about `uri` logged after `since`; a
        listing is ("LIST", what it lists). moto writes each line once it answered."""
        prefix = "/" + uri.removeprefix("s3://")
        under = prefix.removeprefix(f"/{self.BUCKET}/")
        with open(self._log.name, "rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
        found = []
        for method, target in self.LINE.findall(text):
            path, _, query = target.partition("?")
            listed = dict(p.partition("=")[::2] for p in query.split("&"))
            where = unquote(listed.get("prefix", ""))
            if path.rstrip("/") == f"/{self.BUCKET}" and where.startswith(under):
                found.append(("LIST", where.removeprefix(under + "/")))
            elif path.startswith(prefix + "/"):
                found.append((method, path.removeprefix(prefix + "/")))
        return found

    def wait_ready(self) -> None:
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                self.client().create_bucket(Bucket=self.BUCKET)
                return
            except Exception:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.1)

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )

    def new_dir(self, name: str = "data") -> str:
        """A fresh, empty data dir URI in the bucket."""
        self._count += 1
        return f"s3://{self.BUCKET}/{name}-{self._count}-{uuid.uuid4().hex[:8]}"

    def keys(self, uri: str) -> list[str]:
        prefix = uri.removeprefix(f"s3://{self.BUCKET}/") + "/"
        pages = self.client().get_paginator("list_objects_v2")
        return [
            o["Key"]
            for page in pages.paginate(Bucket=self.BUCKET, Prefix=prefix)
            for o in page.get("Contents", [])
        ]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=DEADLINE)
        self._log.close()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """The S3 server, with the standard AWS_* settings pointing at it (children inherit)."""
    server = S3Server()
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class LocalHandler(pafs.FileSystemHandler):
    """The local disk through pyarrow's PyFileSystem: a filesystem the store knows neither as
    a local disk nor as S3 (so, OtherBackend), over real files."""

    def __init__(self) -> None:
        self.local = pafs.LocalFileSystem()

    def get_type_name(self) -> str:
        return "elsewhere"

    def equals(self, other: object) -> bool:
        return isinstance(other, LocalHandler)

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self.local.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self.local.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.local.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise NotImplementedError

    def delete_file(self, path: str) -> None:
        self.local.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self.local.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self.local.copy_file(src, dest)

    def open_input_stream(self, path: str) -> Any:
        return self.local.open_input_stream(path)

    def open_input_file(self, path: str) -> Any:
        return self.local.open_input_file(path)

    def open_output_stream(self, path: str, metadata: object) -> Any:
        return self.local.open_output_stream(path)

    def open_append_stream(self, path: str, metadata: object) -> Any:
        return self.local.open_append_stream(path)


def elsewhere(root: Path) -> DataDir:
    """The data dir at `root` through `LocalHandler`: to the store, another filesystem."""
    return DataDir(pafs.PyFileSystem(LocalHandler()), str(root))
