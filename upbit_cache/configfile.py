"""The config file: TOML, read only when asked for, every value checked where it is read.

Where: `--config FILE` (or `UpbitCache(config=FILE)`), else UPBIT_CACHE_CONFIG, else
`config.toml` in the platform's config dir (`$XDG_CONFIG_HOME/upbit-cache` when that is
set, on any platform, else platformdirs' user config dir: `~/.config/upbit-cache` on
Linux). A file named (by the option, the argument or the variable) must be there; the
default one may be missing.

A bad file is one UsageError (ConfigError) naming the file, the key and why: bad TOML with
its line, an unknown key with the key meant, a wrong type, a market code, timeframe, zone,
URL or size that is not one. Markets go through the one market validator (markets.py),
timeframes through the one Timeframe type, zones through times.check_timezone.

Precedence (applied by `Settings`' methods and the CLI): flags > environment > this file >
the library's defaults. tomllib and the validators load only here, so a run that never
reads the file (the CLI's start, `--version`, `--help`) does not pay for them.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, Literal, NamedTuple

from upbit_cache.errors import ConfigError, UpbitCacheError
from upbit_cache.settings import (
    DEFAULT_API_URL,
    DEFAULT_DAYS,
    DEFAULT_QUOTE,
    DEFAULT_RATE,
    DEFAULT_SECONDS_HORIZON_DAYS,
    DEFAULT_SERVE_HOST,
    DEFAULT_SERVE_PORT,
    DEFAULT_SETTLE_SECONDS,
    DEFAULT_TIMEFRAME,
    DEFAULT_TZ,
    ENV_API_URL,
    ENV_CONFIG,
    ENV_DATA_DIR,
    ENV_HORIZON,
    ENV_MEMORY,
    ENV_SETTLE,
    ENV_WS_URL,
    MAX_DAYS,
    FileSettings,
    Settings,
    parse_size,
)

CONFIG_NAME = "config.toml"
MIN_RATE, MAX_RATE = 0.1, 1000.0  # as --rate takes
# What `config` shows, in this order: a top-level key, or `serve.<key>` for [serve]'s.
KEYS = ("data_dir", "api_url", "ws_url", "rate", "markets", "timeframes", "days", "tz", "memory")
SERVE_KEYS = ("host", "port", "keep", "keep_timeframes")

Config = str | os.PathLike[str] | Literal[False] | None


class Located(NamedTuple):
    """Where the config file is looked for, and who named it (None: the default place)."""

    path: str
    named_by: str | None  # "--config", "UPBIT_CACHE_CONFIG" or "config=" (Python)


def default_path(environ: Mapping[str, str] | None = None) -> str:
    """`config.toml` in $XDG_CONFIG_HOME/upbit-cache if that is set, else in the platform's
    user config dir."""
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_CONFIG_HOME")
    if xdg and os.path.isabs(xdg):  # the spec: a relative value is to be ignored
        folder = os.path.join(xdg, "upbit-cache")
    else:
        import platformdirs

        folder = platformdirs.user_config_dir("upbit-cache")
    return os.path.join(folder, CONFIG_NAME)


def locate(config: Config = None, settings: Settings | None = None, by: str = "config=") -> Located:
    """Where the file is: `config` if given (`by` names who gave it), else UPBIT_CACHE_CONFIG,
    else the default place."""
    env = settings if settings is not None else Settings.from_env()
    if config is not None and config is not False:
        return Located(os.fspath(config), by)
    if env.config is not None:
        return Located(env.config, ENV_CONFIG)
    return Located(default_path(), None)


def load(
    config: Config = None, environ: Mapping[str, str] | None = None, by: str = "config="
) -> Settings:
    """The environment's settings with the config file's (`Settings.file`): `config` a file
    to read (it must be there), None for UPBIT_CACHE_CONFIG or the default place (which may
    be missing), False for no file at all."""
    settings = Settings.from_env(environ)
    if config is False:
        return settings
    where = locate(config, settings, by)
    return settings._replace(file=read(where.path, named=where.named_by is not None))


def read(path: str, named: bool = True) -> FileSettings | None:
    """The file at `path`, checked; None if it is not there and was not `named`."""
    import tomllib

    try:
        with open(path, "rb") as handle:
            table = tomllib.load(handle)
    except FileNotFoundError:
        if not named:
            return None
        raise ConfigError(f"config {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"config {path}: is a directory, not a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config {path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: not valid TOML: {exc}") from None
    return _checked(path, table)


def _checked(path: str, table: dict[str, Any]) -> FileSettings:
    where = f"config {path}"
    _known(where, table, (*KEYS, "serve"), "")
    serve = table.get("serve", {})
    if not isinstance(serve, dict):
        raise ConfigError(f"{where}: serve: must be a table ([serve]), not {_kind(serve)}")
    _known(where, serve, SERVE_KEYS, "serve.")
    value = _Check(where, table)
    markets, quote = value.markets("markets")
    serve_value = _Check(where, serve, "serve.")
    keep, keep_quote = serve_value.markets("keep")
    return FileSettings(
        path=path,
        data_dir=value.data_dir(path),
        api_url=value.url("api_url", DEFAULT_API_URL),
        ws_url=value.url("ws_url", "wss://api.upbit.com/websocket/v1"),
        rate=value.number("rate", MIN_RATE, MAX_RATE, "requests a second"),
        markets=markets,
        quote=quote,
        timeframes=value.timeframes("timeframes"),
        days=value.number("days", 0.01, MAX_DAYS, "days"),
        tz=value.zone("tz"),
        memory=value.size("memory"),
        serve_host=serve_value.text("host"),
        serve_port=serve_value.port("port"),
        serve_keep=keep,
        serve_keep_quote=keep_quote,
        serve_keep_timeframes=serve_value.timeframes("keep_timeframes"),
    )


def _known(where: str, table: Mapping[str, Any], keys: tuple[str, ...], prefix: str) -> None:
    for key in table:
        if key not in keys:
            close = difflib.get_close_matches(key.replace("-", "_").lower(), keys, n=1, cutoff=0.6)
            hint = f"did you mean {prefix}{close[0]}?" if close else f"known: {', '.join(keys)}"
            raise ConfigError(f"{where}: unknown key {prefix}{key} ({hint})")


def _kind(value: object) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number"}
    names |= {list: "an array", dict: "a table"}
    found = names.get(type(value), type(value).__name__)
    return f"{found} ({value!r})" if isinstance(value, str | int | float) else found


class _Check:
    """One table's values, each checked as it is taken; a bad one is a ConfigError naming
    the file and the key."""

    def __init__(self, where: str, table: Mapping[str, Any], prefix: str = "") -> None:
        self.where, self.table, self.prefix = where, table, prefix

    def fail(self, key: str, why: str) -> ConfigError:
        return ConfigError(f"{self.where}: {self.prefix}{key}: {why}")

    def ours(self, key: str, check: Callable[[], str]) -> str:
        """`check()`, its error (from the one validator of its kind) told as this key's."""
        try:
            return check()
        except UpbitCacheError as exc:
            raise self.fail(key, str(exc).strip()) from None

    def text(self, key: str) -> str | None:
        value = self.table.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, not {_kind(value)}")
        if not value.strip():
            raise self.fail(key, "is empty")
        return value

    def number(self, key: str, low: float, high: float, unit: str) -> float | None:
        value = self.table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"must be a number of {unit}, not {_kind(value)}")
        if math.isnan(value) or not low <= value <= high:
            raise self.fail(key, f"must be from {low:g} to {high:g} {unit}, not {value!r}")
        return float(value)

    def port(self, key: str) -> int | None:
        value = self.table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be a port number (an integer), not {_kind(value)}")
        if not 1 <= value <= 65535:
            raise self.fail(key, f"must be a port from 1 to 65535, not {value}")
        return value

    def data_dir(self, path: str) -> str | None:
        """A folder (`~` expanded; relative to the config file's folder) or a URI as is."""
        value = self.text("data_dir")
        if value is None or "://" in value:
            return value
        folder = Path(os.path.expanduser(value))
        return str(folder if folder.is_absolute() else Path(path).parent / folder)

    def url(self, key: str, example: str) -> str | None:
        from upbit_cache.collector.config import check_url

        value = self.text(key)
        if value is None:
            return None
        # check_url's message starts with the option it is given: none here, the key is said.
        return self.ours(key, lambda: check_url(value, "", example)).rstrip("/")

    def size(self, key: str) -> str | None:
        value = self.table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.fail(key, f'must be a size such as "512M" or "2G", not {_kind(value)}')
        text = str(value)
        try:
            parse_size(text, "")
        except UpbitCacheError as exc:
            raise self.fail(key, str(exc).removeprefix(": ")) from None
        return text

    def zone(self, key: str) -> str | None:
        from upbit_cache.times import check_timezone

        value = self.text(key)
        return None if value is None else self.ours(key, lambda: check_timezone(value))

    def timeframes(self, key: str) -> str | None:
        """An array of timeframes or one comma-separated string, through the one Timeframe."""
        from upbit_cache.timeframes import Timeframe

        value = self.table.get(key)
        if value is None:
            return None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            text = ",".join(value)
        elif isinstance(value, str):
            text = value
        else:
            example = 'an array of timeframes such as ["1h"]'
            raise self.fail(key, f"must be {example}, not {_kind(value)}")
        return self.ours(key, lambda: ",".join(t.name for t in Timeframe.parse_list(text)))

    def markets(self, key: str) -> tuple[tuple[str, ...] | None, str | None]:
        """An array of market codes (the one validator), or a quote: every market of it."""
        from upbit_cache.markets import QUOTES, validate_market, validate_quote

        value = self.table.get(key)
        if value is None:
            return None, None
        if isinstance(value, str):
            if value.strip().upper() in QUOTES:
                return None, validate_quote(value)
            try:
                code = validate_market(value)
            except UpbitCacheError:
                raise self.fail(
                    key,
                    f'must be an array of markets such as ["KRW-BTC"] or a quote '
                    f"({', '.join(QUOTES)}), not {value!r}",
                ) from None
            raise self.fail(key, f"give markets as an array: [{code!r}], not {value!r}")
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            example = 'an array of markets such as ["KRW-BTC"]'
            raise self.fail(key, f"must be {example}, not {_kind(value)}")
        if not value:
            raise self.fail(key, "is an empty array (leave it out for the default)")
        codes = [self.ours(key, partial(validate_market, code)) for code in value]
        return tuple(dict.fromkeys(codes)), None


