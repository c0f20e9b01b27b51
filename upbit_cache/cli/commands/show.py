"""`upbit-cache show`: the newest candles of one market."""

from __future__ import annotations

import sys

from upbit_cache.cli import options as opt
from upbit_cache.cli.commands.shared import cache_for
from upbit_cache.cli.log import Log
from upbit_cache.cli.render import Finished, done_line
from upbit_cache.settings import DEFAULT_TAIL, DEFAULT_TIMEFRAME


@opt.shared("api_url", "rate", "lock_timeout")
def show_command(
    market: opt.OneMarket,
    timeframe: opt.OneTimeframe = None,
    tail: opt.Tail = DEFAULT_TAIL,
    refresh: opt.Refresh = True,
    tz: opt.Tz = "UTC",
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
    from upbit_cache.markets import validate_market

    log = Log(quiet, verbose)
    code, tf = validate_market(market), opt.one_timeframe(timeframe, DEFAULT_TIMEFRAME, "show")
    cache = cache_for(log)
    finished = Finished()
    frame = cache.tail(code, tf, tail, refresh=refresh, progress=finished)
    for outcome in finished.outcomes:  # said once the candles are there, as fetch -v does
        log.detail(done_line(outcome))
    if sys.stdout.isatty():
        from rich.console import Console

        from upbit_cache.cli import show_view

        show_view.table(frame, code, tf, Console(), tz)
        return
    from upbit_cache.candles import to_table
    from upbit_cache.manager.export import labelled
    from upbit_cache.output.tables import write_output

    write_output(labelled(to_table(frame), code, tf), "-", "csv", tz)
