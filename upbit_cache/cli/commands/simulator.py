"""`upbit-cache simulator`: the offline stand-in (cli/simulate.py)."""

from __future__ import annotations

import typer

from upbit_cache.cli import simulate


def simulator_command(ctx: typer.Context) -> None:
    """Every argument goes to the simulator's own parser (`--help` too): see cli/simulate.py."""
    code = simulate.simulate(ctx.args)
    raise typer.Exit(code)
