"""Where everything lives in a data dir: built here, and parsed back here, nowhere else.

    <root>/candles/timeframe=<tf>/market=<MARKET>/date=<YYYY-MM-DD>/<data file>     the dataset
      part-<from>-<to>-<hash>.parquet   hot tier: rows of [from, to), written once
      cold-<from>-<to>-<hash>.parquet   cold tier (prune's compaction)
      part-0.parquet, cold-0.parquet    before files were written once: the whole partition
    <root>/fetched/<tf>/<MARKET>.json                                      fetched ranges
    <root>/locks/<tf>/<MARKET>.lock                                        writer locks
    <root>/screens/<key>.<format>, <key>.json                              kept screen tables
    <root>/quarantine/<when>/<path as above>                    files verify or fetch moved
    <root>/checked/<tf>/<MARKET>.json                          versions a fetch found sound
    <root>/listings/<tf>/<MARKET>.json               what a probe learnt of its first candle
    .<name>.<random>.tmp beside any of them                                a write under way

Every timeframe and both tiers are one Hive-partitioned dataset (`timeframe`, `market`,
`date`): `candles/**/*.parquet` read with Hive partitioning has a `timeframe` column. Data
dirs made before the `timeframe=` key (`candles/<tf>/...`) are moved on first use
(`store/migrate.py`). One hot partition holds one
span of time, chosen per timeframe so that files hold hundreds to tens of thousands of rows:
a day for 1s and 1m, a month for 3m-30m, a year for 1h and coarser. `prune` compacts old hot
partitions into cold files spanning a day for 1s, a month for 1m and a year otherwise.
`date=` is the first day of a file's partition, so filter on `time`, not on `date`.

A data file is never rewritten: its name says the span of its rows (`<from>`, `<to>` as UTC
stamps `20260101T000000`: the first row's time, the end of the last row's period) and a hash
of their content (identical rows, identical name), so a partition holds any number of files
and the series' record lists which are current (store/parts.py).
"""

from __future__ import annotations

import calendar
import re
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from upbit_cache.ranges import TimeRange
from upbit_cache.timeframes import Timeframe

if TYPE_CHECKING:
    import numpy as np

Span = Literal["day", "month", "year"]
Tier = Literal["hot", "cold"]
DATA_FILE = "part-0.parquet"  # a hot partition's one file before files were written once
COLD_FILE = "cold-0.parquet"
LEGACY_NAMES: dict[Tier, str] = {"hot": DATA_FILE, "cold": COLD_FILE}
PREFIXES: dict[Tier, str] = {"hot": "part", "cold": "cold"}
PARQUET = ".parquet"
_FOLDER_RE = re.compile(r"(?:^|/)date=(\d{4})-(\d\d)-(\d\d)/[^/]+$")
_NAMED_RE = re.compile(r"(part|cold)-(\d{8}T\d{6})-(\d{8}T\d{6})-([0-9a-f]{6,16})\.parquet")
CANDLES = "candles"
RECORDS = "fetched"
SCREENS = "screens"
QUARANTINE = "quarantine"
CHECKED = "checked"
LISTINGS = "listings"
RECORD_SUFFIX = ".json"
TEMP_SUFFIX = ".tmp"
_PARTITION_RE = re.compile(
    r"candles/timeframe=(?P<tf>[0-9]+[a-zA-Z])/market=(?P<market>[A-Z0-9-]+)/date=(?P<date>\d{4}-\d\d-\d\d)"
)


def partition_span(tf: Timeframe, tier: Tier = "hot") -> Span:
    """How much time one partition file of this timeframe covers, in this tier."""
    if tf.kind == "second":
        # Up to 86,400 rows a day. A cold month would be 2.6 M rows (170 MB decoded for any
        # read touching it) and no smaller: zstd works per row group, not per file.
        return "day"
    if tier == "cold":
        return "month" if tf.kind == "minute" and tf.count == 1 else "year"
    if tf.kind == "minute" and tf.count == 1:
        return "day"
    if tf.kind == "minute" and tf.count < 60:
        return "month"
    return "year"


def tier_of(path: str) -> Tier:
    """The tier of a data file, from its name."""
    return "cold" if path.rpartition("/")[2].startswith("cold-") else "hot"


def partition_starts(tf: Timeframe, ms: np.ndarray) -> np.ndarray:
    """The start (epoch ms) of the partition holding each candle start (vectorised)."""
    import numpy as np

    unit = {"day": "D", "month": "M", "year": "Y"}[partition_span(tf)]
    return (
        ms.astype("datetime64[ms]")
        .astype(f"datetime64[{unit}]")
        .astype("datetime64[ms]")
        .astype(np.int64)
    )


