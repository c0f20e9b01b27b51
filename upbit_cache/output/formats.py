"""Output formats (Parquet, CSV, JSON lines), how one is chosen, and where Parquet may not go
(light: no pyarrow)."""

from __future__ import annotations

import os
import sys
from typing import Literal

from upbit_cache.errors import UsageError
from upbit_cache.output import compression
from upbit_cache.output.destination import check_destination, is_terminal

Format = Literal["parquet", "csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("parquet", "csv", "jsonl")
Layout = Literal["freqtrade"]  # export only: a folder of files in another tool's layout
_SUFFIXES: dict[str, Format] = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",  # another name for JSON lines (DuckDB's, jq's users')
}


def guess_format(out: str, given: str | None) -> Format:
    """The format asked for, else the one the file name says (`.csv`, `.jsonl`, `.parquet`,
    before a `.gz`/`.zst`), else CSV for a name with no suffix (`-`, `/dev/stdout`). A suffix
    we do not write (`out.xlsx`) is refused unless `given` says what to write."""
    if given is not None:
        if given not in FORMATS:
            raise UsageError(f"unknown format {given!r}: use one of {', '.join(FORMATS)}")
        check_name(out, given)
        return given
    named, suffix = _named(out)
    if named is None and suffix:
        raise UsageError(
            f"cannot tell what to write to {out}: its name ends in {suffix}, not .csv, .jsonl "
            "or .parquet; give --format csv|jsonl|parquet to write that under this name"
        )
    fmt = named or "csv"
    check_name(out, fmt)
    return fmt


def export_format(out: str, given: str | None) -> Format | Layout:
    """`guess_format`, or freqtrade's folder layout (`--format freqtrade`, --out a folder)."""
    if given == "freqtrade":
        from upbit_cache.output.freqtrade import check_folder

        check_folder(out)
        return "freqtrade"
    if given is not None and given not in FORMATS:
        raise UsageError(f"unknown format {given!r}: use one of {', '.join(FORMATS)}, freqtrade")
    return guess_format(out, given)


def check_name(out: str, fmt: Format) -> None:
    """Refuse a name that would mislead: one saying another format (`out.csv` for JSON lines),
    an unknown compression (`.bz2`), or Parquet compressed again (it is inside)."""
    if out == "-":
        return
    named, _ = _named(out)
    if named is not None and named != fmt:
        raise UsageError(f"{out} names {named} but the format asked for is {fmt}: rename one")
    if fmt == "parquet" and compression.split(out)[1] is not None:
        raise UsageError(
            f"will not compress Parquet again ({out}): it is compressed inside; name it .parquet"
        )


def _named(out: str) -> tuple[Format | None, str]:
    """The format the name says, and its suffix under any compression suffix."""
    stem, _ = compression.split(out)
    suffix = os.path.splitext(stem)[1].lower() if out != "-" else ""
    return _SUFFIXES.get(suffix), suffix


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
    file in a folder that does not exist (it is not created), a folder itself, or a name that
    would mislead (`check_name`)."""
    refuse_terminal(out, fmt)
    check_name(out, fmt)
    if out != "-":
        check_destination(out)
