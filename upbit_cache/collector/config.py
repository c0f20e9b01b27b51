"""Settings of the collection engine, as a small frozen value object."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from upbit_cache.errors import UsageError
from upbit_cache.settings import (
    DEFAULT_API_URL,
    DEFAULT_RATE,
    DEFAULT_SECONDS_HORIZON_DAYS,
    DEFAULT_SETTLE_SECONDS,
    Settings,
)

WS_PATH = "/websocket/v1"
DEFAULT_WS_URL = "wss://api.upbit.com" + WS_PATH
DEFAULT_MAX_IN_FLIGHT = 16
DEFAULT_RETRIES = 5
DEFAULT_TIMEOUT = 10.0


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
    runtime_dir: str | None = None  # where the host's shared send schedule lives (hostcell.py)

    @classmethod
    def from_env(
        cls,
        api_url: str | None = None,
        rate: float | None = None,
        ws_url: str | None = None,
        settings: Settings | None = None,
    ) -> ClientConfig:
        """Explicit arguments win, then UPBIT_API_URL / UPBIT_WS_URL, then the config file's
        (in `settings.file`, if read), then the defaults; with
        no WebSocket URL given, it follows from the API URL (`ws_url_for`), so one setting
        points every command elsewhere. UPBIT_SECONDS_HORIZON_DAYS sets how far back Upbit
        keeps 1s candles, UPBIT_SETTLE_SECONDS how long after a period's end its candle is
        final, UPBIT_CACHE_RUNTIME_DIR where this host's runs share their request budget.
        `settings`: the environment as read once (default: read now).

        A URL that is not one (no scheme of its kind, no host, an empty one given) is a
        UsageError here, before any request: retrying it would only take time."""
        env = settings if settings is not None else Settings.from_env()
        rest = check_url(_given(api_url, env.api(), DEFAULT_API_URL), "--api-url", DEFAULT_API_URL)
        rest = rest.rstrip("/")
        stream = _given(ws_url, env.ws(), "")
        given = ws_url is not None or bool(stream)  # an empty --ws-url is refused, not skipped
        return cls(
            api_url=rest,
            rate=rate if rate is not None else env.rate(),
            ws_url=check_url(stream, "--ws-url", DEFAULT_WS_URL) if given else ws_url_for(rest),
            seconds_horizon_days=env.horizon_days(),
            settle=env.settle_seconds(),
            runtime_dir=env.runtime_dir,
        )


def ws_url_for(api_url: str) -> str:
    """Upbit's WebSocket beside its REST API: `http://host:port` -> `ws://host:port/websocket/v1`
    (https -> wss; a path kept, as a proxy's prefix)."""
    scheme, sep, rest = api_url.partition("://")
    secure = scheme.lower() == "https"
    return f"{'wss' if secure else 'ws'}{sep}{rest.rstrip('/')}{WS_PATH}"


def _given(argument: str | None, variable: str | None, default: str) -> str:
    """The argument if given (even empty: a mistake to refuse, not to pass over), else the
    variable's value if set (and not empty), else `default`."""
    if argument is not None:
        return argument
    return variable if variable is not None else default


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
