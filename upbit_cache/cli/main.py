"""Typer commands. Each is a few lines over the library; errors become one line and a code."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from upbit_cache.cache.datadir import ENV_DATA_DIR
from upbit_cache.cache.formats import guess_format
from upbit_cache.cache.screen_cache import produce
from upbit_cache.cli.render import (
    derive_summary,
    memory_summary,
    progress_for,
    prune_summary,
    screen_summary,
    summary,
)
from upbit_cache.collector.config import ClientConfig
from upbit_cache.errors import InvalidRangeError, UpbitCacheError, UsageError
from upbit_cache.markets import validate_markets
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

app = typer.Typer(
    name="upbit-cache",
    help="Keep a local, always-fresh copy of Upbit candles as Hive-partitioned Parquet.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)

if TYPE_CHECKING:
    from upbit_cache.cache.live import LiveEvent

# Library modules that load pyarrow or pandas are imported inside the commands that use
# them: a screen-prep with nothing new to do must answer in well under a second.

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar=ENV_DATA_DIR,
        help="Where the store lives (default: the user data dir).",
        show_default=False,
    ),
]
ApiUrl = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        envvar="UPBIT_API_URL",
        help="Upbit REST base URL (default https://api.upbit.com).",
        show_default=False,
    ),
]


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"upbit-cache {package_version('upbit-cache')}")
        raise typer.Exit()


Markets = Annotated[
    list[str] | None,
    typer.Argument(
        help="Markets such as KRW-BTC; none means every market of --quote.", show_default=False
    ),
]
StoredMarkets = Annotated[
    list[str] | None,
    typer.Argument(
        help="Markets such as KRW-BTC; none means every stored market.", show_default=False
    ),
]
Rate = Annotated[float, typer.Option("--rate", min=0.1, help="Candle requests per second at most.")]


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
        ),
    ] = False,
) -> None:
    """Keep a local, always-fresh copy of Upbit candles as Hive-partitioned Parquet."""


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Turn the library's errors into `upbit-cache: error: ...` and its exit code."""
    try:
        yield
    except UpbitCacheError as exc:
        typer.echo(f"upbit-cache: error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("upbit-cache: interrupted; what was fetched is kept", err=True)
        raise typer.Exit(130) from None


@app.command()
def fetch(
    markets: Markets = None,
    quote: Annotated[
        str | None,
        typer.Option("--quote", help="Fetch every market of this quote currency (KRW, BTC, USDT)."),
    ] = None,
    timeframe: Annotated[
        str, typer.Option("-t", "--timeframe", help="Timeframes, comma-separated: 1h or 15m,1h,4h.")
    ] = "1h",
    days: Annotated[
        int | None,
        typer.Option("--days", min=1, help="The last N days (default 30).", show_default=False),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Start, UTC unless an offset is given: 2026-01-01[T09:00]."),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="End (exclusive), as --since; default now.")
    ] = None,
    data_dir: DataDir = None,
    api_url: ApiUrl = None,
    rate: Rate = 10.0,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only errors and the summary.")
    ] = False,
) -> None:
    """Fetch candles into the store, asking Upbit only for what is missing.

    Example: upbit-cache fetch KRW-BTC KRW-ETH -t 1h --days 30
    """
    with _one_line_errors():
        if markets and quote:
            raise UsageError("give markets or --quote, not both")
        if days is not None and since is not None:
            raise UsageError("give --days or --since, not both")
        if until is not None and since is None:
            raise UsageError("--until needs --since")
        timeframes = Timeframe.parse_list(timeframe)
        start = to_ms(since) if since is not None else None
        end = to_ms(until) if until is not None else None
        if start is not None and end is not None and start >= end:
            raise InvalidRangeError(f"--since {since} is not before --until {until}")
        from upbit_cache.cache.store import CandleStore
        from upbit_cache.cache.sync import fetch as fetch_candles

        store = CandleStore.open(data_dir)
        config = ClientConfig.from_env(api_url, rate)
        with progress_for(sys.stderr, quiet) as progress:
            report = asyncio.run(
                fetch_candles(
                    store,
                    config,
                    markets or [],
                    timeframes,
                    start=start,
                    end=end,
                    days=days,
                    quote=quote,
                    progress=progress,
                )
            )
        typer.echo(summary(report))
        if report.blocked:
            typer.echo(f"upbit-cache: error: {report.blocked}", err=True)
        if report.failed:
            raise typer.Exit(1)


