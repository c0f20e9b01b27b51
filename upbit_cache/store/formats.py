"""Output formats (Parquet, CSV, JSON lines), how one is chosen, and where Parquet may not go
(light: no pyarrow)."""

from __future__ import annotations

import os
import sys
from typing import Literal

from upbit_cache.errors import UsageError
from upbit_cache.store.files import check_destination, is_terminal

Format = Literal["parquet", "csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("parquet", "csv", "jsonl")
_SUFFIXES: dict[str, Format] = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl"}


def guess_format(out: str, given: str | None) -> Format:
    """The format asked for, else the one the file name says, else CSV."""
    if given is not None:
        if given not in FORMATS:
            raise UsageError(f"unknown format {given!r}: use one of {', '.join(FORMATS)}")
        return given
    return _SUFFIXES.get(os.path.splitext(out)[1].lower(), "csv")


def refuse_terminal(out: str, fmt: Format) -> None:
    """Refuse to send Parquet to a terminal: stdout on a screen, or `--out /dev/tty`.

    Called before any work, so that no path (a kept table copied out included) can put
    binary on a screen, and nothing is fetched for output that would be refused.
    """
    if fmt != "parquet":
        return
    if sys.stdout.isatty() if out == "-" else is_terminal(out):
        raise UsageError("will not write Parquet to a terminal: give --out FILE or --format csv")


def check_output(out: str, fmt: Format) -> None:
    """Refuse, before any work, output that cannot be written: Parquet to a terminal, a
    file in a folder that does not exist (it is not created), or a folder itself."""
    refuse_terminal(out, fmt)
    if out != "-":
        check_destination(out)
