"""Every line the tool writes to stderr goes through here: progress, notes, summaries, errors.

On a terminal a line is written as is. Anywhere else (cron mail, a log file, a pipe) it
starts with the UTC time, `2026-12-02T03:04:05Z upbit-cache: error: ...`, so that a log
appended to by many runs says when each line happened; except in systemd's journal, which
stamps every line itself. A command's report on stdout (a summary, a table) is stamped too
where it lands among those lines (`>> log 2>&1`); stdout is otherwise never touched.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO

from upbit_cache.cli.stamp import identity as _identity
from upbit_cache.cli.stamp import lines as _lines
from upbit_cache.cli.stamp import unstamped as _unstamped
from upbit_cache.errors import UsageError

PROG = "upbit-cache"


def say(message: str, stream: TextIO | None = None) -> None:
    """Write `message` (one line or several) to `stream` (default: stderr), each line
    timestamped unless the stream is a terminal or the journal."""
    stream = stream if stream is not None else sys.stderr
    _write(stream, message, stamped=not _unstamped(stream))


def error(message: str) -> None:
    """`upbit-cache: error: message` on stderr: shown whatever -q says."""
    say(f"{PROG}: error: {message}")


def print_report(text: str) -> None:
    """A command's report (a summary, a table) on stdout; where stdout is the file stderr
    goes to (`>> log 2>&1`, cron's mail), its lines are log lines and stamped like them."""
    stamped = _same_file(sys.stdout, sys.stderr) and not _unstamped(sys.stderr)
    _write(sys.stdout, text, stamped)


def _write(stream: TextIO, message: str, stamped: bool) -> None:
    stream.write(_lines(message, stamped))
    stream.flush()


def _same_file(one: TextIO, other: TextIO) -> bool:
    found = _identity(one)
    return found is not None and found == _identity(other)


@dataclass(frozen=True)
class Log:
    """A command's -q/-v: what it says on stderr besides errors.

    Quiet: no progress, notes or summaries on stderr (errors are always shown, and what a
    command prints on stdout is its output). Verbose: more detail, such as a line per
    market or series.
    """

    quiet: bool = False
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.quiet and self.verbose:
            raise UsageError("give -q or -v, not both")

    def info(self, message: str) -> None:
        """Progress, a note, a summary on stderr: not when quiet."""
        if not self.quiet:
            say(message)

    def detail(self, message: str) -> None:
        """Only when verbose."""
        if self.verbose:
            say(message)

    def error(self, message: str) -> None:
        error(message)
