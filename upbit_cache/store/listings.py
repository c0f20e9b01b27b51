"""The answers of a sharded fetch's probes (each market's first candle before the window's
end), kept in the data dir so that every shard of a backfill, and a shard run again, weighs
each market as the first one did without asking Upbit again (manager/balance.py).

    <root>/listings/<tf>/<MARKET>.json    {"to": ms, "first": ms | null}

One answer per market and probe timeframe, and only of the settled past, so it holds for
good: `first` is the oldest candle of the page of 200 before `to` (null: the page was full).
It answers only a probe of the same `to`: what a page means beyond its own request depends
on how Upbit counts a page (UPBIT_API.md, unverified), so nothing more is read into it.
Writers need no lock: answers of one request are equal, and the last atomic write wins.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from upbit_cache.store import layout

if TYPE_CHECKING:
    from upbit_cache.store.candle_store import CandleStore
    from upbit_cache.timeframes import Timeframe


@dataclass(frozen=True)
class FirstCandle:
    """A probe's answer: the oldest candle (epoch ms) of the page of 200 before `to`, or None
    where the page was full."""

    to: int
    first: int | None


def read_first(store: CandleStore, tf: Timeframe, market: str) -> FirstCandle | None:
    """The answer kept for `market`'s `tf` probe, if any (a damaged one: none)."""
    raw = store.files.read_bytes(layout.listing_file(store.root, tf, market))
    try:
        found = json.loads(raw) if raw is not None else None
    except ValueError:
        return None  # a cache of answers: what it does not say is asked again
    if not isinstance(found, dict) or set(found) != {"to", "first"}:
        return None
    to, first = found["to"], found["first"]
    if not _ms(to) or not (first is None or _ms(first)):
        return None
    return FirstCandle(to, first)


def keep_first(store: CandleStore, tf: Timeframe, market: str, answer: FirstCandle) -> None:
    """Keep `answer` for the other shards and the next run."""
    data = json.dumps({"to": answer.to, "first": answer.first}).encode()
    store.files.write_bytes(layout.listing_file(store.root, tf, market), data)


def _ms(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
