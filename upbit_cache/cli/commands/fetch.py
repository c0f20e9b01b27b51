"""`upbit-cache fetch`: what the store lacks, from Upbit."""

from __future__ import annotations

import sys

import typer

from upbit_cache.cli import options as opt
from upbit_cache.cli.commands.shared import cache_for, print_json, warn_damage, warn_horizon
from upbit_cache.cli.log import Log, print_report
from upbit_cache.cli.render import fetch_json, progress_for, summary, worker_lines
from upbit_cache.settings import DEFAULT_TIMEFRAME


@opt.shared("api_url", "rate", "lock_timeout")
def fetch_command(
    markets: opt.Markets = None,
    quote: opt.Quote = None,
    timeframe: opt.Timeframes = None,
    days: opt.Days = None,
    since: opt.Since = None,
    until: opt.Until = None,
    timerange: opt.TimeRangeOption = None,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
    shard: opt.Shard = None,
    dask: opt.Dask = None,
    as_json: opt.AsJson = False,
) -> None:
    """Fetch candles into the store, asking Upbit only for what is missing (by default the
    last 30 days, or the config file's days; the markets, if none given: the config file's,
    else every KRW market). The summary goes to stdout; progress, a line per market and errors to
    stderr (-v: the lines on a terminal too).

    Example: upbit-cache fetch KRW-BTC KRW-ETH -t 1h --days 30
    """
    from upbit_cache.manager.scope import Shard, Window

    log = Log(quiet, verbose)
    if since is None and until is None and days is None and timerange is None:
        days = opt.default_days(None)
    window = Window.of(since, until, days, timerange)
    names, quote = opt.default_markets(markets, quote)
    part = Shard.parse(shard) if shard is not None else None
    timeframes = opt.timeframes(timeframe, DEFAULT_TIMEFRAME)
    cache = cache_for(log)
    with progress_for(sys.stderr, quiet, verbose) as progress:
        report = cache.fetch(
            names,
            quote=quote,
            timeframes=timeframes,
            window=window,
            progress=progress,
            shard=part,
            dask=dask,
        )
    if as_json:
        print_json(fetch_json(report))
    else:
        print_report(summary(report))
        for line in worker_lines(report):
            print_report(line)
    warn_horizon(report)
    failed = warn_damage(report, cache.files.root)
    if report.blocked:
        log.error(report.blocked)
    if failed:
        raise typer.Exit(1)
