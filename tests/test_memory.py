"""The memory layer: byte bound, LRU order, staleness, and its place in front of the store."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from test_store import make

from upbit_cache.manager.memory import MemoryCache
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

H1 = Timeframe.parse("1h")


def table(rows: int) -> pa.Table:
    return pa.table({"x": pa.array(range(rows), pa.int64())})  # 8 bytes a row


def test_bounded_by_bytes_evicting_least_recently_used() -> None:
    memory = MemoryCache(max_bytes=8 * 250)
    memory.put("a", (1, 1), table(100))
    memory.put("b", (1, 1), table(100))
    assert memory.get("a", (1, 1)) is not None  # a is now the most recently used
    memory.put("c", (1, 1), table(100))  # 2,400 bytes > 2,000: evict b, not a
    assert memory.get("b", (1, 1)) is None
    assert memory.get("a", (1, 1)) is not None
    assert memory.get("c", (1, 1)) is not None
    assert memory.stats.evictions == 1
    assert memory.stats.bytes == 1600 <= memory.max_bytes
    assert (memory.stats.hits, memory.stats.misses) == (3, 1)


def test_a_table_larger_than_the_budget_is_not_kept() -> None:
    memory = MemoryCache(max_bytes=100)
    memory.put("big", (1, 1), table(100))
    assert memory.get("big", (1, 1)) is None
    assert memory.stats.bytes == 0


def test_another_version_of_the_file_is_a_miss() -> None:
    memory = MemoryCache()
    memory.put("a", (10, 1), table(3))
    assert memory.get("a", (10, 2)) is None
    memory.put("a", (10, 2), table(4))
    assert memory.stats.bytes == 32 and memory.stats.entries == 1


def test_store_reads_each_partition_from_disk_once(tmp_path: Path) -> None:
    memory = MemoryCache()
    store = CandleStore(tmp_path, cache=memory)
    store.write("KRW-BTC", H1, make("2026-01-01", 48), Ranges())
    memory.stats.hits = memory.stats.misses = 0
    store.load("KRW-BTC", H1)  # just written: already in memory
    store.load("KRW-BTC", H1, TimeRange(to_ms("2025-06-01"), to_ms("2026-06-01")))
    assert (memory.stats.hits, memory.stats.misses) == (2, 0)
    fresh = MemoryCache()
    cold = CandleStore(tmp_path, cache=fresh)
    cold.load("KRW-BTC", H1)
    cold.load("KRW-BTC", H1)
    assert (fresh.stats.hits, fresh.stats.misses) == (1, 1)


def test_a_partition_rewritten_by_another_process_is_read_again(tmp_path: Path) -> None:
    reader = CandleStore(tmp_path, cache=MemoryCache())
    writer = CandleStore(tmp_path, cache=MemoryCache())
    writer.write("KRW-BTC", H1, make("2026-01-01", 5), Ranges())
    assert len(reader.load("KRW-BTC", H1)) == 5
    writer.write("KRW-BTC", H1, make("2026-01-01T05:00", 5), Ranges())
    assert len(reader.load("KRW-BTC", H1)) == 10
