"""The `upbit-cache` command line: parse arguments, call the library, render."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from upbit_cache.cli import stop

if TYPE_CHECKING:
    from upbit_cache.cli.group import app

__all__ = ["app", "run"]


def __getattr__(name: str) -> Any:
    """`app` loads on first use: the entry point installs its SIGTERM handler before."""
    if name == "app":
        from upbit_cache.cli.group import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run() -> None:
    """The console entry point: run a command, flush its output, and exit at once.

    The SIGTERM handler comes first, before typer and the commands load (cli/stop.py): from
    here on a SIGTERM is exit 143 wherever it lands, never a traceback. Ctrl-C outside a
    command's work (which says it stopped) is 130 with nothing more.

    Python's own teardown (pyarrow, pandas and aiohttp finalising their modules) takes
    about 0.2 s after the work is done and everything is written; a cron job or a pipeline
    waits for it for nothing. Every file we write is closed (and renamed into place) by
    then, and no thread is left running, so skipping it loses nothing.
    """
    stop.install()
    code = 1
    try:
        code = _command()
    except KeyboardInterrupt:  # Ctrl-C while starting or finishing
        code = stop.INTERRUPTED_EXIT
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:  # the reader left early: as anywhere else, status 141
            from upbit_cache.cli.group import closed_pipe

            code = closed_pipe()
        except ValueError:  # already closed
            code = code or 1
        except KeyboardInterrupt:
            code = stop.INTERRUPTED_EXIT
    os._exit(stop.exit_code(code))


def _command() -> int:
    """Run the command line's command; its exit status."""
    from upbit_cache.cli.group import app
    from upbit_cache.cli.log import say

    try:
        app(prog_name="upbit-cache")
    except SystemExit as exc:
        if isinstance(exc.code, str):
            say(exc.code)
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return 0
