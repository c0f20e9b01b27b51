"""The Parquet store on a real temp dir: layout, merge-replace, ranges, atomicity, readers."""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
from hypothesis import given
from hypothesis import strategies as st

from upbit_cache.candles import CANDLE_SCHEMA
from upbit_cache.errors import StorageError
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.store import layout
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

HOUR = 3_600_000
H1 = Timeframe.parse("1h")


def make(start: str, n: int, step: int = HOUR, price: float = 100.0) -> pd.DataFrame:
    t0 = to_ms(start)
    times = t0 + step * np.arange(n, dtype=np.int64)
    close = price + np.arange(n, dtype=np.float64)
    return pd.DataFrame(
        {
            "time": pd.to_datetime(times, unit="ms", utc=True).astype("datetime64[ms, UTC]"),
            "open": close - 1,
            "high": close + 1,
            "low": close - 2,
            "close": close,
            "volume": np.ones(n),
            "value": close,
            "timestamp": pd.to_datetime(times + step - 1, unit="ms", utc=True).astype(
                "datetime64[ms, UTC]"
            ),
        }
    )


def test_layout_is_hive_partitioned_by_market_and_span(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    frame = make("2025-12-31T20:00", 10)  # crosses a year boundary: two 1h partitions
    store.write(
        "KRW-BTC", H1, frame, Ranges.of([(to_ms("2025-12-31T20:00"), to_ms("2026-01-01T06:00"))])
    )
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.parquet"))
    # Each file named by the span of its rows (and a hash of them), in its partition.
    assert [re.sub(r"-[0-9a-f]{12}\.", "-<hash>.", f) for f in files] == [
        "candles/timeframe=1h/market=KRW-BTC/date=2025-01-01/"
        "part-20251231T200000-20260101T000000-<hash>.parquet",
        "candles/timeframe=1h/market=KRW-BTC/date=2026-01-01/"
        "part-20260101T000000-20260101T060000-<hash>.parquet",
    ]
    # Plain pyarrow sees one dataset with the market as a column.
    table = ds.dataset(
        tmp_path / "candles" / "timeframe=1h", format="parquet", partitioning="hive"
    ).to_table()
    assert table.num_rows == 10
    assert set(table.column("market").to_pylist()) == {"KRW-BTC"}


@pytest.mark.parametrize(
    ("tf", "span"), [("1m", "day"), ("15m", "month"), ("1h", "year"), ("1d", "year")]
)
def test_partition_span_rule(tf: str, span: str) -> None:
    assert layout.partition_span(Timeframe.parse(tf)) == span


@given(
    name=st.sampled_from(["1m", "15m", "1h", "1d"]),
    start=st.integers(min_value=to_ms("2020-01-01"), max_value=to_ms("2030-01-01")),
    length=st.integers(min_value=0, max_value=800 * 86_400_000),
)
def test_partitions_between_tile_the_range(name: str, start: int, length: int) -> None:
    tf = Timeframe.parse(name)
    found = layout.partitions_between(tf, TimeRange(start, start + length))
    if length == 0:
        assert found == []
        return
    # The vectorised rule and the single-time walk name the same partitions, end to end.
    ends = [start, start + length - 1]
    first, last = layout.partition_starts(tf, np.array(ends, dtype=np.int64))
    assert found[0] == first and found[-1] == last
    assert all(layout.partition_end(tf, a) == b for a, b in itertools.pairwise(found))
    start_of = layout.parse_partition(layout.partition_dir("/d", tf, "KRW-BTC", found[-1]))[2]
    assert start_of == found[-1]


def test_rewrite_replaces_rows_never_duplicates(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    store.write("KRW-BTC", H1, make("2026-01-01", 5), Ranges())
    newer = make("2026-01-01T03:00", 4, price=500.0)
    store.write("KRW-BTC", H1, newer, Ranges())
    got = store.load("KRW-BTC", H1)
    assert len(got) == 7
    assert got["time"].is_unique and got["time"].is_monotonic_increasing
    assert list(got["close"].iloc[3:]) == [500.0, 501.0, 502.0, 503.0]


def test_load_is_half_open_and_typed(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    store.write("KRW-BTC", H1, make("2026-01-01", 48), Ranges())
    got = store.load("KRW-BTC", H1, TimeRange(to_ms("2026-01-01T10:00"), to_ms("2026-01-01T12:00")))
    assert list(got["time"]) == [
        pd.Timestamp("2026-01-01T10:00Z"),
        pd.Timestamp("2026-01-01T11:00Z"),
    ]
    assert str(got["time"].dtype) == "datetime64[ms, UTC]"
    empty = store.load("KRW-ETH", H1, TimeRange(to_ms("2026-01-01"), to_ms("2026-01-02")))
    assert empty.empty and list(empty.columns) == list(got.columns)


def test_fetched_ranges_are_merged_and_separate_from_candles(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    a, b, c = to_ms("2026-01-01"), to_ms("2026-01-02"), to_ms("2026-01-03")
    store.write("KRW-BTC", H1, make("2026-01-01", 3), Ranges.of([(a, b)]))
    store.write(
        "KRW-BTC", H1, CANDLE_SCHEMA.empty_table(), Ranges.of([(b, c)])
    )  # a fetched day with no trade
    assert store.fetched(H1, "KRW-BTC") == Ranges.of([(a, c)])
    assert store.fetched(H1, "KRW-ETH") == Ranges()
    assert store.markets(H1) == ["KRW-BTC"]


def test_a_damaged_record_is_a_clear_storage_error(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    record = tmp_path / "fetched" / "1h" / "KRW-BTC.json"
    record.parent.mkdir(parents=True)
    record.write_text("{not json")
    with pytest.raises(StorageError, match="damaged"):
        store.fetched(H1, "KRW-BTC")


def test_leftover_temp_files_are_invisible_to_readers(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    store.write("KRW-BTC", H1, make("2026-01-01", 3), Ranges())
    part = tmp_path / "candles/timeframe=1h/market=KRW-BTC/date=2026-01-01"
    (part / ".part-0.parquet.deadbeef.tmp").write_bytes(b"PAR1 half written")
    assert len(store.load("KRW-BTC", H1)) == 3
    table = ds.dataset(
        tmp_path / "candles" / "timeframe=1h", format="parquet", partitioning="hive"
    ).to_table()
    assert table.num_rows == 3


def test_unwritable_data_dir(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = "/proc/upbit-cache-test"  # even root cannot create files here
    else:
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o500)
        target = str(locked / "data")
    with pytest.raises(StorageError, match="not writable"):
        CandleStore(target).ensure_writable()


def test_lock_is_exclusive_across_holders(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    first = store.lock(H1, "KRW-BTC")
    assert first.try_acquire()
    assert not store.lock(H1, "KRW-BTC").try_acquire()
    assert store.lock(H1, "KRW-ETH").try_acquire()
    first.release()
    assert store.lock(H1, "KRW-BTC").try_acquire()
