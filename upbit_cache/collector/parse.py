"""Turn Upbit JSON bodies into typed tables, refusing anything the API sheet does not allow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from upbit_cache.candles import CANDLE_COLUMNS, empty_candles
from upbit_cache.errors import ResponseFormatError
from upbit_cache.timeframes import Timeframe

# Upbit field -> our column. trade_price is the close; acc_trade_price is the quote turnover.
_CANDLE_FIELDS = {
    "opening_price": "open",
    "high_price": "high",
    "low_price": "low",
    "trade_price": "close",
    "candle_acc_trade_volume": "volume",
    "candle_acc_trade_price": "value",
}
_REQUIRED = ("market", "candle_date_time_utc", "timestamp", *_CANDLE_FIELDS)


@dataclass(frozen=True)
class MarketInfo:
    """One entry of /v1/market/all."""

    market: str
    korean_name: str
    english_name: str
    warning: bool


def parse_candles(body: Any, market: str, timeframe: Timeframe) -> pd.DataFrame:
    """A candle page (newest first on the wire) as a frame sorted by time, oldest first."""
    where = f"{market} {timeframe}"
    if not isinstance(body, list):
        raise ResponseFormatError(f"{where}: expected a JSON array of candles, got {_kind(body)}")
    if not body:
        return empty_candles()
    if not all(isinstance(item, dict) for item in body):
        raise ResponseFormatError(f"{where}: candle array holds something that is not an object")
    raw = pd.DataFrame.from_records(body)
    missing = [f for f in _REQUIRED if f not in raw.columns or raw[f].isna().any()]
    if missing:
        raise ResponseFormatError(f"{where}: candles lack field(s) {', '.join(missing)}")
    if (raw["market"] != market).any():
        raise ResponseFormatError(f"{where}: answer holds candles of another market")
    for field in (*_CANDLE_FIELDS, "timestamp"):
        if not _is_number(raw[field]):
            raise ResponseFormatError(
                f"{where}: field {field} holds non-numbers (e.g. {raw[field].iloc[0]!r})"
            )
    try:
        start = pd.to_datetime(raw["candle_date_time_utc"], format="%Y-%m-%dT%H:%M:%S", utc=True)
    except (ValueError, TypeError) as exc:
        raise ResponseFormatError(f"{where}: bad candle_date_time_utc ({exc})") from exc
    start_ms = start.astype("datetime64[ms, UTC]").astype("int64").to_numpy()
    if (timeframe.floor(start_ms) != start_ms).any():
        raise ResponseFormatError(f"{where}: candle times are not aligned to {timeframe}")
    frame = raw[list(_CANDLE_FIELDS)].rename(columns=_CANDLE_FIELDS).astype(np.float64)
    frame.insert(
        0, "time", pd.to_datetime(start_ms, unit="ms", utc=True).astype("datetime64[ms, UTC]")
    )
    frame["timestamp"] = pd.to_datetime(raw["timestamp"].astype(np.int64), unit="ms", utc=True)
    frame["timestamp"] = frame["timestamp"].astype("datetime64[ms, UTC]")
    frame = frame.sort_values("time", kind="stable").drop_duplicates("time", keep="last")
    return frame[list(CANDLE_COLUMNS)].reset_index(drop=True)


def parse_markets(body: Any) -> list[MarketInfo]:
    """The market list; accepts both `market_event.warning` and the older `market_warning`."""
    if not isinstance(body, list) or not all(isinstance(i, dict) for i in body):
        raise ResponseFormatError(
            f"market list: expected a JSON array of objects, got {_kind(body)}"
        )
    markets = []
    for item in body:
        code = item.get("market")
        if not isinstance(code, str):
            raise ResponseFormatError("market list: an entry has no string 'market' field")
        event = item.get("market_event")
        warning = (
            bool(event.get("warning"))
            if isinstance(event, dict)
            else item.get("market_warning") == "CAUTION"
        )
        markets.append(
            MarketInfo(
                market=code,
                korean_name=str(item.get("korean_name", "")),
                english_name=str(item.get("english_name", "")),
                warning=warning,
            )
        )
    return markets


def parse_error(body: Any) -> str | None:
    """The message of an Upbit error body `{"error": {"name": ..., "message": ...}}`."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return f"{err.get('name', '?')}: {err.get('message', '')}".strip()
    return None


def _is_number(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _kind(body: Any) -> str:
    return "an object" if isinstance(body, dict) else type(body).__name__
