"""Scale-out benchmark: the screener fetch on S3 beside local disk, and a sharded backfill.

1. 200 KRW markets x 30 days of 1h into a local folder and into `s3://` on moto's server
   (loopback), cold, warm (one hour later), then a no-op (the same hour again: nothing to
   fetch), in this process and as a whole `upbit-cache fetch` process, against one
   simulator process at 10 req/s. On S3 each run's requests to the store are counted from
   moto's request log (GET, HEAD, LIST, PUT, DELETE).
2. A 1m backfill split with `fetch --shard K/N` over N = 1, 2, 4 worker processes, each
   against its own simulator process (its own 10 req/s budget, as separate IPs would have),
   all writing one `s3://` data dir; wall time against N, requests and idle time (how long
   before the last it ended) per shard, then one check that the dataset holds every row once.
   Twice: the last days of 16 markets (every job alike), then 48 markets over a fixed window
   with every other one listed inside it (jobs weighed by their first candle).
3. `--dask`: each backfill also as `fetch --dask` on a Dask cluster of N = 1, 2, 4 workers
   (`dask scheduler`, one `dask worker` process each, each against its own simulator
   process): wall, requests per worker (its simulator's count) and idle time per worker, and
   how far the balanced `--shard` is from it.

    python scripts/bench_scaleout.py [--markets 200] [--backfill-markets 16] [--backfill-days 2]
        [--mixed-markets 48] [--mixed-days 6] [--dask [--workers 1,2,4] [--skip-shard]]
        [--store s3|disk]

Each backfill line ends with how busy this machine's CPUs were: every "host" of the bench
(fetch processes or Dask workers, their simulators, moto) shares them, so a run near 100%
measures the machine, not the rate limit. `--store disk` writes the backfills to one folder
instead of moto (the S3 server is the largest CPU user here).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import distributed
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from bench_fetch import krw_markets
from check_engines import BUCKET, moto_s3
from simproc import SimProcess

from upbit_cache.manager.cache import UpbitCache
from upbit_cache.manager.scope import Window
from upbit_cache.timeframes.timeframe import DAY_MS
from upbit_cache.times import iso, to_ms

CLOCK = "2026-11-20T00:20:00Z"
RATE = 10


class S3Log:
    """The requests moto's server logged since the last `take`, by kind."""

    LINE = re.compile(r'"(GET|HEAD|PUT|POST|DELETE) (\S+) HTTP')

    def __init__(self, path: str | None) -> None:
        self.path, self.offset = path, 0
        if path is not None and os.path.exists(path):
            self.offset = os.path.getsize(path)

    def take(self) -> Counter[str]:
        if self.path is None:
            return Counter()
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            text = log.read().decode(errors="replace")
            self.offset = log.tell()
        found: Counter[str] = Counter()
        for method, target in self.LINE.findall(text):
            key = target.partition("?")[0].strip("/").partition("/")[2]
            listing = method == "GET" and ("list-type" in target or "prefix=" in target or not key)
            found["LIST" if listing else method] += 1
        return found

    @staticmethod
    def text(counts: Counter[str]) -> str:
        kinds = ("GET", "HEAD", "LIST", "PUT", "DELETE")
        return "  s3 " + " ".join(f"{k} {counts[k]}" for k in kinds) if counts else ""


class CpuMeter:
    """How busy this machine's CPUs were between `__init__` and `busy()` (/proc/stat): the
    hosts of a scale-out bench share them, so a run near 100% measures the machine, not the
    rate limit."""

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            ticks = [int(x) for x in stat.readline().split()[1:]]
        idle = ticks[3] + ticks[4]  # idle, iowait
        return sum(ticks) - idle, sum(ticks)

    def busy(self) -> str:
        (work0, all0), (work1, all1) = self.start, self._read()
        share = (work1 - work0) / max(1, all1 - all0)
        return f"CPU {share:.0%} of {os.cpu_count()} cores"


