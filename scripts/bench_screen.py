"""Screener benchmark: 30 days of 1h for 200 KRW markets, against the simulator.

Runs the real `upbit-cache screen-prep` as a process, three times: cold (empty
data dir), warm (one new hour has closed) and hot (nothing new), and a sequential baseline
that pages each market with a 0.1 s pause and no cache (the common approach today) through
the same three situations. The simulator runs in its own process with 30 ms latency and
10 requests/s. Prints whole-process wall seconds and candle requests for each.
Targets: cold <= 1.05 x the rate-limit bound; warm <= 1 request per market and <= 21 s;
hot <= 1 s and 0 requests.

    python scripts/bench_screen.py [--markets 200] [--format parquet] [--skip-baseline]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from bench_fetch import krw_markets
from simproc import SimProcess

CLOCK = "2026-11-20T00:20:00Z"
RATE = 10


def ours(sim: SimProcess, data_dir: str, out: str, markets: list[str]) -> tuple[float, int]:
    sim.reset()
    command = [sys.executable, "-m", "upbit_cache", "screen-prep", *markets, "--days", "30"]
    command += ["--out", out, "--api-url", sim.url, "--data-dir", data_dir]
    began = time.perf_counter()
    subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
    return time.perf_counter() - began, sim.stats()["candle_requests"]


def baseline(url: str, out: str, markets: list[str]) -> float:
    """Sequential paging, 0.1 s between requests, no cache (how it is usually done)."""
    began = time.perf_counter()
    with urllib.request.urlopen(f"{url}/v1/market/all", timeout=10) as answer:
        json.loads(answer.read())  # the market list, as a screener would ask for it
    rows: list[list[object]] = []
    for market in markets:
        got: list[dict[str, object]] = []
        to = ""
        while len(got) < 720:
            query = {"market": market, "count": "200", **({"to": to} if to else {})}
            page_url = f"{url}/v1/candles/minutes/60?{urllib.parse.urlencode(query)}"
            with urllib.request.urlopen(page_url, timeout=10) as answer:
                page = json.loads(answer.read())
            time.sleep(0.1)
            if not page:
                break
            got.extend(page)
            to = str(page[-1]["candle_date_time_utc"]) + "Z"
        for c in reversed(got[:720]):
            rows.append(
                [
                    market,
                    c["candle_date_time_utc"],
                    c["opening_price"],
                    c["high_price"],
                    c["low_price"],
                    c["trade_price"],
                    c["candle_acc_trade_volume"],
                    c["candle_acc_trade_price"],
                ]
            )
    with open(out, "w", newline="") as sink:
        writer = csv.writer(sink)
        writer.writerow(["market", "time", "open", "high", "low", "close", "volume", "value"])
        writer.writerows(rows)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", default="parquet", choices=["parquet", "csv", "jsonl"])
    parser.add_argument("--markets", type=int, default=200)
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    flags = ["--rate", str(RATE), "--latency", "0.03", "--clock", CLOCK, "--frozen"]
    with SimProcess(*flags) as sim, tempfile.TemporaryDirectory() as tmp:
        data_dir, out = str(Path(tmp) / "data"), str(Path(tmp) / f"screen.{args.format}")
        markets = krw_markets(sim.url, args.markets)
        results = []
        wall, requests = ours(sim, data_dir, out, markets)
        results.append(("cold (empty dir)", wall, requests))
        sim.advance(3600)
        wall, requests = ours(sim, data_dir, out, markets)
        results.append(("warm (one new hour)", wall, requests))
        wall, requests = ours(sim, data_dir, out, markets)
        results.append(("hot (nothing new)", wall, requests))
        print(
            f"screen-prep <{len(markets)} KRW markets> --days 30 -t 1h --out screen.{args.format};"
            f" simulator 30 ms latency, {RATE} req/s"
        )
        for label, wall, requests in results:
            bound = requests / RATE
            ratio = f"{wall / bound:.3f} x bound" if requests else "no candle request"
            print(f"  upbit-cache  {label:<20} wall {wall:7.2f} s  requests {requests:4d}  {ratio}")
        if args.skip_baseline:
            return
        for label in ("cold", "warm (one new hour)", "hot (nothing new)"):
            if label.startswith("warm"):
                sim.advance(3600)
            sim.reset()
            wall = baseline(sim.url, str(Path(tmp) / "baseline.csv"), markets)
            requests = sim.stats()["candle_requests"]
            print(
                f"  sequential   {label:<20} wall {wall:7.2f} s  requests {requests:4d}  "
                f"(no cache: every run is a cold run)"
            )


if __name__ == "__main__":
    main()