@app.command("resample")
def resample_command(
    markets: StoredMarkets = None,
    timeframe: Annotated[
        str, typer.Option("-t", "--timeframe", help="Timeframes to derive, e.g. 1h,4h or 2h,1d.")
    ] = "1h",
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Base timeframe (default: the finest stored one dividing each).",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Derive timeframes from stored finer candles and write them to the store (incremental).

    Example: upbit-cache resample KRW-BTC -t 1h,4h --from 15m
    """
    with _one_line_errors():
        targets = Timeframe.parse_list(timeframe)
        base = Timeframe.parse(source) if source is not None else None
        from upbit_cache.cache.derive import resample_store
        from upbit_cache.cache.store import CandleStore

        began = time.monotonic()
        outcomes = asyncio.run(
            resample_store(CandleStore.open(data_dir), markets or [], targets, base)
        )
        typer.echo(derive_summary(outcomes, time.monotonic() - began))


@app.command("live")
def live_command(
    markets: Annotated[
        list[str],
        typer.Argument(help="Markets to watch, e.g. KRW-BTC KRW-ETH.", show_default=False),
    ],
    timeframe: Annotated[
        str, typer.Option("-t", "--timeframe", help="Timeframes to build, e.g. 1m,15m,1h.")
    ] = "1m,15m,1h",
    jsonl: Annotated[
        bool, typer.Option("--jsonl", help="One JSON line per candle update or close on stdout.")
    ] = False,
    no_store: Annotated[
        bool, typer.Option("--no-store", help="Do not append closed candles to the store.")
    ] = False,
    data_dir: DataDir = None,
    api_url: ApiUrl = None,
    ws_url: Annotated[
        str | None,
        typer.Option(
            "--ws-url",
            envvar="UPBIT_WS_URL",
            help="Upbit WebSocket URL (default wss://api.upbit.com/websocket/v1).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Watch markets live: candles built from Upbit's trade stream, updated on every trade.

    On a terminal a table; with --jsonl (or into a pipe) JSON lines. Ctrl-C or SIGTERM
    stores what closed and exits. Example: upbit-cache live KRW-BTC KRW-ETH -t 1m,15m,1h --jsonl
    """
    with _one_line_errors():
        timeframes = Timeframe.parse_list(timeframe)
        from upbit_cache.cache.live import check_timeframes, live_candles
        from upbit_cache.cache.store import CandleStore
        from upbit_cache.cli.live_view import JsonLines, LiveTable

        check_timeframes(timeframes)
        config = ClientConfig.from_env(api_url, None, ws_url)
        store = None if no_store else CandleStore.open(data_dir)
        view = JsonLines() if jsonl or not sys.stdout.isatty() else LiveTable()
        events = live_candles(markets, timeframes, config=config, store=store)
        with view:
            stopped = asyncio.run(_watch(events, view.show))
        typer.echo(f"upbit-cache: stopped ({stopped}); closed candles are stored", err=True)


async def _watch(events: AsyncIterator[LiveEvent], show: Callable[[LiveEvent], None]) -> str:
    """Show events until Ctrl-C or SIGTERM; the stream's own cleanup then stores what closed."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    stop = {"why": "interrupted"}

    def terminate() -> None:
        stop["why"] = "SIGTERM"
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, terminate)
    try:
        async with contextlib.aclosing(events):
            async for item in events:
                show(item)
    except asyncio.CancelledError:
        return stop["why"]
    return "stream ended"


@app.command("prune")
def prune_command(
    keep: Annotated[
        str | None,
        typer.Option(
            "--keep",
            help="Delete candles older than this, every timeframe, e.g. 365d (default: keep all).",
            show_default=False,
        ),
    ] = None,
    keep_1m: Annotated[
        str | None,
        typer.Option(
            "--keep-1m", help="Retention for 1m candles, the bulk, e.g. 90d.", show_default=False
        ),
    ] = None,
    compact_after: Annotated[
        str,
        typer.Option("--compact-after", help="Compact hot partitions older than this (h, d, w)."),
    ] = "7d",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would change and change nothing.")
    ] = False,
    timeframe: Annotated[
        str | None,
        typer.Option(
            "-t", "--timeframe", help="Only these timeframes (default: all).", show_default=False
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Age candles as if it were this time, e.g. 2026-11-01 (default: now). "
            "Leftover files are aged on the data dir's own clock.",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="One line per market.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Compact old hot partitions into the cold tier, apply retention, clear leftovers.

    Safe while fetches and readers run on the same data dir (a daily cron job).

    Example: upbit-cache prune --keep-1m 90d --compact-after 7d
    """
    with _one_line_errors():
        from upbit_cache.cache.prune import Policy, prune
        from upbit_cache.cache.store import CandleStore
        from upbit_cache.times import parse_duration

        by_tf = {"1m": parse_duration(keep_1m, "--keep-1m")} if keep_1m is not None else {}
        policy = Policy(
            compact_after_ms=parse_duration(compact_after, "--compact-after"),
            keep_ms=parse_duration(keep, "--keep") if keep is not None else None,
            keep_by_tf=by_tf,
            timeframes=tuple(Timeframe.parse_list(timeframe)) if timeframe else (),
        )
        store = CandleStore.open(data_dir)
        now = to_ms(as_of) if as_of is not None else None
        report = asyncio.run(prune(store, policy, now=now, dry_run=dry_run))
        typer.echo(prune_summary(report, verbose))


@app.command("screen-prep")
def screen_prep_command(
    markets: Markets = None,
    quote: Annotated[
        str | None, typer.Option("--quote", help="Every market of this quote currency (KRW).")
    ] = None,
    timeframe: Annotated[str, typer.Option("-t", "--timeframe", help="One timeframe.")] = "1h",
    days: Annotated[float, typer.Option("--days", min=0.01, help="How far back.")] = 30,
    out: Annotated[str, typer.Option("--out", "-o", help="Output file, or - for stdout.")] = "-",
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="parquet, csv or jsonl (default: from --out, else csv).",
            show_default=False,
        ),
    ] = None,
    refresh: Annotated[
        bool, typer.Option("--refresh/--no-refresh", help="Fetch what is missing first.")
    ] = True,
    include_open: Annotated[
        bool,
        typer.Option(
            "--include-open",
            help="Add each market's candle still in progress "
            "(one request per market; a `closed` column marks it).",
        ),
    ] = False,
    min_value: Annotated[
        float | None,
        typer.Option(
            "--min-value",
            help="Keep markets that traded at least this much (quote "
            "currency) in the last 24 hours.",
            show_default=False,
        ),
    ] = None,
    top: Annotated[
        int | None,
        typer.Option(
            "--top",
            min=1,
            help="Keep the N markets that traded most in 24 hours.",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDir = None,
    api_url: ApiUrl = None,
    rate: Rate = 10.0,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Per-market lines and the memory hit rate.")
    ] = False,
) -> None:
    """Bring N days of candles up to date and write them as one long table for a screener.

    Example: upbit-cache screen-prep --quote KRW -t 1h --days 30 -f csv --out - | python s.py
    """
    with _one_line_errors():
        if markets and quote:
            raise UsageError("give markets or --quote, not both")
        began = time.monotonic()
        # Progress and logs go to stderr: stdout may be the table itself.
        with progress_for(sys.stderr, quiet=not verbose) as progress:
            done = produce(
                data_dir,
                ClientConfig.from_env(api_url, rate),
                markets or [],
                quote=quote,
                timeframe=Timeframe.parse(timeframe),
                days=days,
                refresh=refresh,
                include_open=include_open,
                min_value=min_value,
                top=top,
                out=out,
                fmt=guess_format(out, fmt),
                progress=progress,
            )
        typer.echo(screen_summary(done, time.monotonic() - began), err=True)
        if verbose and done.memory is not None:
            typer.echo(memory_summary(done.memory), err=True)
        result = done.result
        if result is not None and result.sync is not None and result.sync.failed:
            raise typer.Exit(1)


