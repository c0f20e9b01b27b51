"""`upbit-cache simulator`: the bundled Upbit stand-in in the foreground, for trying the tool
offline. The same server and options as `python -m upbit_cache.simulator`; it prints the one
setting that points every other command at it, and runs until Ctrl-C (130) or SIGTERM (143).

The simulator (aiohttp, numpy) is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence
from typing import Any, NoReturn

from upbit_cache.cli import stop
from upbit_cache.cli.log import PROG, print_report, say
from upbit_cache.errors import UsageError

DEFAULT_PORT = 8123
SUMMARY = "Run an offline stand-in for Upbit (REST and WebSocket) until Ctrl-C."
EPILOG = f"""\
Prints the setting that points every other command at it, UPBIT_API_URL (live's
WebSocket URL follows from it). Ctrl-C exits 130, SIGTERM 143.

Example: {PROG} simulator --port {DEFAULT_PORT} --latency 0.03"""


class _Help(argparse.RawDescriptionHelpFormatter):
    """The help reads as every other command's: `Usage: upbit-cache simulator ...`."""

    def add_usage(self, usage: Any, actions: Any, groups: Any, prefix: str | None = None) -> None:
        super().add_usage(usage, actions, groups, "Usage: " if prefix is None else prefix)


class _OneLineParser(argparse.ArgumentParser):
    """argparse's mistakes as the tool's: one line, exit 2 (a UsageError), not a usage block."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**(settings | {"formatter_class": _Help}))

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def settings(url: str) -> str:
    """What the simulator prints once it listens: shell lines, the export last."""
    from upbit_cache.collector.config import ws_url_for

    return (
        f"# {PROG} simulator: an offline Upbit at {url}, until Ctrl-C\n"
        f"# in another shell (live's WebSocket follows: {ws_url_for(url)}):\n"
        f"export UPBIT_API_URL={url}"
    )


def simulate(args: Sequence[str]) -> int:
    """Parse `args` as the simulator does, serve until a signal; the exit status."""
    from upbit_cache.simulator.__main__ import parse_args, serve
    from upbit_cache.simulator.server import make_state

    config = parse_args(
        args,
        prog=f"{PROG} simulator",
        description=SUMMARY,
        epilog=EPILOG,
        port=DEFAULT_PORT,
        parser_class=_OneLineParser,
    )
    try:
        state = make_state(config)
    except (KeyError, ValueError) as exc:  # a listing or quiet span of an unknown market
        raise UsageError(str(exc.args[0])) from None
    why = {"why": "interrupted"}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()

        def terminate() -> None:
            why["why"] = "SIGTERM"
            stopped.set()

        # As for `live`: the entry point's handler calls this instead of interrupting;
        # without it (the app called from Python), the loop's own handler.
        with stop.instead(lambda: loop.call_soon_threadsafe(terminate)) as handled:
            if not handled:
                loop.add_signal_handler(signal.SIGTERM, terminate)
            try:
                await serve(config, state, stopped, lambda url: print_report(settings(url)))
            except OSError as exc:  # the port is taken, the address is not this host's
                where = f"{config.host}:{config.port}"
                raise UsageError(
                    f"cannot listen on {where}: {exc.strerror or exc}; --port 0 picks a free port"
                ) from None

    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # Ctrl-C: asyncio.run stopped the server first
        why["why"] = "interrupted"
    sigterm = why["why"] == "SIGTERM"
    say(f"{PROG}: simulator stopped ({why['why']})")
    stop.reported()
    return stop.SIGTERM_EXIT if sigterm else stop.INTERRUPTED_EXIT
