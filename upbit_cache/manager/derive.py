"""Derived timeframes: materialised on disk from a stored base, or computed on the fly.

A derived candle is final only when its whole period lies inside a range the base has
settled (fetched, with or without trades); the open period is left for a later run.
Materialising is incremental: each base partition is fingerprinted (the names of the base's
files holding it, which are written once and named by their content, plus the base's
settled ranges inside it), and only spans whose fingerprint changed since the last run are
recomputed. Candles fetched from Upbit are kept: a derivation writes only
the periods the target has not fetched natively, and the record labels what it wrote with
its base, range by range.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from upbit_cache.candles import CANDLE_COLUMNS, empty_candles
from upbit_cache.errors import DamageError, InvalidTimeframeError, UpbitCacheError, UsageError
from upbit_cache.markets import validate_markets
from upbit_cache.ranges import EARLIEST, LATEST, Ranges, TimeRange
from upbit_cache.store.base import Coverage
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.store.heal import Heal, Seen, heal_window, inspect_window, remember_written
from upbit_cache.store.records import Record
from upbit_cache.timeframes import SUPPORTED, Timeframe
from upbit_cache.timeframes.convert import resample

READ_PERIODS = 500_000  # base candles read at once at most: ~6 days of 1s, a year of 1m


@dataclass
class DeriveOutcome:
    """What materialising one (market, target) did."""

    market: str
    target: Timeframe
    base: Timeframe
    recomputed: int = 0  # base partitions whose change was carried over
    unchanged: int = 0
    candles: int = 0
    error: UpbitCacheError | None = None  # why this series was left as it was
    heal: Heal = field(default_factory=Heal)  # damage a fetch healed in its window


def settled_periods(base_settled: Ranges, target: Timeframe) -> Ranges:
    """The whole target periods inside the ranges the base has settled."""
    return Ranges.of((target.ceil_one(start), target.floor_one(end)) for start, end in base_settled)


def derive_frame(
    base_rows: pd.DataFrame, base: Timeframe, target: Timeframe, settled: Ranges
) -> pd.DataFrame:
    """Target candles from base candles, only for periods inside `settled` (target-aligned)."""
    out = resample(base_rows, base, target)[list(CANDLE_COLUMNS)]
    if out.empty or not settled:
        return out.iloc[:0]
    start = np.asarray(out["time"].astype("int64"), dtype=np.int64)
    end = target.shift(start, 1)
    lo = np.array([s for s, _ in settled], dtype=np.int64)
    hi = np.array([e for _, e in settled], dtype=np.int64)
    slot = np.searchsorted(lo, start, side="right") - 1
    inside = (slot >= 0) & (end <= hi[np.maximum(slot, 0)])
    return out[inside].reset_index(drop=True)


@dataclass
class _Changes:
    """What changed in a base since a target was last derived from it."""

    record: Record  # the target's
    base_settled: Ranges
    changed: dict[str, str] = field(default_factory=dict)  # base partition -> fingerprint
    spans: list[tuple[int, int]] = field(default_factory=list)  # target spans to recompute
    unchanged: int = 0


def _changes(
    store: CandleStore, known: Coverage, market: str, target: Timeframe, base: Timeframe
) -> _Changes:
    """Fingerprint each base partition (the names of the base's files holding it, and the
    base's settled ranges inside it) against those the target's record keeps."""
    if base == target or not base.divides(target):
        raise InvalidTimeframeError(
            f"cannot derive {target} from {base}: {base} does not divide it"
        )
    base_record = known.record(base, market)
    found = _Changes(known.record(target, market), base_record.fetched)
    marks = found.record.sources.get(base.name, {})
    for span, names in store.base_versions(base, market, base_record):
        mark = _fingerprint(names, found.base_settled.clip(span))
        if marks.get(str(span.start)) == mark:
            found.unchanged += 1
            continue
        found.changed[str(span.start)] = mark
        found.spans.append((target.floor_one(span.start), target.ceil_one(span.end)))
    return found


def materialise(
    store: CandleStore,
    market: str,
    target: Timeframe,
    base: Timeframe,
    known: Coverage | None = None,
) -> DeriveOutcome:
    """Bring the stored `target` candles of `market` up to date with its `base` candles,
    except in periods the target has fetched natively.

    The caller holds `store.lock(target, market)`; `known`: the run's coverage, whose record
    of the target was read under that lock (None: read here, for update).
    """
    if known is None:
        known = store.coverage()
        store.record(target, market, for_update=True)
    outcome = DeriveOutcome(market, target, base)
    found = _changes(store, known, market, target, base)
    outcome.unchanged = found.unchanged
    native, base_settled, changed = found.record.native, found.base_settled, found.changed
    if not changed:
        return outcome
    frames: list[pd.DataFrame] = []
    covered: list[tuple[int, int]] = []
    for span in _reads(found.spans, base):
        settled = settled_periods(base_settled.clip(span), target)
        settled = settled_periods(settled.subtract(native), target)  # Upbit's own candles stay
        frames.append(derive_frame(store.load(market, base, span), base, target, settled))
        covered.extend(settled)
    rows = pd.concat(frames, ignore_index=True) if frames else empty_candles()
    outcome.candles = store.write(
        market, target, rows, Ranges.of(covered), derived_from=base, sources=changed
    )
    outcome.recomputed = len(changed)
    return outcome


def _reads(spans: list[tuple[int, int]], base: Timeframe) -> list[TimeRange]:
    """The changed spans, merged into reads of at most READ_PERIODS base periods each (more
    only where one target period needs it), so memory stays bounded: 89 days of 1s can
    be 7.7 M rows. Overlapping spans share a target period and are always read together."""
    reads: list[list[int]] = []
    for lo, hi in sorted(spans):
        last = reads[-1] if reads else None
        if last is not None and (
            lo < last[1] or (lo == last[1] and (hi - last[0]) // base.approx_ms <= READ_PERIODS)
        ):
            last[1] = max(last[1], hi)
        else:
            reads.append([lo, hi])
    return [TimeRange(lo, hi) for lo, hi in reads]


def load_any(
    store: CandleStore,
    market: str,
    tf: Timeframe,
    span: TimeRange | None = None,
    known: Coverage | None = None,
) -> pd.DataFrame:
    """Candles of `tf` inside `span` (None: all) from the store, derived on the fly from a
    stored base where that covers more of it than `tf`'s own stored candles do (`known`:
    the records as read already, if any)."""
    span = span or TimeRange.everything()
    sources = (tf, *tf.divisors())
    view = (known or store.coverage()).read((b, market) for b in sources)
    settled = {b: view.fetched(b, market) for b in sources}
    held = [r for r in settled.values() if r]
    if not held:
        return store.load(market, tf, span)
    first = min(r.intervals[0][0] for r in held)
    last = max(r.intervals[-1][1] for r in held)
    lo = tf.floor_one(span.start) if span.start != EARLIEST else first
    hi = tf.ceil_one(span.end) if span.end != LATEST else last
    aligned = TimeRange(lo, max(lo, hi))
    best, best_cover = None, settled[tf].clip(aligned).total()
    for base in reversed(tf.divisors()):  # coarsest first: least to read
        cover = settled_periods(settled[base].clip(aligned), tf).total()
        if cover > best_cover:
            best, best_cover = base, cover
    if best is None:
        return store.load(market, tf, span)
    periods = settled_periods(settled[best].clip(aligned), tf)
    rows = derive_frame(store.load(market, best, aligned), best, tf, periods)
    times = rows["time"].astype("int64")
    keep = (times >= max(span.start, lo)) & (times < min(span.end, hi))
    return rows[keep].reset_index(drop=True)


def _fingerprint(names: list[str] | None, settled: Ranges) -> str:
    data = repr(sorted(names)) if names else "-"
    mark = hashlib.sha1(f"{data}:{settled.intervals!r}".encode(), usedforsecurity=False)
    return mark.hexdigest()[:24]


async def materialise_many(
    store: CandleStore,
    jobs: Sequence[tuple[str, Timeframe, Timeframe]],
    parallel: int = 2,
    *,
    heal: tuple[TimeRange, str] | None = None,
    coverage: Coverage | None = None,
) -> list[DeriveOutcome]:
    """Run `materialise` for (market, target, base) jobs, each under its writer lock; a job
    that fails (a damaged file or record) says why in its outcome, the others go on. With
    `heal` (a fetch's window and quarantine stamp), each target's window is healed first
    (store/heal.py). A job whose base has not changed since it was derived, with nothing
    to heal, takes no lock (`coverage`: the run's records, None: read here)."""
    gate = asyncio.Semaphore(parallel)
    known = coverage if coverage is not None else store.coverage()
    series = {(t, m) for m, t, b in jobs} | {(b, m) for m, t, b in jobs}
    known.expect(series)
    await asyncio.to_thread(known.read, sorted(series, key=lambda s: (s[0].approx_ms, s[1])))

    def window(target: Timeframe) -> TimeRange | None:
        if heal is None:
            return None
        span = heal[0]
        return TimeRange(target.floor_one(span.start), target.ceil_one(span.end))

    def untouched(
        market: str, target: Timeframe, base: Timeframe, seen: Seen
    ) -> DeriveOutcome | None:
        """The outcome of a job with nothing to do, found without its lock (as a fetch's
        `_untouched`: whatever a writer does meanwhile, this is the outcome of running just
        before it); None: the job takes its lock."""
        try:
            found = _changes(store, known, market, target, base)
            if found.changed:
                return None
            healed = Heal()
            span = window(target)
            if span is not None:
                inspected = inspect_window(store, target, market, span, known, seen)
                if inspected is None:
                    return None
                healed = inspected
        except UpbitCacheError:
            return None  # damage, or a file changing under the look: under the lock
        return DeriveOutcome(market, target, base, unchanged=found.unchanged, heal=healed)

    def run(market: str, target: Timeframe, base: Timeframe, seen: Seen) -> DeriveOutcome:
        healed = Heal()
        try:
            span = window(target)
            if heal is not None and span is not None:
                healed = heal_window(store, target, market, span, heal[1], seen)  # for update
            else:
                store.record(target, market, for_update=True)  # as it is now, under the lock
            outcome = materialise(store, market, target, base, known)
            if heal is not None:
                remember_written(store, target, market)  # the next fetch need not check them
        except UpbitCacheError as exc:
            outcome = DeriveOutcome(market, target, base, error=exc)
        outcome.heal = healed
        return outcome

    async def one(market: str, target: Timeframe, base: Timeframe) -> DeriveOutcome:
        try:
            async with gate:
                seen: Seen = {}
                done = await asyncio.to_thread(untouched, market, target, base, seen)
                if done is not None:
                    return done
                async with store.lock(target, market):
                    return await asyncio.to_thread(run, market, target, base, seen)
        except UpbitCacheError as exc:  # the lock itself (a timeout, an unusable dir)
            return DeriveOutcome(market, target, base, error=exc)

    return list(await asyncio.gather(*(one(*job) for job in jobs)))


async def resample_store(
    store: CandleStore,
    markets: Sequence[str],
    targets: Sequence[Timeframe],
    base: Timeframe | None = None,
) -> list[DeriveOutcome]:
    """`upbit-cache resample`: derive `targets` for `markets` (none: every stored market)
    from `base` (none: the finest stored timeframe dividing each target)."""
    for target in targets:
        if base is not None and (base == target or not base.divides(target)):
            raise InvalidTimeframeError(
                f"cannot derive {target} from {base}: {base} does not divide it"
            )
    names = validate_markets(markets) or sorted({m for tf in SUPPORTED for m in store.markets(tf)})
    jobs, damaged = [], []
    known = store.coverage()
    sources = {b for t in targets for b in ((base,) if base is not None else t.divisors())}
    await asyncio.to_thread(known.read, [(s, m) for s in sources for m in names])
    for market in names:
        for target in targets:
            # The base given, else the finest stored timeframe that divides the target.
            for source in (base,) if base is not None else target.divisors():
                try:
                    found = known.fetched(source, market)
                except DamageError as exc:  # this series is left out, and named
                    damaged.append(DeriveOutcome(market, target, source, error=exc))
                    break
                if found:
                    jobs.append((market, target, source))
                    break
    if not jobs and not damaged:
        wanted = ", ".join(t.name for t in targets)
        finer = f"{base}" if base is not None else "a finer timeframe"
        raise UsageError(f"nothing stored to derive {wanted} from; fetch {finer} first")
    return damaged + await materialise_many(store, jobs, coverage=known)
