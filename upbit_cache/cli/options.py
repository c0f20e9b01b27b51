"""The options and arguments the commands share or declare, as typed `Annotated` aliases.

Kept apart from the commands so that each command reads as parse -> one call -> render.
Every option that takes a value names it with a placeholder (`TF[,TF...]`, `DAYS`), and the
options several commands have mean the same in each: -q/-v, --days, -t, --tz, --data-dir.

Where a command's default comes from the config file (the time zone, timeframes, markets,
days), it is looked up here, when the default is used (`run_settings`): the file is read
only by a run that needs it, never at start-up (`--version`, `--help`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from upbit_cache.collector.config import DEFAULT_WS_URL
from upbit_cache.errors import UsageError
from upbit_cache.settings import (
    DEFAULT_API_URL,
    DEFAULT_DAYS,
    DEFAULT_LIVE_TIMEFRAMES,
    DEFAULT_RATE,
    DEFAULT_TIMEFRAME,
    ENV_API_URL,
    ENV_CONFIG,
    ENV_DATA_DIR,
    ENV_WS_URL,
    MAX_DAYS,
    Settings,
)
from upbit_cache.timeframes import SUPPORTED, Timeframe
from upbit_cache.times import check_timezone


@dataclass(frozen=True)
class Before:
    """Options given before the subcommand (`upbit-cache --data-dir X info`): the root
    callback keeps them in the context's `obj`, where the subcommand's options look."""

    data_dir: str | None = None
    config: str | None = None


def _config(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
    """The subcommand's own --config wins, then the one before the subcommand, then
    UPBIT_CACHE_CONFIG (None: the default place)."""
    source = ctx.get_parameter_source(param.name or "")
    before = ctx.find_object(Before)
    given_here = source is not None and source.name == "COMMANDLINE"
    if given_here or before is None or before.config is None:
        return value
    return before.config


def _settings_of(ctx: typer.Context) -> Settings:
    """The environment and the config file, for a callback while the command's options are
    parsed (--config is eager: its value is in by then)."""
    from upbit_cache import configfile

    before = ctx.find_object(Before)
    path = ctx.params.get("config") or (before.config if before is not None else None)
    return configfile.load(path, by="--config")


def run_settings() -> Settings:
    """The environment and the config file of the command running (its --config, else the
    one before it, else UPBIT_CACHE_CONFIG, else the default place)."""
    from upbit_cache import configfile

    return configfile.load(given("config"), by="--config")


def default_markets(markets: list[str] | None, quote: str | None) -> tuple[list[str], str | None]:
    """The markets a command works on: those given, or --quote's, else the config file's
    `markets` (a list, or a quote), else (empty, None): every market of KRW."""
    if markets or quote:
        return list(markets or []), quote
    listed, file_quote = run_settings().markets()
    return list(listed), file_quote


def default_days(days: float | None) -> float:
    """--days if given, else the config file's `days`, else 30."""
    return days if days is not None else run_settings().days(DEFAULT_DAYS)


