"""The market list, the ticker list and error bodies of Upbit, read without pyarrow (a light
import)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from upbit_cache.errors import ResponseFormatError


@dataclass(frozen=True)
class MarketInfo:
    """One entry of /v1/market/all.

    `warning`: designated for investment warning (`market_event.warning`, or the older
    `market_warning: CAUTION`); `cautions`: the caution flags set (`market_event.caution`,
    such as PRICE_FLUCTUATIONS); `detailed`: whether the list said anything of either (an
    Upbit that ignored `is_details` answers without, and then nothing reads as warned).
    """

    market: str
    korean_name: str
    english_name: str
    warning: bool
    cautions: tuple[str, ...] = ()
    detailed: bool = True


def parse_markets(body: Any) -> list[MarketInfo]:
    """The market list; accepts both `market_event` and the older `market_warning`."""
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
        cautions: tuple[str, ...] = ()
        if isinstance(event, dict):
            warning = _flag(event.get("warning"))
            flags = event.get("caution")
            if isinstance(flags, dict):
                cautions = tuple(str(k) for k, v in flags.items() if _flag(v))
        else:
            warning = item.get("market_warning") == "CAUTION"
        markets.append(
            MarketInfo(
                market=code,
                korean_name=str(item.get("korean_name", "")),
                english_name=str(item.get("english_name", "")),
                warning=warning,
                cautions=cautions,
                detailed=isinstance(event, dict) or "market_warning" in item,
            )
        )
    return markets


def _flag(value: Any) -> bool:
    """A flag sent as a JSON boolean, or as its text ("true"): never "false" read as set."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


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


# "30 seconds", "5 min", "1h", "30초", "5분", "2시간": Upbit's wording of the block time is
# unverified, so any number with a time unit counts, and several add up ("1분 30초").
_DURATION = re.compile(
    r"(\d+(?:\.\d+)?)\s*(seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|초|분|시간)(?![a-z])",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "초": 1, "분": 60, "시": 3600}  # by first letter


def block_seconds(body: Any, raw: bytes, retry_after: str | None, now_ms: int) -> float | None:
    """How long a 418 block lasts: the `Retry-After` header (seconds or an HTTP date), else
    a duration named in the answer's message (or its text); None if neither says."""
    if retry_after:
        text = retry_after.strip()
        try:
            return max(0.0, float(text))
        except ValueError:
            pass
        try:
            until = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            until = None
        if until is not None:
            until = until if until.tzinfo else until.replace(tzinfo=UTC)
            return max(0.0, until.timestamp() - now_ms / 1000)
    message = parse_error(body)
    if message is None:
        message = raw[:500].decode("utf-8", "replace")
    total, found = 0.0, False
    for number, unit in _DURATION.findall(message):
        total += float(number) * _UNIT_SECONDS[unit.lower()[0]]
        found = True
    return total if found else None


def blocked_message(seconds: float | None, now_ms: int) -> str:
    """What a user reads after a 418: how long, until when (UTC), and what to do."""
    if seconds is None:
        return (
            "Upbit blocked this IP (HTTP 418) after too many requests; stopped, data kept. "
            "Wait a few minutes (longer for repeat offenders) and run again."
        )
    now = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    # To the second, as the span is: a Retry-After date comes back as itself.
    until = datetime.fromtimestamp(round(now_ms / 1000 + seconds), tz=UTC)
    when = until.strftime("%H:%M:%S" if until.date() == now.date() else "%Y-%m-%d %H:%M:%S")
    return (
        f"Upbit blocked this IP (HTTP 418) for {_span(seconds)}, until {when} UTC; stopped, "
        "data kept. Run again after that."
    )


def _span(seconds: float) -> str:
    whole = max(1, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h"] if hours else []
    parts += [f"{minutes} min"] if minutes else []
    parts += [f"{secs} s"] if secs else []
    return " ".join(parts)
