"""The in-process memory layer (L1): an LRU of partition tables in front of the Parquet store.

Entries are keyed by file path and remember the file's size and modification time, so a
partition rewritten by another process is read again, never served stale. The cache is
bounded by bytes; a table larger than the whole budget is simply not kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pyarrow is not loaded to make an empty cache (a kept screen-prep table)
    import pyarrow as pa

DEFAULT_MEMORY_BYTES = 256 * 1024 * 1024


@dataclass
class MemoryStats:
    """How the memory layer has done so far."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    bytes: int = 0
    entries: int = 0

    @property
    def hit_rate(self) -> float:
        asked = self.hits + self.misses
        return self.hits / asked if asked else 0.0


class MemoryCache:
    """A thread-safe, byte-bounded LRU of Arrow tables."""

    def __init__(self, max_bytes: int = DEFAULT_MEMORY_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[tuple[int, int], pa.Table]] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = MemoryStats()

    def get(self, path: str, version: tuple[int, int]) -> pa.Table | None:
        """The table cached for `path` at this (size, mtime) version, if any."""
        with self._lock:
            entry = self._entries.get(path)
            if entry is None or entry[0] != version:
                self.stats.misses += 1
                return None
            self._entries.move_to_end(path)
            self.stats.hits += 1
            return entry[1]

    def put(self, path: str, version: tuple[int, int], table: pa.Table) -> None:
        """Keep `table` as the content of `path`, evicting the least recently used."""
        size = table.nbytes
        with self._lock:
            self._drop(path)
            if size > self.max_bytes:
                return
            self._entries[path] = (version, table)
            self.stats.bytes += size
            while self.stats.bytes > self.max_bytes:
                oldest = next(iter(self._entries))
                self._drop(oldest)
                self.stats.evictions += 1
            self.stats.entries = len(self._entries)

    def _drop(self, path: str) -> None:
        entry = self._entries.pop(path, None)
        if entry is not None:
            self.stats.bytes -= entry[1].nbytes
            self.stats.entries = len(self._entries)
