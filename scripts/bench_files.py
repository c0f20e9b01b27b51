"""Files per partition benchmark: what reading one day of 1m costs as 1, 8, 50 and 1,440 files.

Data files are written once, so a partition holds as many files as its writes left until
they roll up (store/parts.py): a day of backfill, one per page; a day of `live`, one per
close before roll-ups. This writes one day of 1m candles (1,440 rows) of one market as N
files listed in its record, then reads it back through the library (`CandleStore.load_table`,
a fresh store each time: no memory layer, every file read) on a local disk and on S3 (moto's
server on loopback), and prints the median and best of a few reads.

    python scripts/bench_files.py [--repeat 5] [--counts 1,8,50,1440] [--no-s3]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time

import numpy as np
import pyarrow as pa
from check_engines import BUCKET, moto_s3

from upbit_cache.candles import CANDLE_SCHEMA
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.store import layout
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.store.parts import name_for
from upbit_cache.store.records import Record
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

M1 = Timeframe.parse("1m")
DAY = 86_400_000
START = to_ms("2026-11-19")
MARKET = "KRW-BTC"


def day_table() -> pa.Table:
    times = START + 60_000 * np.arange(1440, dtype=np.int64)
    close = 100 + np.random.default_rng(1).random(1440)
    kind = CANDLE_SCHEMA.field("time").type
    columns = [pa.array(times).cast(kind)]
    columns += [pa.array(a) for a in (close - 0.1, close + 1, close - 1, close)]
    columns += [pa.array(np.ones(1440)), pa.array(close * 2), pa.array(times + 59_999).cast(kind)]
    return pa.Table.from_arrays(columns, schema=CANDLE_SCHEMA)


def build(location: str, count: int) -> None:
    """The day as `count` files of (nearly) equal spans, listed in the record."""
    store, table = CandleStore(location), day_table()
    cuts = np.linspace(0, 1440, count + 1).astype(int)
    names = []
    for lo, hi in itertools.pairwise(cuts):
        piece = table.slice(lo, hi - lo)
        part = name_for(M1, piece, "hot")
        store.create_file(layout.series_path(store.root, M1, MARKET, part.name), piece)
        names.append(part.name)
    fetched = Ranges.of([(START, START + DAY)])
    store.set_record(M1, MARKET, Record(fetched=fetched, files=frozenset(names)))


def read_times(location: str, repeat: int) -> list[float]:
    took = []
    for _ in range(repeat):
        store = CandleStore(location)
        began = time.perf_counter()
        got = store.load_table(MARKET, M1, TimeRange(START, START + DAY))
        took.append(time.perf_counter() - began)
        assert got.num_rows == 1440
    return took


def report(where: str, counts: list[int], root: str, repeat: int) -> None:
    for count in counts:
        location = f"{root}/n{count}"
        build(location, count)
        took = np.array(read_times(location, repeat)) * 1000
        print(
            f"{where:>5}: a day of 1m as {count:>5,} files: median {np.median(took):8.1f} ms, "
            f"best {took.min():8.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--counts", default="1,8,50,1440")
    parser.add_argument("--no-s3", action="store_true")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    with tempfile.TemporaryDirectory() as root:
        report("local", counts, root, args.repeat)
    if not args.no_s3:
        with moto_s3():
            report("s3", counts, f"s3://{BUCKET}/bench-files", args.repeat)


if __name__ == "__main__":
    main()
