"""Command line: run the Upbit simulator in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from .app import SimState
from .clock import to_epoch_ms
from .server import SimulatorConfig, make_state, start_site


def parse_args(argv: Sequence[str] | None = None) -> SimulatorConfig:
    """Build a SimulatorConfig from command-line arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m upbit_cache.simulator",
        description="Offline stand-in for api.upbit.com (deterministic synthetic data).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    parser.add_argument("--jitter", type=float, default=0.0, help="extra random latency, seconds")
    parser.add_argument("--rate", type=int, default=10, help="requests per second per group")
    parser.add_argument("--ban-after", type=int, default=15, help="429s within 10 s before 418")
    parser.add_argument("--ban-seconds", type=float, default=30.0, help="first 418 ban length")
    parser.add_argument("--clock", help="simulated start time (ISO-8601); default: real time")
    parser.add_argument("--frozen", action="store_true", help="keep the clock still")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)"
    )
    parser.add_argument(
        "--ws-idle-timeout",
        type=float,
        default=120.0,
        help="close WebSockets idle for this many seconds",
    )
    parser.add_argument(
        "--listing",
        action="append",
        default=[],
        metavar="MARKET=TIME",
        help="override a market's listing time (repeatable)",
    )
    args = parser.parse_args(argv)
    if not args.speed > 0 or args.speed == float("inf"):
        parser.error(f"--speed must be a positive number, got {args.speed}")
    listings: dict[str, str] = {}
    for item in args.listing:
        market, sep, when = item.partition("=")
        if not sep:
            parser.error(f"--listing expects MARKET=TIME, got {item!r}")
        listings[market] = when
    for when in [args.clock, *listings.values()]:
        try:
            if when is not None:
                to_epoch_ms(when)
        except ValueError as exc:
            parser.error(str(exc))
    return SimulatorConfig(
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


async def serve(config: SimulatorConfig, state: SimState) -> None:
    """Serve until SIGINT or SIGTERM, announcing the URL on stdout once bound."""
    runner, url = await start_site(state, config.host, config.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Scripts read this exact line to learn the port.
    print(f"upbit-simulator listening on {url}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    config = parse_args(argv)
    try:
        state = make_state(config)
    except KeyError as exc:  # a listing override for a market that does not exist
        print(f"upbit-simulator: {exc.args[0]}", file=sys.stderr)
        return 2
    asyncio.run(serve(config, state))
    return 0


if __name__ == "__main__":
    sys.exit(main())
