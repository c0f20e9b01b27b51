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
from upbit_cache.settings import DEFAULT_SERVE_HOST, DEFAULT_SERVE_PORT

Host = Annotated[
    str | None,
    typer.Option(
        "--host",
        metavar="ADDRESS",
        help=f"The address to listen on (default: the config file's, else {DEFAULT_SERVE_HOST}).",
        show_default=False,
    ),
]
Port = Annotated[
    int | None,
    typer.Option(
        "--port",
        metavar="PORT",
        min=0,
        max=65535,
        help=f"The port, 0: a free one (default: the config file's, else {DEFAULT_SERVE_PORT}).",
        show_default=False,
    ),
]
Keep = Annotated[
    str | None,
    typer.Option(
        "--keep",
        metavar="MARKETS|QUOTE",
        help=(
            "Keep these series current while serving, from the live trade stream: markets "
            "(KRW-BTC,KRW-ETH) or a quote (KRW), at the -t timeframes (default: the config "
            "file's [serve] keep, else none)."
        ),
        show_default=False,
    ),
]
KeepTimeframes = Annotated[
    list[str] | None,
    typer.Option(
        "--timeframe",
        "-t",
        metavar="TF[,TF...]",
        help=(
            "The timeframes --keep keeps, e.g. 1h,15m (default: the config file's [serve] "
            "keep_timeframes, else its timeframes, else 1h)."
        ),
        show_default=False,
    ),
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


@opt.shared("api_url", "ws_url", "rate", "lock_timeout")
def serve_command(
    host: Host = None,
    port: Port = None,
    keep: Keep = None,
    timeframe: KeepTimeframes = None,
    pages: Pages = "window",
    fresh: Fresh = 1.0,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
) -> None:
    """Serve Upbit's public REST API from the store on a local port, until Ctrl-C.

    pyupbit, ccxt and upbit-sdk work unchanged once their base URL points here: candle
    pages come from the store (what it lacks is fetched once, within the host's rate
    budget); the market list, tickers, trades and order books are passed through, and
    /websocket/v1 relays Upbit's stream over one upstream connection. --keep keeps series
    current from the trade stream (settled through REST, as `live` does), so a screener on
    this host reads them with no candle request. Ctrl-C or SIGTERM stops it (exit 130 or
    143).

    Example: upbit-cache serve --port 8124 --keep KRW -t 1h,15m
    """
    from upbit_cache.manager.keep import Keeper
    from upbit_cache.server.app import PAGE_READINGS, serve

    if pages not in PAGE_READINGS:
        raise UsageError(f"--pages must be one of {', '.join(PAGE_READINGS)}: {pages!r}")
    settings = opt.run_settings()
    host = host if host is not None else settings.serve_host()
    port = port if port is not None else settings.serve_port()
    kept: str | list[str] | None
    if keep is not None:
        kept = keep if keep.strip() else None  # --keep "": nothing, whatever the file says
    else:
        names, quote = settings.serve_keep()
        kept = quote if quote is not None else (list(names) or None)
    if timeframe and kept is None:
        raise UsageError("-t names what --keep keeps: give --keep MARKETS or a quote too")
    tfs = ",".join(timeframe) if timeframe else settings.serve_keep_timeframes()
    log = Log(quiet, verbose)
    cache = cache_for(log)
    keeper = Keeper(cache, kept, tfs) if kept is not None else None
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
                await serve(
                    cache,
                    host,
                    port,
                    pages=pages,
                    fresh=fresh,
                    relay=True,
                    keeper=keeper,
                    on_ready=ready,
                )
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
