"""When a kept screen-prep table is still the answer: a run with nothing new rebuilds nothing.

A table is kept with a record of what it was built from: the window and the version (size,
modification time) of every fetched-range record and data file inside it. A later run with
the same arguments asks Upbit only for its clock and the market list; if the window and
every file are unchanged, the kept table is the answer. This module imports neither
pyarrow's Parquet nor pandas, so such a run starts and ends fast.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from upbit_cache.collector.client import UpbitClient
from upbit_cache.errors import UpbitCacheError
from upbit_cache.manager.scope import ScreenRequest, resolve_markets
from upbit_cache.markets import validate_markets
from upbit_cache.output.formats import Format
from upbit_cache.ranges import TimeRange
from upbit_cache.store.base import Store
from upbit_cache.timeframes import Timeframe
from upbit_cache.timeframes.timeframe import DAY_MS


@dataclass
class Kept:
    """A kept table and the facts its summary line needs."""

    fingerprint: str
    markets: int
    rows: int
    short: dict[str, float] = field(default_factory=dict)
    filtered_out: int = 0


def window(tf: Timeframe, now: int, days: float) -> TimeRange:
    """The closed periods of the last `days` before `now`."""
    return TimeRange(tf.floor_one(now - int(days * DAY_MS)), tf.floor_one(now))


def key(request: ScreenRequest, fmt: Format, tz: str = "UTC") -> str:
    """A name for one combination of screen-prep arguments (the zone of text times too)."""
    args = {
        "markets": sorted(validate_markets(request.markets)),
        "quote": request.quote,
        "days": request.days,
        "tf": request.timeframe.name,
        "fmt": fmt,
        "tz": tz,
        "top": request.top,
        "min_value": request.min_value,
        "encoding": 3,  # 2: exact numbers, 3: floats as floats: tables kept before are rebuilt
    }
    return hashlib.sha1(
        json.dumps(args, sort_keys=True).encode(), usedforsecurity=False
    ).hexdigest()


def stamp(store: Store, tf: Timeframe, market: str, span: TimeRange) -> list[object]:
    """What one market's part of a table of `span` depends on: its files' versions."""
    return store.stamp(tf, market, span)


def fingerprint(tf: Timeframe, span: TimeRange, stamps: Sequence[list[object]]) -> str:
    """One string for a table of `span` built from files with these `stamp`s."""
    ordered = sorted(stamps, key=lambda s: str(s[0]))
    parts: list[object] = [tf.name, span.start, span.end, *ordered]
    return hashlib.sha1(json.dumps(parts).encode(), usedforsecurity=False).hexdigest()


def find(store: Store, name: str, fmt: str, current: str) -> tuple[str, Kept] | None:
    """The kept table `name` if it was built from exactly `current`."""
    found = store.kept_screen(name, fmt)
    if found is None:
        return None
    table, record = found
    try:
        kept = Kept(**record)
    except TypeError:
        return None  # a record of another version: build the table again
    return (table, kept) if kept.fingerprint == current else None


def remember(store: Store, name: str, kept: Kept) -> None:
    """Record what the table `name` was built from (after the table itself is written)."""
    store.remember_screen(name, asdict(kept))


async def lookup(
    store: Store, client: UpbitClient, request: ScreenRequest, name: str, fmt: str
) -> tuple[str, Kept] | None:
    """The kept table for this request, if nothing it depends on has changed.

    Costs one request (the market list, which also gives Upbit's clock) and no candle request.
    """
    listed = [m.market for m in await client.markets()]
    try:
        wanted = resolve_markets(listed, request.markets, request.quote)
    except UpbitCacheError:
        return None  # the full run gives the error
    if not wanted:
        return None  # the full run gives the empty answer
    tf = request.timeframe
    span = window(tf, client.now_ms(), request.days)
    stamps = [stamp(store, tf, m, span) for m in wanted]
    return find(store, name, fmt, fingerprint(tf, span, stamps))
