"""Upbit's error answers: `{"error": {"name": ..., "message": ...}}` and its status codes."""

from __future__ import annotations

import re

from aiohttp import web

from upbit_cache.errors import IPBlockedError, RateLimitedError, UnknownMarketError, UpbitCacheError
from upbit_cache.times import to_ms

MAX_COUNT = 200
MINUTE_UNITS = (1, 3, 5, 10, 15, 30, 60, 240)
# Upbit's accepted `to` forms: `…T…Z`, `…T…+09:00`, `YYYY-MM-DD HH:MM:SS` (no offset: UTC),
# the seconds with a fraction or not (ccxt sends `…T13:06:40.000Z`).
_TO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})?$")


def error_response(status: int, name: int | str, message: str) -> web.Response:
    """Upbit-style JSON error."""
    return web.json_response({"error": {"name": name, "message": message}}, status=status)


class BadRequest(Exception):
    """A request Upbit would refuse; becomes its error answer."""

    def __init__(self, status: int, name: int | str, message: str) -> None:
        super().__init__(message)
        self.status, self.name, self.message = status, name, message

    def response(self) -> web.Response:
        return error_response(self.status, self.name, self.message)


def not_found() -> BadRequest:
    return BadRequest(404, 404, "Code not found")


def count_of(raw: str | None) -> int:
    """`count`: default 1; above 200 answered with 200, as Upbit does."""
    text = "1" if raw is None else raw
    try:
        count = int(text)
    except ValueError:
        raise BadRequest(400, 400, f"count must be an integer: {text!r}") from None
    if count < 1:
        raise BadRequest(400, 400, f"count must be between 1 and {MAX_COUNT}")
    return min(count, MAX_COUNT)


def to_of(raw: str | None) -> int | None:
    """`to` (exclusive) in epoch ms, None when not given."""
    if not raw:
        return None
    if not _TO_RE.match(raw):
        raise BadRequest(400, 400, f"invalid 'to': {raw!r}")
    try:
        return to_ms(raw)
    except UpbitCacheError:
        raise BadRequest(400, 400, f"invalid 'to': {raw!r}") from None


def unit_of(raw: str) -> int:
    if not raw.isdigit() or int(raw) not in MINUTE_UNITS:
        raise BadRequest(400, 400, f"unit must be one of {list(MINUTE_UNITS)}: {raw!r}")
    return int(raw)


def upstream_failed(exc: UpbitCacheError) -> web.Response:
    """What a client sees when filling its page from Upbit failed."""
    if isinstance(exc, UnknownMarketError):
        return not_found().response()
    if isinstance(exc, IPBlockedError):
        return error_response(418, 418, str(exc))
    if isinstance(exc, RateLimitedError):
        return error_response(429, "too_many_requests", str(exc))
    return error_response(502, 502, f"upbit-cache serve: {exc}")