def screener(
    sim: SimProcess, data_dir: str, markets: list[str], label: str, log: S3Log, repeat: int
) -> None:
    for run in ("cold", "warm, 1h later", "no-op"):
        if run == "warm, 1h later":
            sim.advance(3600)
        walls = []
        for _ in range(repeat if run == "no-op" else 1):
            sim.reset()
            log.take()
            began = time.perf_counter()
            report = UpbitCache(data_dir, api_url=sim.url, rate=RATE).fetch(
                markets, timeframes="1h", window=Window(days=30)
            )
            walls.append(time.perf_counter() - began)
        wall = statistics.median(walls)
        stats = sim.stats()
        requests = stats["candle_requests"]
        ratio = f"wall/bound {wall / (requests / RATE):.3f}" if requests else "(no request)"
        each = ", ".join(f"{w:.2f}" for w in walls)
        shown = f"median of {each}" if len(walls) > 1 else ""
        print(
            f"{label:<6} {run:<15} wall {wall:6.2f} s {shown} candle requests {requests:4d}  "
            f"bound {requests / RATE:6.1f} s  {ratio}  "
            f"429s {stats['rate_limited']}  candles {report.candles:7,d}  "
            f"failed {len(report.failed)}{S3Log.text(log.take())}"
        )
    walls = []
    for _ in range(repeat):
        command = [sys.executable, "-m", "upbit_cache", "fetch", *markets, "-t", "1h", "-q"]
        command += ["--days", "30", "--rate", str(RATE), "--data-dir", data_dir]
        command += ["--api-url", sim.url]
        log.take()
        began = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - began)
    print(
        f"{label:<6} no-op, CLI      wall {statistics.median(walls):6.2f} s median of "
        f"{len(walls)} (min {min(walls):.2f}, max {max(walls):.2f}), whole process"
        f"{S3Log.text(log.take())}"
    )


def backfill(
    markets: list[str], window: list[str], shards: int, data_dir: str, listings: list[str]
) -> float:
    """N shard processes at once, each against its own simulator; wall time of the whole."""
    flags = ["--rate", str(RATE), "--latency", "0.03", "--clock", CLOCK, "--frozen", *listings]
    sims = [SimProcess(*flags) for _ in range(shards)]
    try:
        began, cpu = time.perf_counter(), CpuMeter()
        runs = []
        for k, sim in enumerate(sims, start=1):
            env = {**os.environ, "UPBIT_CACHE_RUNTIME_DIR": tempfile.mkdtemp()}  # own host
            command = [sys.executable, "-m", "upbit_cache", "fetch", *markets, "-t", "1m"]
            command += [*window, "--shard", f"{k}/{shards}", "--rate", str(RATE)]
            command += ["--data-dir", data_dir, "--api-url", sim.url]
            runs.append(
                subprocess.Popen(
                    command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )
            )
        # Each shard's end, as it comes: its idle time is how long before the last it ended.
        with ThreadPoolExecutor(len(runs)) as pool:
            ends = list(pool.map(finish, runs))
        wall, load = max(end for end, _ in ends) - began, cpu.busy()
        requests = [s.stats()["candle_requests"] for s in sims]
        limited = sum(s.stats()["rate_limited"] for s in sims)
    finally:
        for sim in sims:
            sim.__exit__(None, None, None)
    rows, unique = dataset_rows(data_dir)
    print(
        f"N={shards}  wall {wall:6.2f} s  candle requests {sum(requests):4d}  429s {limited}  "
        f"rows {rows:,d}  duplicates {rows - unique}  {load}"
    )
    last = max(end for end, _ in ends)
    for k, ((end, line), sent) in enumerate(zip(ends, requests, strict=True), start=1):
        print(
            f"      shard {k}/{shards}: {sent:4d} requests (with its probes), "
            f"ended {end - began:6.2f} s, idle {last - end:5.2f} s  | {line}"
        )
    return wall


