"""Shared fixtures: the bundled Upbit simulator on loopback, and helpers to run fetches."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import numpy as np
import pandas as pd
import pytest

from upbit_cache.collector.config import ClientConfig
from upbit_cache.manager.fetch import SyncReport, fetch
from upbit_cache.manager.scope import Window
from upbit_cache.ranges import Ranges
from upbit_cache.simulator import SimulatorConfig, SimulatorServer
from upbit_cache.simulator.history import CandleBars, History
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

NOW = "2026-11-20T00:00:00Z"
FAST_RATE = 200  # requests/s for tests that are not about the rate limit
# The bundled simulator (store lag off) serves every trade at once, so a period is final at
# its end: tests that are not about settling run with no settle time, here and in every
# command they start (tests/test_exact.py turns the lag on and keeps Upbit's settle time).
os.environ["UPBIT_SETTLE_SECONDS"] = "0"
# Off a terminal (CliRunner, a pipe) every stderr line starts with the UTC time.
STAMP = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z ", re.MULTILINE)


def plain(stderr: str) -> str:
    """stderr without the timestamps that start its lines off a terminal."""
    return STAMP.sub("", stderr)


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorServer]:
    config = SimulatorConfig(rate=FAST_RATE, clock_start=NOW, frozen=True)
    with SimulatorServer(config) as server:
        yield server


@pytest.fixture
def sim(simulator: SimulatorServer) -> SimulatorServer:
    """The shared simulator, reset: clock at NOW and frozen, counters zero, no faults queued."""
    simulator.clock.set(NOW)
    simulator.clock.freeze()
    simulator.faults.clear()
    simulator.reset_stats()
    return simulator


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
    """moto's standalone S3 server on loopback (it enforces conditional writes), one bucket."""

    BUCKET = "candles"

    def __init__(self) -> None:
        import socket

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
        self.process = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._count = 0

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
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
        self.process.wait(timeout=10)


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
