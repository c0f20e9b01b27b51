"""Output: tables encoded for the user and written where `--out` says (or to stdout).

    encode.py        a table or a stream of tables as Parquet, CSV or JSON lines
    text.py          exact text: shortest round-trip floats, ISO times in a zone, JSON lines
    formats.py       which format, from `--format` or the name; output refused up front
    compression.py   `.gz` and `.zst`, as the name says
    destination.py   the `--out` file (atomic, flocked temp file) or stdout, every byte

Above the store (it reuses the store's atomic write for a URI), never below it: the store
imports nothing of this package. Modules are imported by name: this `__init__` loads nothing.
"""
