"""Typer commands: each parses its arguments, makes one `UpbitCache` call, and renders.

Errors become one line and an exit code. The manager (and with it pyarrow) is imported
inside the commands: `--help` and `--version` need neither. Every line on stderr goes
through `cli.log` (timestamped off a terminal); -q/-v are a `Log`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from upbit_cache.cli import options as opt
from upbit_cache.cli import simulate, stop
from upbit_cache.cli.log import PROG, Log, error, print_report, say
from upbit_cache.cli.render import (
    damage_lines,
    derive_lines,
    derive_summary,
    done_line,
    export_summary,
    horizon_warning,
    memory_summary,
    progress_for,
    prune_summary,
    screen_summary,
    series_error,
    summary,
)
from upbit_cache.errors import RefusedError, UpbitCacheError, UsageError
from upbit_cache.timeframes import Timeframe
from upbit_cache.words import plural

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
            error(f"{message} (see --help)")
            sys.exit(getattr(exc, "exit_code", 2))
        except typer.Abort:
            error("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


class _Command(TyperCommand):
    """A command whose arguments read by their placeholder in its help (`[MARKET...]`),
    not by typer's Python type (`markets... <list[str]>`)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name != "argument":
                pieces += param.get_usage_pieces(ctx)
            else:
                pieces.append(_placeholder(param) if param.required else f"[{_placeholder(param)}]")
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        args, opts = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                args.append((_placeholder(param), record[1]))
            else:
                opts.append(record)
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _placeholder(param: Any) -> str:
    name = param.metavar or (param.name or "").upper()
    return f"{name}..." if param.nargs != 1 else name


app = typer.Typer(
    cls=_OneLineErrors,
    name="upbit-cache",
    help="Keep a local, always-fresh copy of Upbit candles as Hive-partitioned Parquet.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"upbit-cache {version('upbit-cache')}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
        ),
    ] = False,
    data_dir: opt.DataDir = None,
) -> None:
    """Keep a local, always-fresh copy of Upbit candles as Hive-partitioned Parquet."""
    ctx.obj = opt.Before(data_dir)


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """A command's work: the library's errors become `upbit-cache: error: ...` and its exit
    code; Ctrl-C (130) and SIGTERM (143, see cli/stop.py) stop it, and it says so."""
    with stop.working():
        try:
            yield
        except UpbitCacheError as exc:
            error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            sigterm = stop.terminated()
            say(stop.STOPPED if sigterm else stop.INTERRUPTED)  # even with -q
            stop.reported()
            raise typer.Exit(stop.SIGTERM_EXIT if sigterm else stop.INTERRUPTED_EXIT) from None


def _warn_horizon(report: SyncReport | None) -> None:
    """Say on stderr what of a 1s window lay past Upbit's horizon, if anything (even with
    -q: like an error, it is about data the run did not get)."""
    warning = horizon_warning(report) if report is not None else None
    if warning is not None:
        say(f"{PROG}: {warning}")


def _warn_damage(report: SyncReport | None, root: str) -> bool:
    """Say on stderr (even with -q: it is about the data) what damage a fetch healed or
    saw outside its window, and which derived series failed; whether any of those failed."""
    if report is None:
        return False
    for line in damage_lines(report, root):
        say(f"{PROG}: {line}" if line.startswith("warning: ") else line)
    return bool(report.failed or report.failed_derived)


def _cache(
    data_dir: str | None,
    log: Log,
    api_url: str | None = None,
    rate: float | None = None,
    ws_url: str | None = None,
    lock_timeout: float | None = None,
) -> UpbitCache:
    from upbit_cache.manager.cache import UpbitCache

    def waiting(series: str) -> None:
        log.info(
            f"upbit-cache: waiting for another run writing {series} (and maybe more); "
            "--lock-timeout SECONDS bounds the wait"
        )

    return UpbitCache(
        data_dir,
        api_url=api_url,
        ws_url=ws_url,
        rate=rate,
        lock_timeout=lock_timeout,
        on_lock_wait=waiting,
    )


