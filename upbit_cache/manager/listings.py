"""`markets`: the markets Upbit lists, with names and warnings, beside what the store holds.

What is stored comes from the fetched-range records alone (one small file per series, no
data file is read), so the listing costs one request and a walk of the records.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from upbit_cache.collector.listing import MarketInfo
from upbit_cache.ranges import Ranges
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe


@dataclass(frozen=True)
class Held:
    """What the records say of one stored (timeframe, market): the ranges fetched (or
    derived), half-open, epoch ms."""

    timeframe: Timeframe
    fetched: Ranges

    @property
    def start(self) -> int:
        return self.fetched.intervals[0][0]

    @property
    def end(self) -> int:
        return self.fetched.intervals[-1][1]


@dataclass(frozen=True)
class Listing:
    """One market: as Upbit lists it (`listed` False: stored here, no longer listed, its
    names and warnings unknown) and what is stored of it, finest timeframe first.

    `warning` is None when Upbit's list said nothing of warnings (see `MarketInfo.detailed`).
    """

    market: str
    korean_name: str
    english_name: str
    warning: bool | None
    cautions: tuple[str, ...]
    listed: bool
    stored: tuple[Held, ...]


def held_series(store: CandleStore) -> dict[str, list[Held]]:
    """Per market, every timeframe with a fetched range recorded, finest first."""
    found: dict[str, list[Held]] = defaultdict(list)
    for tf in sorted(store.timeframes(), key=lambda t: t.approx_ms):
        for market in store.markets(tf):
            fetched = store.fetched(tf, market)
            if fetched:
                found[market].append(Held(tf, fetched))
    return found


def listings(
    listed: Sequence[MarketInfo], held: dict[str, list[Held]], quote: str | None = None
) -> list[Listing]:
    """Upbit's markets of `quote` (None: every quote) and the stored ones it no longer
    lists, sorted by code."""
    prefix = f"{quote}-" if quote is not None else ""
    rows = {
        m.market: Listing(
            m.market,
            m.korean_name,
            m.english_name,
            m.warning if m.detailed else None,
            m.cautions,
            True,
            tuple(held.get(m.market, ())),
        )
        for m in listed
    }
    for market, series in held.items():
        if market not in rows:
            rows[market] = Listing(market, "", "", None, (), False, tuple(series))
    return [rows[m] for m in sorted(rows) if m.startswith(prefix)]
