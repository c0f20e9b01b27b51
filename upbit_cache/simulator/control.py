"""What a test controls and observes in the simulator: queued faults and request counters."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FAULT_KINDS", "WS_FAULT_KINDS", "Fault", "FaultQueue", "Stats"]

FAULT_KINDS: tuple[str, ...] = (
    "500",
    "slow",
    "drop",
    "truncate",
    "non_json",
    "bad_types",
    "missing_field",
    # Answers that look valid but lie (candle pages only):
    "empty",  # `[]`
    "shift",  # candle times 1,000 periods older than the truth (last-trade times unchanged)
    "wrong_market",  # another market's code in every candle
    "impossible",  # the newest candle closes at -1 with a high of 0
)
WS_FAULT_KINDS: tuple[str, ...] = ("ws_duplicate", "ws_error")


@dataclass
class Fault:
    kind: str
    remaining: int
    market: str | None
    path: str | None
    seconds: float
    probability: float = 1.0


class FaultQueue:
    """Faults waiting for the next matching requests (thread-safe)."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._queue: list[Fault] = []
        self._random = random.Random(seed)  # for faults that strike only some requests

    def inject(
        self,
        kind: str,
        count: int = 1,
        market: str | None = None,
        path: str | None = None,
        seconds: float | None = None,
        probability: float = 1.0,
    ) -> None:
        """Queue `count` faults of `kind` for requests of `market` and/or under path prefix `path`.

        With `probability` below 1, each matching request is struck with that chance (a
        flaky proxy: "empty" at 0.3 answers about 30% of pages with `[]`), until `count`
        have been.

        Kinds: "500", "slow" (answer after `seconds`, default 3), "drop" (close the connection
        without a response), "truncate", "non_json", "bad_types", "missing_field"; candle
        answers that look valid but lie: "empty", "shift", "wrong_market", "impossible"; on the
        WebSocket, "ws_duplicate" (each of the next `count` trade messages of `market` is sent
        twice in a row) and "ws_error" (each of the next `count` subscribe messages naming
        `market` is answered with a transient error frame, INTERNAL_ERROR, and not served).
        """
        kinds = FAULT_KINDS + WS_FAULT_KINDS
        if kind not in kinds:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {kinds}")
        if count < 1:
            raise ValueError("count must be at least 1")
        if not 0 < probability <= 1:
            raise ValueError(f"probability must be in (0, 1], got {probability}")
        wait = 3.0 if seconds is None else float(seconds)
        fault = Fault(kind, count, market, path, wait, float(probability))
        with self._lock:
            self._queue.append(fault)

    def take(
        self, path: str, market: str | None, kinds: Sequence[str] = FAULT_KINDS
    ) -> Fault | None:
        """Consume one fault of one of `kinds` matching this request, oldest first."""
        with self._lock:
            for fault in self._queue:
                if fault.kind not in kinds:
                    continue
                if fault.market is not None and fault.market != market:
                    continue
                if fault.path is not None and not path.startswith(fault.path):
                    continue
                if fault.probability < 1 and self._random.random() >= fault.probability:
                    return None  # spared this time
                fault.remaining -= 1
                if not fault.remaining:
                    self._queue.remove(fault)
                return fault
        return None

    def pending(self) -> int:
        """Faults not served yet."""
        with self._lock:
            return sum(f.remaining for f in self._queue)

    def clear(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._queue.clear()


class Stats:
    """Request counters (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ws_open = 0
        self.reset()

    def reset(self) -> None:
        """Zero every counter (`ws_open`, a gauge of open WebSockets, is kept)."""
        with self._lock:
            self._by_path: Counter[str] = Counter()
            self._by_status: Counter[str] = Counter()
            self._faults: Counter[str] = Counter()
            self._ws: Counter[str] = Counter()

    def request(self, path: str) -> None:
        """Count one API request to `path`."""
        with self._lock:
            self._by_path[path] += 1

    def status(self, status: int) -> None:
        """Count one answer with HTTP `status`."""
        with self._lock:
            self._by_status[str(status)] += 1

    def fault(self, kind: str) -> None:
        """Count one served fault."""
        with self._lock:
            self._faults[kind] += 1

    def ws_opened(self) -> None:
        """Count one accepted WebSocket connection."""
        with self._lock:
            self._ws["connections"] += 1
            self._ws_open += 1

    def ws_closed(self) -> None:
        """One WebSocket connection ended."""
        with self._lock:
            self._ws_open -= 1

    def ws_event(self, name: str, n: int = 1) -> None:
        """Count WebSocket `subscribes`, `messages` (data sent) or `rejected` (over a limit)."""
        with self._lock:
            self._ws[name] += n

    def snapshot(self) -> dict[str, Any]:
        """Counters as plain JSON-able data."""
        with self._lock:
            return {
                "requests": sum(self._by_path.values()),
                "candle_requests": sum(
                    n for p, n in self._by_path.items() if p.startswith("/v1/candles/")
                ),
                "by_path": dict(self._by_path),
                "by_status": dict(self._by_status),
                "rate_limited": self._by_status["429"],
                "banned": self._by_status["418"],
                "faults_served": sum(self._faults.values()),
                "faults_by_kind": dict(self._faults),
                "ws_connections": self._ws["connections"],
                "ws_open": self._ws_open,
                "ws_subscribes": self._ws["subscribes"],
                "ws_messages": self._ws["messages"],
                "ws_rejected": self._ws["rejected"],
            }
