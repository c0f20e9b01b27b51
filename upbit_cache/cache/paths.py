"""Where everything lives in a data dir: built here, and parsed back here, nowhere else.

    <root>/candles/<tf>/market=<MARKET>/date=<YYYY-MM-DD>/part-0.parquet   the dataset
    <root>/fetched/<tf>/<MARKET>.json                                      fetched ranges
    <root>/locks/<tf>/<MARKET>.lock                                        writer locks

One partition holds one span of time, chosen per timeframe so that files hold hundreds to
tens of thousands of rows: a day for 1m, a month for 3m-30m, a year for 1h and coarser.
`date=` is the first day of the span.
"""

from __future__ import annotations

import re
import uuid
from typing import Literal

import numpy as np

from upbit_cache.timeframes import Timeframe

Span = Literal["day", "month", "year"]
DATA_FILE = "part-0.parquet"
TEMP_SUFFIX = ".tmp"
_PARTITION_RE = re.compile(
    r"candles/(?P<tf>[0-9]+[a-zA-Z])/market=(?P<market>[A-Z0-9-]+)/date=(?P<date>\d{4}-\d\d-\d\d)"
)


def partition_span(tf: Timeframe) -> Span:
    """How much time one partition file of this timeframe covers."""
    if tf.kind == "minute" and tf.count == 1:
        return "day"
    if tf.kind == "minute" and tf.count < 60:
        return "month"
    return "year"


def partition_starts(tf: Timeframe, ms: np.ndarray) -> np.ndarray:
    """The start (epoch ms) of the partition holding each candle start."""
    unit = {"day": "D", "month": "M", "year": "Y"}[partition_span(tf)]
    return (
        ms.astype("datetime64[ms]")
        .astype(f"datetime64[{unit}]")
        .astype("datetime64[ms]")
        .astype(np.int64)
    )


def partition_end(tf: Timeframe, start: int) -> int:
    """Where the partition starting at `start` ends (the next one's start)."""
    unit = {"day": "D", "month": "M", "year": "Y"}[partition_span(tf)]
    first = np.datetime64(start, "ms").astype(f"datetime64[{unit}]")
    return int((first + 1).astype("datetime64[ms]").astype(np.int64))


def partitions_between(tf: Timeframe, start: int, end: int) -> list[int]:
    """Every partition start overlapping [start, end), oldest first."""
    if end <= start:
        return []
    unit = {"day": "D", "month": "M", "year": "Y"}[partition_span(tf)]
    first, last = np.array([start, end - 1], dtype="datetime64[ms]").astype(f"datetime64[{unit}]")
    span = np.arange(first, last + 1)
    return [int(x) for x in span.astype("datetime64[ms]").astype(np.int64)]


def candles_root(root: str, tf: Timeframe) -> str:
    return f"{root}/candles/{tf.name}"


def partition_dir(root: str, tf: Timeframe, market: str, start_ms: int) -> str:
    day = np.datetime64(start_ms, "ms").astype("datetime64[D]")
    return f"{candles_root(root, tf)}/market={market}/date={day}"


def data_file(root: str, tf: Timeframe, market: str, start_ms: int) -> str:
    return f"{partition_dir(root, tf, market, start_ms)}/{DATA_FILE}"


def parse_partition(path: str) -> tuple[Timeframe, str, int]:
    """Inverse of `partition_dir`: (timeframe, market, partition start ms)."""
    found = _PARTITION_RE.search(path)
    if found is None:
        raise ValueError(f"not a partition path: {path}")
    start = np.datetime64(found["date"], "D").astype("datetime64[ms]").astype(np.int64)
    return Timeframe.parse(found["tf"]), found["market"], int(start)


def fetched_file(root: str, tf: Timeframe, market: str) -> str:
    return f"{root}/fetched/{tf.name}/{market}.json"


def lock_file(root: str, tf: Timeframe, market: str) -> str:
    return f"{root}/locks/{tf.name}/{market}.lock"


def temp_path(final: str) -> str:
    """A hidden sibling of `final` that dataset readers (and `*.parquet` globs) ignore."""
    head, _, name = final.rpartition("/")
    return f"{head}/.{name}.{uuid.uuid4().hex}{TEMP_SUFFIX}"
