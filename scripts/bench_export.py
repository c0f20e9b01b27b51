"""Export benchmark: a year of 1m for 5 markets (2.6 M rows) and 30 days of 1h for 200
markets (144 k rows), as CSV, JSON lines and Parquet, to a file and into a pipe.

Seeds a store with the simulator's deterministic candles (no HTTP: this is about the export),
then runs each `upbit-cache export --no-refresh` as its own process and prints rows a second
(whole-process wall time, start-up included) and the process's peak memory (its own
rusage, through wait4), beside the baseline `pandas.read_parquet(...).to_csv()` of the
same rows in a process of its own. Into a pipe: stdout read to the end by `wc -c`.

    python scripts/bench_export.py [--days 365] [--markets 5] [--hourly-markets 200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from upbit_cache.ranges import Ranges
from upbit_cache.simulator.history import History
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import iso, to_ms

NOW = to_ms("2026-11-20T00:00:00Z")
DAY = 86_400_000
FORMATS = ("csv", "jsonl", "parquet")

# The baseline: what a user writes today to get the same rows out as CSV.
BASELINE = """
import sys
import pandas as pd
root, tf, start, end, out, *markets = sys.argv[1:]
frame = pd.read_parquet(
    root + "/candles",
    filters=[("timeframe", "=", tf), ("market", "in", markets)],
    columns=["market", "timeframe", "time", "open", "high", "low", "close", "volume", "value"],
)
frame = frame[(frame["time"] >= pd.Timestamp(start)) & (frame["time"] < pd.Timestamp(end))]
frame = frame.sort_values(["market", "time"])
frame.to_csv(sys.stdout if out == "-" else out, index=False)
"""


@dataclass
class Run:
    seconds: float
    peak_mb: float
    size: int


def seed(root: str, markets: list[str], tf: str, days: int) -> int:
    """Write the simulator's candles of the last `days` to the store, as a fetch would."""
    store, history, rows = CandleStore(root), History(), 0
    unit = {"1m": 1, "1h": 60}[tf]
    start = NOW - days * DAY
    for market in markets:
        bars = history.candles(market, unit, start, NOW, NOW)
        frame = pd.DataFrame(
            {
                "time": pd.to_datetime(bars["start"], unit="ms", utc=True),
                **{c: bars[c] for c in ("open", "high", "low", "close", "volume", "value")},
                "timestamp": pd.to_datetime(bars["timestamp"], unit="ms", utc=True),
            }
        )
        rows += store.write(market, Timeframe.parse(tf), frame, Ranges.of([(start, NOW)]))
    return rows


# Runs the measured command and reports its peak memory. A small process of its own: a child
# forked from this one (which holds the seeded store) would report our memory as its peak,
# since Linux keeps a process's high-water mark across exec.
LAUNCHER = """
import os, subprocess, sys
process = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(process.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, file=sys.stderr)
"""


def measure(command: list[str], out: str | None) -> Run:
    """Run `command` writing to the file `out` itself or, when None, into a pipe read to the
    end by `wc -c`; its wall time, its peak memory and the bytes it wrote."""
    began = time.perf_counter()
    sink = subprocess.DEVNULL if out is not None else subprocess.PIPE
    launched = [sys.executable, "-c", LAUNCHER, *command]
    process = subprocess.Popen(launched, stdout=sink, stderr=subprocess.PIPE)
    reader = None
    if out is None:
        assert process.stdout is not None
        reader = subprocess.Popen(["wc", "-c"], stdin=process.stdout, stdout=subprocess.PIPE)
        process.stdout.close()
    err = process.communicate()[1].decode().splitlines()
    seconds = time.perf_counter() - began
    code, peak_kib = (int(x) for x in err[-1].split())
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {err}")
    size = int(reader.communicate()[0]) if reader is not None else os.path.getsize(str(out))
    return Run(seconds, peak_kib / 1024, size)  # ru_maxrss: KiB on Linux


def bench(root: str, tmp: str, markets: list[str], tf: str, days: int) -> None:
    start, end = iso(NOW - days * DAY), iso(NOW)
    runs: list[tuple[str, Run]] = []
    for fmt in FORMATS:
        for sink in ("file", "pipe"):
            out = str(Path(tmp) / f"export.{fmt}") if sink == "file" else None
            command = [sys.executable, "-m", "upbit_cache", "export", *markets, "-t", tf]
            command += ["--since", start, "--until", end, "--no-refresh", "--data-dir", root]
            command += ["-f", fmt, "-q", *(["--out", out] if out is not None else [])]
            runs.append((f"export -f {fmt:<7} > {sink}", measure(command, out)))
    rows = len(pd.read_parquet(Path(tmp) / "export.parquet", columns=["time"]))
    for sink in ("file", "pipe"):
        out = str(Path(tmp) / "baseline.csv") if sink == "file" else None
        command = [sys.executable, "-c", BASELINE, root, tf, start, end, out or "-", *markets]
        runs.append((f"pandas to_csv    > {sink}", measure(command, out)))
    print(f"{len(markets)} markets x {days} days x {tf}: {rows:,} rows")
    for label, run in runs:
        print(
            f"  {label:<24} {run.seconds:7.2f} s  {rows / run.seconds / 1e6:5.2f} M rows/s  "
            f"peak {run.peak_mb:6.0f} MB  {run.size / 1e6:7.1f} MB written"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--markets", type=int, default=5)
    parser.add_argument("--hourly-markets", type=int, default=200)
    args = parser.parse_args()
    krw = [m.market for m in History().markets if m.market.startswith("KRW-")]
    minute, hourly = krw[: args.markets], krw[: args.hourly_markets]
    with tempfile.TemporaryDirectory() as tmp:
        root = str(Path(tmp) / "data")
        began = time.perf_counter()
        seeded = seed(root, minute, "1m", args.days) + seed(root, hourly, "1h", 30)
        print(
            f"seeded {seeded:,} rows (hot tier) in {time.perf_counter() - began:.0f} s; "
            f"python {sys.version.split()[0]}, {os.cpu_count()} cores; wall includes start-up"
        )
        bench(root, tmp, minute, "1m", args.days)
        bench(root, tmp, hourly, "1h", 30)


if __name__ == "__main__":
    main()
