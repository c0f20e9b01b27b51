"""`info`: what the store holds, per (timeframe, market), and what it knows is missing.

Upbit sends no candle for a period without trades, so a period with no candle is one of two
things, and the fetched-range record tells which:
- a *quiet* period lies inside a fetched range: Upbit was asked and had nothing (no trades);
- a *never fetched* period lies in a hole between fetched ranges: nobody asked yet.
Ranges that `prune` deleted (retention) and that were not fetched again are listed apart.
Each fetched range also says who made its candles: Upbit (native) or a derivation from which
base timeframe.

Only the store's API is used (listing, records, `load_table`); candle times are counted with
numpy, one series at a time, so memory stays at one series' table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from upbit_cache.errors import StorageError
from upbit_cache.ranges import Ranges
from upbit_cache.store.candle_store import CandleStore, Tier, TierUsage
from upbit_cache.store.records import Record
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import iso

JSON_VERSION = 2  # 2: per-range `bases` replaced the series' `derived_from`
TIERS: tuple[Tier, ...] = ("hot", "cold")


@dataclass(frozen=True)
class BaseRange:
    """A fetched range [start, end) and who made its candles: NATIVE (Upbit) or the name
    of the base timeframe they were derived from."""

    start: int
    end: int
    base: str


@dataclass(frozen=True)
class SeriesInfo:
    """What the store holds of one (timeframe, market). Times are epoch ms, UTC.

    `quiet_periods` counts the whole periods inside fetched ranges that have no candle
    (fetched, no trades); `quiet_runs` are the runs of consecutive such periods, as [start,
    end) intervals, and `longest_quiet` is the longest run in periods. `never_fetched` are the
    holes between the first and the last fetched range that were neither fetched nor pruned.
    `pruned` is what retention deleted and no fetch has brought back. `provisional` holds
    candles of periods Upbit had not settled when they were fetched: stored, not fetched, asked
    for again by the next fetch. `bases` splits the fetched ranges by who made them, in time
    order.
    """

    timeframe: Timeframe
    market: str
    fetched: Ranges
    first: int | None
    last: int | None
    candles: int
    quiet_periods: int
    quiet_runs: Ranges
    longest_quiet: int
    never_fetched: Ranges
    pruned: Ranges
    bases: tuple[BaseRange, ...]
    tiers: dict[Tier, TierUsage] = field(default_factory=dict)
    provisional: Ranges = field(default_factory=Ranges)

    @property
    def files(self) -> int:
        return sum(t.files for t in self.tiers.values())

    @property
    def bytes(self) -> int:
        return sum(t.bytes for t in self.tiers.values())


def inventory(
    store: CandleStore,
    timeframes: Iterable[Timeframe] | None = None,
    markets: Iterable[str] | None = None,
    unreadable: list[str] | None = None,
) -> list[SeriesInfo]:
    """One `SeriesInfo` per stored (timeframe, market), finest timeframe first, then by market.

    `timeframes` and `markets` (already validated) narrow the listing; None means all stored.
    A (timeframe, market) counts as stored if it has a data file or a fetched-range record.
    With an `unreadable` list, a series with a damaged file is left out and the reason added
    to it (one bad file does not hide the rest of the store); without one, it raises.
    """
    only = set(timeframes) if timeframes is not None else None
    chosen = [tf for tf in store.timeframes() if only is None or tf in only]
    wanted = set(markets) if markets is not None else None
    infos = []
    for tf in sorted(chosen, key=lambda t: (t.approx_ms, t.name)):
        for market in store.stored_markets(tf):
            if wanted is None or market in wanted:
                try:
                    infos.append(series_info(store, tf, market))
                except StorageError as exc:
                    if unreadable is None:
                        raise
                    head, text = f"{tf} {market}: ", str(exc)  # a hole's names it already
                    unreadable.append(text if text.startswith(head) else head + text)
    return infos


def series_info(store: CandleStore, tf: Timeframe, market: str) -> SeriesInfo:
    """The `SeriesInfo` of one (timeframe, market)."""
    record = store.record(tf, market)
    tiers = store.series_usage(tf, market)
    table = store.load_table(market, tf)
    times = np.unique(tf.floor(table["time"].cast(pa.int64()).to_numpy()))
    del table
    fetched = record.fetched
    pruned = record.pruned.subtract(fetched)
    holes = Ranges()
    if fetched:
        span = Ranges.of([(fetched.intervals[0][0], fetched.intervals[-1][1])])
        holes = span.subtract(fetched).subtract(pruned)
    quiet, runs, longest = quiet_runs(tf, fetched, times)
    return SeriesInfo(
        timeframe=tf,
        market=market,
        fetched=fetched,
        first=int(times[0]) if len(times) else None,
        last=int(times[-1]) if len(times) else None,
        candles=len(times),
        quiet_periods=quiet,
        quiet_runs=runs,
        longest_quiet=longest,
        never_fetched=holes,
        pruned=pruned,
        bases=_bases(record),
        tiers=tiers,
        provisional=record.provisional,
    )


def _bases(record: Record) -> tuple[BaseRange, ...]:
    found = [BaseRange(lo, hi, base) for base, spans in record.bases().items() for lo, hi in spans]
    return tuple(sorted(found, key=lambda r: r.start))


def quiet_runs(tf: Timeframe, fetched: Ranges, times: np.ndarray) -> tuple[int, Ranges, int]:
    """Periods wholly inside `fetched` with no candle: (count, runs, longest run in periods).

    `times` are the sorted, unique candle period starts. A period only partly inside a
    fetched range (an unaligned range end) is not counted either way.
    """
    total = longest = 0
    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    for lo, hi in fetched:  # a loop over ranges, not candles
        first, end = tf.ceil_one(lo), tf.floor_one(hi)
        if end <= first:
            continue
        inside = times[np.searchsorted(times, first) : np.searchsorted(times, end)]
        total += tf.count_periods(first, end) - len(inside)
        # A run starts after each candle (or at the range start) and ends at the next one.
        run_starts = np.concatenate(([first], tf.shift(inside, 1)))
        run_ends = np.concatenate((inside, [end]))
        keep = run_starts < run_ends
        starts.append(run_starts[keep])
        ends.append(run_ends[keep])
    if not starts:
        return 0, Ranges(), 0
    run_starts, run_ends = np.concatenate(starts), np.concatenate(ends)
    if len(run_starts):
        longest = int(tf.periods_between(run_starts, run_ends).max())
    # Already sorted, disjoint and apart (a candle or an unfetched gap lies between two runs).
    runs = Ranges(tuple(zip(run_starts.tolist(), run_ends.tolist(), strict=True)))
    return int(total), runs, longest


def totals(infos: Sequence[SeriesInfo]) -> dict[Tier, TierUsage]:
    """Files and bytes per tier, summed over the listed series."""
    summed = {tier: TierUsage() for tier in TIERS}
    for info in infos:
        for tier, usage in info.tiers.items():
            summed[tier] = summed[tier] + usage
    return summed


def to_json(infos: Sequence[SeriesInfo], tz: str = "UTC") -> dict[str, Any]:
    """The inventory as a plain JSON document (what `upbit-cache info --json` prints).

    Every time is given twice: ISO 8601 text in `tz` (`"2026-11-01T09:00:00Z"` in UTC,
    `"2026-11-01T18:00:00+09:00"` in Asia/Seoul) and epoch ms (`..._ms`). Ranges are
    half-open [start, end). Layout::

        {
          "version": 2,
          "series": [
            {
              "timeframe": "1h", "market": "KRW-BTC",
              "fetched": [RANGE, ...],            # asked of Upbit (or derived), settled
              "bases": [RANGE + "base": "native" | "15m", ...],  # who made each, in time order
              "first": ISO | null, "first_ms": int | null,   # first candle's period start
              "last": ISO | null, "last_ms": int | null,     # last candle's period start
              "candles": int,
              "quiet": {"periods": int, "longest": int,      # fetched, no trades
                        "runs": [RANGE + "periods": int, ...]},
              "never_fetched": [RANGE, ...],      # holes between fetched ranges
              "pruned": [RANGE, ...],             # deleted by retention, not fetched again
              "provisional": [RANGE, ...],        # stored, not settled at Upbit yet
              "tiers": {"hot": {"files": int, "bytes": int}, "cold": {...}}
            }, ...
          ],
          "totals": {"series": int, "candles": int, "files": int, "bytes": int,
                     "tiers": {"hot": {"files": int, "bytes": int}, "cold": {...}}}
        }

    where RANGE is `{"start": ISO, "end": ISO, "start_ms": int, "end_ms": int}`. Totals
    are over the listed series (all of the store unless markets or timeframes were given).
    """
    summed = totals(infos)
    return {
        "version": JSON_VERSION,
        "series": [_series_json(info, tz) for info in infos],
        "totals": {
            "series": len(infos),
            "candles": sum(i.candles for i in infos),
            "files": sum(u.files for u in summed.values()),
            "bytes": sum(u.bytes for u in summed.values()),
            "tiers": {tier: _usage_json(u) for tier, u in summed.items()},
        },
    }


def _series_json(info: SeriesInfo, tz: str) -> dict[str, Any]:
    tf = info.timeframe
    runs = [
        {**_range_json(start, end, tz), "periods": tf.count_periods(start, end)}
        for start, end in info.quiet_runs
    ]
    return {
        "timeframe": tf.name,
        "market": info.market,
        "fetched": _ranges_json(info.fetched, tz),
        "bases": [{**_range_json(r.start, r.end, tz), "base": r.base} for r in info.bases],
        "first": iso(info.first, tz) if info.first is not None else None,
        "first_ms": info.first,
        "last": iso(info.last, tz) if info.last is not None else None,
        "last_ms": info.last,
        "candles": info.candles,
        "quiet": {"periods": info.quiet_periods, "longest": info.longest_quiet, "runs": runs},
        "never_fetched": _ranges_json(info.never_fetched, tz),
        "pruned": _ranges_json(info.pruned, tz),
        "provisional": _ranges_json(info.provisional, tz),
        "tiers": {tier: _usage_json(u) for tier, u in info.tiers.items()},
    }


def _range_json(start: int, end: int, tz: str) -> dict[str, Any]:
    return {"start": iso(start, tz), "end": iso(end, tz), "start_ms": start, "end_ms": end}


def _ranges_json(ranges: Ranges, tz: str) -> list[dict[str, Any]]:
    return [_range_json(start, end, tz) for start, end in ranges]


def _usage_json(usage: TierUsage) -> dict[str, int]:
    return {"files": usage.files, "bytes": usage.bytes}