def finish(run: subprocess.Popen[str]) -> tuple[float, str]:
    """When `run` ended, and its summary line."""
    out, err = run.communicate(timeout=3600)
    ended = time.perf_counter()
    if run.returncode != 0:
        raise RuntimeError(err)
    lines = [line for line in (out + err).splitlines() if line.startswith("shard")]
    return ended, lines[-1] if lines else ""


def mixed_listings(markets: list[str], since: int, until: int) -> list[str]:
    """Simulator flags listing every other market inside [since, until), spread over it."""
    young = markets[1::2]
    step = (until - since) // max(1, len(young))
    return [f"--listing={m}={iso(since + i * step)}" for i, m in enumerate(young)]


def dask_backfill(
    markets: list[str], window: list[str], workers: int, data_dir: str, listings: list[str]
) -> float:
    """The backfill through `fetch --dask` on a cluster of `workers` worker processes, each
    against its own simulator (its own IP's budget)."""
    flags = ["--rate", str(RATE), "--latency", "0.03", "--clock", CLOCK, "--frozen", *listings]
    sims = [SimProcess(*flags) for _ in range(workers)]
    started: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            file = os.path.join(tmp, "scheduler.json")
            command = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--port", "0"]
            command += ["--scheduler-file", file, "--no-dashboard"]
            started.append(subprocess.Popen(command, stderr=subprocess.DEVNULL))
            while not (os.path.exists(file) and os.path.getsize(file)):
                time.sleep(0.05)
            with open(file) as text:
                address = json.load(text)["address"]
            for i, sim in enumerate(sims, start=1):
                env = {**os.environ, "UPBIT_API_URL": sim.url}
                env["UPBIT_CACHE_RUNTIME_DIR"] = os.path.join(tmp, f"host{i}")  # own host
                command = [sys.executable, "-m", "distributed.cli.dask_worker", address]
                command += ["--name", f"w{i}", "--nthreads", "4", "--no-dashboard"]
                started.append(subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL))
            command = [sys.executable, "-m", "upbit_cache", "fetch", *markets, "-t", "1m"]
            command += [*window, "--rate", str(RATE), "--data-dir", data_dir]
            command += ["--api-url", sims[0].url, "--dask", address, "-q"]
            with distributed.Client(address, timeout=60) as watcher:
                watcher.wait_for_workers(workers, timeout=120)  # all joined before the clock
            began, cpu = time.perf_counter(), CpuMeter()
            done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
            wall, load = time.perf_counter() - began, cpu.busy()
            if done.returncode != 0:
                raise RuntimeError(done.stderr)
        stats = [s.stats() for s in sims]
    finally:
        for proc in reversed(started):
            proc.terminate()
            proc.wait(timeout=30)
        for sim in sims:
            sim.__exit__(None, None, None)
    rows, unique = dataset_rows(data_dir)
    requests = [s["candle_requests"] for s in stats]
    print(
        f"N={workers}  wall {wall:6.2f} s  candle requests {sum(requests):4d} "
        f"(per worker's IP {requests})  429s {sum(s['rate_limited'] for s in stats)}  "
        f"rows {rows:,d}  duplicates {rows - unique}  {load}"
    )
    for line in done.stdout.splitlines():
        print(f"      {line}")
    return wall


def dataset_rows(uri: str) -> tuple[int, int]:
    fs, path = pafs.FileSystem.from_uri(uri)
    found = ds.dataset(f"{path}/candles", filesystem=fs, format="parquet", partitioning="hive")
    table = found.to_table(columns=["market", "time"])
    return table.num_rows, table.group_by(["market", "time"]).aggregate([]).num_rows


