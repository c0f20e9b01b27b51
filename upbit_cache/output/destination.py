"""Where output goes: the user's `--out` file, written atomically, or stdout, in full.

Not the data dir (that is the store's): a file the user names, so its folder is never
created, a pipe or a device is written in place, and a symlink is written through. A file
appears whole or not at all: a hidden temp file beside it, `flock`ed from its creation to
its rename, so that the next run can tell a killed run's leftover from a live write.

Light: no pyarrow unless a URI is written (a kept screen-prep table is sent through here).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
from pathlib import Path
from typing import IO, TYPE_CHECKING

from upbit_cache.errors import StorageError, UsageError
from upbit_cache.store.datadir import check_location
from upbit_cache.store.files import STALE_TEMP_S, Writer, atomic_write, open_filesystem
from upbit_cache.store.layout import TEMP_SUFFIX, temp_path

if TYPE_CHECKING:
    import pyarrow as pa


def write_out(location: str, write: Writer) -> None:
    """Create or replace a file outside the data dir (an `--out` path or URI) atomically.

    A pipe, a terminal or a device (`/dev/stdout`, `>(cmd)`) is written in place: there is no
    file to replace. A symlink is written through: its target is replaced, never the link
    (a rename over `/dev/stdout` would leave a plain file where every program expects it).
    A local file's folder must exist (it is not created), and the temp files of this target
    that killed runs left are removed first (see `_write_locked`).
    """
    text = os.fspath(location)
    if "://" not in text:
        given = _local_path(text)
        if _is_stream(given):
            try:
                with open(given, "wb") as stream:
                    write(stream)
            except BrokenPipeError:
                raise  # the reader left: not a storage problem
            except OSError as exc:
                raise StorageError(f"cannot write {given}: {exc.strerror or exc}") from exc
            return
        final = os.path.realpath(given)
        check_destination(final)
        _clear_leftovers(final)
        _write_locked(final, write)
        return
    fs, path = open_filesystem(text)
    atomic_write(fs, path, write)


def check_destination(location: str) -> None:
    """Refuse (UsageError) an output that cannot be a file: a folder, or a file in a folder
    that does not exist (an output's folders are not created: a typo would scatter them).
    A pipe or a device is fine; a URI is checked as it is written."""
    if "://" in location:
        check_location(location, "the output")
        return
    given = _local_path(location)
    if _is_stream(given):
        return
    final = os.path.realpath(given)
    if os.path.isdir(final):
        raise UsageError(f"cannot write {location}: it is a folder; name a file in it")
    folder = final.rpartition("/")[0] or "/"
    if not os.path.isdir(folder):
        raise UsageError(f"cannot write {location}: there is no folder {folder}")


def write_all(stream: IO[bytes] | pa.NativeFile, data: bytes | memoryview | pa.Buffer) -> None:
    """Write every byte of `data`. A raw stream may take only part of a write and say so
    only by its count: sys.stdout.buffer is raw under PYTHONUNBUFFERED=1, and a pipe whose
    reader left takes part of a large write (the next write raises BrokenPipeError)."""
    view = memoryview(data).cast("B")
    while view:
        taken = stream.write(view)
        view = view[taken or 0 :]  # None: a non-blocking stream is full for now


def _write_locked(final: str, write: Writer) -> None:
    """`atomic_write` on a local disk, with the temp file `flock`ed from its creation to its
    rename: a run that finds a temp file of its target unlocked knows its writer is gone
    (killed: the kernel releases the lock) and removes it at once, whatever its age."""
    while True:
        tmp = temp_path(final)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as exc:
            raise StorageError(f"cannot write {final}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            break  # no locks here (some network file systems): leftovers go by their age
        if os.fstat(fd).st_nlink:
            break
        os.close(fd)  # another run took it for a leftover in the instant before the lock
    try:
        with os.fdopen(fd, "wb") as local:
            write(local)
            local.flush()
            os.replace(tmp, final)  # still locked: the rename comes before the unlock
    except OSError as exc:
        _discard(tmp)
        raise StorageError(f"cannot write {final}: {exc.strerror or exc}") from exc
    except BaseException:
        _discard(tmp)
        raise


def _clear_leftovers(final: str) -> None:
    """Remove the temp files of `final` that no live run writes: those nobody locks (see
    `_write_locked`), and any older than STALE_TEMP_S that cannot be tried."""
    folder, _, name = final.rpartition("/")
    mine = re.compile(rf"\.{re.escape(name)}\.[0-9a-f]+{re.escape(TEMP_SUFFIX)}")
    try:
        found = [e for e in os.scandir(folder or "/") if mine.fullmatch(e.name)]
    except OSError:
        return
    untried = []
    for entry in found:
        try:
            fd = os.open(entry.path, os.O_RDWR)
        except OSError:
            untried.append(entry)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # a run is writing it now
        except OSError:
            untried.append(entry)
        else:
            with contextlib.suppress(OSError):
                if os.stat(entry.path).st_ino == os.fstat(fd).st_ino:  # not renamed meanwhile
                    os.unlink(entry.path)
        finally:
            os.close(fd)
    if untried:
        _clear_stale_local(final, untried)


def _clear_stale_local(final: str, stale: list[os.DirEntry[str]]) -> None:
    # Ages on the folder's own clock (a file written now), as DataDir.clock_ms does.
    probe = temp_path(final)
    try:
        with open(probe, "wb"):
            pass
        now = os.stat(probe).st_mtime
        os.unlink(probe)
    except OSError:
        return
    for entry in stale:
        with contextlib.suppress(OSError):
            if now - entry.stat().st_mtime > STALE_TEMP_S:
                os.unlink(entry.path)


def _is_stream(path: str) -> bool:
    """Whether `path` (its links followed) is a pipe, a terminal or a device."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False  # nothing there yet: a file to create
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def is_terminal(location: str) -> bool:
    """Whether `location` is a terminal (`/dev/stdout` on a screen, `/dev/tty`)."""
    if "://" in location:
        return False
    path = _local_path(location)
    try:
        if not stat.S_ISCHR(os.stat(path).st_mode):
            return False
        # /dev/null is a device too: ask it (without waiting on a device that is not ready)
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return os.isatty(fd)
    finally:
        os.close(fd)


def _discard(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _local_path(text: str) -> str:
    return str(Path(text).expanduser().absolute())
