"""Typer commands: each parses its arguments, makes one `UpbitCache` call, and renders.

Errors become one line and an exit code. The manager (and with it pyarrow) is imported
inside the commands: `--help` and `--version` need neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from upbit_cache.cli import options as opt
from upbit_cache.cli.render import (
    derive_summary,
    export_summary,
    horizon_warning,
    memory_summary,
    progress_for,
    prune_summary,
    screen_summary,
    summary,
)
from upbit_cache.errors import UpbitCacheError, UsageError
from upbit_cache.timeframes import Timeframe

if TYPE_CHECKING:
    from upbit_cache.manager.cache import UpbitCache
    from upbit_cache.manager.fetch import SyncReport
    from upbit_cache.manager.live import LiveEvent

# typer raises click's exceptions (vendored in newer typer): found through a public class.
_CLICK_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


CLOSED_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader left


def closed_pipe() -> int:
    """The reader of our output left (`| head`): end quietly with status 141, as a program
    killed by SIGPIPE does, with no message and no summary.

    Python ignores SIGPIPE, so a write raises BrokenPipeError instead, and the default action
    must not come back: a peer closing an aiohttp socket would kill the process. stdout is
    pointed at /dev/null, so that flushing what is still buffered cannot raise again (the
    recipe of Python's `signal` documentation).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return CLOSED_PIPE


@contextmanager
def _ends_quietly_on_closed_pipe() -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        raise typer.Exit(closed_pipe()) from None


class _OneLineErrors(TyperGroup):
    """Bad usage (an unknown option, a number out of range) is one line and exit 2, like
    every other error of the tool, not click's usage block. A closed pipe, anywhere (help
    included), is status 141 and nothing else."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: Any = None,
        **extra: Any,
    ) -> Any:
        with _ends_quietly_on_closed_pipe():  # the group's --help and --version
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with _ends_quietly_on_closed_pipe():  # every command, its --help too
            return super().invoke(ctx)

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except _CLICK_ERROR as exc:
            message = getattr(exc, "format_message", exc.__str__)()
            typer.echo(f"upbit-cache: error: {message} (see --help)", err=True)
            sys.exit(getattr(exc, "exit_code", 2))
        except typer.Abort:
            typer.echo("upbit-cache: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
    name="upbit-cache",
    help="Keep a local, always-fresh copy of Upbit candles as Hive-partitioned Parquet.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"upbit-cache {version('upbit-cache')}")
        raise typer.Exit()


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


# Set by the console entry point's SIGTERM handler (see cli/__init__.py).
terminated = threading.Event()


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Turn the library's errors into `upbit-cache: error: ...` and its exit code."""
    try:
        yield
    except UpbitCacheError as exc:
        typer.echo(f"upbit-cache: error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        signal_name, code = ("SIGTERM", 143) if terminated.is_set() else ("interrupted", 130)
        typer.echo(f"upbit-cache: stopped ({signal_name}); what was fetched is kept", err=True)
        raise typer.Exit(code) from None


def _warn_horizon(report: SyncReport | None) -> None:
    """Say on stderr what of a 1s window lay past Upbit's horizon, if anything."""
    warning = horizon_warning(report) if report is not None else None
    if warning is not None:
        typer.echo(f"upbit-cache: {warning}", err=True)


def _cache(
    data_dir: str | None,
    api_url: str | None = None,
    rate: float | None = None,
    ws_url: str | None = None,
    lock_timeout: float | None = None,
) -> UpbitCache:
    from upbit_cache.manager.cache import UpbitCache

    return UpbitCache(
        data_dir,
        api_url=api_url,
        ws_url=ws_url,
        rate=rate,
        lock_timeout=lock_timeout,
        on_lock_wait=_say_waiting,
    )


def _say_waiting(series: str) -> None:
    typer.echo(
        f"upbit-cache: waiting for another run writing {series} (and maybe more); "
        "--lock-timeout SECONDS bounds the wait",
        err=True,
    )


@app.command()
def fetch(
    markets: opt.Markets = None,
    quote: opt.Quote = None,
    timeframe: opt.Timeframes = "1h",
    days: opt.WholeDays = None,
    since: opt.Since = None,
    until: opt.Until = None,
    timerange: opt.TimeRangeOption = None,
    data_dir: opt.DataDir = None,
    api_url: opt.ApiUrl = None,
    rate: opt.Rate = 10.0,
    quiet: opt.Quiet = False,
    lock_timeout: opt.LockTimeout = None,
    shard: opt.Shard = None,
) -> None:
    """Fetch candles into the store, asking Upbit only for what is missing.

    Example: upbit-cache fetch KRW-BTC KRW-ETH -t 1h --days 30
    """
    with _one_line_errors():
        from upbit_cache.manager.scope import Shard, Window

        window = Window.of(since, until, days, timerange)
        part = Shard.parse(shard) if shard is not None else None
        timeframes = Timeframe.parse_list(timeframe)
        cache = _cache(data_dir, api_url, rate, lock_timeout=lock_timeout)
        with progress_for(sys.stderr, quiet) as progress:
            report = cache.fetch(
                markets or [],
                quote=quote,
                timeframes=timeframes,
                window=window,
                progress=progress,
                shard=part,
            )
        typer.echo(summary(report))
        _warn_horizon(report)
        if report.blocked:
            typer.echo(f"upbit-cache: error: {report.blocked}", err=True)
        if report.failed:
            raise typer.Exit(1)


@app.command("resample")
def resample_command(
    markets: opt.StoredMarkets = None,
    timeframe: opt.Timeframes = "1h",
    source: opt.BaseTimeframe = None,
    data_dir: opt.DataDir = None,
    lock_timeout: opt.LockTimeout = None,
) -> None:
    """Derive timeframes from stored finer candles and write them to the store (incremental).

    Example: upbit-cache resample KRW-BTC -t 1h,4h --from 15m
    """
    with _one_line_errors():
        targets = Timeframe.parse_list(timeframe)
        base = Timeframe.parse(source) if source is not None else None
        began = time.monotonic()
        outcomes = _cache(data_dir, lock_timeout=lock_timeout).resample(
            markets or [], targets, base
        )
        typer.echo(derive_summary(outcomes, time.monotonic() - began))


@app.command("live")
def live_command(
    markets: opt.LiveMarkets,
    timeframe: opt.LiveTimeframes = "1m,15m,1h",
    jsonl: opt.Jsonl = False,
    no_store: opt.NoStore = False,
    data_dir: opt.DataDir = None,
    api_url: opt.ApiUrl = None,
    ws_url: opt.WsUrl = None,
) -> None:
    """Watch markets live: candles built from Upbit's trade stream, updated on every trade.

    On a terminal a table; with --jsonl (or into a pipe) JSON lines. Ctrl-C or SIGTERM
    stores what closed and exits. Example: upbit-cache live KRW-BTC KRW-ETH -t 1m,15m,1h --jsonl
    """
    with _one_line_errors():
        timeframes = Timeframe.parse_list(timeframe)
        from upbit_cache.cli.live_view import JsonLines, LiveTable

        events = _cache(data_dir, api_url, ws_url=ws_url).live(
            markets, timeframes, store=not no_store
        )
        view = JsonLines() if jsonl or not sys.stdout.isatty() else LiveTable()
        with view:
            stopped = asyncio.run(_watch(events, view.show))
        typer.echo(f"upbit-cache: stopped ({stopped}); closed candles are stored", err=True)


async def _watch(events: AsyncGenerator[LiveEvent, None], show: Callable[[LiveEvent], None]) -> str:
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
    keep: opt.Keep = None,
    keep_1m: opt.Keep1m = None,
    compact_after: opt.CompactAfter = "7d",
    dry_run: opt.DryRun = False,
    timeframe: opt.SomeTimeframes = None,
    as_of: opt.AsOf = None,
    verbose: opt.Verbose = False,
    data_dir: opt.DataDir = None,
    lock_timeout: opt.LockTimeout = None,
) -> None:
    """Compact old hot partitions into the cold tier, apply retention, clear leftovers.

    Safe while fetches and readers run on the same data dir (a daily cron job).

    Example: upbit-cache prune --keep-1m 90d --compact-after 7d
    """
    with _one_line_errors():
        from upbit_cache.manager.prune import Policy
        from upbit_cache.times import parse_duration, to_ms

        by_tf = {"1m": parse_duration(keep_1m, "--keep-1m")} if keep_1m is not None else {}
        policy = Policy(
            compact_after_ms=parse_duration(compact_after, "--compact-after"),
            keep_ms=parse_duration(keep, "--keep") if keep is not None else None,
            keep_by_tf=by_tf,
            timeframes=tuple(Timeframe.parse_list(timeframe)) if timeframe else (),
        )
        now = to_ms(as_of) if as_of is not None else None
        report = _cache(data_dir, lock_timeout=lock_timeout).prune(policy, now=now, dry_run=dry_run)
        typer.echo(prune_summary(report, verbose))
        for line in report.skipped:
            typer.echo(f"upbit-cache: error: {line}", err=True)
        if report.skipped:
            raise typer.Exit(1)


@app.command("screen-prep")
def screen_prep_command(
    markets: opt.Markets = None,
    quote: opt.Quote = None,
    timeframe: opt.OneTimeframe = "1h",
    days: opt.Days = 30,
    out: opt.Out = "-",
    fmt: opt.OutFormat = None,
    refresh: opt.Refresh = True,
    include_open: opt.IncludeOpen = False,
    min_value: opt.MinValue = None,
    top: opt.Top = None,
    data_dir: opt.DataDir = None,
    api_url: opt.ApiUrl = None,
    rate: opt.Rate = 10.0,
    verbose: opt.ScreenVerbose = False,
    lock_timeout: opt.LockTimeout = None,
) -> None:
    """Bring N days of candles up to date and write them as one long table for a screener.

    Example: upbit-cache screen-prep --quote KRW -t 1h --days 30 -f csv --out - | python s.py
    """
    with _one_line_errors():
        from upbit_cache.manager.scope import ScreenRequest
        from upbit_cache.store.formats import guess_format

        began = time.monotonic()
        request = ScreenRequest(
            markets=tuple(markets or ()),
            quote=quote,
            timeframe=Timeframe.parse(timeframe),
            days=days,
            refresh=refresh,
            include_open=include_open,
            min_value=min_value,
            top=top,
        )
        output = guess_format(out, fmt)
        cache = _cache(data_dir, api_url, rate, lock_timeout=lock_timeout)
        # Progress and logs go to stderr: stdout may be the table itself.
        with progress_for(sys.stderr, quiet=not verbose) as progress:
            done = cache.screen_prep(request, out=out, fmt=output, progress=progress)
        typer.echo(screen_summary(done, time.monotonic() - began), err=True)
        if verbose and done.memory is not None:
            typer.echo(memory_summary(done.memory, done.layers), err=True)
        result = done.result
        _warn_horizon(result.sync if result is not None else None)
        if result is not None and result.sync is not None and result.sync.failed:
            raise typer.Exit(1)


@app.command("export")
def export_command(
    markets: opt.Markets = None,
    quote: opt.Quote = None,
    markets_file: opt.MarketsFile = None,
    timeframe: opt.ExportTimeframes = "1h",
    since: opt.Since = None,
    until: opt.Until = None,
    days: opt.ExportDays = None,
    timerange: opt.TimeRangeOption = None,
    fmt: opt.ExportFormat = None,
    out: opt.ExportOut = "-",
    tz: opt.Tz = "UTC",
    refresh: opt.Refresh = True,
    fill: opt.Fill = False,
    quiet: opt.ExportQuiet = False,
    data_dir: opt.DataDir = None,
    api_url: opt.ApiUrl = None,
    rate: opt.Rate = 10.0,
    lock_timeout: opt.LockTimeout = None,
) -> None:
    """Write any range of candles to a file or stdout (CSV, JSON lines or Parquet), market
    after market, each ascending by time, with memory bounded whatever the range.

    Fetches what the store lacks first (--no-refresh: the store only). Progress and the
    summary go to stderr. Give --since [--until], --days or --timerange.

    Example: upbit-cache export KRW-BTC KRW-ETH -t 1h --timerange 20250101-20250701 | python bt.py
    """
    with _one_line_errors():
        from upbit_cache.manager.scope import Window
        from upbit_cache.markets import read_market_list
        from upbit_cache.store.formats import guess_format

        if since is None and days is None and timerange is None:
            raise UsageError("give the range: --since TIME [--until TIME], --days N or --timerange")
        window = Window.of(since, until, days, timerange)
        names = markets or []
        if markets_file is not None:
            if names or quote:
                raise UsageError("give markets, --quote or --markets-file, one of them")
            names = read_market_list(markets_file.read())
        output = guess_format(out, fmt)
        cache = _cache(data_dir, api_url, rate, lock_timeout=lock_timeout)
        with progress_for(sys.stderr, quiet) as progress:
            report = cache.export(
                names,
                quote=quote,
                timeframes=timeframe,
                window=window,
                out=out,
                fmt=output,
                tz=tz,
                refresh=refresh,
                fill=fill,
                progress=progress,
            )
        if not quiet:
            typer.echo(export_summary(report), err=True)
        sync = report.sync
        _warn_horizon(sync)
        if sync is not None and sync.blocked:
            typer.echo(f"upbit-cache: error: {sync.blocked}", err=True)
        if sync is not None and sync.failed:
            raise typer.Exit(1)


@app.command("info")
def info_command(
    markets: opt.StoredMarkets = None,
    timeframe: opt.SomeTimeframes = None,
    as_json: opt.AsJson = False,
    data_dir: opt.DataDir = None,
) -> None:
    """List what the store holds: per timeframe and market, the covered ranges, candle
    counts, known gaps (fetched periods without trades, never-fetched holes), bytes per tier.

    Example: upbit-cache info KRW-BTC -t 1h,1d --json
    """
    with _one_line_errors():
        timeframes = Timeframe.parse_list(timeframe) if timeframe is not None else None
        cache = _cache(data_dir)
        unreadable: list[str] = []
        infos = cache.info(markets or [], timeframes, unreadable)
        from upbit_cache.cli.render import info_table
        from upbit_cache.manager.info import to_json

        if as_json:
            typer.echo(json.dumps(to_json(infos), indent=2))
        elif infos:
            typer.echo(info_table(infos))
        elif unreadable:
            pass
        elif markets or timeframe is not None:
            typer.echo(f"nothing stored for the given markets/timeframes in {cache.files.root}")
        else:
            typer.echo(f"the store at {cache.files.root} is empty: nothing fetched yet")
        for line in unreadable:  # the rest is listed; these are named, and the exit says so
            typer.echo(f"upbit-cache: error: {line}", err=True)
        if unreadable:
            raise typer.Exit(1)


@app.command("verify")
def verify_command(
    markets: opt.StoredMarkets = None,
    timeframe: opt.SomeTimeframes = None,
    repair: opt.Repair = False,
    as_json: opt.AsJson = False,
    data_dir: opt.DataDir = None,
    lock_timeout: opt.LockTimeout = None,
) -> None:
    """Check the store against its records: missing, unreadable or truncated files, rows
    outside recorded ranges, duplicate times, impossible values, files in the wrong partition
    or with the wrong schema. Exit 0 healthy, 1 problems found (repaired with --repair).

    Example: upbit-cache verify --repair
    """
    with _one_line_errors():
        timeframes = Timeframe.parse_list(timeframe) if timeframe is not None else None
        cache = _cache(data_dir, lock_timeout=lock_timeout)
        report = cache.verify(markets or [], timeframes, repair=repair)
        from upbit_cache.cli.render import verify_json, verify_lines

        if as_json:
            typer.echo(json.dumps(verify_json(report, cache.files.root), indent=2))
        else:
            typer.echo(verify_lines(report, cache.files.root))
        if report.problems:
            raise typer.Exit(1)
