"""`upbit-cache export`: any range of candles to a file or stdout."""

from __future__ import annotations

import sys

import typer

from upbit_cache.cli import options as opt
from upbit_cache.cli.commands.shared import (
    cache_for,
    json_out,
    print_json,
    warn_damage,
    warn_horizon,
)
from upbit_cache.cli.log import Log
from upbit_cache.cli.render import export_json, export_summary, progress_for, series_error
from upbit_cache.errors import UsageError
from upbit_cache.settings import DEFAULT_TIMEFRAME


@opt.shared("api_url", "rate", "lock_timeout")
def export_command(
    markets: opt.Markets = None,
    quote: opt.Quote = None,
    markets_file: opt.MarketsFile = None,
    timeframe: opt.Timeframes = None,
    since: opt.Since = None,
    until: opt.Until = None,
    days: opt.Days = None,
    timerange: opt.TimeRangeOption = None,
    fmt: opt.ExportFormat = None,
    out: opt.Out = "-",
    tz: opt.Tz = "UTC",
    refresh: opt.Refresh = True,
    fill: opt.Fill = False,
    as_json: opt.AsJson = False,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
) -> None:
    """Write any range of candles to a file or stdout (CSV, JSON lines or Parquet), market
    after market, each ascending by time, with memory bounded whatever the range.

    Fetches what the store lacks first (--no-refresh: the store only). Progress and the
    summary go to stderr. Give --since [--until], --days or --timerange.

    Example: upbit-cache export KRW-BTC KRW-ETH -t 1h --timerange 20250101-20250701 | python bt.py
    """
    from upbit_cache.manager.scope import Window
    from upbit_cache.markets import read_market_list
    from upbit_cache.output.formats import export_format

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
    else:
        names, quote = opt.default_markets(names, quote)
    output = export_format(out, fmt)
    json_out(as_json, out)
    cache = cache_for(log)
    with progress_for(sys.stderr, quiet, verbose) as progress:
        report = cache.export(
            names,
            quote=quote,
            timeframes=opt.timeframes(timeframe, DEFAULT_TIMEFRAME),
            window=window,
            out=out,
            fmt=output,
            tz=tz,
            refresh=refresh,
            fill=fill,
            progress=progress,
        )
    if as_json:
        print_json(export_json(report))
    else:
        log.info(export_summary(report))
    sync = report.sync
    warn_horizon(sync)
    failed = warn_damage(sync, cache.files.root)
    if sync is not None and sync.blocked:
        log.error(sync.blocked)
    for market, tf, damage in report.damaged:  # left out, the others are written
        log.error(series_error(tf, market, damage))
    if failed or report.damaged:
        raise typer.Exit(1)
