"""Atomic writes through pyarrow's filesystem layer: write a hidden temp file, then rename."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pyarrow as pa
import pyarrow.fs as pafs

from upbit_cache.cache.paths import temp_path
from upbit_cache.errors import StorageError


def atomic_write(fs: pafs.FileSystem, final: str, write: Callable[[pa.NativeFile], None]) -> None:
    """Create or replace `final` so that a reader sees the old file or the new one, never part.

    On a local disk the rename is atomic (rename(2) replaces the target in one step); a
    SIGKILL before it leaves only a hidden `.tmp` file, which readers ignore and prune removes.
    """
    tmp = temp_path(final)
    try:
        fs.create_dir(final.rpartition("/")[0], recursive=True)
        with fs.open_output_stream(tmp) as sink:
            write(sink)
        fs.move(tmp, final)
    except OSError as exc:
        _discard(fs, tmp)
        raise StorageError(f"cannot write {final}: {exc}") from exc
    except BaseException:
        _discard(fs, tmp)
        raise


def _discard(fs: pafs.FileSystem, path: str) -> None:
    with contextlib.suppress(OSError):
        fs.delete_file(path)
