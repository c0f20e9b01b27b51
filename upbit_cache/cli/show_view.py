"""`show`: the newest candles as a table on a terminal, with a sparkline of closes where the
width allows; elsewhere the rows as `export` writes CSV."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from upbit_cache.times import iso

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from upbit_cache.timeframes import Timeframe

BARS = "▁▂▃▄▅▆▇█"
MAX_DECIMALS = 8  # Upbit's prices and volumes have at most 8
_DAY_MS = 86_400_000


def sparkline(values: Sequence[float]) -> str:
    """One bar per value, from the lowest (▁) to the highest (█); a flat series is mid-high."""
    if not values:
        return ""
    low, high = min(values), max(values)
    if high == low:
        return BARS[3] * len(values)
    top = len(BARS) - 1
    return "".join(BARS[round((v - low) / (high - low) * top)] for v in values)


def decimals(values: Sequence[float]) -> int:
    """The decimals that write every value of a column exactly (at most 8), so that the
    column aligns and no digit is lost: 0 for KRW-BTC's prices, 8 for BTC-quoted ones."""
    most = 0
    for value in values:
        if not math.isfinite(value):
            continue
        text = f"{value:.{MAX_DECIMALS}f}".rstrip("0")
        most = max(most, len(text.partition(".")[2]))
    return most


def column(values: Sequence[float]) -> list[str]:
    """Values with thousands separators and the column's decimals."""
    places = decimals(values)
    return [f"{v:,.{places}f}" for v in values]


def short_time(ms: int, tz: str = "UTC", tf: Timeframe | None = None) -> str:
    """A time for a narrow column, in `tz` (named in the header, so no offset): no zero
    seconds, and no midnight for a timeframe of a day or more."""
    text = iso(ms, tz)
    text = text[:19].replace("T", " ")  # the offset (or Z) off
    if text.endswith(":00") and (tf is None or tf.name != "1s"):
        text = text[:-3]
    if tf is not None and tf.approx_ms >= _DAY_MS and text.endswith(" 00:00"):
        text = text[:-6]
    return text


def table(
    frame: pd.DataFrame, market: str, tf: Timeframe, console: Console, tz: str = "UTC"
) -> None:
    """The terminal's view: a title, the sparkline of closes if it fits, then a row per
    candle; volume, then open, left out where the terminal is too narrow for them."""
    from rich import box
    from rich.measure import Measurement
    from rich.table import Table

    names = ["open", "high", "low", "close", "volume"]
    cells = {name: column([float(v) for v in frame[name]]) for name in names}
    times = [short_time(int(t.value // 1_000_000), tz, tf) for t in frame["time"]]
    for shown in (names, ["open", "high", "low", "close"], ["high", "low", "close"]):
        grid = Table(box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
        grid.title = f"{market} {tf.name}, newest {len(frame)}"
        grid.add_column(f"time ({tz})", no_wrap=True)
        for name in shown:
            grid.add_column(name, justify="right", no_wrap=True)
        for i, when in enumerate(times):
            grid.add_row(when, *(cells[name][i] for name in shown))
        # Measured unbounded: a table measured within the console is never wider than it.
        if (
            Measurement.get(console, console.options.update(max_width=1 << 20), grid).maximum
            <= console.width
        ):
            break
    line = _spark_line([float(c) for c in frame["close"]], cells["close"])
    if line is not None and len(line) <= console.width:
        console.print(line, highlight=False)
    console.print(grid)


def _spark_line(closes: list[float], shown: list[str]) -> str | None:
    if len(closes) < 2:
        return None
    low, high = shown[closes.index(min(closes))], shown[closes.index(max(closes))]
    return f"close {sparkline(closes)}  low {low}  high {high}"
