"""Output formats of screen-prep, and how one is chosen (a light module: no pyarrow)."""

from __future__ import annotations

import os
from typing import Literal

from upbit_cache.errors import UsageError

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
