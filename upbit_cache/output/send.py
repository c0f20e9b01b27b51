"""Bytes already encoded (a kept screen-prep table) sent to `--out` or stdout as they are.

Light (no pyarrow): a screen-prep answered from its kept table loads nothing heavy.
"""

from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING

from upbit_cache.errors import StorageError
from upbit_cache.output import compression
from upbit_cache.output.destination import write_all, write_out

if TYPE_CHECKING:
    import pyarrow as pa


def send(data: bytes, out: str) -> None:
    """Send bytes already encoded (a kept table) to `out` ("-" is stdout), compressed as its
    name says; a file appears whole or not at all."""
    if out != "-":
        _, codec = compression.split(out)

        def write(sink: IO[bytes] | pa.NativeFile) -> None:
            with compression.compressing(sink, codec) as inner:
                write_all(inner, data)

        write_out(out, write)
        return
    try:
        write_all(sys.stdout.buffer, data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        raise  # the reader left: not a storage problem (the CLI ends quietly, status 141)
    except OSError as exc:
        raise StorageError(f"cannot write to stdout: {exc.strerror or exc}") from exc