# The single-time helpers below are plain Python (no numpy): a hot screen-prep computes
# its fingerprint from them and must start fast.


def partition_start(tf: Timeframe, ms: int, tier: Tier = "hot") -> int:
    """The start of the partition holding the time `ms`."""
    when = datetime.fromtimestamp(ms / 1000, UTC)
    span = partition_span(tf, tier)
    first = datetime(
        when.year,
        1 if span == "year" else when.month,
        when.day if span == "day" else 1,
        tzinfo=UTC,
    )
    return int(first.timestamp() * 1000)


def partition_end(tf: Timeframe, start: int, tier: Tier = "hot") -> int:
    """Where the partition starting at `start` ends (the next one's start)."""
    when = datetime.fromtimestamp(start / 1000, UTC)
    span = partition_span(tf, tier)
    if span == "day":
        return start + 86_400_000
    year, month = when.year, when.month + 1
    if span == "year" or month > 12:
        year, month = year + 1, 1
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)


def partitions_between(tf: Timeframe, span: TimeRange, tier: Tier = "hot") -> list[int]:
    """Every partition start overlapping `span` (bounded), oldest first."""
    found: list[int] = []
    end = span.end
    at = partition_start(tf, span.start, tier) if not span.empty else end
    while at < end:
        found.append(at)
        at = partition_end(tf, at, tier)
    return found


def candles_dir(root: str) -> str:
    """The Hive dataset: every timeframe's candles."""
    return f"{root}/{CANDLES}"


def candles_root(root: str, tf: Timeframe) -> str:
    """One timeframe's part of the dataset: `candles/timeframe=1h`."""
    return f"{root}/{CANDLES}/{timeframe_dir(tf)}"


def timeframe_dir(tf: Timeframe) -> str:
    return f"timeframe={tf.name}"


def timeframe_of_dir(name: str) -> str | None:
    """Inverse of `timeframe_dir`: `timeframe=1h` -> 1h (unparsed)."""
    return name.removeprefix("timeframe=") if name.startswith("timeframe=") else None


def old_candles_root(root: str, name: str) -> str:
    """Where a timeframe's candles were before the `timeframe=` key: `candles/1h`."""
    return f"{root}/{CANDLES}/{name}"


def market_dir(root: str, tf: Timeframe, market: str) -> str:
    return f"{candles_root(root, tf)}/market={market}"


def in_series(root: str, tf: Timeframe, market: str, path: str) -> str:
    """A data file's name inside its series' folder: `date=2026-01-01/part-0.parquet`."""
    return path.removeprefix(market_dir(root, tf, market) + "/")


def series_path(root: str, tf: Timeframe, market: str, name: str) -> str:
    """Inverse of `in_series`."""
    return f"{market_dir(root, tf, market)}/{name}"


def quarantine_path(root: str, path: str, stamp: str) -> str:
    """Where `verify --repair` moves a bad file: the same place under `quarantine/`."""
    return f"{root}/{QUARANTINE}/{stamp}/{path.removeprefix(root + '/')}"


def market_of_dir(name: str) -> str | None:
    """Inverse of `market_dir`'s last part: `market=KRW-BTC` -> KRW-BTC."""
    return name.removeprefix("market=") if name.startswith("market=") else None


def partition_dir(root: str, tf: Timeframe, market: str, start_ms: int) -> str:
    day = datetime.fromtimestamp(start_ms / 1000, UTC).date().isoformat()
    return f"{market_dir(root, tf, market)}/date={day}"


def data_name(tf: Timeframe, tier: Tier, span: TimeRange, digest: str) -> str:
    """A data file's name inside its series' folder: `date=.../part-<from>-<to>-<hash>.parquet`
    (the folder is the partition, of `tier`, holding `span`)."""
    folder = partition_folder(partition_start(tf, span.start, tier))
    return f"{folder}/{PREFIXES[tier]}-{stamp(span.start)}-{stamp(span.end)}-{digest}{PARQUET}"


def partition_folder(start_ms: int) -> str:
    """A partition's folder inside its series' folder: `date=2026-01-01`."""
    return f"date={datetime.fromtimestamp(start_ms / 1000, UTC).date().isoformat()}"


def stamp(ms: int) -> str:
    """A time in a data file's name: `20260101T000000` (UTC, whole seconds)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%dT%H%M%S")


def _unstamp(text: str) -> int:
    parts = (text[0:4], text[4:6], text[6:8], text[9:11], text[11:13], text[13:15])
    return calendar.timegm(tuple(int(p) for p in parts)) * 1000


def named_span(name: str) -> TimeRange | None:
    """The span a written-once data file's name says it holds; None for any other name."""
    found = _NAMED_RE.fullmatch(name.rpartition("/")[2])
    if found is None:
        return None
    return TimeRange(_unstamp(found[2]), _unstamp(found[3]))


