"""A pyupbit screener loop through `upbit-cache serve`, beside the same loop straight to Upbit.

200 markets x `pyupbit.get_ohlcv(market, "minute60", count=200)` (pyupbit's `to` is its
now: the in-progress hour included), against the simulator at Upbit's own limit (10
requests a second per group) with a network-like latency, run in its own process, as
`serve` is (`upbit-cache serve --port 0`). Prints, per loop: wall time, requests Upbit got
(candle requests), 429s, markets pyupbit gave up on (it returns None on an error); then the
latency a client sees for a cached page (closed candles, with `to`), p50 and p99.

    python scripts/bench_serve.py [--markets 200] [--latency 0.03] [--samples 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import pyupbit
import pyupbit.quotation_api as quotation
import requests
from simproc import SimProcess  # scripts/ is on the path when a script there runs

CLOCK = "2026-11-20T00:05:00Z"  # frozen: every loop reads the same hours
CLOSED_TO = "2026-11-19 12:00:00"  # a cached page: closed candles only
_CALL = quotation._call_public_api


def point(base: str) -> None:
    """pyupbit names api.upbit.com in each function: its one door is pointed at `base`."""

    def call(url: str, **params: Any) -> Any:
        return _CALL(url.replace("https://api.upbit.com", base), **params)

    quotation._call_public_api = call  # type: ignore[assignment]


def screen(
    base: str, markets: list[str], to: str | None = None, pace: float = 0.0
) -> tuple[float, int]:
    """The loop: wall seconds, markets pyupbit gave up on (None: its request failed);
    `pace`: seconds slept after each market (a careful script's own rate limit)."""
    point(base)
    began = time.perf_counter()
    missing = 0
    for market in markets:
        frame = pyupbit.get_ohlcv(market, "minute60", count=200, to=to)
        missing += frame is None
        if pace:
            time.sleep(pace)
    return time.perf_counter() - began, missing


def line(name: str, wall: float, sim: SimProcess, before: dict[str, Any], missing: int) -> None:
    after = sim.stats()
    sent = after["candle_requests"] - before["candle_requests"]
    limited = after["rate_limited"] - before["rate_limited"]
    print(
        f"{name:<36} wall {wall:7.2f} s  candle requests {sent:4d}  429s {limited:4d}"
        f"  markets failed {missing:3d}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.03)
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    flags = ["--clock", CLOCK, "--frozen", "--latency", str(args.latency)]
    with SimProcess(*flags) as sim, tempfile.TemporaryDirectory() as tmp:
        listed = requests.get(f"{sim.url}/v1/market/all", timeout=10).json()
        markets = [m["market"] for m in listed][: args.markets]
        print(f"{len(markets)} markets x 200 1h candles; simulator: 10 req/s per group,")
        print(f"latency {args.latency * 1000:.0f} ms; frozen at {CLOCK}")
        env = dict(os.environ, UPBIT_CACHE_RUNTIME_DIR=tmp)
        command = [
            sys.executable, "-m", "upbit_cache", "serve", "--port", "0",
            "--data-dir", f"{tmp}/data", "--api-url", sim.url,
        ]  # fmt: skip
        serve = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        try:
            assert serve.stdout is not None
            url = ""
            while not url:
                text = serve.stdout.readline()
                if not text:
                    raise RuntimeError("serve did not start")
                if "UPBIT_SERVE_URL=" in text:
                    url = text.split("=", 1)[1].strip()
            for name in ("through serve, cold", "through serve, warm"):
                before = sim.stats()
                wall, missing = screen(url, markets)
                line(name, wall, sim, before, missing)
            # A screener of closed candles only (`to` before the current hour): nothing in
            # progress, so the second loop is all store.
            for name in ("through serve, closed (to), cold", "through serve, closed (to), warm"):
                before = sim.stats()
                wall, missing = screen(url, markets, CLOSED_TO)
                line(name, wall, sim, before, missing)
            latency(url, markets, args.samples)
        finally:
            serve.terminate()
            serve.wait(30)
        time.sleep(2)
        before = sim.stats()
        wall, missing = screen(sim.url, markets, pace=0.1)
        line("straight, paced (sleep 0.1 s)", wall, sim, before, missing)
        time.sleep(2)
        # Last: unpaced, pyupbit earns 429s, then Upbit's 418 block (which would stop serve
        # too: one IP). pyupbit returns None for a market whose request failed.
        before = sim.stats()
        wall, missing = screen(sim.url, markets)
        line("straight, unpaced", wall, sim, before, missing)
        stats = sim.stats()
        print(f"simulator answers by status: {stats['by_status']}")


def latency(url: str, markets: list[str], samples: int) -> None:
    """A cached page (closed candles, 200 of them) as a client sees it, one connection."""
    session = requests.Session()
    took = []
    for i in range(samples):
        params = {"market": markets[i % len(markets)], "count": 200, "to": CLOSED_TO}
        began = time.perf_counter()
        answer = session.get(f"{url}/v1/candles/minutes/60", params=params, timeout=30)
        took.append(time.perf_counter() - began)
        if answer.status_code != 200:
            raise RuntimeError(f"serve answered {answer.status_code}: {answer.text[:200]}")
    took.sort()
    p50 = statistics.median(took) * 1000
    p99 = took[int(0.99 * (len(took) - 1))] * 1000
    print(f"cached page latency ({samples} asks): p50 {p50:.1f} ms, p99 {p99:.1f} ms")


if __name__ == "__main__":
    main()
