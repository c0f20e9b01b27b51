"""`upbit-cache prune`: compaction, retention, leftovers."""

from __future__ import annotations

import typer

from upbit_cache.cli import options as opt
from upbit_cache.cli.commands.shared import cache_for, print_json
from upbit_cache.cli.log import Log, print_report
from upbit_cache.cli.render import prune_json, prune_summary
from upbit_cache.errors import RefusedError
from upbit_cache.settings import DEFAULT_COMPACT_AFTER


@opt.shared("lock_timeout")
def prune_command(
    keep: opt.Keep = None,
    keep_1m: opt.Keep1m = None,
    compact_after: opt.CompactAfter = DEFAULT_COMPACT_AFTER,
    dry_run: opt.DryRun = False,
    yes: opt.Yes = False,
    timeframe: opt.SomeTimeframes = None,
    as_of: opt.AsOf = None,
    as_json: opt.AsJson = False,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
) -> None:
    """Compact old hot partitions into the cold tier, apply retention, clear leftovers.

    Safe while fetches and readers run on the same data dir (a daily cron job). Retention
    that would leave a series no row at all is refused (exit 2, saying what it would remove)
    unless --yes. -v: a line per series.

    Example: upbit-cache prune --keep-1m 90d --compact-after 7d
    """
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
    cache = cache_for(log)
    try:
        report = cache.prune(policy, now=now, dry_run=dry_run, yes=yes)
    except RefusedError as refused:
        if isinstance(refused.report, PruneReport):  # what it would remove, then why not
            if as_json:
                print_json(prune_json(refused.report))
            else:
                print_report(prune_summary(refused.report, verbose))
        raise
    if as_json:
        print_json(prune_json(report))
    else:
        print_report(prune_summary(report, verbose))
    for line in report.skipped:
        log.error(line)
    if report.skipped:
        raise typer.Exit(1)