def _data_dir(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
    """The subcommand's own --data-dir wins, then the one before the subcommand, then
    UPBIT_CACHE_DIR."""
    source = ctx.get_parameter_source(param.name or "")
    before = ctx.find_object(Before)
    given_here = source is not None and source.name == "COMMANDLINE"
    if given_here or before is None or before.data_dir is None:
        return value
    return before.data_dir


def _complete_timeframes(incomplete: str) -> list[str]:
    """The last of a comma-separated list: `15m,1` -> `15m,1m`, `15m,1h`, ... (not 15m)."""
    done, comma, last = incomplete.rpartition(",")
    given = set(done.split(","))
    return [
        done + comma + tf.name
        for tf in SUPPORTED
        if tf.name.startswith(last) and tf.name not in given
    ]


def _complete_zones(incomplete: str) -> list[str]:
    from zoneinfo import available_timezones

    return sorted(z for z in available_timezones() | {"UTC"} if z.startswith(incomplete))


def _check_zone(ctx: typer.Context, param: typer.CallbackParam, value: str) -> str:
    """--tz as given, else the config file's `tz`, else UTC."""
    source = ctx.get_parameter_source(param.name or "")
    if source is None or source.name == "DEFAULT":
        return _settings_of(ctx).tz()
    try:
        return check_timezone(value)
    except UsageError as exc:
        raise typer.BadParameter(str(exc)) from None


def timeframes(given: list[str] | None, default: str) -> list[Timeframe]:
    """The timeframes of every -t given (`-t 1m -t 1h` is `-t 1m,1h`), else the config
    file's `timeframes`, else `default`."""
    return Timeframe.parse_list(",".join(given) if given else run_settings().timeframes(default))


def one_timeframe(given: list[str] | None, default: str, command: str) -> Timeframe:
    """The one timeframe a command takes (default: the first of the config file's
    `timeframes`, else `default`); a second -t is refused, not silently dropped."""
    if not given:
        return Timeframe.parse(run_settings().timeframes(default).split(",")[0])
    text = ",".join(given)
    names = [n.strip() for n in text.split(",")]
    if len(names) > 1:
        if not all(names):
            Timeframe.parse_list(text)  # refuses the empty item, as every -t does
        raise UsageError(f"{command} takes one timeframe (-t), not {', '.join(names)}")
    return Timeframe.parse(text)


DataDir = Annotated[
    str | None,
    typer.Option(
        "--data-dir",
        metavar="DIR|URI",
        envvar=ENV_DATA_DIR,
        callback=_data_dir,
        help="Where the store lives: a folder, file:// or s3://bucket/prefix (default: the user "
        "data dir). Also accepted before the command.",
        show_default=False,
    ),
]
ApiUrl = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        metavar="URL",
        envvar=ENV_API_URL,
        help=f"Upbit REST base URL (default {DEFAULT_API_URL}).",
        show_default=False,
    ),
]
WsUrl = Annotated[
    str | None,
    typer.Option(
        "--ws-url",
        metavar="URL",
        envvar=ENV_WS_URL,
        help=f"Upbit WebSocket URL (default: beside --api-url, {DEFAULT_WS_URL}).",
        show_default=False,
    ),
]
Rate = Annotated[
    float | None,
    typer.Option(
        "--rate",
        metavar="N",
        min=0.1,
        max=1000,
        help=f"Candle requests per second at most (default {DEFAULT_RATE:g}).",
        show_default=False,
    ),
]
ConfigFile = Annotated[
    str | None,
    typer.Option(
        "--config",
        metavar="FILE",
        envvar=ENV_CONFIG,
        callback=_config,
        is_eager=True,
        help="Read settings from this TOML file (default: config.toml in the user config "
        "dir, if there; see `upbit-cache config --path`). Also accepted before the command.",
        show_default=False,
    ),
]
LockTimeout = Annotated[
    float | None,
    typer.Option(
        "--lock-timeout",
        metavar="SECONDS",
        min=0,
        max=86_400,
        help="Seconds to wait for another run writing the same series (default: no limit).",
        show_default=False,
    ),
]
# The options that say where the store is and how to reach Upbit: they go to the run's
# `UpbitCache` and nowhere else, so they are declared once here and added to each command
# that has them by `shared` (in this order, after the command's own), not in its signature.
_SHARED: dict[str, tuple[Any, object]] = {
    "api_url": (ApiUrl, None),
    "ws_url": (WsUrl, None),
    "rate": (Rate, None),
    "lock_timeout": (LockTimeout, None),
    "data_dir": (DataDir, None),
    "config": (ConfigFile, None),
}
_given: ContextVar[dict[str, Any] | None] = ContextVar("upbit_cache_cli_shared", default=None)


def given(name: str) -> Any:
    """The value of the shared option `name` for the command running (None: not one of its
    options); --data-dir: its own, else the one before the command, else UPBIT_CACHE_DIR;
    --config likewise, else UPBIT_CACHE_CONFIG."""
    return (_given.get() or {}).get(name)