@app.command("fetch", cls=_Command)
def fetch(
    markets: opt.Markets = None,
    quote: opt.Quote = None,
    timeframe: opt.Timeframes = None,
    days: opt.Days = None,
    since: opt.Since = None,
    until: opt.Until = None,
    timerange: opt.TimeRangeOption = None,
    data_dir: opt.DataDir = None,
    api_url: opt.ApiUrl = None,
    rate: opt.Rate = 10.0,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
    lock_timeout: opt.LockTimeout = None,
    shard: opt.Shard = None,
) -> None:
    """Fetch candles into the store, asking Upbit only for what is missing (by default the
    last 30 days). The summary goes to stdout; progress, a line per market and errors to
    stderr (-v: the lines on a terminal too).

    Example: upbit-cache fetch KRW-BTC KRW-ETH -t 1h --days 30
    """
    with _one_line_errors():
        from upbit_cache.manager.scope import Shard, Window

        log = Log(quiet, verbose)
        window = Window.of(since, until, days, timerange)
        part = Shard.parse(shard) if shard is not None else None
        timeframes = opt.timeframes(timeframe, "1h")
        cache = _cache(data_dir, log, api_url, rate, lock_timeout=lock_timeout)
        with progress_for(sys.stderr, quiet, verbose) as progress:
            report = cache.fetch(
                markets or [],
                quote=quote,
                timeframes=timeframes,
                window=window,
                progress=progress,
                shard=part,
            )
        print_report(summary(report))
        _warn_horizon(report)
        failed = _warn_damage(report, cache.files.root)
        if report.blocked:
            log.error(report.blocked)
        if failed:
            raise typer.Exit(1)


@app.command("resample", cls=_Command)
def resample_command(
    markets: opt.StoredMarkets = None,
    timeframe: opt.Timeframes = None,
    source: opt.BaseTimeframe = None,
    data_dir: opt.DataDir = None,
    lock_timeout: opt.LockTimeout = None,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
) -> None:
    """Derive timeframes from stored finer candles and write them to the store (incremental).
    -v: a line per market and timeframe before the summary.

    Example: upbit-cache resample KRW-BTC -t 1h,4h --from 15m
    """
    with _one_line_errors():
        log = Log(quiet, verbose)
        targets = opt.timeframes(timeframe, "1h")
        base = Timeframe.parse(source) if source is not None else None
        began = time.monotonic()
        cache = _cache(data_dir, log, lock_timeout=lock_timeout)
        outcomes = cache.resample(markets or [], targets, base)
        done = [o for o in outcomes if o.error is None]
        if verbose and done:
            print_report(derive_lines(done))
        if done:
            print_report(derive_summary(done, time.monotonic() - began))
        for o in outcomes:  # left as they were: named, the others are written
            if o.error is not None:
                log.error(series_error(o.target, o.market, o.error))
        if len(done) < len(outcomes):
            raise typer.Exit(1)


