"""A series' data files as spans of time: their names, which a write supersedes, roll-ups.

Data files are written once (the NautilusTrader rule). A write's rows become a new file named
by their span and a hash of their content (layout.data_name); the series' record lists the
current files. Listed files never share a time: where a write's rows fall inside the span of
listed files, those files and the rows become one new file that replaces them in the record
(`closure`: every listed file the merged span touches). Files of one hot partition roll up
by size (`due_roll_up`): K files of one level (a level is a power of K periods) become one
file of the next, so a row is rewritten about log_K(rows in the partition) times, never on
every write, and a partition holds at most K - 1 files of each level. Once the record
covers a hot partition whole (a past day of 1m), its files become one (SeriesEdit.seal).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from upbit_cache.candles import times_ms
from upbit_cache.ranges import TimeRange
from upbit_cache.store import layout
from upbit_cache.timeframes import Timeframe

ROLL_UP = 4  # K: files of one level in a hot partition that become one (bench_live --day)
DIGEST_BYTES = 6  # 12 hex digits in a name: a collision needs ~16 M files of one span


@dataclass(frozen=True)
class Part:
    """One data file of a series: its name in the series' folder, span and tier."""

    name: str
    span: TimeRange
    tier: layout.Tier

    @classmethod
    def of(cls, tf: Timeframe, name: str) -> Part:
        """The part a data file's name in its series' folder says."""
        return cls(name, layout.file_span(tf, name), layout.tier_of(name))

    @property
    def legacy(self) -> bool:
        return layout.is_legacy(self.name)


def table_span(tf: Timeframe, table: pa.Table) -> TimeRange:
    """[first row's time, end of the last row's period) of a sorted, non-empty table."""
    times = times_ms(table)
    return TimeRange(int(times[0].as_py()), tf.shift_one(int(times[-1].as_py()), 1))


def digest(table: pa.Table) -> str:
    """A short hash of the rows' content: identical rows, identical file name."""
    hashed = hashlib.blake2b(digest_size=DIGEST_BYTES)
    for column in table.columns:
        chunk = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        if pa.types.is_timestamp(chunk.type):
            chunk = chunk.cast(pa.int64())
        hashed.update(np.ascontiguousarray(chunk.to_numpy(zero_copy_only=False)).tobytes())
    return hashed.hexdigest()


def name_for(tf: Timeframe, table: pa.Table, tier: layout.Tier) -> Part:
    """The part a sorted, non-empty table of candles is written as."""
    span = table_span(tf, table)
    return Part(layout.data_name(tf, tier, span, digest(table)), span, tier)


def hull(spans: Iterable[TimeRange]) -> TimeRange:
    found = list(spans)
    return TimeRange(min(s.start for s in found), max(s.end for s in found))


def closure(parts: Mapping[str, Part], seed: TimeRange, names: Iterable[str] = ()) -> set[str]:
    """`names` and every part whose span touches the hull of `seed` and theirs, until no
    other part touches it: the files one merged file covering `seed` supersedes."""
    taken = set(names)
    span = hull([seed, *(parts[n].span for n in taken)])
    while True:
        more = {n for n, p in parts.items() if n not in taken and p.span.overlaps(span)}
        if not more:
            return taken
        taken |= more
        span = hull([span, *(parts[n].span for n in more)])


def level(tf: Timeframe, span: TimeRange) -> int:
    """A file's size class: floor(log_K(periods its span holds))."""
    periods, found = max(1, (span.end - span.start) // tf.approx_ms), 0
    while periods >= ROLL_UP:
        periods //= ROLL_UP
        found += 1
    return found


def due_roll_up(tf: Timeframe, parts: Mapping[str, Part], start: int) -> set[str] | None:
    """The hot files of the partition starting at `start` that should become one: the
    smallest level holding ROLL_UP files or more, with what their merged span touches."""
    by_level: dict[int, list[str]] = {}
    for name, part in parts.items():
        if part.tier == "hot" and layout.partition_start(tf, part.span.start) == start:
            by_level.setdefault(level(tf, part.span), []).append(name)
    for found in sorted(by_level):
        names = by_level[found]
        if len(names) >= ROLL_UP:
            return closure(parts, parts[names[0]].span, names)
    return None


def merge_order(parts: Iterable[Part]) -> list[Part]:
    """The order files are combined in: cold before hot, then by span; where two hold one
    time (legacy files a killed compaction left), the later one wins."""
    return sorted(parts, key=lambda p: (p.tier == "hot", p.span.start, p.name))


def disjoint(parts: Iterable[Part]) -> bool:
    """Whether no two of `parts` share a span (so concatenated in start order, their rows
    are sorted with each time once)."""
    ordered = sorted(parts, key=lambda p: p.span.start)
    return all(a.span.end <= b.span.start for a, b in itertools.pairwise(ordered))