def positive(text: str) -> int:
    """A count of 1 or more (0 markets would be no market list: a fetch of every market)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=positive, default=200)
    parser.add_argument("--backfill-markets", type=positive, default=16)
    parser.add_argument("--backfill-days", type=positive, default=2)
    parser.add_argument("--mixed-markets", type=int, default=48, help="0: no mixed case")
    parser.add_argument("--mixed-days", type=positive, default=6)
    parser.add_argument("--skip-screener", action="store_true")
    parser.add_argument("--skip-backfill", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each no-op (median)")
    parser.add_argument("--dask", action="store_true", help="also the backfill as fetch --dask")
    parser.add_argument(
        "--store",
        choices=("s3", "disk"),
        default="s3",
        help="the backfills' data dir: moto's S3 (default) or a folder all share (no S3 "
        "server's CPU on this machine)",
    )
    parser.add_argument("--skip-shard", action="store_true", help="with --dask: Dask only")
    parser.add_argument("--workers", default="1,2,4", help="the N to run (shards, workers)")
    args = parser.parse_args()
    flags = ["--rate", str(RATE), "--latency", "0.03", "--clock", CLOCK, "--frozen"]
    with tempfile.TemporaryDirectory() as local, tempfile.TemporaryDirectory() as logs:
        args.root = f"s3://{BUCKET}" if args.store == "s3" else os.path.join(local, "shared")
        run_all(args, flags, local, os.path.join(logs, "moto.log"))


def run_all(args: argparse.Namespace, flags: list[str], local: str, log_path: str) -> None:
    with moto_s3(log_path):
        with SimProcess(*flags) as sim:
            markets = krw_markets(sim.url, args.markets)
            chosen = krw_markets(sim.url, args.backfill_markets)
            mixed = krw_markets(sim.url, args.mixed_markets) if args.mixed_markets else []
            if not args.skip_screener:
                print(f"screener: {len(markets)} markets x 30 days of 1h")
                screener(sim, local, markets, "local", S3Log(None), args.repeat)
                sim.advance(-3600)
                s3 = f"s3://{BUCKET}/screener"
                screener(sim, s3, markets, "s3", S3Log(log_path), args.repeat)
        if args.skip_backfill:
            return
        uniform = ["--days", str(args.backfill_days)]
        print(f"backfill: {len(chosen)} markets x {args.backfill_days:g} days of 1m")
        compare(args, "fill", chosen, uniform, [])
        if args.mixed_markets == 0:
            return
        until = to_ms(CLOCK) // DAY_MS * DAY_MS  # a fixed window: the jobs are weighed
        since = until - args.mixed_days * DAY_MS
        listings = mixed_listings(mixed, since, until)
        print(
            f"backfill: {len(mixed)} markets x {args.mixed_days:g} days of 1m, every other "
            f"listed inside the window, --since {iso(since)} --until {iso(until)}"
        )
        fixed = ["--since", iso(since), "--until", iso(until)]
        compare(args, "mixed", mixed, fixed, listings)


def compare(
    args: argparse.Namespace, name: str, markets: list[str], window: list[str], listings: list[str]
) -> None:
    """One backfill with `--shard K/N` and, with --dask, on a cluster: speed-up against N."""
    sizes = [int(n) for n in args.workers.split(",")]
    shard: dict[int, float] = {}
    if not args.skip_shard:
        print("  --shard K/N")
        here = f"{args.root}/{name}"
        shard = scale(sizes, lambda n: backfill(markets, window, n, f"{here}-{n}", listings))
    if not args.dask:
        return
    print("  --dask")
    where = f"{args.root}/{name}-dask"
    dask = scale(sizes, lambda n: dask_backfill(markets, window, n, f"{where}-{n}", listings))
    for n in sizes if shard else ():
        ratio = shard[n] / dask[n]
        print(f"N={n}: --shard {shard[n]:.2f}x, --dask {dask[n]:.2f}x, shard/dask {ratio:.2f}")


def scale(sizes: list[int], run: Callable[[int], float]) -> dict[int, float]:
    """Each size's wall and its speed-up over the first size."""
    walls = {n: run(n) for n in sizes}
    low = sizes[0]
    for n, wall in walls.items():
        print(f"N={n}: {wall:6.2f} s, {walls[low] / wall:.2f}x of N={low} (ideal {n / low:g}x)")
    return {n: walls[low] / wall for n, wall in walls.items()}


if __name__ == "__main__":
    main()