@app.command("live", cls=_Command)
def live_command(
    markets: opt.LiveMarkets,
    timeframe: opt.LiveTimeframes = None,
    jsonl: opt.Jsonl = False,
    no_store: opt.NoStore = False,
    tz: opt.Tz = "UTC",
    data_dir: opt.DataDir = None,
    api_url: opt.ApiUrl = None,
    ws_url: opt.WsUrl = None,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
) -> None:
    """Watch markets live: candles built from Upbit's trade stream, updated on every trade.

    On a terminal a table; with --jsonl (or into a pipe) JSON lines. Ctrl-C or SIGTERM
    stores what closed and exits 130 or 143, as any command they stop (-v: with counts of
    the events shown).
    Example: upbit-cache live KRW-BTC KRW-ETH -t 1m,15m,1h --jsonl
    """
    with _one_line_errors():
        log = Log(quiet, verbose)
        timeframes = opt.timeframes(timeframe, "1m,15m,1h")
        from upbit_cache.cli.live_view import JsonLines, LiveTable

        events = _cache(data_dir, log, api_url, ws_url=ws_url).live(
            markets, timeframes, store=not no_store
        )
        from upbit_cache.markets import validate_markets

        if jsonl or not sys.stdout.isatty():
            view: JsonLines | LiveTable = JsonLines(tz=tz)
        else:
            view = LiveTable(tz=tz, markets=validate_markets(markets), timeframes=timeframes)
        kinds: Counter[str] = Counter()

        def show(item: LiveEvent) -> None:
            kinds[item.event.kind] += 1
            view.show(item)

        with view:
            stopped = asyncio.run(_watch(events, show))
        # The orderly stop is done (closes stored); the status says what stopped it, as for
        # every command (even with -q: a non-zero exit explains itself).
        kept = "closed candles are stored" if not no_store else "nothing stored (--no-store)"
        say(f"upbit-cache: stopped ({stopped}); {kept}")
        counts = [plural(kinds[k], k) for k in ("snapshot", "update", "close")]
        log.detail(f"events: {', '.join(counts)}")
        stop.reported()
        if stopped != "stream ended":
            raise typer.Exit(stop.SIGTERM_EXIT if stopped == "SIGTERM" else stop.INTERRUPTED_EXIT)