def legacy_file(root: str, tf: Timeframe, market: str, start_ms: int, tier: Tier = "hot") -> str:
    """A partition's one file before files were written once (`part-0.parquet`)."""
    return f"{partition_dir(root, tf, market, start_ms)}/{LEGACY_NAMES[tier]}"


def legacy_files_between(root: str, tf: Timeframe, market: str, span: TimeRange) -> list[str]:
    """Every legacy data file, cold tier then hot, that may hold candles of `span` (bounded)."""
    return [
        legacy_file(root, tf, market, p, tier)
        for tier in ("cold", "hot")
        for p in partitions_between(tf, span, tier)
    ]


def parse_partition(path: str) -> tuple[Timeframe, str, int]:
    """Inverse of `partition_dir`: (timeframe, market, partition start ms)."""
    found = _PARTITION_RE.search(path)
    if found is None:
        raise ValueError(f"not a partition path: {path}")
    year, month, day = (int(part) for part in found["date"].split("-"))  # strptime: 5x slower
    start = datetime(year, month, day, tzinfo=UTC)
    return Timeframe.parse(found["tf"]), found["market"], int(start.timestamp() * 1000)


def is_data_file(name: str) -> bool:
    """Whether a file name is a data file's (written once, or legacy)."""
    return name in LEGACY_NAMES.values() or _NAMED_RE.fullmatch(name) is not None


def is_legacy(path: str) -> bool:
    """Whether a data file is of the kind written before files were written once."""
    return path.rpartition("/")[2] in LEGACY_NAMES.values()


def records_dir(root: str) -> str:
    return f"{root}/{RECORDS}"


def records_root(root: str, tf: Timeframe) -> str:
    return f"{records_dir(root)}/{tf.name}"


def file_span(tf: Timeframe, path: str) -> TimeRange:
    """The time a data file's name says it holds (a legacy file: its whole partition)."""
    named = named_span(path)
    if named is not None:
        return named
    return partition_of(tf, path)


def partition_of(tf: Timeframe, path: str) -> TimeRange:
    """The span of the partition a data file's folder and tier name (`path` in its series'
    folder or whole)."""
    found = _FOLDER_RE.search(path)
    if found is None:
        raise ValueError(f"not a data file's path: {path}")
    start = calendar.timegm((int(found[1]), int(found[2]), int(found[3]), 0, 0, 0)) * 1000
    return TimeRange(start, partition_end(tf, start, tier_of(path)))


def fetched_file(root: str, tf: Timeframe, market: str) -> str:
    return f"{records_root(root, tf)}/{market}{RECORD_SUFFIX}"


def market_of_record(name: str) -> str | None:
    """Inverse of `fetched_file`'s file name: `KRW-BTC.json` -> KRW-BTC."""
    if name.startswith(".") or not name.endswith(RECORD_SUFFIX):
        return None
    return name.removesuffix(RECORD_SUFFIX)


def checked_file(root: str, tf: Timeframe, market: str) -> str:
    """The versions of one series' data files that passed a fetch's checks (store/heal.py)."""
    return f"{root}/{CHECKED}/{tf.name}/{market}{RECORD_SUFFIX}"


def listing_file(root: str, tf: Timeframe, market: str) -> str:
    """What a sharded fetch's probe learnt of a market's first `tf` candle (store/listings.py)."""
    return f"{root}/{LISTINGS}/{tf.name}/{market}{RECORD_SUFFIX}"


def lock_file(root: str, tf: Timeframe, market: str) -> str:
    return f"{root}/locks/{tf.name}/{market}.lock"


def screens_dir(root: str) -> str:
    return f"{root}/{SCREENS}"


def screen_table(root: str, name: str, fmt: str) -> str:
    """A kept screen-prep table: `<root>/screens/<key>.<format>`."""
    return f"{screens_dir(root)}/{name}.{fmt}"


def screen_record(root: str, name: str) -> str:
    """What a kept table was built from: `<root>/screens/<key>.json`."""
    return f"{screens_dir(root)}/{name}{RECORD_SUFFIX}"


def screen_key(file_name: str) -> str:
    """The key of a kept screen file (`<key>.<format>` or `<key>.json`)."""
    return file_name.split(".")[0]


def temp_path(final: str) -> str:
    """A hidden sibling of `final` that dataset readers (and `*.parquet` globs) ignore."""
    head, _, name = final.rpartition("/")
    return f"{head}/.{name}.{uuid.uuid4().hex}{TEMP_SUFFIX}"
