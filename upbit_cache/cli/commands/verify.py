"""`upbit-cache verify`: the store against its records (and Upbit)."""

from __future__ import annotations

import json

import typer

from upbit_cache.cli import options as opt
from upbit_cache.cli.commands.shared import cache_for
from upbit_cache.cli.log import Log, print_report
from upbit_cache.settings import DEFAULT_BUDGET


@opt.shared("api_url", "rate", "lock_timeout")
def verify_command(
    markets: opt.StoredMarkets = None,
    timeframe: opt.SomeTimeframes = None,
    repair: opt.Repair = False,
    upbit: opt.Upbit = False,
    budget: opt.Budget = DEFAULT_BUDGET,
    as_json: opt.AsJson = False,
    tz: opt.Tz = "UTC",
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
) -> None:
    """Check the store against its records: missing, unreadable or truncated files, rows
    outside recorded ranges, duplicate times, impossible values, files in the wrong partition
    or with the wrong schema; with --upbit, ask Upbit again about what the records believe.
    Exit 0 healthy or, with --repair, everything found repaired (and checked again); 1
    problems left. -v: a line per series checked.

    Example: upbit-cache verify --upbit --budget 300 --repair
    """
    log = Log(quiet, verbose)
    timeframes = opt.timeframes(timeframe, "") if timeframe else None
    cache = cache_for(log)
    report = cache.verify(markets or [], timeframes, repair=repair, upbit=upbit, budget=budget)
    from upbit_cache.cli.render import verify_json, verify_lines

    if as_json:
        typer.echo(json.dumps(verify_json(report, cache.files.root), indent=2))
    else:
        print_report(verify_lines(report, cache.files.root, tz, verbose))
    if not report.ok:
        raise typer.Exit(1)
