"""Fetched-range records: which time ranges of a (timeframe, market) are settled in the store.

Upbit sends no candle for a period without trades, so the candles on disk cannot tell a
quiet hour from one never fetched; this record can. It is written only after the candles it
vouches for, so it never claims data the store does not have. A derived timeframe's record
also names its base and a fingerprint of each base partition it was computed from, so a
later `resample` recomputes only what changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from upbit_cache.errors import StorageError
from upbit_cache.ranges import Ranges
from upbit_cache.store.files import DataDir

_VERSION = 1


@dataclass(frozen=True)
class Record:
    """What the store knows of one (timeframe, market)."""

    fetched: Ranges = field(default_factory=Ranges)
    derived_from: str | None = None  # base timeframe name, for derived timeframes
    sources: dict[str, str] = field(default_factory=dict)  # base partition -> fingerprint
    pruned: Ranges = field(default_factory=Ranges)  # deleted by `prune`, not fetched again
    # The data files that hold rows, relative to the series' folder (`date=.../part-0.parquet`):
    # what `verify` expects to find. Empty for records written before it existed.
    files: frozenset[str] = frozenset()


def read_record(files: DataDir, path: str, *, for_update: bool = False) -> Record:
    """The record at `path`, or an empty one if nothing was recorded yet.

    `for_update`: the next `write_record` replaces only this version (DataDir.read_for_update).
    """
    raw = files.read_for_update(path) if for_update else files.read_bytes(path)
    if raw is None:
        return Record()
    try:
        data = json.loads(raw)
        return Record(
            fetched=Ranges.from_json(data["fetched"]),
            derived_from=data.get("derived_from"),
            sources={str(k): str(v) for k, v in data.get("sources", {}).items()},
            pruned=Ranges.from_json(data.get("pruned", [])),
            files=frozenset(str(name) for name in data.get("files", [])),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StorageError(
            f"fetched-range record {path} is damaged ({exc}); run `upbit-cache verify --repair`"
        ) from exc


def write_record(files: DataDir, path: str, record: Record) -> None:
    """Replace the record atomically."""
    data: dict[str, object] = {"version": _VERSION, "fetched": record.fetched.to_json()}
    if record.derived_from is not None:
        data["derived_from"] = record.derived_from
        data["sources"] = record.sources
    if record.pruned:
        data["pruned"] = record.pruned.to_json()
    if record.files:
        data["files"] = sorted(record.files)
    files.write_bytes(path, json.dumps(data).encode())
