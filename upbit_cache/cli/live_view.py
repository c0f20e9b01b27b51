"""How `live` shows candles: JSON lines for a bot's pipe, or a rich table on a terminal."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, TextIO

from upbit_cache.times import iso

if TYPE_CHECKING:
    from rich.live import Live
    from rich.table import Table

    from upbit_cache.manager.live import LiveEvent
    from upbit_cache.timeframes.live import Candle, CandleEvent

_REFRESH_SECONDS = 0.25


def event_json(event: CandleEvent, tz: str = "UTC") -> str:
    """One JSON line: `{"event": "update", "market": ..., "timeframe": ..., "time": ...}`,
    times as text in `tz`."""
    c = event.candle
    return json.dumps(
        {
            "event": event.kind,
            "market": c.market,
            "timeframe": c.timeframe.name,
            "time": iso(c.time, tz),
            "open": c.open,
            "high": c.high,
            "low": c.low,
            "close": c.close,
            "volume": c.volume,
            "value": c.value,
            "last_trade": iso(c.last_trade, tz) if c.last_trade > 0 else None,
            "last_trade_ms": c.last_trade,
        }
    )


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
    """A table (market x timeframe: O/H/L/C, volume, age of the last trade), redrawn 4x a second."""

    def __init__(
        self, stream: TextIO | None = None, width: int | None = None, tz: str = "UTC"
    ) -> None:
        from rich.console import Console
        from rich.live import Live

        stream = stream if stream is not None else sys.stdout
        self._tz = tz
        self._rows: dict[tuple[str, str], Candle] = {}
        self._live: Live = Live(console=Console(file=stream, width=width), auto_refresh=False)
        self._drawn = 0.0

    def __enter__(self) -> LiveTable:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.update(self._table(), refresh=True)
        self._live.stop()

    def show(self, item: LiveEvent) -> None:
        candle = item.event.candle
        if item.event.kind != "close":  # a close is followed by the next period's update
            self._rows[candle.market, candle.timeframe.name] = candle
        if time.monotonic() - self._drawn >= _REFRESH_SECONDS:
            self._live.update(self._table(), refresh=True)
            self._drawn = time.monotonic()

    def _table(self) -> Table:
        from rich.table import Table

        period = f"period ({self._tz})"
        table = Table("market", "tf", period, "open", "high", "low", "close", "volume")
        table.add_column("last trade")
        newest = max((c.last_trade for c in self._rows.values()), default=0)
        for (market, tf), c in sorted(self._rows.items()):
            age = (newest - c.last_trade) / 1000 if c.last_trade > 0 else None
            table.add_row(
                market,
                tf,
                iso(c.time, self._tz)[:16].replace("T", " "),
                f"{c.open:,.8g}",
                f"{c.high:,.8g}",
                f"{c.low:,.8g}",
                f"{c.close:,.8g}",
                f"{c.volume:,.4f}",
                f"{age:.1f} s ago" if age is not None else "-",
            )
        return table
