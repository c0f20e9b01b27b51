"""`upbit-cache resample`: derived timeframes from stored finer candles."""

from __future__ import annotations

import time

import typer

from upbit_cache.cli import options as opt
from upbit_cache.cli.commands.shared import cache_for, print_json
from upbit_cache.cli.log import Log, print_report
from upbit_cache.cli.render import derive_lines, derive_summary, resample_json, series_error
from upbit_cache.settings import DEFAULT_TIMEFRAME
from upbit_cache.timeframes import Timeframe


@opt.shared("lock_timeout")
def resample_command(
    markets: opt.StoredMarkets = None,
    timeframe: opt.Timeframes = None,
    source: opt.BaseTimeframe = None,
    as_json: opt.AsJson = False,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
) -> None:
    """Derive timeframes from stored finer candles and write them to the store (incremental).
    -v: a line per market and timeframe before the summary.

    Example: upbit-cache resample KRW-BTC -t 1h,4h --from 15m
    """
    log = Log(quiet, verbose)
    targets = opt.timeframes(timeframe, DEFAULT_TIMEFRAME)
    base = Timeframe.parse(source) if source is not None else None
    began = time.monotonic()
    cache = cache_for(log)
    outcomes = cache.resample(markets or [], targets, base)
    done = [o for o in outcomes if o.error is None]
    if as_json:
        print_json(resample_json(outcomes, time.monotonic() - began))
    elif done:
        if verbose:
            print_report(derive_lines(done))
        print_report(derive_summary(done, time.monotonic() - began))
    for o in outcomes:  # left as they were: named, the others are written
        if o.error is not None:
            log.error(series_error(o.target, o.market, o.error))
    if len(done) < len(outcomes):
        raise typer.Exit(1)
