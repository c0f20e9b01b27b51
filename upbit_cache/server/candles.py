"""Upbit's candle JSON from our candle tables: its fields, their order, its number forms.

One page at a time, column by column (numpy for the times, one `%` template per row through
`map`): prices print as Upbit's do (`11436000.00000000`), the quote turnover in its
shortest form, times without a zone suffix, newest first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from upbit_cache.timeframes import Timeframe

if TYPE_CHECKING:
    import pandas as pd

    from upbit_cache.manager.pages import Page

_KST_MS = 9 * 3_600_000
# Field, format: "price" 8 decimals, "float" shortest repr, "int", "str" (quoted), "raw".
_FORMATS = {"str": '"%s"', "price": "%.8f", "float": "%r", "int": "%d", "raw": "%s"}


def _times(ms: np.ndarray) -> list[str]:
    text: list[str] = np.datetime_as_string(
        ms.astype("datetime64[ms]").astype("datetime64[s]")
    ).tolist()
    return text


def _ms(frame: pd.DataFrame, column: str) -> np.ndarray:
    values: np.ndarray = frame[column].dt.as_unit("ms").astype("int64").to_numpy()
    return values


def render_page(market: str, tf: Timeframe, page: Page) -> str:
    """The JSON text of one page, newest first, as Upbit sends it."""
    import pandas as pd

    rows = pd.concat([page.closed, page.live]) if len(page.live) else page.closed
    if not len(rows):
        return "[]"
    start = _ms(rows, "time")
    columns: list[tuple[str, str, list[Any]]] = [
        ("market", "str", [market] * len(rows)),
        ("candle_date_time_utc", "str", _times(start)),
        ("candle_date_time_kst", "str", _times(start + _KST_MS)),
        ("opening_price", "price", rows["open"].tolist()),
        ("high_price", "price", rows["high"].tolist()),
        ("low_price", "price", rows["low"].tolist()),
        ("trade_price", "price", rows["close"].tolist()),
        ("timestamp", "int", _ms(rows, "timestamp").tolist()),
        ("candle_acc_trade_price", "float", rows["value"].tolist()),
        ("candle_acc_trade_volume", "price", rows["volume"].tolist()),
    ]
    if tf.kind in ("minute", "hour"):
        columns.append(("unit", "int", [tf.approx_ms // 60_000] * len(rows)))
    elif tf.kind == "day":
        columns += _day_columns(rows, page, start)
    elif tf.kind != "second":
        days = np.datetime_as_string(start.astype("datetime64[ms]").astype("datetime64[D]"))
        columns.append(("first_day_of_period", "str", days.tolist()))
    template = "{" + ",".join(f'"{name}":{_FORMATS[kind]}' for name, kind, _ in columns) + "}"
    newest_first = [values[::-1] for _, _, values in columns]
    return "[" + ",".join(map(template.__mod__, zip(*newest_first, strict=True))) + "]"


def _day_columns(
    rows: pd.DataFrame, page: Page, start: np.ndarray
) -> list[tuple[str, str, list[Any]]]:
    """prev_closing_price, change_price, change_rate (and converted_trade_price)."""
    close = rows["close"].to_numpy()
    prev = np.empty(len(rows))
    # A market's first day has no previous close: Upbit gives its opening price.
    prev[0] = rows["open"].iloc[0] if page.prev_close is None else page.prev_close
    prev[1:] = close[:-1]
    change = close - prev
    columns: list[tuple[str, str, list[Any]]] = [
        ("prev_closing_price", "price", prev.tolist()),
        ("change_price", "price", change.tolist()),
        ("change_rate", "price", np.round(change / prev, 8).tolist()),
    ]
    if page.convert:
        rate = np.ones(len(rows))
        if page.converted is not None:
            rate = np.full(len(rows), np.nan)
            _, mine, theirs = np.intersect1d(
                start, _ms(page.converted, "time"), return_indices=True
            )
            rate[mine] = page.converted["close"].to_numpy()[theirs]
        converted = close * rate
        text = np.where(np.isnan(converted), "null", np.char.mod("%.8f", converted))
        columns.append(("converted_trade_price", "raw", text.tolist()))
    return columns
