"""How `live` shows candles: JSON lines for a bot's pipe, or a rich table on a terminal."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from itertools import product
from typing import TYPE_CHECKING, TextIO

from upbit_cache.output.text import json_number, time_text
from upbit_cache.times import iso
from upbit_cache.words import plural

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.live import Live
    from rich.table import Table

    from upbit_cache.manager.live import LiveEvent
    from upbit_cache.timeframes import Timeframe
    from upbit_cache.timeframes.live import Candle, CandleEvent

_REFRESH_SECONDS = 0.25


def event_json(event: CandleEvent, tz: str = "UTC") -> str:
    """One JSON line in export's style: its keys in its order (`market, timeframe, time,
    open, ..., value`), then `event` and `last_trade`; compact, floats as floats, times as
    export writes them in `tz` (output/text.py)."""
    c = event.candle
    prices = (c.open, c.high, c.low, c.close, c.volume, c.value)
    last = f'"{time_text(c.last_trade, tz)}"' if c.last_trade > 0 else "null"
    return (
        f'{{"market":{json.dumps(c.market)},"timeframe":"{c.timeframe.name}",'
        f'"time":"{time_text(c.time, tz)}",'
        + "".join(f'"{name}":{json_number(v)},' for name, v in zip(_PRICES, prices, strict=True))
        + f'"event":"{event.kind}","last_trade":{last}}}'
    )


_PRICES = ("open", "high", "low", "close", "volume", "value")


class JsonLines:
    """Every event as a JSON line on stdout, flushed at once (a bot reads them as they come)."""

    def __init__(self, stream: TextIO | None = None, tz: str = "UTC") -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.tz = tz

    def __enter__(self) -> JsonLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.flush()

    def show(self, item: LiveEvent) -> None:
        self.stream.write(event_json(item.event, self.tz) + "\n")
        self.stream.flush()


class LiveTable:
    """A table (market x timeframe: O/H/L/C, volume, age of the last trade), redrawn 4x a
    second; rows in the order asked (markets as given, each in the timeframes' order).
    Until the first candles come, one line says what is being backfilled.

    rich redraws on its own thread from `_view`, so a burst of events (the snapshots after
    a backfill) is drawn whole even if no event follows it; `show` only keeps the newest
    candle of each series."""

    def __init__(
        self,
        stream: TextIO | None = None,
        width: int | None = None,
        tz: str = "UTC",
        markets: Sequence[str] = (),
        timeframes: Sequence[Timeframe] = (),
    ) -> None:
        from rich.console import Console
        from rich.live import Live

        stream = stream if stream is not None else sys.stdout
        self._tz = tz
        self._rows: dict[tuple[str, str], Candle] = {}
        self._order = {(m, tf.name): i for i, (m, tf) in enumerate(product(markets, timeframes))}
        self._decimals: dict[str, int] = {}  # per market: prices keep one precision
        self._live: Live = Live(
            console=Console(file=stream, width=width),
            refresh_per_second=1 / _REFRESH_SECONDS,
            get_renderable=self._view,
        )

    def __enter__(self) -> LiveTable:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()  # draws once more

    def show(self, item: LiveEvent) -> None:
        candle = item.event.candle
        if item.event.kind != "close":  # a close is followed by the next period's update
            self._rows[candle.market, candle.timeframe.name] = candle

    def _view(self) -> RenderableType:
        rows = dict(self._rows)  # one copy (atomic): rich calls this from its own thread
        if rows or not self._order:
            return self._table(rows)
        from rich.text import Text

        series = plural(len(self._order), "series", "series")
        return Text(f"backfilling {series} from the store and Upbit before streaming...")

    def _table(self, rows: dict[tuple[str, str], Candle]) -> Table:
        from rich.table import Table

        period = f"period ({self._tz})"
        table = Table("market", "tf", period, "open", "high", "low", "close", "volume")
        table.add_column("last trade")
        for column in table.columns[3:8]:
            column.justify = "right"
        newest = max((c.last_trade for c in rows.values()), default=0)
        last = len(self._order)
        for key in sorted(rows, key=lambda k: self._order.get(k, last)):
            c, market = rows[key], key[0]
            age = (newest - c.last_trade) / 1000 if c.last_trade > 0 else None
            prices = (c.open, c.high, c.low, c.close)
            shown = max(self._decimals.get(market, 0), *(price_decimals(market, p) for p in prices))
            self._decimals[market] = shown  # never fewer than shown before: no jitter
            table.add_row(
                market,
                key[1],
                iso(c.time, self._tz)[:16].replace("T", " "),
                *(f"{p:,.{shown}f}" for p in prices),
                f"{c.volume:,.4f}",
                f"{age:.1f} s ago" if age is not None else "-",
            )
        return table


# Upbit's tick sizes (its market guides): BTC-quoted prices move by 0.00000001 whatever
# they are; KRW and USDT ones by a tick that keeps about four significant digits below
# 1,000 KRW (10 USDT, which never ticks coarser than 0.01), and whole KRW above. Upbit
# changes its KRW table now and then (per band, per asset): a price with more decimals
# than the rule gives shows them all, up to Upbit's 8.
_MOST_DECIMALS = 8
_FEWEST_DECIMALS = {"KRW": 0, "USDT": 2, "BTC": 8}


def price_decimals(market: str, price: float) -> int:
    """The decimals that show a price of `market` to its tick: 198,381,000 for KRW-BTC,
    1,234.5 if it has that half, 0.00001234 for a BTC-quoted one."""
    quote = market.partition("-")[0]
    fewest = _FEWEST_DECIMALS.get(quote, 0)
    if price <= 0 or not math.isfinite(price):
        return fewest
    by_tick = 3 - math.floor(math.log10(price))
    # The digits the price really has (its shortest exact text), beyond the rule's.
    text = repr(price)
    if "e" in text:
        mantissa, _, exponent = text.partition("e")
        digits = len(mantissa.partition(".")[2].rstrip("0")) - int(exponent)
    else:
        digits = len(text.partition(".")[2].rstrip("0"))
    return max(fewest, min(_MOST_DECIMALS, max(by_tick, digits)))
