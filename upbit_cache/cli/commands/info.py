"""`upbit-cache info`: what the store holds."""

from __future__ import annotations

import json

import typer

from upbit_cache.cli import options as opt
from upbit_cache.cli.commands.shared import cache_for
from upbit_cache.cli.log import Log, print_report


@opt.shared()
def info_command(
    markets: opt.StoredMarkets = None,
    timeframe: opt.SomeTimeframes = None,
    as_json: opt.AsJson = False,
    tz: opt.Tz = "UTC",
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
) -> None:
    """List what the store holds: per timeframe and market, the covered ranges, candle
    counts, known gaps (fetched periods without trades, never-fetched holes), bytes per tier,
    and who made each range (-v: every range, however many).

    Example: upbit-cache info KRW-BTC -t 1h,1d --json
    """
    log = Log(quiet, verbose)
    timeframes = opt.timeframes(timeframe, "") if timeframe else None
    cache = cache_for(log)
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