@app.command("info")
def info_command(
    markets: StoredMarkets = None,
    timeframe: Annotated[
        str | None,
        typer.Option(
            "-t",
            "--timeframe",
            help="Only these timeframes, e.g. 1h or 15m,1h (default: all stored).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document (for scripts) instead.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """List what the store holds: per timeframe and market, the covered ranges, candle
    counts, known gaps (fetched periods without trades, never-fetched holes), bytes per tier.

    Example: upbit-cache info KRW-BTC -t 1h,1d --json
    """
    with _one_line_errors():
        wanted = validate_markets(markets) if markets else None
        timeframes = Timeframe.parse_list(timeframe) if timeframe is not None else None
        from upbit_cache.cache.inventory import inventory, to_json
        from upbit_cache.cache.memory import MemoryCache
        from upbit_cache.cache.store import CandleStore
        from upbit_cache.cli.render import info_table

        # Every series is read once: keeping tables in memory would only cost memory.
        store = CandleStore.open(data_dir, memory=MemoryCache(max_bytes=0))
        infos = inventory(store, timeframes, wanted)
        if as_json:
            typer.echo(json.dumps(to_json(infos), indent=2))
        elif infos:
            typer.echo(info_table(infos))
        elif markets or timeframe is not None:
            typer.echo(f"nothing stored for the given markets/timeframes in {store.root}")
        else:
            typer.echo(f"the store at {store.root} is empty: nothing fetched yet")
