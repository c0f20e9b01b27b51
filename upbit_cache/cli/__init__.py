"""The `upbit-cache` command line: parse arguments, call the library, render."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

from upbit_cache.cli.log import say
from upbit_cache.cli.main import app, closed_pipe, terminated

__all__ = ["app", "run"]


def run() -> None:
    """The console entry point: run a command, flush its output, and exit at once.

    Python's own teardown (pyarrow, pandas and aiohttp finalising their modules) takes
    about 0.2 s after the work is done and everything is written; a cron job or a pipeline
    waits for it for nothing. Every file we write is closed (and renamed into place) by
    then, and no thread is left running, so skipping it loses nothing.
    """
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        app(prog_name="upbit-cache")
        code = 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            say(exc.code)
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:  # the reader left early: as anywhere else, status 141
            code = closed_pipe()
        except ValueError:  # already closed
            code = code or 1
    os._exit(code)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (`timeout`, systemd, kill) does what Ctrl-C does: KeyboardInterrupt, so asyncio
    cancels the run's tasks at their awaits, every page that arrived is written, and the
    command says so (exit 143). Not a SIGINT to ourselves: a shell starts background jobs
    with SIGINT ignored."""
    terminated.set()
    signal.default_int_handler(signum, frame)