async def _watch(events: AsyncGenerator[LiveEvent, None], show: Callable[[LiveEvent], None]) -> str:
    """Show events until Ctrl-C or SIGTERM; the stream's own cleanup then stores what closed."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    why = {"why": "interrupted"}

    def terminate() -> None:
        if why["why"] != "SIGTERM":  # once: a second would cut the stream's cleanup short
            why["why"] = "SIGTERM"
            task.cancel()

    # The entry point's handler calls this instead of interrupting (signal-safe); without it
    # (the app called from Python), the loop's own handler, as long as the loop runs.
    with stop.instead(lambda: loop.call_soon_threadsafe(terminate)) as handled:
        if not handled:
            loop.add_signal_handler(signal.SIGTERM, terminate)
        try:
            async with contextlib.aclosing(events):
                async for item in events:
                    show(item)
        except asyncio.CancelledError:
            return why["why"]
    return "stream ended"


@app.command("prune", cls=_Command)
def prune_command(
    keep: opt.Keep = None,
    keep_1m: opt.Keep1m = None,
    compact_after: opt.CompactAfter = "7d",
    dry_run: opt.DryRun = False,
    yes: opt.Yes = False,
    timeframe: opt.SomeTimeframes = None,
    as_of: opt.AsOf = None,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
    data_dir: opt.DataDir = None,
    lock_timeout: opt.LockTimeout = None,
) -> None:
    """Compact old hot partitions into the cold tier, apply retention, clear leftovers.

    Safe while fetches and readers run on the same data dir (a daily cron job). Retention
    that would leave a series no row at all is refused (exit 2, saying what it would remove)
    unless --yes. -v: a line per series.

    Example: upbit-cache prune --keep-1m 90d --compact-after 7d
    """
    with _one_line_errors():
        from upbit_cache.manager.prune import Policy, PruneReport
        from upbit_cache.times import parse_duration, to_ms

        log = Log(quiet, verbose)
        by_tf = {"1m": parse_duration(keep_1m, "--keep-1m")} if keep_1m is not None else {}
        policy = Policy(
            compact_after_ms=parse_duration(compact_after, "--compact-after"),
            keep_ms=parse_duration(keep, "--keep") if keep is not None else None,
            keep_by_tf=by_tf,
            timeframes=tuple(opt.timeframes(timeframe, "")) if timeframe else (),
        )
        now = to_ms(as_of) if as_of is not None else None
        cache = _cache(data_dir, log, lock_timeout=lock_timeout)
        try:
            report = cache.prune(policy, now=now, dry_run=dry_run, yes=yes)
        except RefusedError as refused:
            if isinstance(refused.report, PruneReport):  # what it would remove, then why not
                print_report(prune_summary(refused.report, verbose))
            raise
        print_report(prune_summary(report, verbose))
        for line in report.skipped:
            log.error(line)
        if report.skipped:
            raise typer.Exit(1)


@app.command("screen-prep", cls=_Command)
def screen_prep_command(
    markets: opt.Markets = None,
    quote: opt.Quote = None,
    timeframe: opt.OneTimeframe = None,
    days: opt.Days = 30,
    out: opt.Out = "-",
    fmt: opt.OutFormat = None,
    tz: opt.Tz = "UTC",
    refresh: opt.Refresh = True,
    include_open: opt.IncludeOpen = False,
    min_value: opt.MinValue = None,
    top: opt.Top = None,
    data_dir: opt.DataDir = None,
    api_url: opt.ApiUrl = None,
    rate: opt.Rate = 10.0,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
    lock_timeout: opt.LockTimeout = None,
) -> None:
    """Bring N days of candles up to date and write them as one long table for a screener.

    The summary goes to stderr (-q: none); -v adds per-market lines and the memory layer's
    hit rate. --tz applies to the times of CSV and JSON lines.

    Example: upbit-cache screen-prep --quote KRW -t 1h --days 30 -f csv --out - | python s.py
    """
    with _one_line_errors():
        from upbit_cache.manager.scope import DEFAULT_DAYS, ScreenRequest
        from upbit_cache.store.formats import guess_format

        log = Log(quiet, verbose)
        began = time.monotonic()
        request = ScreenRequest(
            markets=tuple(markets or ()),
            quote=quote,
            timeframe=opt.one_timeframe(timeframe, "1h", "screen-prep"),
            days=days if days is not None else DEFAULT_DAYS,
            refresh=refresh,
            include_open=include_open,
            min_value=min_value,
            top=top,
        )
        output = guess_format(out, fmt)
        cache = _cache(data_dir, log, api_url, rate, lock_timeout=lock_timeout)
        # Progress and logs go to stderr: stdout may be the table itself.
        with progress_for(sys.stderr, quiet=not verbose, verbose=verbose) as progress:
            done = cache.screen_prep(request, out=out, fmt=output, tz=tz, progress=progress)
        log.info(screen_summary(done, time.monotonic() - began))
        if done.memory is not None:
            log.detail(memory_summary(done.memory, done.layers))
        result = done.result
        sync = result.sync if result is not None else None
        _warn_horizon(sync)
        failed = _warn_damage(sync, cache.files.root)
        if result is not None:
            fetch_failed = {o.market for o in sync.failed} if sync is not None else set()
            for market, damage in result.damaged.items():  # left out of the table, named
                if market not in fetch_failed:  # else its progress line said so
                    log.error(series_error(request.timeframe, market, damage))
        if failed or (result is not None and result.damaged):
            raise typer.Exit(1)


@app.command("export", cls=_Command)
def export_command(
    markets: opt.Markets = None,
    quote: opt.Quote = None,
    markets_file: opt.MarketsFile = None,
    timeframe: opt.Timeframes = None,
    since: opt.Since = None,
    until: opt.Until = None,
    days: opt.Days = None,
    timerange: opt.TimeRangeOption = None,
    fmt: opt.OutFormat = None,
    out: opt.Out = "-",
    tz: opt.Tz = "UTC",
    refresh: opt.Refresh = True,
    fill: opt.Fill = False,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
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

        log = Log(quiet, verbose)
        if since is None and days is None and timerange is None:
            raise UsageError("give the range: --since TIME [--until TIME], --days N or --timerange")
        window = Window.of(since, until, days, timerange)
        names = markets or []
        if markets_file is not None:
            if names or quote:
                raise UsageError("give markets, --quote or --markets-file, one of them")
            source = getattr(markets_file, "name", "-")
            source = "stdin" if source in ("-", "<stdin>") else source
            names = read_market_list(markets_file.read(), f"the markets file {source}")
        output = guess_format(out, fmt)
        cache = _cache(data_dir, log, api_url, rate, lock_timeout=lock_timeout)
        with progress_for(sys.stderr, quiet, verbose) as progress:
            report = cache.export(
                names,
                quote=quote,
                timeframes=opt.timeframes(timeframe, "1h"),
                window=window,
                out=out,
                fmt=output,
                tz=tz,
                refresh=refresh,
                fill=fill,
                progress=progress,
            )
        log.info(export_summary(report))
        sync = report.sync
        _warn_horizon(sync)
        failed = _warn_damage(sync, cache.files.root)
        if sync is not None and sync.blocked:
            log.error(sync.blocked)
        for market, tf, damage in report.damaged:  # left out, the others are written
            log.error(series_error(tf, market, damage))
        if failed or report.damaged:
            raise typer.Exit(1)


@app.command("info", cls=_Command)
def info_command(
    markets: opt.StoredMarkets = None,
    timeframe: opt.SomeTimeframes = None,
    as_json: opt.AsJson = False,
    tz: opt.Tz = "UTC",
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
    data_dir: opt.DataDir = None,
) -> None:
    """List what the store holds: per timeframe and market, the covered ranges, candle
    counts, known gaps (fetched periods without trades, never-fetched holes), bytes per tier,
    and who made each range (-v: every range, however many).

    Example: upbit-cache info KRW-BTC -t 1h,1d --json
    """
    with _one_line_errors():
        log = Log(quiet, verbose)
        timeframes = opt.timeframes(timeframe, "") if timeframe else None
        cache = _cache(data_dir, log)
        unreadable: list[str] = []
        infos = cache.info(markets or [], timeframes, unreadable)
        from upbit_cache.cli.render import info_table
        from upbit_cache.manager.info import to_json

        if as_json:
            typer.echo(json.dumps(to_json(infos, tz), indent=2))
        elif infos:
            print_report(info_table(infos, tz, verbose))
        elif unreadable:
            pass
        elif markets or timeframe:
            print_report(f"nothing stored for the given markets/timeframes in {cache.files.root}")
        else:
            print_report(f"the store at {cache.files.root} is empty: nothing fetched yet")
        for line in unreadable:  # the rest is listed; these are named, and the exit says so
            log.error(line)
        if unreadable:
            raise typer.Exit(1)


@app.command("verify", cls=_Command)
def verify_command(
    markets: opt.StoredMarkets = None,
    timeframe: opt.SomeTimeframes = None,
    repair: opt.Repair = False,
    upbit: opt.Upbit = False,
    budget: opt.Budget = 300,
    as_json: opt.AsJson = False,
    tz: opt.Tz = "UTC",
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
    data_dir: opt.DataDir = None,
    api_url: opt.ApiUrl = None,
    rate: opt.Rate = 10.0,
    lock_timeout: opt.LockTimeout = None,
) -> None:
    """Check the store against its records: missing, unreadable or truncated files, rows
    outside recorded ranges, duplicate times, impossible values, files in the wrong partition
    or with the wrong schema; with --upbit, ask Upbit again about what the records believe.
    Exit 0 healthy or, with --repair, everything found repaired (and checked again); 1
    problems left. -v: a line per series checked.

    Example: upbit-cache verify --upbit --budget 300 --repair
    """
    with _one_line_errors():
        log = Log(quiet, verbose)
        timeframes = opt.timeframes(timeframe, "") if timeframe else None
        cache = _cache(data_dir, log, api_url, rate, lock_timeout=lock_timeout)
        report = cache.verify(markets or [], timeframes, repair=repair, upbit=upbit, budget=budget)
        from upbit_cache.cli.render import verify_json, verify_lines

        if as_json:
            typer.echo(json.dumps(verify_json(report, cache.files.root), indent=2))
        else:
            print_report(verify_lines(report, cache.files.root, tz, verbose))
        if not report.ok:
            raise typer.Exit(1)


def _send(text: str) -> None:
    """Text on stdout, every byte of it (see `store.files.write_all`)."""
    from upbit_cache.store.files import write_all

    sys.stdout.flush()
    write_all(sys.stdout.buffer, text.encode())
    sys.stdout.buffer.flush()


@app.command("markets", cls=_Command)
def markets_command(
    quote: opt.Quote = None,
    as_json: opt.JsonLines = False,
    tz: opt.Tz = "UTC",
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
    data_dir: opt.DataDir = None,
    api_url: opt.ApiUrl = None,
) -> None:
    """List the markets Upbit lists (default: every quote currency) with their Korean and
    English names, warnings (Upbit's investment warning and caution flags) and what is
    stored of each: timeframes and covered range, from the records (a stored market Upbit no
    longer lists is shown as unlisted).

    On a terminal a table; in a pipe one tab-separated line per market, no header: market,
    Korean name, English name, warnings (- none, ? unknown, else comma-separated), stored
    (TF=START/END, comma-separated, or -); --json: one JSON object per line. -q: the
    table without its count line; -v: every fetched range of a series in the table.

    Example: upbit-cache markets --quote KRW --json | jq -r 'select(.warning) | .market'
    """
    with _one_line_errors():
        from upbit_cache.cli import markets_view as view

        log = Log(quiet, verbose)
        items = _cache(data_dir, log, api_url).markets(quote)
        if as_json:
            _send(view.json_lines(items, tz))
        elif sys.stdout.isatty():
            from rich.console import Console

            view.table(items, Console(), tz, counted=not quiet, every_range=verbose)
        else:
            _send(view.tsv(items, tz))


@app.command("show", cls=_Command)
def show_command(
    market: opt.OneMarket,
    timeframe: opt.OneTimeframe = None,
    tail: opt.Tail = 20,
    refresh: opt.Refresh = True,
    tz: opt.Tz = "UTC",
    data_dir: opt.DataDir = None,
    api_url: opt.ApiUrl = None,
    rate: opt.Rate = 10.0,
    lock_timeout: opt.LockTimeout = None,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
) -> None:
    """Show the newest candles of one market: on a terminal a table, with a sparkline of
    closes where the width allows; in a pipe CSV rows as export writes them (header first).

    Fetches what the store lacks of the last N periods first (--no-refresh: the store only);
    a period without trades has no candle, so older stored ones fill up to N. -v: what the
    refresh fetched, on stderr.

    Example: upbit-cache show KRW-BTC -t 1h --tail 24
    """
    with _one_line_errors():
        from upbit_cache.markets import validate_market

        log = Log(quiet, verbose)
        code, tf = validate_market(market), opt.one_timeframe(timeframe, "1h", "show")
        cache = _cache(data_dir, log, api_url, rate, lock_timeout=lock_timeout)
        frame = cache.tail(code, tf, tail, refresh=refresh)
        if refresh and cache.last_fetch is not None:
            for outcome in cache.last_fetch.outcomes:
                log.detail(done_line(outcome))
        if sys.stdout.isatty():
            from rich.console import Console

            from upbit_cache.cli import show_view

            show_view.table(frame, code, tf, Console(), tz)
            return
        from upbit_cache.candles import to_table
        from upbit_cache.manager.export import labelled
        from upbit_cache.store.output import write_output

        write_output(labelled(to_table(frame), code, tf), "-", "csv", tz)


@app.command(
    "simulator",
    help=f"{simulate.SUMMARY}\n\n{simulate.EPILOG}",
    add_help_option=False,
    context_settings={
        "allow_extra_args": True,
        "ignore_unknown_options": True,
        "help_option_names": [],
    },
)
def simulator_command(ctx: typer.Context) -> None:
    """Every argument goes to the simulator's own parser (`--help` too): see cli/simulate.py."""
    with _one_line_errors():
        code = simulate.simulate(ctx.args)
    raise typer.Exit(code)
