"""SIGTERM (`timeout`, systemd, kill) ends the console entry point with 143, whenever it lands.

The entry point (`cli.run`) installs `on_sigterm` first thing, and the run goes through three
phases:
- starting (imports, building the commands, parsing the arguments): nothing is written yet,
  so the handler says so and exits 143 at once (Ctrl-C: 130);
- working (a command's body, inside `group._Bounded`'s boundary): the first SIGTERM raises
  KeyboardInterrupt, as Ctrl-C does, so asyncio cancels the run's tasks at their awaits and
  every page that arrived is written; the command says so and exits 143. Later ones only
  note it (a second interrupt would cut that cleanup short). A command with an orderly stop
  of its own (`live`: it still exits 143) registers `instead`, called in place of all this;
- finishing (the summary, the last flush): nothing is interrupted; the exit status is 143.

Not a SIGINT to ourselves: a shell starts background jobs with SIGINT ignored. Light: no
import beyond the standard library, so the handler is in place before anything heavy loads.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Literal

from upbit_cache.cli.stamp import lines, unstamped

SIGTERM_EXIT = 143  # 128 + SIGTERM: what a shell reports for a process SIGTERM ended
STOPPED = "upbit-cache: stopped (SIGTERM); what was fetched is kept"
INTERRUPTED_EXIT = 130  # 128 + SIGINT: Ctrl-C
INTERRUPTED = "upbit-cache: stopped (interrupted); what was fetched is kept"

Phase = Literal["starting", "working", "finishing"]


class _State:
    phase: Phase = "starting"
    terminated = False  # a SIGTERM arrived (set by the handler, never cleared)
    installed = False  # whether `on_sigterm` is the process's handler (the console entry)
    sigint = False  # whether Ctrl-C is ours while starting
    interrupted = False  # the one KeyboardInterrupt a SIGTERM raises was raised
    reported = False  # the stop was said on stderr
    instead: Callable[[], object] | None = None


_state = _State()


def install() -> None:
    """Make `on_sigterm` the SIGTERM handler (the console entry point, before its imports);
    and while starting, Ctrl-C too ends the run at once (130), with no traceback from
    whatever module was loading. A SIGINT that is ignored (a background job) stays so."""
    signal.signal(signal.SIGTERM, on_sigterm)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)
        _state.sigint = True
    _state.installed = True


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    if _state.phase == "starting":
        _write_now(INTERRUPTED)
        os._exit(INTERRUPTED_EXIT)
    signal.default_int_handler(signum, frame)


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    """The SIGTERM handler: see the module's docstring for what each phase does."""
    if _state.phase == "working" and _state.instead is not None:
        _state.instead()  # the command's own orderly stop (`live`), which exits 143 itself
        return
    _state.terminated = True
    if _state.phase == "starting":
        _write_now(STOPPED)
        os._exit(SIGTERM_EXIT)
    if _state.phase != "working" or _state.interrupted:
        return
    _state.interrupted = True
    signal.default_int_handler(signum, frame)


@contextmanager
def working() -> Iterator[None]:
    """A command's body: a SIGTERM interrupts it (once); after it, the run is finishing."""
    _state.phase = "working"
    if _state.sigint:  # Python's own again: asyncio.run then stops its main task on Ctrl-C
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        _state.phase = "finishing"


@contextmanager
def instead(stop: Callable[[], object]) -> Iterator[bool]:
    """Within: a SIGTERM calls `stop` (from the signal handler: it must be signal-safe, such
    as `loop.call_soon_threadsafe`) instead of raising KeyboardInterrupt. Yields whether the
    entry point's handler is installed (if not, the caller handles SIGTERM itself)."""
    _state.instead = stop
    try:
        yield _state.installed
    finally:
        _state.instead = None


def terminated() -> bool:
    """Whether a SIGTERM arrived (the entry point's handler saw one)."""
    return _state.terminated


def reported() -> None:
    """The command said that it stopped: the entry point need not say it again."""
    _state.reported = True


def exit_code(code: int) -> int:
    """The status to exit with, decided for good: 143 if a SIGTERM arrived (said on stderr
    if nobody said it yet), else `code`. SIGTERM is blocked from here on: one arriving now
    is after the decision, as one arriving after the exit would be."""
    if _state.installed:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    if not _state.terminated:
        return code
    if not _state.reported:
        _state.reported = True
        _write_now(STOPPED)
    return SIGTERM_EXIT


def _write_now(message: str) -> None:
    """One line on stderr, from a signal handler too: straight to the descriptor (the text
    stream may be in the middle of a write), stamped as `cli.log` stamps lines."""
    text = lines(message, stamped=not unstamped(sys.stderr))
    with contextlib.suppress(OSError):  # stderr closed or gone: the exit status says it
        os.write(2, text.encode(errors="backslashreplace"))
