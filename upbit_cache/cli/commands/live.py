"""`upbit-cache live`: candles built from the trade stream, as they change."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections import Counter
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING

import typer

from upbit_cache.cli import options as opt
from upbit_cache.cli import stop
from upbit_cache.cli.commands.shared import cache_for
from upbit_cache.cli.log import Log, say
from upbit_cache.settings import DEFAULT_LIVE_TIMEFRAMES
from upbit_cache.words import plural

if TYPE_CHECKING:
    from upbit_cache.manager.live import LiveEvent


@opt.shared("api_url", "ws_url")
def live_command(
    markets: opt.LiveMarkets,
    timeframe: opt.LiveTimeframes = None,
    jsonl: opt.Jsonl = False,
    no_store: opt.NoStore = False,
    tz: opt.Tz = "UTC",
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
) -> None:
    """Watch markets live: candles built from Upbit's trade stream, updated on every trade.

    On a terminal a table; with --jsonl (or into a pipe) JSON lines. Ctrl-C or SIGTERM
    stores what closed and exits 130 or 143, as any command they stop (-v: with counts of
    the events shown).
    Example: upbit-cache live KRW-BTC KRW-ETH -t 1m,15m,1h --jsonl
    """
    log = Log(quiet, verbose)
    timeframes = opt.timeframes(timeframe, DEFAULT_LIVE_TIMEFRAMES)
    from upbit_cache.cli.live_view import JsonLines, LiveTable

    events = cache_for(log).live(markets, timeframes, store=not no_store)
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