def shared(*names: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The command with the shared options `names` (--data-dir and --config always) after
    its own; their values are kept for `given` while it runs, not passed to it."""
    chosen = [n for n in _SHARED if n in names or n in ("data_dir", "config")]

    def add(command: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(command, eval_str=True)
        extra = [
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a)
            for n, (a, d) in ((n, _SHARED[n]) for n in chosen)
        ]

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> None:
            mine = _given.set({n: kwargs.pop(n) for n in chosen})
            try:
                command(*args, **kwargs)
            finally:
                _given.reset(mine)

        # typer reads the parameters from here (and their types from the annotations).
        run.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*signature.parameters.values(), *extra]
        )
        run.__annotations__ = {**command.__annotations__, **{p.name: p.annotation for p in extra}}
        return run

    return add


Quiet = Annotated[
    bool,
    typer.Option(
        "--quiet", "-q", help="No progress, notes or summary on stderr; errors are still shown."
    ),
]
Verbose = Annotated[
    bool,
    typer.Option("--verbose", "-v", help="More detail, such as a line per market or series."),
]
Tz = Annotated[
    str,
    typer.Option(
        "--tz",
        metavar="ZONE",
        callback=_check_zone,
        autocompletion=_complete_zones,
        help="Show times in this zone, with its offset: UTC, Asia/Seoul (or KST), ... "
        "(stored data stays UTC; default: the config file's tz, else UTC).",
        show_default=False,
    ),
]

# What to work on
Markets = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="MARKET",
        help="Markets such as KRW-BTC; none means every market of --quote, else the config "
        "file's markets, else every KRW market.",
        show_default=False,
    ),
]
StoredMarkets = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="MARKET",
        help="Markets such as KRW-BTC; none means every stored market.",
        show_default=False,
    ),
]
LiveMarkets = Annotated[
    list[str],
    typer.Argument(
        metavar="MARKET", help="Markets to watch, e.g. KRW-BTC KRW-ETH.", show_default=False
    ),
]
Quote = Annotated[
    str | None,
    typer.Option(
        "--quote", metavar="QUOTE", help="Every market of this quote currency (KRW, BTC, USDT)."
    ),
]


# Several -t are joined (`-t 1m -t 1h` is `-t 1m,1h`): see `timeframes` and `one_timeframe`.
def _timeframe_option(metavar: str, help: str) -> Any:
    return typer.Option(
        "-t",
        "--timeframe",
        metavar=metavar,
        autocompletion=_complete_timeframes,
        help=help,
        show_default=False,
    )


Timeframes = Annotated[
    list[str] | None,
    _timeframe_option(
        "TF[,TF...]",
        f"Timeframes, comma-separated or repeated: 1h, 15m,1h,4h (default: the config file's, "
        f"else {DEFAULT_TIMEFRAME}).",
    ),
]
OneTimeframe = Annotated[
    list[str] | None,
    _timeframe_option(
        "TF", f"One timeframe (default: the config file's first, else {DEFAULT_TIMEFRAME})."
    ),
]
SomeTimeframes = Annotated[
    list[str] | None,
    _timeframe_option(
        "TF[,TF...]", "Only these timeframes, e.g. 1h or 15m,1h (default: all stored)."
    ),
]
LiveTimeframes = Annotated[
    list[str] | None,
    _timeframe_option(
        "TF[,TF...]",
        f"Timeframes to build (default: the config file's, else {DEFAULT_LIVE_TIMEFRAMES}).",
    ),
]
Since = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="TIME",
        help="Start, UTC unless an offset is given: 2026-01-01[T09:00][+09:00], or a time "
        "before now: -7d, -36h, -2w.",
        show_default=False,
    ),
]
Until = Annotated[
    str | None,
    typer.Option(
        "--until",
        metavar="TIME",
        help="End (exclusive), as --since; default now.",
        show_default=False,
    ),
]
TimeRangeOption = Annotated[
    str | None,
    typer.Option(
        "--timerange",
        metavar="START-END",
        help="freqtrade's form, instead of --since/--until: 20250101-20250701 (UTC dates, end "
        "exclusive); 20250101- or -20250701 leave an end open.",
        show_default=False,
    ),
]
Days = Annotated[
    float | None,
    typer.Option(
        "--days",
        metavar="DAYS",
        min=0.01,
        max=MAX_DAYS,
        help="The last DAYS days up to now; fractions too (1.5 is 36 hours).",
    ),
]
Shard = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="K/N",
        help="Take only the K-th of N disjoint parts of the markets (1/4 .. 4/4), of about "
        "equal estimated requests, so that N hosts split a backfill; auto/N: K from "
        "JOB_COMPLETION_INDEX + 1 (a Kubernetes Indexed Job). Give every host the same "
        "markets, timeframes and window.",
        show_default=False,
    ),
]
Dask = Annotated[
    str | None,
    typer.Option(
        "--dask",
        metavar="SCHEDULER",
        help="Run the jobs as tasks of a Dask cluster: its scheduler (tcp://host:8786), or "
        "local:N for N worker processes here. Every worker writes the data dir (s3:// or a "
        "shared disk) and asks Upbit from its own host; needs `pip install distributed`.",
        show_default=False,
    ),
]
BaseTimeframe = Annotated[
    str | None,
    typer.Option(
        "--from",
        metavar="TF",
        autocompletion=_complete_timeframes,
        help="Base timeframe (default: the finest stored one dividing each).",
        show_default=False,
    ),
]

# prune
Keep = Annotated[
    str | None,
    typer.Option(
        "--keep",
        metavar="AGE",
        help="Delete candles older than this, every timeframe, e.g. 365d (default: keep all).",
        show_default=False,
    ),
]
Keep1m = Annotated[
    str | None,
    typer.Option(
        "--keep-1m",
        metavar="AGE",
        help="Retention for 1m candles, the bulk, e.g. 90d.",
        show_default=False,
    ),
]
CompactAfter = Annotated[
    str,
    typer.Option(
        "--compact-after", metavar="AGE", help="Compact hot partitions older than this (h, d, w)."
    ),
]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Print what would change and change nothing.")
]
Yes = Annotated[
    bool,
    typer.Option(
        "--yes",
        "-y",
        help="Delete even if retention leaves a series no row at all (refused without it).",
    ),
]
AsOf = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        metavar="TIME",
        help="Age candles as if it were this time, e.g. 2026-11-01 (default: now). "
        "Leftover files are aged on the data dir's own clock.",
        show_default=False,
    ),
]

# screen-prep
Out = Annotated[
    str,
    typer.Option(
        "--out",
        "-o",
        metavar="FILE|-",
        help="Output file (.csv, .jsonl, .parquet; .csv.gz or .jsonl.zst compressed), "
        "or - for stdout.",
    ),
]
OutFormat = Annotated[
    str | None,
    typer.Option(
        "--format",
        "-f",
        metavar="csv|jsonl|parquet",
        help="Output format (default: from the --out name; csv for stdout).",
        show_default=False,
    ),
]
ExportFormat = Annotated[
    str | None,
    typer.Option(
        "--format",
        "-f",
        metavar="csv|jsonl|parquet|freqtrade",
        help="Output format (default: from the --out name; csv for stdout). freqtrade: "
        "--out is a folder, one BTC_KRW-1h.feather per market and timeframe.",
        show_default=False,
    ),
]
Refresh = Annotated[
    bool, typer.Option("--refresh/--no-refresh", help="Fetch what is missing first.")
]
IncludeOpen = Annotated[
    bool,
    typer.Option(
        "--include-open",
        help="Add each market's candle still in progress "
        "(one request per market; a `closed` column marks it).",
    ),
]
MinValue = Annotated[
    float | None,
    typer.Option(
        "--min-value",
        metavar="VALUE",
        min=0,
        help="Keep markets that traded at least this much (quote currency) in the last 24 hours.",
        show_default=False,
    ),
]
Top = Annotated[
    int | None,
    typer.Option(
        "--top",
        metavar="N",
        min=1,
        max=100_000,
        help="Keep the N markets that traded most in 24 hours.",
        show_default=False,
    ),
]

# export
MarketsFile = Annotated[
    typer.FileBinaryRead | None,
    typer.Option(
        "--markets-file",
        metavar="FILE",
        help="Read the markets from FILE (- for stdin), UTF-8: one a line; blank lines and "
        "# comments are skipped.",
        show_default=False,
    ),
]
Fill = Annotated[
    bool,
    typer.Option(
        "--fill",
        help="Add a candle for every period without trades (Upbit has none): the previous "
        "close as open, high, low and close, volume and value 0; between each series' first "
        "and last candle.",
    ),
]
# live
Jsonl = Annotated[
    bool, typer.Option("--jsonl", help="One JSON line per candle update or close on stdout.")
]
NoStore = Annotated[
    bool, typer.Option("--no-store", help="Do not append closed candles to the store.")
]

# verify
Repair = Annotated[
    bool,
    typer.Option(
        "--repair",
        help="Move bad files to <data-dir>/quarantine/ and forget their spans, so the next "
        "fetch asks for exactly those again.",
    ),
]

# info
Upbit = Annotated[
    bool,
    typer.Option(
        "--upbit",
        help="Then ask Upbit again about each series' newest candles and recorded quiet "
        "stretches (longest first), within --budget; with --repair, forget what it "
        "contradicts so the next fetch asks again.",
    ),
]
Budget = Annotated[
    int,
    typer.Option(
        "--budget",
        metavar="N",
        min=1,
        max=1_000_000,
        help="Candle requests --upbit may send (paced like any others).",
    ),
]

AsJson = Annotated[
    bool, typer.Option("--json", help="Print one JSON document (for scripts) instead.")
]

# markets
JsonLines = Annotated[
    bool, typer.Option("--json", help="One JSON object per market and line (for scripts).")
]

# show
OneMarket = Annotated[
    str, typer.Argument(metavar="MARKET", help="A market such as KRW-BTC.", show_default=False)
]
Tail = Annotated[
    int,
    typer.Option(
        "--tail", "-n", metavar="N", min=1, max=10_000, help="How many of the newest candles."
    ),
]
