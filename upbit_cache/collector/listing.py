"""The market list, the ticker list and error bodies of Upbit, read without pyarrow (a light
import)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from upbit_cache.errors import ResponseFormatError


@dataclass(frozen=True)
class MarketInfo:
    """One entry of /v1/market/all."""

    market: str
    korean_name: str
    english_name: str
    warning: bool


def parse_markets(body: Any) -> list[MarketInfo]:
    """The market list; accepts both `market_event.warning` and the older `market_warning`."""
    if not isinstance(body, list) or not all(isinstance(i, dict) for i in body):
        raise ResponseFormatError(
            f"market list: expected a JSON array of objects, got {kind_of(body)}"
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


def parse_last_trades(body: Any) -> dict[str, int]:
    """Each market's last trade (epoch ms) from a ticker list (/v1/ticker/all)."""
    if not isinstance(body, list) or not all(isinstance(i, dict) for i in body):
        raise ResponseFormatError(
            f"ticker list: expected a JSON array of objects, got {kind_of(body)}"
        )
    found = {}
    for item in body:
        code, last = item.get("market"), item.get("trade_timestamp")
        if isinstance(code, str) and isinstance(last, int) and not isinstance(last, bool):
            found[code] = last
    return found


def parse_error(body: Any) -> str | None:
    """The message of an Upbit error body `{"error": {"name": ..., "message": ...}}`."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return f"{err.get('name', '?')}: {err.get('message', '')}".strip()
    return None


def kind_of(body: Any) -> str:
    return "an object" if isinstance(body, dict) else type(body).__name__
