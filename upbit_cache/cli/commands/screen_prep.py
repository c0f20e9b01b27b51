"""`upbit-cache screen-prep`: N days of many markets as one long table."""

from __future__ import annotations

import sys
import time

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
from upbit_cache.cli.render import (
    memory_summary,
    progress_for,
    screen_json,
    screen_summary,
    series_error,
)
from upbit_cache.settings import DEFAULT_TIMEFRAME


@opt.shared("api_url", "rate", "lock_timeout")
def screen_prep_command(
    markets: opt.Markets = None,
    quote: opt.Quote = None,
    timeframe: opt.OneTimeframe = None,
    days: opt.Days = None,
    out: opt.Out = "-",
    fmt: opt.OutFormat = None,
    tz: opt.Tz = "UTC",
    refresh: opt.Refresh = True,
    include_open: opt.IncludeOpen = False,
    min_value: opt.MinValue = None,
    top: opt.Top = None,
    as_json: opt.AsJson = False,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
) -> None:
    """Bring N days of candles up to date and write them as one long table for a screener.

    The summary goes to stderr (-q: none); -v adds per-market lines and the memory layer's
    hit rate. --tz applies to the times of CSV and JSON lines. With no --days: the config
    file's days, else 30; with no markets and no --quote: the config file's, else every KRW
    market.

    Example: upbit-cache screen-prep --quote KRW -t 1h --days 30 -f csv --out - | python s.py
    """
    from upbit_cache.manager.scope import ScreenRequest
    from upbit_cache.output.formats import guess_format

    log = Log(quiet, verbose)
    began = time.monotonic()
    names, quote = opt.default_markets(markets, quote)
    request = ScreenRequest(
        markets=tuple(names),
        quote=quote,
        timeframe=opt.one_timeframe(timeframe, DEFAULT_TIMEFRAME, "screen-prep"),
        days=opt.default_days(days),
        refresh=refresh,
        include_open=include_open,
        min_value=min_value,
        top=top,
    )
    output = guess_format(out, fmt)
    json_out(as_json, out)
    cache = cache_for(log)
    # Progress and logs go to stderr: stdout may be the table itself.
    with progress_for(sys.stderr, quiet=not verbose, verbose=verbose) as progress:
        done = cache.screen_prep(request, out=out, fmt=output, tz=tz, progress=progress)
    if as_json:
        print_json(screen_json(done, out, time.monotonic() - began))
    else:
        log.info(screen_summary(done, time.monotonic() - began))
    if done.memory is not None:
        log.detail(memory_summary(done.memory, done.layers))
    result = done.result
    sync = result.sync if result is not None else None
    warn_horizon(sync)
    failed = warn_damage(sync, cache.files.root)
    if result is not None:
        fetch_failed = {o.market for o in sync.failed} if sync is not None else set()
        for market, damage in result.damaged.items():  # left out of the table, named
            if market not in fetch_failed:  # else its progress line said so
                log.error(series_error(request.timeframe, market, damage))
    if failed or (result is not None and result.damaged):
        raise typer.Exit(1)
