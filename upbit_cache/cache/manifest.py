"""Fetched-range records: which time ranges of a (timeframe, market) were asked of Upbit.

Upbit sends no candle for a period without trades, so the candles on disk cannot tell a
quiet hour from one never fetched; this record can. It is written only after the candles it
vouches for, so it never claims data the store does not have.
"""

from __future__ import annotations

import json

import pyarrow.fs as pafs

from upbit_cache.cache.atomic import atomic_write
from upbit_cache.cache.ranges import Ranges
from upbit_cache.errors import StorageError

_VERSION = 1


def read_fetched(fs: pafs.FileSystem, path: str) -> Ranges:
    """The recorded ranges, or none if nothing was recorded yet."""
    try:
        with fs.open_input_stream(path) as source:
            raw = source.read()
    except FileNotFoundError:
        return Ranges()
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    try:
        record = json.loads(raw)
        return Ranges.from_json(record["fetched"])
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"fetched-range record {path} is damaged ({exc}); delete it") from exc


def write_fetched(fs: pafs.FileSystem, path: str, ranges: Ranges) -> None:
    """Replace the record atomically."""
    body = json.dumps({"version": _VERSION, "fetched": ranges.to_json()}).encode()
    atomic_write(fs, path, lambda sink: sink.write(body))
