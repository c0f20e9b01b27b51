"""`upbit-cache markets`: what Upbit lists, and what is stored of each."""

from __future__ import annotations

import sys

from upbit_cache.cli import options as opt
from upbit_cache.cli.commands.shared import cache_for
from upbit_cache.cli.log import Log


def _send(text: str) -> None:
    """Text on stdout, every byte of it (see `output.destination.write_all`)."""
    from upbit_cache.output.destination import write_all

    sys.stdout.flush()
    write_all(sys.stdout.buffer, text.encode())
    sys.stdout.buffer.flush()


@opt.shared("api_url")
def markets_command(
    quote: opt.Quote = None,
    as_json: opt.JsonLines = False,
    tz: opt.Tz = "UTC",
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
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
    from upbit_cache.cli import markets_view as view

    log = Log(quiet, verbose)
    items = cache_for(log).markets(quote)
    if as_json:
        _send(view.json_lines(items, tz))
    elif sys.stdout.isatty():
        from rich.console import Console

        view.table(items, Console(), tz, counted=not quiet, every_range=verbose)
    else:
        _send(view.tsv(items, tz))
