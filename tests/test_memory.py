"""The memory layer: byte bound, LRU order, staleness, and its place in front of the store."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from conftest import FAST_RATE, NOW
from test_store import make

from upbit_cache import UpbitCache
from upbit_cache.errors import UsageError
from upbit_cache.manager.memory import Budget, MemoryCache
from upbit_cache.manager.prune import Policy
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.settings import ENV_MEMORY, Settings, parse_size
from upbit_cache.simulator.server import SimulatorServer
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.timeframes.timeframe import DAY_MS
from upbit_cache.times import to_ms

H1 = Timeframe.parse("1h")


def table(rows: int) -> pa.Table:
    return pa.table({"x": pa.array(range(rows), pa.int64())})  # 8 bytes a row


def test_bounded_by_bytes_a_table_read_again_outlives_those_read_once() -> None:
    memory = MemoryCache(max_bytes=8 * 250)
    memory.put("a", (1, 1), table(100))
    memory.put("b", (1, 1), table(100))
    assert memory.get("a", (1, 1)) is not None
    assert memory.get("a", (1, 1)) is not None  # read again: protected
    memory.put("c", (1, 1), table(100))  # 2,400 bytes > 2,000: b goes (on probation)
    assert memory.get("b", (1, 1)) is None
    assert memory.get("a", (1, 1)) is not None
    assert memory.get("c", (1, 1)) is not None
    assert memory.stats.evictions == 1 and memory.stats.promotions == 1
    assert memory.stats.bytes == 1600 <= memory.budget.now()
    assert (memory.stats.hits, memory.stats.misses) == (4, 1)


def test_a_long_scan_leaves_the_hot_set_in_memory() -> None:
    """A screener's working set, read every hour, survives a backtest reading a year."""
    memory = MemoryCache(max_bytes=8 * 100 * 40)  # room for 40 tables of 100 rows
    hot = [f"screen/{i}" for i in range(20)]
    for _run in range(2):  # two hourly runs, each reading every table of the set
        for path in hot:
            if memory.get(path, (1, 1)) is None:
                memory.put(path, (1, 1), table(100), read=True)  # read from disk
    for i in range(500):  # a scan: 12 times the budget, every table read once from disk
        memory.put(f"scan/{i}", (1, 1), table(100), read=True)
    for i in range(500, 1000):  # and one written by its fetch, then read
        memory.put(f"scan/{i}", (1, 1), table(100))
        memory.get(f"scan/{i}", (1, 1))
    before = memory.stats.misses
    assert all(memory.get(path, (1, 1)) is not None for path in hot)
    assert memory.stats.misses == before
    assert memory.stats.bytes <= memory.budget.now()


def test_a_table_asked_for_again_after_probation_dropped_it_is_kept() -> None:
    memory = MemoryCache(max_bytes=8 * 100 * 8)
    memory.put("daily", (1, 1), table(100), read=True)
    for i in range(20):  # pushed out of probation by a scan
        memory.put(f"scan/{i}", (1, 1), table(100), read=True)
    assert memory.get("daily", (1, 1)) is None
    memory.put("daily", (1, 1), table(100), read=True)  # read again: remembered, protected
    for i in range(20, 40):
        memory.put(f"scan/{i}", (1, 1), table(100), read=True)
    assert memory.get("daily", (1, 1)) is not None


class Machine:
    """The memory a machine reports (what /proc/meminfo says on Linux), set by the test."""

    def __init__(self, available: int, total: int) -> None:
        self.available, self.total = available, total

    def __call__(self) -> tuple[int, int]:
        return self.available, self.total


def look(memory: MemoryCache) -> None:
    """Make the cache look at its budget (and give back what it no longer allows): a put."""
    memory.put("t/look", (1, 1), table(1))


@pytest.mark.slow
def test_the_budget_follows_the_machine_and_shrinks_under_pressure() -> None:
    machine = Machine(available=4 * 2**30, total=8 * 2**30)
    memory = MemoryCache(budget=Budget(probe=machine, every=0))
    assert memory.budget.now() == int(4 * 2**30 * 0.10)  # a tenth of what is available
    for i in range(30):
        memory.put(f"t/{i}", (1, 1), table(1_000_000))  # 8 MB each: 240 MB held
    assert memory.stats.bytes == 240_000_000
    machine.available = 200 * 2**20  # another process took the rest
    look(memory)  # each look at the machine (here: every call) halves the budget
    assert memory.stats.bytes <= memory.stats.budget == int(4 * 2**30 * 0.10) // 2
    look(memory)  # still short: halves again
    assert memory.stats.bytes <= memory.stats.budget == int(4 * 2**30 * 0.10) // 4
    machine.available = 4 * 2**30  # relief: back up step by step, not at once
    look(memory)
    assert memory.stats.budget == int(4 * 2**30 * 0.10) // 2


def test_an_explicit_budget_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    scarce = Machine(available=10 * 2**20, total=8 * 2**30)
    assert (
        MemoryCache(budget=Budget(300 * 2**20, probe=scarce, every=0)).budget.now() == 300 * 2**20
    )
    monkeypatch.setenv(ENV_MEMORY, "2G")
    assert Budget(Settings.from_env().memory_bytes(), probe=scarce).now() == 2 * 2**30
    monkeypatch.setenv(ENV_MEMORY, "lots")
    with pytest.raises(UsageError, match="not a size such as 512M"):
        Settings.from_env().memory_bytes()
    with pytest.raises(UsageError, match="not a size such as 512M"):
        UpbitCache(tmp_path)
    # The caller's setting over the environment, which is then not looked at.
    assert UpbitCache(tmp_path, memory_bytes=64).memory.budget.now() == 64
    assert [parse_size(t) for t in ("512M", "1.5GiB", "0", "2048")] == [
        512 * 2**20,
        int(1.5 * 2**30),
        0,
        2048,
    ]


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
    assert memory.stats.bytes == 32


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


def test_each_layer_counts_what_it_answered(sim: SimulatorServer, tmp_path: Path) -> None:
    def fresh() -> UpbitCache:
        return UpbitCache(tmp_path, api_url=sim.url, rate=FAST_RATE)

    span = ("2025-10-10", "2025-10-12")  # 1h files hold a year: one prune can compact
    cache = fresh()
    assert len(cache.get("KRW-BTC", "1h", *span)) == 48  # from Upbit
    assert len(cache.get("KRW-BTC", "1h", *span)) == 48  # from memory
    report = cache.layer_stats()
    upbit, memory = report.layers["upbit"], report.layers["memory"]
    assert (upbit.requests, upbit.reads, upbit.rows) == (1, 1, 48)
    assert memory.requests == 1 and memory.reads >= 1
    hot = fresh()
    hot.load("KRW-BTC", "1h", *span)  # another process: its memory is empty
    assert hot.layer_stats().layers["hot"].requests == 1
    assert hot.layer_stats().layers["memory"].requests == 0
    hot.prune(Policy(compact_after_ms=DAY_MS), now=NOW)  # older than a day: into the cold tier
    cold = fresh()
    cold.load("KRW-BTC", "1h", *span)
    stats = cold.layer_stats()
    assert stats.layers["cold"].requests == 1 and stats.layers["cold"].rows >= 48
    for layer in ("memory", "hot", "upbit"):
        assert stats.layers[layer].requests == 0
    latency = stats.layers["cold"].percentile(0.5)
    assert latency is not None and 0 < latency < 5
    # Rows served: 48 from Upbit and at least 48 more from memory (each read is counted).
    assert 0.5 <= report.hit_rate < 1 and report.memory_hit_rate == 1.0
