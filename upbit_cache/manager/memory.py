"""The in-process memory layer (L1): partition tables in front of the Parquet store.

Entries are keyed by file path and remember the file's version (size, mtime), so a partition
rewritten by another process is read again, never served stale.

Scan-resistant (2Q): a table enters a probation queue (a quarter of the budget, first in
first out) and moves to the protected part (least recently used out) only when it is read
again: read a second time while on probation, or asked for again after probation dropped it
(its key is remembered, without its data). A backtest reading a year passes through
probation once and leaves the screener's working set, read every hour, where it is. A write
that replaces a table keeps it where it was: the same partition, newer.

The budget follows the machine unless it is set (`UpbitCache(memory_bytes=...)` or
`UPBIT_CACHE_MEMORY`): a tenth of the memory available, between 64 MiB and 1 GiB, looked at
again at most once a second; when the machine runs short (less than 5% or 256 MiB
available) the budget halves at each look, down to 16 MiB, and grows back once it is not.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from upbit_cache import host
from upbit_cache.manager.layers import Layers

if TYPE_CHECKING:  # pyarrow is not loaded to make an empty cache (a kept screen-prep table)
    import pyarrow as pa

    from upbit_cache.store.candle_store import Tier

MiB = 2**20
SHARE, FLOOR, CEILING, SMALLEST = 0.10, 64 * MiB, 1024 * MiB, 16 * MiB
PROBATION_SHARE = 0.25
_LOOK_SECONDS = 1.0

Probe = Callable[[], tuple[int, int] | None]  # (available, total) bytes, None: unknown


class Budget:
    """How many bytes the memory layer may hold now: `fixed`, else it follows the machine."""

    def __init__(
        self,
        fixed: int | None = None,
        probe: Probe = host.memory,
        every: float = _LOOK_SECONDS,
    ) -> None:
        self.fixed, self.probe, self.every = fixed, probe, every
        self._bytes = fixed if fixed is not None else FLOOR
        self._looked: float | None = None

    @property
    def adaptive(self) -> bool:
        return self.fixed is None

    def now(self) -> int:
        """The budget, looked at again if a second has passed since the last look."""
        if self.fixed is not None:
            return self.fixed
        moment = time.monotonic()
        if self._looked is None or moment - self._looked >= self.every:
            first = self._looked is None
            self._looked = moment
            self._bytes = self._next(self.probe(), first)
        return self._bytes

    def _next(self, memory: tuple[int, int] | None, first: bool) -> int:
        if memory is None:
            return FLOOR  # no way to tell: a modest fixed size
        available, total = memory
        share = min(CEILING, max(FLOOR, int(available * SHARE)))
        if available < max(total * 0.05, 256 * MiB):
            return max(SMALLEST, (share if first else self._bytes) // 2)
        return share if first else min(share, self._bytes * 2)  # back up step by step


@dataclass
class MemoryStats:
    """How the memory layer has done so far."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    promotions: int = 0  # from probation to the protected part
    bytes: int = 0
    budget: int = 0
    protected_bytes: int = 0

    @property
    def hit_rate(self) -> float:
        asked = self.hits + self.misses
        return self.hits / asked if asked else 0.0


@dataclass
class _Entry:
    version: tuple[int, int]
    table: pa.Table
    reads: int = 0


class _Segment:
    """Entries in order (the first goes first), with their bytes counted as they change."""

    def __init__(self) -> None:
        self.entries: OrderedDict[str, _Entry] = OrderedDict()
        self.bytes = 0

    def add(self, path: str, entry: _Entry) -> None:
        self.entries[path] = entry
        self.bytes += entry.table.nbytes

    def pop(self, path: str) -> _Entry | None:
        entry = self.entries.pop(path, None)
        if entry is not None:
            self.bytes -= entry.table.nbytes
        return entry

    def pop_first(self) -> tuple[str, _Entry]:
        path = next(iter(self.entries))
        entry = self.pop(path)
        assert entry is not None
        return path, entry


class MemoryCache:
    """A thread-safe, byte-bounded, scan-resistant cache of Arrow tables."""

    def __init__(
        self,
        max_bytes: int | None = None,
        *,
        budget: Budget | None = None,
        layers: Layers | None = None,
    ) -> None:
        self.budget = budget if budget is not None else Budget(max_bytes)
        self.layers = layers if layers is not None else Layers()
        self._probation = _Segment()  # oldest first
        self._protected = _Segment()  # least recently read first
        self._ghosts: OrderedDict[str, None] = OrderedDict()  # keys probation let go
        self._lock = threading.Lock()
        self.stats = MemoryStats()

    def get(self, path: str, version: tuple[int, int]) -> pa.Table | None:
        """The table cached for `path` at this (size, mtime) version, if any."""
        with self._lock:
            protected = self._protected.entries.get(path)
            entry = protected or self._probation.entries.get(path)
            if entry is None or entry.version != version:
                self.stats.misses += 1
                return None
            entry.reads += 1
            if protected is not None:
                self._protected.entries.move_to_end(path)
            elif entry.reads >= 2:  # read again: part of a working set
                self._probation.pop(path)
                self._protected.add(path, entry)
                self.stats.promotions += 1
            self.stats.hits += 1
            self._account()
        self.layers.served("memory", entry.table.num_rows)
        return entry.table

    def put(
        self,
        path: str,
        version: tuple[int, int],
        table: pa.Table,
        *,
        read: bool = False,
        tier: Tier = "hot",
    ) -> None:
        """Keep `table` as the content of `path`: just written, or (`read`) just read from
        disk (a file of `tier`) by a reader, which counts as a read of it."""
        if read:
            self.layers.served(tier, table.num_rows)
        with self._lock:
            budget = self.budget.now()
            old = self._protected.pop(path)
            protected = old is not None
            old = old or self._probation.pop(path)
            reads = (old.reads if old is not None else 0) + read
            returning = self._ghosts.pop(path, False) is None  # probation let it go before
            if table.nbytes <= budget:
                entry = _Entry(version, table, reads)
                # In use: protected already, read before (an older version), or returning.
                if protected or reads >= 2 or returning:
                    self._protected.add(path, entry)
                    self.stats.promotions += not protected
                else:
                    self._probation.add(path, entry)
            self._evict(budget)

    def _evict(self, budget: int) -> None:
        while self._probation.bytes + self._protected.bytes > budget:
            over = self._probation.bytes > budget * PROBATION_SHARE
            if self._probation.entries and (over or not self._protected.entries):
                path, _entry = self._probation.pop_first()
                self._ghosts[path] = None
            else:
                self._protected.pop_first()
            self.stats.evictions += 1
        entries = len(self._probation.entries) + len(self._protected.entries)
        while len(self._ghosts) > max(1024, 2 * entries):
            self._ghosts.popitem(last=False)
        self.stats.budget = budget
        self._account()

    def _account(self) -> None:
        self.stats.bytes = self._probation.bytes + self._protected.bytes
        self.stats.protected_bytes = self._protected.bytes
