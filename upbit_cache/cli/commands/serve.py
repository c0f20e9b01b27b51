"""`upbit-cache serve`: Upbit's public quotation API over the store, on a local port."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from upbit_cache.cli import options as opt
from upbit_cache.cli import stop
from upbit_cache.cli.commands.shared import cache_for
from upbit_cache.cli.log import PROG, Log, print_report, say
from upbit_cache.errors import UsageError

Host = Annotated[str, typer.Option("--host", metavar="ADDRESS", help="The address to listen on.")]
Port = Annotated[
    int,
    typer.Option("--port", metavar="PORT", min=0, max=65535, help="The port (0: a free one)."),
]
Pages = Annotated[
    str,
    typer.Option(
        "--pages",
        metavar="READING",
        help=(
            "How the upstream reads a candle page (unverified at Upbit): window (the COUNT "
            "periods before `to`) or newest (the COUNT newest candles before it)."
        ),
    ),
]
Fresh = Annotated[
    float,
    typer.Option(
        "--fresh",
        metavar="SECONDS",
        min=0.0,
        help="How long an upstream in-progress candle is reused.",
    ),
]


@opt.shared("api_url", "rate", "lock_timeout")
def serve_command(
    host: Host = "127.0.0.1",
    port: Port = 8124,
    pages: Pages = "window",
    fresh: Fresh = 1.0,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
) -> None:
    """Serve Upbit's public REST API from the store on a local port, until Ctrl-C.

    pyupbit, ccxt and upbit-sdk work unchanged once their base URL points here: candle
    pages come from the store (what it lacks is fetched once, within the host's rate
    budget); the market list, tickers, trades and order books are passed through.
    Ctrl-C or SIGTERM stops it (exit 130 or 143).

    Example: upbit-cache serve --port 8124
    """
    from upbit_cache.server.app import PAGE_READINGS, serve

    if pages not in PAGE_READINGS:
        raise UsageError(f"--pages must be one of {', '.join(PAGE_READINGS)}: {pages!r}")
    log = Log(quiet, verbose)
    cache = cache_for(log)
    why = {"why": "interrupted"}

    def ready(url: str) -> None:
        print_report(
            f"# {PROG} serve: Upbit's API over {cache.files.root} at {url}, until Ctrl-C\n"
            f"# point clients at it, e.g. ccxt.upbit({{'urls': {{'api': {{'public': '{url}', "
            f"'private': '{url}'}}}}}})\n"
            f"export UPBIT_SERVE_URL={url}"
        )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def terminate() -> None:
            if why["why"] != "SIGTERM":
                why["why"] = "SIGTERM"
                task.cancel()

        # As for `live`: the entry point's handler calls this instead of interrupting.
        with stop.instead(lambda: loop.call_soon_threadsafe(terminate)) as handled:
            if not handled:
                loop.add_signal_handler(signal.SIGTERM, terminate)
            try:
                await serve(cache, host, port, pages=pages, fresh=fresh, on_ready=ready)
            except asyncio.CancelledError:
                return
            except OSError as exc:  # the port is taken, the address is not this host's
                raise UsageError(
                    f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                    "--port 0 picks a free port"
                ) from None

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        why["why"] = "interrupted"
    say(f"{PROG}: serve stopped ({why['why']})")
    stop.reported()
    raise typer.Exit(stop.SIGTERM_EXIT if why["why"] == "SIGTERM" else stop.INTERRUPTED_EXIT)