# `upbit-cache config`: each setting's value and where it came from.


class Effective(NamedTuple):
    """One setting as it stands: its key, value and source ("flag", "environment",
    "config", "default"); `origin` names the flag, variable or file."""

    key: str
    value: Any
    source: str
    origin: str | None = None


def effective(
    settings: Settings, flags: Mapping[str, Any] | None = None, environment_only: bool = False
) -> list[Effective]:
    """Every setting the config file can hold, with where its value came from: `flags` (the
    command line's, by key: data_dir, api_url, ws_url, rate), then the environment,
    then the file, then the default. `environment_only`: the settings only a variable sets
    (the settle time, the 1s horizon) too."""
    given = dict(flags or {})
    file = settings.file if settings.file is not None else FileSettings("")
    here = file.path or None
    out: list[Effective] = []

    def add(
        key: str, env: tuple[str, Any] | None, in_file: Any, default: Any, flag: str | None = None
    ) -> None:
        if flag is not None and given.get(key) is not None:
            out.append(Effective(key, given[key], "flag", flag))
        elif env is not None and env[1] is not None:
            out.append(Effective(key, env[1], "environment", env[0]))
        elif in_file is not None:
            out.append(Effective(key, in_file, "config", here))
        else:
            out.append(Effective(key, default, "default"))

    import platformdirs

    add(
        "data_dir",
        (ENV_DATA_DIR, settings.data_dir),
        file.data_dir,
        platformdirs.user_data_dir("upbit-cache"),
        "--data-dir",
    )
    add("api_url", (ENV_API_URL, settings.api_url), file.api_url, DEFAULT_API_URL, "--api-url")
    api = out[-1].value
    from upbit_cache.collector.config import ws_url_for

    add("ws_url", (ENV_WS_URL, settings.ws_url), file.ws_url, ws_url_for(str(api)), "--ws-url")
    add("rate", None, file.rate, DEFAULT_RATE, "--rate")
    add("markets", None, list(file.markets) if file.markets else file.quote, DEFAULT_QUOTE)
    add("timeframes", None, _listed(file.timeframes), [DEFAULT_TIMEFRAME])
    add("days", None, file.days, float(DEFAULT_DAYS))
    add("tz", None, file.tz, DEFAULT_TZ, "--tz")
    add("memory", (ENV_MEMORY, settings.memory), file.memory, "auto")
    add("serve.host", None, file.serve_host, DEFAULT_SERVE_HOST)
    add("serve.port", None, file.serve_port, DEFAULT_SERVE_PORT)
    keep = list(file.serve_keep) if file.serve_keep else file.serve_keep_quote
    add("serve.keep", None, keep, None)
    keep_tfs = file.serve_keep_timeframes
    add("serve.keep_timeframes", None, _listed(keep_tfs), _listed(settings.timeframes()))
    if environment_only:
        settle = settings.settle_seconds() if settings.settle is not None else None
        horizon = settings.horizon_days() if settings.seconds_horizon_days is not None else None
        add("settle_seconds", (ENV_SETTLE, settle), None, DEFAULT_SETTLE_SECONDS)
        add("seconds_horizon_days", (ENV_HORIZON, horizon), None, DEFAULT_SECONDS_HORIZON_DAYS)
    return out


def _listed(timeframes: str | None) -> list[str] | None:
    return timeframes.split(",") if timeframes else None
