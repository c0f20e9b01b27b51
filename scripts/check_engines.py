"""Prove that a candle data dir is one dataset that every engine reads the same.

Reads `<data dir>/candles/` (Hive keys `timeframe`, `market`, `date`; `part-…` and `cold-…`
files alike, as a plain engine sees them) with pyarrow.dataset, DuckDB (httpfs), Polars,
Dask (LocalCluster, 2 worker processes, s3fs) and Spark (local[2], on a local copy: its
s3a needs jars this machine cannot fetch). Prints rows per timeframe, the total, and
duplicates (rows minus distinct (timeframe, market, time)) per engine as a Markdown table,
and exits 1 unless every engine counts the same for every (timeframe, market).

    python scripts/check_engines.py                     # moto S3 + simulator, fetch, resample
    python scripts/check_engines.py --data-dir s3://candles/data   # an existing dataset
    python scripts/check_engines.py --data-dir ~/upbit  # ... or a local one

With no --data-dir it starts moto's S3 server and the Upbit simulator, fills
s3://candles/data with `upbit-cache fetch` and `upbit-cache resample`, then checks it. For
an s3:// --data-dir the endpoint and keys come from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY and AWS_REGION. `--synthetic` (not in --help) checks a small
hand-written dataset on moto instead of fetching, to test this script. Needs duckdb==1.4.4
duckdb-ext-httpfs polars "dask[dataframe]" distributed s3fs pyspark "moto[server]" boto3,
and Java 17 for Spark. Run it as a file (Dask's worker processes import it again).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

BUCKET = "candles"
MARKETS = ("KRW-BTC", "KRW-ETH", "KRW-XRP")
CLOCK = "2026-11-20T00:20:00Z"
BIN = Path(sys.executable).parent

#: (timeframe, market) -> (rows, distinct times)
Counts = dict[tuple[str, str], tuple[int, int]]


@dataclass(frozen=True)
class Location:
    """Where `candles/` is, and how each engine is told about it."""

    data_dir: str

    @property
    def is_s3(self) -> bool:
        return self.data_dir.startswith("s3://")

    @property
    def candles(self) -> str:
        """`s3://bucket/prefix/candles` or an absolute local path."""
        text = self.data_dir
        if text.startswith("file://"):
            text = urlparse(text).path
        elif not self.is_s3:
            text = os.path.abspath(os.path.expanduser(text))
        return text.rstrip("/") + "/candles"

    @property
    def glob(self) -> str:
        return self.candles + "/**/*.parquet"

    @property
    def endpoint(self) -> str:
        return os.environ.get("AWS_ENDPOINT_URL", "https://s3.amazonaws.com")

    @property
    def keys(self) -> tuple[str, str, str]:
        env = os.environ
        return env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env["AWS_REGION"]

    def arrow_fs(self) -> tuple[pafs.FileSystem, str]:
        if self.is_s3:
            return pafs.FileSystem.from_uri(self.candles)  # honours AWS_ENDPOINT_URL
        return pafs.LocalFileSystem(), self.candles


# Engines: each returns the counts of what it reads.


def read_pyarrow(where: Location) -> Counts:
    fs, path = where.arrow_fs()
    dataset = pads.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
    table = dataset.to_table(columns=["timeframe", "market", "time"])
    grouped = table.group_by(["timeframe", "market"]).aggregate(
        [("time", "count"), ("time", "count_distinct")]
    )
    return _counts(grouped.to_pylist(), "time_count", "time_count_distinct")


def read_duckdb(where: Location) -> Counts:
    import duckdb

    spec = importlib.util.find_spec("duckdb_ext")  # the duckdb-ext-httpfs package
    assert spec is not None and spec.submodule_search_locations
    extensions = os.path.join(next(iter(spec.submodule_search_locations)), "extensions")
    con = duckdb.connect(config={"extension_directory": extensions})
    if where.is_s3:
        con.execute("LOAD httpfs")
        key, secret, region = where.keys
        url = urlparse(where.endpoint)
        con.execute(
            f"CREATE SECRET (TYPE s3, KEY_ID '{key}', SECRET '{secret}', REGION '{region}', "
            f"ENDPOINT '{url.netloc}', URL_STYLE 'path', USE_SSL {url.scheme == 'https'})"
        )
    query = (
        "SELECT timeframe, market, count(*) AS rows, count(DISTINCT time) AS times "
        "FROM read_parquet(?, hive_partitioning = true) GROUP BY ALL"
    )
    found = con.execute(query, [where.glob]).fetchall()
    con.close()
    return {(str(tf), str(m)): (int(n), int(d)) for tf, m, n, d in found}


def read_polars(where: Location) -> Counts:
    import polars as pl

    options: dict[str, str] | None = None
    if where.is_s3:
        key, secret, region = where.keys
        options = {
            "aws_endpoint_url": where.endpoint,
            "aws_access_key_id": key,
            "aws_secret_access_key": secret,
            "aws_region": region,
            "aws_allow_http": str(where.endpoint.startswith("http://")).lower(),
        }
    frame = (
        pl.scan_parquet(where.glob, hive_partitioning=True, storage_options=options)
        .group_by("timeframe", "market")
        .agg(pl.len().alias("rows"), pl.col("time").n_unique().alias("times"))
        .collect()
    )
    return _counts(frame.to_dicts(), "rows", "times")


def read_dask(where: Location) -> Counts:
    import dask.dataframe as dd
    from dask.distributed import Client, LocalCluster

    options: dict[str, Any] = {}
    if where.is_s3:
        key, secret, region = where.keys
        endpoint = {"endpoint_url": where.endpoint, "region_name": region}
        options = {"key": key, "secret": secret, "client_kwargs": endpoint}
    cluster = LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    with cluster, Client(cluster):  # type: ignore[no-untyped-call]
        frame = dd.read_parquet(
            where.candles + "/", columns=["timeframe", "market", "time"], storage_options=options
        )
        groups = frame.groupby(["timeframe", "market"], observed=True)["time"]
        rows, times = groups.size().compute(), groups.nunique().compute()
    return {(str(tf), str(m)): (int(n), int(times[tf, m])) for (tf, m), n in rows.items()}


def read_spark(where: Location) -> Counts:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    with tempfile.TemporaryDirectory() as scratch:
        folder = where.candles
        if where.is_s3:  # no s3a jars here: read a copy, as a plain engine would
            fs, path = where.arrow_fs()
            folder = os.path.join(scratch, "candles")
            pafs.copy_files(path, folder, fs, pafs.LocalFileSystem())
        spark = (
            SparkSession.builder.master("local[2]")
            .appName("check_engines")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel("ERROR")
        try:
            found = (
                spark.read.parquet(folder)
                .groupBy("timeframe", "market")
                .agg(F.count("*").alias("rows"), F.countDistinct("time").alias("times"))
                .collect()
            )
        finally:
            spark.stop()
    return _counts([r.asDict() for r in found], "rows", "times")


def _counts(groups: list[dict[str, Any]], rows: str, times: str) -> Counts:
    return {(str(g["timeframe"]), str(g["market"])): (int(g[rows]), int(g[times])) for g in groups}


ENGINES: dict[str, tuple[str, Callable[[Location], Counts]]] = {
    "pyarrow.dataset": ("pyarrow", read_pyarrow),
    "duckdb": ("duckdb", read_duckdb),
    "polars": ("polars", read_polars),
    "dask (2 processes)": ("dask", read_dask),
    "spark local[2]": ("pyspark", read_spark),
}


# Report


def tf_order(name: str) -> tuple[int, str]:
    found = re.fullmatch(r"(\d+)([mhdwM])", name)
    unit = {"m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2678400}
    return (int(found[1]) * unit[found[2]], name) if found else (sys.maxsize, name)


def survey(where: Location) -> str:
    """One line on what is stored: data files by name, others (temp files), S3 markers."""
    fs, path = where.arrow_fs()
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    names = [i.base_name for i in infos if i.type == pafs.FileType.File]
    data = [n for n in names if n.endswith(".parquet") and not n.startswith(".")]
    hot = sum(n.startswith("part-") for n in data)
    cold = sum(n.startswith("cold-") for n in data)
    line = f"{hot} part-*.parquet, {cold} cold-*.parquet, {len(names) - hot - cold} other files"
    if where.is_s3:
        import boto3

        bucket, _, prefix = path.partition("/")
        lister = boto3.client("s3").get_paginator("list_objects_v2")
        pages = lister.paginate(Bucket=bucket, Prefix=prefix + "/")
        markers = sum(o["Key"].endswith("/") for p in pages for o in p.get("Contents", []))
        line += f", {markers} directory marker objects (keys ending in /)"
    return line


def render(results: dict[str, Counts | str], seconds: dict[str, float]) -> tuple[str, bool]:
    """The Markdown table, and whether every engine counted the same."""
    good = {e: c for e, c in results.items() if not isinstance(c, str)}
    tfs = sorted({tf for c in good.values() for tf, _ in c}, key=tf_order)
    head = ["engine", *tfs, "total", "duplicates", "seconds"]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join([":--"] + ["--:"] * (len(head) - 1)) + "|",
    ]
    for engine, counts in results.items():
        if isinstance(counts, str):
            cells = [engine, *["failed"] * (len(tfs) + 2), "-", f"{seconds[engine]:.1f}"]
        else:
            per_tf = [sum(n for (t, _), (n, _d) in counts.items() if t == tf) for tf in tfs]
            dups = sum(n - d for n, d in counts.values())
            cells = [engine, *(f"{n:,}" for n in per_tf), f"{sum(per_tf):,}", f"{dups:,}"]
            cells.append(f"{seconds[engine]:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    reference = next(iter(good.values()), None)
    agree = bool(reference) and len(good) == len(results)
    agree = agree and all(c == reference for c in good.values())
    if agree and reference:
        rows = sum(n for n, _ in reference.values())
        lines.append(
            f"\nAll {len(results)} engines agree on rows and distinct times for every "
            f"(timeframe, market): {len(reference)} series, {rows:,} rows."
        )
    else:
        lines.append("\nENGINES DISAGREE (or read nothing):")
        for key in sorted({k for c in good.values() for k in c}):
            seen = {e: c.get(key) for e, c in good.items()}
            if len(set(seen.values())) > 1:
                lines.append(f"  {key}: " + ", ".join(f"{e}={v}" for e, v in seen.items()))
        lines.extend(f"  {e} failed: {c}" for e, c in results.items() if isinstance(c, str))
    return "\n".join(lines), agree


def check(where: Location) -> bool:
    print(f"{where.candles}: {survey(where)}")
    versions = (f"{dist} {importlib.metadata.version(dist)}" for dist, _ in ENGINES.values())
    print("versions: " + ", ".join(versions), flush=True)
    results: dict[str, Counts | str] = {}
    seconds: dict[str, float] = {}
    for engine, (_, read) in ENGINES.items():
        began = time.perf_counter()
        try:
            results[engine] = read(where)
        except Exception as exc:  # one engine failing is a finding, not the end
            first = (str(exc).splitlines() or [""])[0]
            results[engine] = f"{type(exc).__name__}: {first[:160]}"
        seconds[engine] = time.perf_counter() - began
    table, agree = render(results, seconds)
    print("\n" + table, flush=True)
    if where.is_s3:
        print("(spark's seconds include copying candles/ to local disk with pyarrow.fs.copy_files)")
    return agree


# Filling a dataset


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def moto_s3(log: str | None = None) -> Iterator[str]:
    """moto's S3 server on a free loopback port, with the AWS_* environment pointing at it.

    `log`: a file that gets its request log (a line per request: what a bench counts)."""
    port = free_port()
    command = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    sink = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=sink)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}"
        os.environ.update(
            AWS_ENDPOINT_URL=url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_REGION="us-east-1",
        )
        import boto3

        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if log is not None:
            sink.close()  # type: ignore[union-attr]


def fill(data_dir: str) -> None:
    """`upbit-cache fetch` 1m and 1h for three days, then `resample` 4h, from the simulator."""
    from simproc import SimProcess  # scripts/simproc.py, beside this file

    cli = (
        [str(BIN / "upbit-cache")]
        if (BIN / "upbit-cache").exists()
        else [sys.executable, "-m", "upbit_cache"]
    )
    with SimProcess("--rate", "10", "--clock", CLOCK, "--frozen") as sim:
        for args in (
            ["fetch", *MARKETS, "-t", "1m,1h", "--days", "3", "--api-url", sim.url, "-q"],
            ["resample", *MARKETS, "-t", "4h"],
        ):
            command = [*cli, *args, "--data-dir", data_dir]
            print("$ upbit-cache " + " ".join(command[len(cli) :]), flush=True)
            subprocess.run(command, check=True)


def write_synthetic(data_dir: str) -> None:
    """A small store in the `timeframe=` layout, written like the store writes: pyarrow's S3
    with directory markers, hot snappy files, one cold zstd file beside a hot one holding 24
    of its rows (a compaction under way), and one leftover temp file of a killed writer."""
    fs, root = Location(data_dir).arrow_fs()
    end = datetime(2026, 11, 20, tzinfo=UTC)
    schema = pa.schema(
        [("time", pa.timestamp("ms", tz="UTC"))]
        + [(c, pa.float64()) for c in ("open", "high", "low", "close", "volume", "value")]
        + [("timestamp", pa.timestamp("ms", tz="UTC"))]
    )

    def table(start: datetime, step: timedelta, count: int) -> pa.Table:
        times = [start + step * i for i in range(count)]
        price = [100.0 + (i % 37) * 0.5 for i in range(count)]
        columns: list[Any] = [times, price, price, price, price, price, price, times]
        return pa.table(columns, schema=schema)

    def put(tf: str, market: str, date: str, name: str, data: pa.Table, **options: Any) -> None:
        folder = f"{root}/timeframe={tf}/market={market}/date={date}"
        fs.create_dir(folder, recursive=True)
        with fs.open_output_stream(f"{folder}/{name}") as sink:
            pq.write_table(data, sink, **options)

    for market in MARKETS:
        for day in (end - timedelta(days=2), end - timedelta(days=1)):
            minutes = table(day, timedelta(minutes=1), 1440)
            put("1m", market, f"{day:%Y-%m-%d}", "part-0.parquet", minutes)
        for tf, hours in (("1h", 1), ("4h", 4)):
            hot = table(end - timedelta(days=2), timedelta(hours=hours), 48 // hours)
            put(tf, market, "2026-01-01", "part-0.parquet", hot, compression="snappy")
    cold = table(end - timedelta(days=3), timedelta(hours=1), 48)  # 24 rows overlap the hot file
    put(
        "1h",
        "KRW-XRP",
        "2026-01-01",
        "cold-0.parquet",
        cold,
        compression="zstd",
        compression_level=12,
        use_dictionary=False,
        column_encoding={
            n: "DELTA_BINARY_PACKED" if n in ("time", "timestamp") else "BYTE_STREAM_SPLIT"
            for n in schema.names
        },
    )
    leftover = f"{root}/timeframe=1m/market=KRW-BTC/date=2026-11-19/.part-0.parquet.0badc0de.tmp"
    with fs.open_output_stream(leftover) as sink:
        sink.write(b"PAR1 half a file")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--data-dir", metavar="URI", help="check this data dir (s3:// or local) as it is"
    )
    parser.add_argument("--synthetic", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.data_dir:
        return 0 if check(Location(args.data_dir)) else 1
    with moto_s3():
        data_dir = f"s3://{BUCKET}/" + ("synthetic" if args.synthetic else "data")
        if args.synthetic:
            write_synthetic(data_dir)
        else:
            fill(data_dir)
        return 0 if check(Location(data_dir)) else 1


if __name__ == "__main__":
    sys.exit(main())
