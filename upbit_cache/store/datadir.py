"""Which names can be a data dir (or an output file): a light module."""

from __future__ import annotations

import unicodedata

from upbit_cache.errors import UsageError


def check_location(text: str, what: str = "the data dir") -> str:
    """`text` if it can name a data dir (or a file), else a UsageError that shows it escaped.

    Refused: nothing at all (an empty `--data-dir ""` would be the current folder), a name
    that is not UTF-8 (bytes the file system decoder kept as surrogates: neither pyarrow nor
    S3 can take them), and control characters (a newline in a path is a mistake, and would
    break every line that names it).
    """
    if not text.strip():
        raise UsageError(f"{what} is empty: give a folder or a URI such as s3://bucket/prefix")
    if _has_surrogates(text):
        raise UsageError(f"{what} {shown(text)} is not UTF-8: give a name in UTF-8")
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise UsageError(f"{what} {shown(text)} holds a control character")
    return text


def shown(text: str) -> str:
    """`text` quoted on one line, escaped where it cannot be shown: a control character as
    Python writes it (`\\n`), a name that is not UTF-8 as the bytes it was (`\\xff`)."""
    if not _has_surrogates(text):
        return repr(text)
    try:
        raw = text.encode("utf-8", "surrogateescape")  # the bytes the name was given as
    except UnicodeEncodeError:  # a surrogate no decoder made
        raw = text.encode("utf-8", "backslashreplace")
    return repr(raw)[1:]


def _has_surrogates(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)
