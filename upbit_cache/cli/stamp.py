"""How a line on stderr is stamped (the standard library and `settings` only: the SIGTERM
handler uses it before anything else loads; `cli.log` for every other line).

On a terminal a line is written as is; anywhere else it starts with the UTC time; except in
systemd's journal, which stamps every line itself.
"""

from __future__ import annotations

import os
import time
from typing import TextIO

from upbit_cache.settings import Settings


def lines(message: str, stamped: bool) -> str:
    """`message`'s lines, each ending in a newline, each starting with the UTC time if
    `stamped`."""
    prefix = time.strftime("%Y-%m-%dT%H:%M:%SZ ", time.gmtime()) if stamped else ""
    return "".join(f"{prefix}{text}\n" for text in message.splitlines() or [""])


def unstamped(stream: TextIO) -> bool:
    """Whether lines written to `stream` go unstamped: a terminal, or the journal."""
    if stream.isatty():
        return True
    # systemd names the journal's stream in JOURNAL_STREAM ("device:inode"); a child whose
    # stderr was redirected elsewhere inherits the variable, hence the comparison.
    journal = Settings.from_env().journal_stream
    found = identity(stream)
    return bool(journal) and found is not None and journal == f"{found[0]}:{found[1]}"


def identity(stream: TextIO) -> tuple[int, int] | None:
    """The (device, inode) of the file behind `stream`; None for an in-memory buffer."""
    try:
        found = os.fstat(stream.fileno())
    except (OSError, ValueError):  # not a real file (a test runner's buffer), or closed
        return None
    return found.st_dev, found.st_ino
