"""`verify`: check the store against its records, and with `repair`, make it whole again.

Each series is checked under its lock, so a fetch or prune running at the same time is never
mistaken for damage: a reader's (shared) lock, which needs no write, so that a store this
process may only read can be checked too; the writer's with `repair`. The checks and the
repair are the store's (`store/audit.py`); a repaired span is fetched again by the next
`fetch` of a window that includes it. A repaired series is checked again under the same
lock, so "repaired" is a finding, not a hope: what that check still finds is `remaining`.
With a client (`verify --upbit`), Upbit is then asked again about what the records believe
(recheck.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from upbit_cache.collector.client import UpbitClient
from upbit_cache.manager.recheck import RecheckReport, recheck
from upbit_cache.settings import DEFAULT_BUDGET
from upbit_cache.store.audit import (
    Problem,
    SeriesAudit,
    audit_series,
    quarantine_stamp,
    repair_series,
)
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe

__all__ = ["Problem", "VerifyReport", "verify"]


@dataclass
class VerifyReport:
    audits: list[SeriesAudit] = field(default_factory=list)
    repaired: bool = False
    moved: list[str] = field(default_factory=list)  # where bad files went (quarantine)
    seconds: float = 0.0
    upbit: RecheckReport | None = None  # what asking Upbit again found (`--upbit`)
    remaining: list[Problem] = field(default_factory=list)  # found again after the repair

    @property
    def healthy(self) -> bool:
        """Nothing was found."""
        return not self.problems and not (self.upbit and self.upbit.contradictions)

    @property
    def ok(self) -> bool:
        """Nothing is wrong now: healthy, or everything found was repaired (`verify`'s
        exit 0, so that `verify --repair && fetch` fetches)."""
        if not self.repaired:
            return self.healthy
        upbit = self.upbit
        unforgotten = upbit is not None and bool(upbit.contradictions) and not upbit.forgotten
        return not self.remaining and not unforgotten

    @property
    def problems(self) -> list[Problem]:
        return [p for a in self.audits for p in a.problems]

    @property
    def files(self) -> int:
        return sum(a.files for a in self.audits)

    @property
    def rows(self) -> int:
        return sum(a.rows for a in self.audits)

    @property
    def adopted(self) -> int:
        return sum(len(a.unlisted) for a in self.audits) if self.repaired else 0


async def verify(
    store: CandleStore,
    timeframes: Sequence[Timeframe] = (),
    markets: Sequence[str] = (),
    *,
    repair: bool = False,
    client: UpbitClient | None = None,
    budget: int = DEFAULT_BUDGET,
) -> VerifyReport:
    """Check every stored series (or those of `timeframes` x `markets`); repair if asked.
    With a `client`, then ask Upbit again, at most `budget` candle requests."""
    began = time.monotonic()
    report = VerifyReport(repaired=repair)
    stamp = quarantine_stamp()
    for tf in timeframes or store.timeframes():
        for market in store.stored_markets(tf):
            if markets and market not in markets:
                continue
            async with store.lock(tf, market, shared=not repair):
                audit = audit_series(store, tf, market)
                if repair and (audit.problems or audit.unlisted):
                    report.moved += repair_series(store, audit, stamp)
                    if audit.problems:
                        report.remaining += audit_series(store, tf, market).problems
            report.audits.append(audit)
    if client is not None:
        report.upbit = await recheck(
            store, client, timeframes, markets, budget=budget, repair=repair
        )
    report.seconds = time.monotonic() - began
    return report
