"""Settings: what the environment says, read once per run, and the library's defaults.

`Settings.from_env()` reads every variable of ours in one go; an `UpbitCache` reads it when
it is made, so a test's `monkeypatch.setenv` takes effect for the next cache. A value is
kept as given and checked where it is used: an argument given in its place wins without the
variable being looked at (a bad UPBIT_CACHE_MEMORY is no error for `memory_bytes=...`).

The defaults are named here once: the library uses them, and the CLI's options show them.
Light: the standard library and errors.py only (the CLI's SIGTERM handler stamps lines with
it); platformdirs is imported only to name the default data dir.

The config file (TOML, upbit_cache/configfile.py) is read only when asked for
(`configfile.load`), never by `from_env`: its values land in `Settings.file`, below the
environment and above the defaults. The methods here apply that order.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NamedTuple

from upbit_cache.errors import UsageError

ENV_DATA_DIR = "UPBIT_CACHE_DIR"
ENV_API_URL = "UPBIT_API_URL"
ENV_WS_URL = "UPBIT_WS_URL"
ENV_MEMORY = "UPBIT_CACHE_MEMORY"
ENV_SETTLE = "UPBIT_SETTLE_SECONDS"
ENV_HORIZON = "UPBIT_SECONDS_HORIZON_DAYS"
ENV_RUNTIME_DIR = "UPBIT_CACHE_RUNTIME_DIR"
ENV_CONFIG = "UPBIT_CACHE_CONFIG"
ENV_JOURNAL = "JOURNAL_STREAM"  # systemd's: which stream is its journal (cli/stamp.py)

DEFAULT_API_URL = "https://api.upbit.com"
DEFAULT_RATE = 10.0  # candle requests per second per IP (Upbit's limit)
DEFAULT_TIMEFRAME = "1h"
DEFAULT_LIVE_TIMEFRAMES = "1m,15m,1h"
DEFAULT_DAYS = 30  # a window given no start: the last 30 days
MAX_DAYS = 36_500  # 100 years: more is a typo, and Upbit opened in 2017
DEFAULT_TAIL = 20  # candles `show` (UpbitCache.tail) gives
DEFAULT_BUDGET = 300  # candle requests of `verify --upbit`: half a minute at 10/s
DEFAULT_COMPACT_AFTER = "7d"  # prune: hot partitions older than this go cold
# Upbit serves 1s candles for "the last 3 months" only (its docs). Three calendar months are
# never shorter than 89 days, so nothing older is asked for, whichever reading is meant.
DEFAULT_SECONDS_HORIZON_DAYS = 89.0
# Upbit stores a trade into its REST candles a little after it happens (seen: 1.9 s late on a
# 3m candle; re-reads a minute later never differed). A period is taken as final only this
# long after its end; younger candles are stored as provisional and asked for again.
DEFAULT_SETTLE_SECONDS = 10.0
DEFAULT_QUOTE = "KRW"  # no markets and no quote: every market of this one
DEFAULT_TZ = "UTC"  # the zone times are shown in (stored data is always UTC)
DEFAULT_SERVE_HOST = "127.0.0.1"
DEFAULT_SERVE_PORT = 8124


class FileSettings(NamedTuple):
    """What a config file says, checked (configfile.py); None: the file does not say."""

    path: str  # as named, or the default location
    data_dir: str | None = None
    api_url: str | None = None
    ws_url: str | None = None
    rate: float | None = None
    markets: tuple[str, ...] | None = None  # `markets = [...]`: these markets
    quote: str | None = None  # `markets = "KRW"`: every market of this quote
    timeframes: str | None = None  # comma-separated, checked: "15m,1h"
    days: float | None = None
    tz: str | None = None
    memory: str | None = None  # as written ("512M"), checked
    serve_host: str | None = None
    serve_port: int | None = None
    serve_keep: tuple[str, ...] | None = None  # [serve] keep = [...]
    serve_keep_quote: str | None = None  # [serve] keep = "KRW"
    serve_keep_timeframes: str | None = None


class Settings(NamedTuple):
    """The environment's settings as read at one moment; None: not set (an empty value
    counts as not set). A named tuple, not a dataclass: `dataclasses` (and the `inspect` it
    loads) would cost ~10 ms before the CLI's SIGTERM handler is in place (cli/stamp.py)."""

    data_dir: str | None = None
    api_url: str | None = None
    ws_url: str | None = None
    memory: str | None = None
    settle: str | None = None
    seconds_horizon_days: str | None = None
    runtime_dir: str | None = None
    journal_stream: str | None = None
    config: str | None = None  # UPBIT_CACHE_CONFIG
    file: FileSettings | None = None  # the config file's, once read (configfile.load)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Every variable of ours, read now (from `environ`, default `os.environ`)."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            return env.get(name) or None

        return cls(
            data_dir=get(ENV_DATA_DIR),
            api_url=get(ENV_API_URL),
            ws_url=get(ENV_WS_URL),
            memory=get(ENV_MEMORY),
            settle=get(ENV_SETTLE),
            seconds_horizon_days=get(ENV_HORIZON),
            runtime_dir=get(ENV_RUNTIME_DIR),
            journal_stream=get(ENV_JOURNAL),
            config=get(ENV_CONFIG),
        )

    def default_data_dir(self) -> str:
        """UPBIT_CACHE_DIR if set, else the config file's, else the user data dir (e.g.
        ~/.local/share/upbit-cache)."""
        if self.data_dir is not None:
            return self.data_dir
        if self.file is not None and self.file.data_dir is not None:
            return self.file.data_dir
        import platformdirs

        return platformdirs.user_data_dir("upbit-cache")

    def memory_bytes(self) -> int | None:
        """UPBIT_CACHE_MEMORY as bytes, else the config file's (None: neither, the budget
        follows the machine)."""
        if self.memory is not None:
            return parse_size(self.memory)
        if self.file is not None and self.file.memory is not None:
            return parse_size(self.file.memory)
        return None

    def api(self) -> str | None:
        """UPBIT_API_URL, else the config file's api_url (None: neither)."""
        return self.api_url if self.api_url is not None else self._file().api_url

    def ws(self) -> str | None:
        """UPBIT_WS_URL, else the config file's ws_url (None: neither; it follows the API)."""
        return self.ws_url if self.ws_url is not None else self._file().ws_url

    def rate(self) -> float:
        """The config file's rate, else Upbit's 10 a second (no variable sets it)."""
        rate = self._file().rate
        return rate if rate is not None else DEFAULT_RATE

    def timeframes(self, default: str = DEFAULT_TIMEFRAME) -> str:
        """The config file's timeframes (comma-separated), else `default`."""
        return self._file().timeframes or default

    def markets(self) -> tuple[tuple[str, ...], str | None]:
        """The markets a command given none works on: the config file's list, or its quote
        (None: the default, every market of KRW)."""
        file = self._file()
        return file.markets or (), file.quote

    def days(self, default: float = DEFAULT_DAYS) -> float:
        """The config file's days (a window given no start), else `default`."""
        days = self._file().days
        return days if days is not None else default

    def tz(self) -> str:
        """The config file's time zone, else UTC."""
        return self._file().tz or DEFAULT_TZ

    def serve_host(self) -> str:
        """`[serve] host`, else 127.0.0.1."""
        return self._file().serve_host or DEFAULT_SERVE_HOST

    def serve_port(self) -> int:
        """`[serve] port`, else 8124."""
        port = self._file().serve_port
        return port if port is not None else DEFAULT_SERVE_PORT

    def serve_keep(self) -> tuple[tuple[str, ...], str | None]:
        """`[serve] keep`: the markets serve keeps fresh, or a quote for all of one (both
        empty: nothing is kept)."""
        file = self._file()
        return file.serve_keep or (), file.serve_keep_quote

    def serve_keep_timeframes(self) -> str:
        """`[serve] keep_timeframes`, else the timeframes setting (else 1h)."""
        return self._file().serve_keep_timeframes or self.timeframes()

    def _file(self) -> FileSettings:
        return self.file if self.file is not None else _NO_FILE

    def settle_seconds(self) -> float:
        """UPBIT_SETTLE_SECONDS: seconds after a period's end before its candle is final."""
        if self.settle is None:
            return DEFAULT_SETTLE_SECONDS
        seconds = _number(self.settle, -1.0)
        if not 0 <= seconds <= 3600:
            raise UsageError(
                f"{ENV_SETTLE} must be a number of seconds from 0 to 3600, not {self.settle!r}"
            )
        return seconds

    def horizon_days(self) -> float:
        """UPBIT_SECONDS_HORIZON_DAYS: how far back Upbit keeps 1s candles."""
        if self.seconds_horizon_days is None:
            return DEFAULT_SECONDS_HORIZON_DAYS
        days = _number(self.seconds_horizon_days, 0.0)
        if not 0 < days <= 36_500:
            raise UsageError(
                f"{ENV_HORIZON} must be a number of days above 0, not {self.seconds_horizon_days!r}"
            )
        return days


_NO_FILE = FileSettings("")


def parse_size(text: str, what: str = ENV_MEMORY) -> int:
    """`512M`, `2G`, `1.5GiB`, `0` (no memory layer) as bytes; powers of 1024."""
    units = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    raw = text.strip().lower().removesuffix("ib").removesuffix("b")
    number, unit = (raw[:-1], raw[-1]) if raw and raw[-1] in units else (raw, "")
    try:
        size = float(number) * units[unit]
    except ValueError:
        raise UsageError(f"{what}: {text!r} is not a size such as 512M or 2G") from None
    if size < 0:
        raise UsageError(f"{what}: {text!r} is negative")
    return int(size)


def _number(text: str, otherwise: float) -> float:
    try:
        return float(text)
    except ValueError:
        return otherwise
