"""The one exception tree of upbit-cache.

    UpbitCacheError                 root; `exit_code` tells the CLI how to exit
    ├── UsageError                  the caller asked for something invalid (exit 2)
    │   ├── InvalidMarketError      not a market code like KRW-BTC
    │   ├── UnknownMarketError      well-formed, but Upbit does not list it
    │   ├── InvalidTimeframeError   not one of the supported timeframes
    │   ├── InvalidRangeError       bad dates, --since after --until
    │   ├── RefusedError            a destructive step not confirmed (prune emptying series)
    │   └── ConfigError             the config file is bad: its name, the key, why
    ├── StorageError                the data dir cannot be used (exit 2)
    │   ├── DamageError             a damaged file or record, or a hole (exit 1, as verify)
    │   └── WriteConflict           another writer replaced a file first (merged again)
    └── ExchangeError               Upbit (or the network) failed us (exit 1)
        ├── ResponseFormatError     an answer that is not what the API sheet says
        ├── ServerError             5xx, timeouts, broken connections, after retries
        ├── RateLimitedError        429s that did not clear after slowing down
        └── IPBlockedError          418: Upbit blocked this IP; stop, keep the data

Errors of lower libraries (aiohttp, pyarrow, OS) are converted where they happen
(`raise XError(...) from exc`), so callers only ever catch this tree.
"""

from __future__ import annotations


class UpbitCacheError(Exception):
    """Root of every error upbit-cache raises on purpose."""

    exit_code = 1


class UsageError(UpbitCacheError):
    """The request itself is invalid; retrying will not help."""

    exit_code = 2


class InvalidMarketError(UsageError):
    """A market code that is not of the form QUOTE-BASE (e.g. KRW-BTC)."""


class UnknownMarketError(UsageError):
    """A well-formed market code that Upbit does not list."""


class InvalidTimeframeError(UsageError):
    """A timeframe that upbit-cache does not know."""


class InvalidRangeError(UsageError):
    """A time range that cannot be served (unparseable, empty or reversed)."""


class ConfigError(UsageError):
    """A config file that cannot be used: not there (when named), not TOML, a key unknown
    or its value wrong. The message names the file and the key."""


class RefusedError(UsageError):
    """A destructive step that needs confirming was not done: nothing changed. `report` is
    what it would have done (a dry run's report)."""

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report

    def __reduce__(self) -> tuple[type[RefusedError], tuple[str, object]]:
        return type(self), (str(self), self.report)


class StorageError(UpbitCacheError):
    """The data dir cannot be read or written."""

    exit_code = 2


class DamageError(StorageError):
    """Something the store holds is damaged: a data file that is not what its place says,
    a listed file that is gone, a record that cannot be trusted. The message names it and
    ends with "run `upbit-cache verify --repair`"; `path`, `kind` (verify's name for it) and
    `detail` say the same for code. Exit 1, as `verify` exits when it finds damage."""

    exit_code = 1

    def __init__(self, message: str, path: str = "", kind: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.path, self.kind, self.detail = path, kind, detail

    def __reduce__(self) -> tuple[type[DamageError], tuple[str, str, str, str]]:
        return type(self), (str(self), self.path, self.kind, self.detail)


class WriteConflict(StorageError):
    """Another writer replaced the file since this process read it; read and merge again."""


class ExchangeError(UpbitCacheError):
    """Upbit, or the way to it, did not give a usable answer."""


class ResponseFormatError(ExchangeError):
    """Upbit answered with something that is not what the API sheet describes."""


class ServerError(ExchangeError):
    """Upbit kept failing (5xx, timeouts, dropped connections) after retries."""


class RateLimitedError(ExchangeError):
    """Upbit kept answering 429 even after slowing down."""


class IPBlockedError(ExchangeError):
    """Upbit answered 418: this IP is blocked for a while (`retry_after` seconds from the
    answer, None when it did not say)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[type[IPBlockedError], tuple[str, float | None]]:
        return type(self), (str(self), self.retry_after)
