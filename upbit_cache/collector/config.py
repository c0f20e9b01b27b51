"""Settings of the collection engine, as a small frozen value object."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from upbit_cache.errors import UsageError

DEFAULT_API_URL = "https://api.upbit.com"
WS_PATH = "/websocket/v1"
DEFAULT_WS_URL = "wss://api.upbit.com" + WS_PATH
DEFAULT_RATE = 10.0  # candle requests per second per IP (Upbit's limit)
DEFAULT_MAX_IN_FLIGHT = 16
DEFAULT_RETRIES = 5
DEFAULT_TIMEOUT = 10.0
# Upbit serves 1s candles for "the last 3 months" only (its docs). Three calendar months are
# never shorter than 89 days, so nothing older is asked for, whichever reading is meant.
DEFAULT_SECONDS_HORIZON_DAYS = 89.0
# Upbit stores a trade into its REST candles a little after it happens (seen: 1.9 s late on a
# 3m candle; re-reads a minute later never differed). A period is taken as final only this
# long after its end; younger candles are stored as provisional and asked for again.
DEFAULT_SETTLE_SECONDS = 10.0


@dataclass(frozen=True)
class ClientConfig:
    """How to reach Upbit and how hard to push it."""

    api_url: str = DEFAULT_API_URL
    rate: float = DEFAULT_RATE
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    retries: int = DEFAULT_RETRIES
    timeout: float = DEFAULT_TIMEOUT
    backoff: float = 0.25  # first retry delay in seconds; doubles, with jitter
    ws_url: str = DEFAULT_WS_URL
    seconds_horizon_days: float = DEFAULT_SECONDS_HORIZON_DAYS  # how far back 1s candles exist
    settle: float = DEFAULT_SETTLE_SECONDS  # seconds after a period's end before it is final

    @classmethod
    def from_env(
        cls, api_url: str | None = None, rate: float | None = None, ws_url: str | None = None
    ) -> ClientConfig:
        """Explicit arguments win, then UPBIT_API_URL / UPBIT_WS_URL, then the defaults; with
        no WebSocket URL given, it follows from the API URL (`ws_url_for`), so one setting
        points every command elsewhere. UPBIT_SECONDS_HORIZON_DAYS sets how far back Upbit
        keeps 1s candles, UPBIT_SETTLE_SECONDS how long after a period's end its candle is
        final.

        A URL that is not one (no scheme of its kind, no host, an empty one given) is a
        UsageError here, before any request: retrying it would only take time."""
        rest = check_url(
            _given(api_url, "UPBIT_API_URL", DEFAULT_API_URL), "--api-url", DEFAULT_API_URL
        )
        rest = rest.rstrip("/")
        stream = _given(ws_url, "UPBIT_WS_URL", "")
        given = ws_url is not None or bool(stream)  # an empty --ws-url is refused, not skipped
        return cls(
            api_url=rest,
            rate=rate if rate is not None else DEFAULT_RATE,
            ws_url=check_url(stream, "--ws-url", DEFAULT_WS_URL) if given else ws_url_for(rest),
            seconds_horizon_days=_days(os.environ.get(_HORIZON_ENV)),
            settle=_settle(os.environ.get(_SETTLE_ENV)),
        )


def ws_url_for(api_url: str) -> str:
    """Upbit's WebSocket beside its REST API: `http://host:port` -> `ws://host:port/websocket/v1`
    (https -> wss; a path kept, as a proxy's prefix)."""
    scheme, sep, rest = api_url.partition("://")
    secure = scheme.lower() == "https"
    return f"{'wss' if secure else 'ws'}{sep}{rest.rstrip('/')}{WS_PATH}"


def _given(argument: str | None, env: str, default: str) -> str:
    """The argument if given (even empty: a mistake to refuse, not to pass over), else the
    variable's value if set and not empty, else `default`."""
    return argument if argument is not None else os.environ.get(env) or default


def check_url(url: str, option: str, example: str) -> str:
    """`url` if it is an absolute URL of `example`'s kind (http(s)://, or ws(s):// for a
    WebSocket) with a host and, if any, a numeric port; else a UsageError naming `option`."""
    schemes = ("ws", "wss") if example.startswith("ws") else ("http", "https")
    refused = UsageError(
        f"{option} must be a URL such as {example} ({' or '.join(f'{s}://' for s in schemes)} "
        f"and a host), not {url!r}"
    )
    if any(c.isspace() or not c.isprintable() for c in url):
        raise refused
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a port that is not a number raises here)
    except ValueError:
        raise refused from None
    if parts.scheme.lower() not in schemes or not parts.hostname:
        raise refused
    return url


_HORIZON_ENV = "UPBIT_SECONDS_HORIZON_DAYS"
_SETTLE_ENV = "UPBIT_SETTLE_SECONDS"


def _settle(text: str | None) -> float:
    if not text:
        return DEFAULT_SETTLE_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        raise UsageError(f"{_SETTLE_ENV} must be a number of seconds from 0 to 3600, not {text!r}")
    return seconds


def _days(text: str | None) -> float:
    if not text:
        return DEFAULT_SECONDS_HORIZON_DAYS
    try:
        days = float(text)
    except ValueError:
        days = 0.0
    if not 0 < days <= 36_500:
        raise UsageError(f"{_HORIZON_ENV} must be a number of days above 0, not {text!r}")
    return days
