"""Command line: run the Upbit simulator in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .app import DETAILS_MODES, PAGE_MODES, SimState
from .clock import to_epoch_ms
from .server import SimulatorConfig, make_state, start_site
from .ws import LIMITS_PER

PROG = "python -m upbit_cache.simulator"
DESCRIPTION = "Offline stand-in for api.upbit.com (deterministic synthetic data)."


def parse_args(
    argv: Sequence[str] | None = None,
    *,
    prog: str = PROG,
    description: str = DESCRIPTION,
    epilog: str | None = None,
    port: int = 0,
    parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser,
) -> SimulatorConfig:
    """Build a SimulatorConfig from command-line arguments. `upbit-cache simulator` parses
    them here too, with its own name, default port and a parser whose `error` it chose."""
    parser = parser_class(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host", default="127.0.0.1", metavar="HOST", help="address to listen on (127.0.0.1)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=port,
        metavar="PORT",
        help=f"0 picks a free port (default {port})",
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, metavar="SECONDS", help="added to every answer"
    )
    parser.add_argument(
        "--jitter", type=float, default=0.0, metavar="SECONDS", help="extra random latency"
    )
    parser.add_argument(
        "--rate", type=int, default=10, metavar="N", help="requests per second per group (10)"
    )
    parser.add_argument(
        "--ban-after", type=int, default=15, metavar="N", help="429s within 10 s before a 418"
    )
    parser.add_argument(
        "--ban-seconds", type=float, default=30.0, metavar="SECONDS", help="first 418's length"
    )
    parser.add_argument(
        "--clock", metavar="TIME", help="simulated start time (ISO 8601); default: real time"
    )
    parser.add_argument("--frozen", action="store_true", help="keep the clock still")
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        metavar="N",
        help="simulated seconds per real second (default 1)",
    )
    parser.add_argument(
        "--ws-idle-timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="close WebSockets idle for this long (120)",
    )
    parser.add_argument(
        "--listing",
        action="append",
        default=[],
        metavar="MARKET=TIME",
        help="override a market's listing time (repeatable)",
    )
    _add_strictness(parser)
    args = parser.parse_args(argv)
    if not args.speed > 0 or args.speed == float("inf"):
        parser.error(f"--speed must be a positive number, got {args.speed}")
    listings: dict[str, str] = {}
    for item in args.listing:
        market, sep, when = item.partition("=")
        if not sep:
            parser.error(f"--listing expects MARKET=TIME, got {item!r}")
        listings[market] = when
    quiet = _quiet(parser, args.quiet)
    spans = [when for pairs in quiet.values() for pair in pairs for when in pair]
    for when in [args.clock, *listings.values(), *spans]:
        try:
            if when is not None:
                to_epoch_ms(when)
        except ValueError as exc:
            parser.error(str(exc))
    base = SimulatorConfig.strict() if args.strict else SimulatorConfig()
    given: dict[str, Any] = {
        "store_lag": args.store_lag,
        "pages": args.pages,
        "quiet": quiet or None,
        "long_quiet": args.long_quiet,
        "details": args.details,
        "plain_429": args.plain_429,
        "clamp_count": args.clamp_count,
        "ws_limits_per": args.ws_limits_per,
    }
    try:
        strictness = dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})
    except ValueError as exc:
        parser.error(str(exc))
    return dataclasses.replace(
        strictness,
        host=args.host,
        port=args.port,
        latency=args.latency,
        jitter=args.jitter,
        rate=args.rate,
        ban_after_429s=args.ban_after,
        ban_seconds=args.ban_seconds,
        clock_start=args.clock,
        frozen=args.frozen,
        listings=listings or None,
        clock_speed=args.speed,
        ws_idle_timeout=args.ws_idle_timeout,
    )


def _add_strictness(parser: argparse.ArgumentParser) -> None:
    """Options that make the simulator as strict as the real Upbit (all off by default)."""
    group = parser.add_argument_group("strictness (each off by default; --strict turns on a set)")
    group.add_argument(
        "--strict",
        action="store_true",
        help="store lag 2 s, newest pages, long quiet, is_details only, plain 429, count clamped;"
        " the flags below still override it",
    )
    group.add_argument(
        "--store-lag", type=float, metavar="SECONDS", help="REST stores trades up to this late"
    )
    group.add_argument("--pages", choices=PAGE_MODES, help="page semantics (default window)")
    group.add_argument(
        "--quiet",
        action="append",
        default=[],
        metavar="MARKET=START/END",
        help="no trade of MARKET in [START, END) (repeatable)",
    )
    group.add_argument(
        "--long-quiet",
        action=argparse.BooleanOptionalAction,
        help="sparse BTC-/USDT- markets go quiet for 8-25 days, three times a year",
    )
    group.add_argument(
        "--details", choices=DETAILS_MODES, help="market/all parameter honoured (default both)"
    )
    group.add_argument(
        "--plain-429", action=argparse.BooleanOptionalAction, help="429 bodies in plain text"
    )
    group.add_argument(
        "--clamp-count", action=argparse.BooleanOptionalAction, help="count > 200 gives 200"
    )
    group.add_argument(
        "--ws-limits-per", choices=LIMITS_PER, help="WebSocket subscribe limits (default ip)"
    )


def _quiet(parser: argparse.ArgumentParser, items: list[str]) -> dict[str, list[tuple[str, str]]]:
    """MARKET=START/END items as market -> spans."""
    quiet: dict[str, list[tuple[str, str]]] = {}
    for item in items:
        market, sep, span = item.partition("=")
        start, slash, end = span.partition("/")
        if not sep or not slash or not market or not start or not end:
            parser.error(f"--quiet expects MARKET=START/END, got {item!r}")
        quiet.setdefault(market, []).append((start, end))
    return quiet


def _listening(url: str) -> None:
    # Scripts read this exact line to learn the port.
    print(f"upbit-simulator listening on {url}", flush=True)


async def serve(
    config: SimulatorConfig,
    state: SimState,
    stop: asyncio.Event | None = None,
    announce: Callable[[str], None] = _listening,
) -> None:
    """Serve until `stop` is set (by default: until SIGINT or SIGTERM), calling `announce`
    with the base URL once bound."""
    runner, url = await start_site(state, config.host, config.port)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    try:
        announce(url)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    config = parse_args(argv)
    try:
        state = make_state(config)
    except (KeyError, ValueError) as exc:  # e.g. a listing or quiet span of an unknown market
        print(f"upbit-simulator: {exc.args[0]}", file=sys.stderr)
        return 2
    asyncio.run(serve(config, state))
    return 0


if __name__ == "__main__":
    sys.exit(main())
