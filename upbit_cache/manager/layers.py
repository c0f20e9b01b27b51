"""Which layer answered: memory (L1), hot files (L2), cold files (L3) or Upbit.

A request (a `get`, a `load`, a screen-prep market's read) is timed as a whole and counted
against the deepest layer it needed: answered from memory alone, or with a hot file read
from disk, or a cold one, or with pages asked of Upbit. Every partition table served, and
every page asked, is counted against its own layer, with its rows. The memory hit rate is
the share of partition reads memory served; the overall hit rate the share of candles
served without asking Upbit.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

Layer = Literal["memory", "hot", "cold", "upbit"]
LAYERS: tuple[Layer, ...] = ("memory", "hot", "cold", "upbit")
_DEPTH = {layer: depth for depth, layer in enumerate(LAYERS)}
_SAMPLES = 10_000  # latencies kept per layer: the most recent


@dataclass
class LayerStats:
    """One layer's share of the work so far."""

    requests: int = 0  # requests whose deepest layer this was
    reads: int = 0  # partition tables (or Upbit pages) it served
    rows: int = 0
    seconds: deque[float] = field(default_factory=lambda: deque(maxlen=_SAMPLES))

    def percentile(self, share: float) -> float | None:
        """Latency of the requests it answered, in seconds (None: none yet)."""
        if not self.seconds:
            return None
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@dataclass
class LayerReport:
    """A snapshot of every layer's statistics."""

    layers: dict[Layer, LayerStats]

    @property
    def memory_hit_rate(self) -> float:
        reads = sum(self.layers[x].reads for x in ("memory", "hot", "cold"))
        return self.layers["memory"].reads / reads if reads else 0.0

    @property
    def hit_rate(self) -> float:
        """The share of candles served without asking Upbit."""
        rows = sum(s.rows for s in self.layers.values())
        return 1 - self.layers["upbit"].rows / rows if rows else 0.0


class _Request:
    def __init__(self) -> None:
        self.deepest = -1


_current: contextvars.ContextVar[_Request | None] = contextvars.ContextVar(
    "upbit_cache_request", default=None
)


class Layers:
    """Thread-safe counters of one `UpbitCache` (its memory layer reports into them too)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = {layer: LayerStats() for layer in LAYERS}

    @contextmanager
    def request(self) -> Iterator[None]:
        """Time what runs inside as one request (threads started inside count too)."""
        began = time.perf_counter()
        mine = _Request()
        token = _current.set(mine)
        try:
            yield
        finally:
            _current.reset(token)
            if mine.deepest >= 0:
                stats = self._stats[LAYERS[mine.deepest]]
                with self._lock:
                    stats.requests += 1
                    stats.seconds.append(time.perf_counter() - began)

    def served(self, layer: Layer, rows: int, reads: int = 1) -> None:
        """`reads` tables (or pages) with `rows` candles came from `layer`."""
        with self._lock:
            stats = self._stats[layer]
            stats.reads += reads
            stats.rows += rows
        mine = _current.get()
        if mine is not None:
            mine.deepest = max(mine.deepest, _DEPTH[layer])

    def report(self) -> LayerReport:
        with self._lock:
            return LayerReport(
                {
                    layer: LayerStats(s.requests, s.reads, s.rows, deque(s.seconds))
                    for layer, s in self._stats.items()
                }
            )
