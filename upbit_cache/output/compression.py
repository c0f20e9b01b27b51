"""Compressed output, chosen by the `--out` name: `.gz` is gzip, `.zst` zstandard; any other
compression suffix is refused rather than written uncompressed under its name.

Streamed: the compressor takes the output as it comes, so memory stays one row group's.
gzip through Python's module at the `gzip` command's level (6: pyarrow's default, 9, costs
twice the time for 2% of the size), with no name or time in its header, so the same rows
give the same bytes; zstandard through pyarrow (its level 1: fast, smaller than gzip -6).
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, Literal, cast

from upbit_cache.errors import UsageError
from upbit_cache.output.destination import write_all

if TYPE_CHECKING:
    import pyarrow as pa

Codec = Literal["gzip", "zstd"]
CODECS: dict[str, Codec] = {".gz": "gzip", ".zst": "zstd"}
# Suffixes of compressors we do not write: refused, never a plain file under such a name.
_OTHERS = {".bz2", ".xz", ".lz4", ".lzma", ".zip", ".zstd", ".br", ".z", ".7z", ".tgz"}


def split(out: str) -> tuple[str, Codec | None]:
    """`out` without its compression suffix, and the codec it names (None: plain)."""
    stem, suffix = os.path.splitext(out)
    codec = CODECS.get(suffix.lower())
    if codec is not None:
        return stem, codec
    if suffix.lower() in _OTHERS:
        hint = " (did you mean .zst?)" if suffix.lower() == ".zstd" else ""
        raise UsageError(
            f"cannot compress {out} as {suffix}{hint}: name it .gz (gzip) or .zst (zstandard), "
            "or leave the suffix out"
        )
    return out, None


@contextmanager
def compressing(
    stream: IO[bytes] | pa.NativeFile, codec: Codec | None
) -> Iterator[IO[bytes] | pa.NativeFile]:
    """`stream` itself, or a compressor writing into it, ended (its trailer written) as the
    block ends; `stream` stays open for its owner to close or rename (or discard)."""
    if codec is None:
        yield stream
        return
    if codec == "gzip":  # GzipFile leaves a stream it was given open
        with gzip.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=stream, mtime=0) as gz:
            yield cast("IO[bytes]", gz)
        return
    import pyarrow as pa

    with pa.CompressedOutputStream(_Unclosed(stream), "zstd") as zst:
        yield zst


class _Unclosed(io.RawIOBase):
    """A stream whose `close` leaves the one inside open: a compressor closes what it writes
    into when it ends, and the owner of an `--out` temp file still has to flush and rename."""

    def __init__(self, inner: IO[bytes] | pa.NativeFile) -> None:
        super().__init__()
        self.inner = inner

    def write(self, data: Any) -> int:
        write_all(self.inner, data)
        return memoryview(data).nbytes

    def flush(self) -> None:
        if not self.closed:
            self.inner.flush()

    def writable(self) -> bool:
        return True
