"""Fetched-range records: which time ranges of a (timeframe, market) are settled in the store.

Upbit sends no candle for a period without trades, so the candles on disk cannot tell a
quiet hour from one never fetched; this record can. It is written only after the candles it
vouches for, so it never claims data the store does not have. It also says, range by range,
who made the candles: Upbit (native) or a derivation from a finer base, and for each base
a fingerprint of every base partition derived from, so a later `resample` recomputes only
what changed. Candles of periods Upbit may not have settled yet (the last seconds before a
run: it stores trades a little after they happen) are written but listed as `provisional`,
not `fetched`: the next run asks for them again.

It is also the manifest of the series' data files (`files`): they are written once
(store/parts.py), and readers read the files listed here, never a listing of the folder.

On disk (JSON)::

    {"version": 3, "fetched": [[start_ms, end_ms], ...],
     "derived": {"15m": [[start_ms, end_ms], ...]},          # base -> ranges derived from it
     "sources": {"15m": {"<partition start ms>": "<fingerprint>"}},
     "pruned": [...], "provisional": [[start_ms, end_ms]],
     "files": ["date=.../part-<from>-<to>-<hash>.parquet", ...]}

The parts of `fetched` in no `derived` list are native. Version 1 records (before ranges
had their own base) name one `derived_from` for the whole series and a flat `sources`; they
read as that base over everything fetched. Records before version 3 (and a series with no
record) are no manifest: their series' files are the legacy ones on disk (`part-0.parquet`,
`cold-0.parquet`), adopted into the record by the first write.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from upbit_cache.errors import DamageError
from upbit_cache.ranges import Ranges
from upbit_cache.store.files import DataDir
from upbit_cache.times import iso

_VERSION = 3  # 3: `files` is the manifest of the series' data files
NATIVE = "native"  # the base of candles fetched from Upbit (no timeframe has this name)
REPAIR = "run `upbit-cache verify --repair`"
# A record ends at the last period closed by Upbit's clock when it was fetched. This host's
# clock may be behind Upbit's by seconds; a day is beyond any clock worth trusting.
FUTURE_MARGIN_MS = 86_400_000


@dataclass(frozen=True)
class Record:
    """What the store knows of one (timeframe, market)."""

    fetched: Ranges = field(default_factory=Ranges)
    # Base timeframe name -> the ranges of `fetched` derived from it; the rest is native.
    derived: dict[str, Ranges] = field(default_factory=dict)
    # Base timeframe name -> base partition start -> fingerprint, for incremental resampling.
    sources: dict[str, dict[str, str]] = field(default_factory=dict)
    pruned: Ranges = field(default_factory=Ranges)  # deleted by `prune`, not fetched again
    # The current data files, relative to the series' folder: what readers read and
    # `verify` expects to find.
    files: frozenset[str] = frozenset()
    # Written, but not settled at Upbit when asked: not fetched, asked for again.
    provisional: Ranges = field(default_factory=Ranges)
    # Whether `files` is the whole truth (version 3); else the legacy files on disk count too.
    manifest: bool = True

    def bases(self) -> dict[str, Ranges]:
        """Who made each fetched range: NATIVE or a base timeframe's name -> its ranges.

        The lists are disjoint and together are `fetched`. A derived range that `prune` or
        `verify --repair` took out of `fetched` is no longer listed.
        """
        found = {base: spans.intersect(self.fetched) for base, spans in self.derived.items()}
        native = self.fetched
        for spans in found.values():
            native = native.subtract(spans)
        return {base: spans for base, spans in {NATIVE: native, **found}.items() if spans}

    @property
    def native(self) -> Ranges:
        """The fetched ranges whose candles came from Upbit."""
        return self.bases().get(NATIVE, Ranges())

    def covering(
        self,
        covered: Ranges,
        base: str | None = None,
        sources: Mapping[str, str] | None = None,
        files: Iterable[str] | None = None,
        provisional: Ranges | None = None,
    ) -> Record:
        """This record after a write settled `covered`, made by Upbit (`base` None) or
        derived from `base` (with the fingerprints of the base partitions it used).

        The write's label replaces the old ones over `covered` only; `files` are the current
        data files after it (None: as they were); `provisional`, what it wrote of periods not
        settled yet.
        """
        fetched = self.fetched.union(covered)
        derived = {b: spans.subtract(covered) for b, spans in self.derived.items()}
        kept = dict(self.sources)
        if base is not None:
            derived[base] = derived.get(base, Ranges()).union(covered)
            kept[base] = {**kept.get(base, {}), **(sources or {})}
        return Record(
            fetched=fetched,
            derived={b: spans.intersect(fetched) for b, spans in derived.items() if spans},
            sources=kept,
            pruned=self.pruned.subtract(covered),  # fetched again: no longer a pruned gap
            files=self.files if files is None else frozenset(files),
            provisional=self.provisional.union(provisional or ()).subtract(fetched),
            manifest=self.manifest or files is not None,
        )


def read_record(files: DataDir, path: str, *, for_update: bool = False) -> Record:
    """The record at `path`, or an empty one if nothing was recorded yet.

    `for_update`: the next `write_record` replaces only this version (DataDir.read_for_update).
    """
    raw = files.read_for_update(path) if for_update else files.read_bytes(path)
    return parse_record(path, raw)


def parse_record(path: str, raw: bytes | None) -> Record:
    """The record read from `path` (None: nothing there, an empty record)."""
    if raw is None:
        return Record(manifest=False)  # legacy files on disk may be there all the same
    try:
        return _parse(json.loads(raw))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise damaged_record(path, str(exc)) from exc


def damaged_record(path: str, detail: str) -> DamageError:
    """The error of a record that cannot be read or trusted (exit 1, as verify's)."""
    message = f"fetched-range record {path} is damaged ({detail}); {REPAIR}"
    return DamageError(message, path, "damaged record", detail)


def _parse(data: dict[str, Any]) -> Record:
    fetched = Ranges.from_json(data["fetched"])
    if data.get("version", 1) == 1:
        base = data.get("derived_from")
        flat = {str(k): str(v) for k, v in data.get("sources", {}).items()}
        derived = {str(base): fetched} if base is not None else {}
        sources = {str(base): flat} if base is not None else {}
    else:
        derived = {str(b): Ranges.from_json(r) for b, r in data.get("derived", {}).items()}
        sources = {
            str(b): {str(k): str(v) for k, v in marks.items()}
            for b, marks in data.get("sources", {}).items()
        }
    return Record(
        fetched=fetched,
        derived=derived,
        sources=sources,
        pruned=Ranges.from_json(data.get("pruned", [])),
        files=frozenset(str(name) for name in data.get("files", [])),
        provisional=Ranges.from_json(data.get("provisional", [])),
        manifest=data.get("version", 1) >= _VERSION,
    )


def write_record(files: DataDir, path: str, record: Record, *, fresh: bool = False) -> None:
    """Replace the record atomically (a record that is no manifest stays one of version 2:
    its legacy files are adopted by a write, which reads them on disk). `fresh`: with a
    token of this write, so that even the same record is a new version (S3's version is a
    hash of the content)."""
    version = _VERSION if record.manifest else 2
    data: dict[str, object] = {"version": version, "fetched": record.fetched.to_json()}
    if record.derived:
        data["derived"] = {b: spans.to_json() for b, spans in sorted(record.derived.items())}
    if record.sources:
        data["sources"] = {b: dict(marks) for b, marks in sorted(record.sources.items())}
    if record.pruned:
        data["pruned"] = record.pruned.to_json()
    if record.provisional:
        data["provisional"] = record.provisional.to_json()
    if record.files:
        data["files"] = sorted(record.files)
    if fresh:
        data["written"] = uuid.uuid4().hex[:12]
    files.write_bytes(path, json.dumps(data).encode())


def future_claim(record: Record, now: int) -> tuple[int, int] | None:
    """The first recorded range (fetched or provisional) that ends after `now` plus the
    margin, if any."""
    for ranges in (record.fetched, record.provisional):
        late = [(start, end) for start, end in ranges if end > now + FUTURE_MARGIN_MS]
        if late:
            return late[0]
    return None


def check_record(
    path: str, record: Record, now: int, written: Callable[[], int | None] | None = None
) -> Record:
    """`record`, unless it claims a range after both `now` and the time it was written
    (`written()`: its file's time by the data dir's clock, asked only when `now` finds a
    claim): a host whose clock is behind never takes good records for damaged ones."""
    claim = future_claim(record, now)
    if claim is None:
        return record
    at = written() if written is not None else None
    if at is not None and future_claim(record, max(now, at)) is None:
        return record  # this host's clock is behind the one that wrote it: not the record's fault
    start, end = claim
    detail = f"a recorded range after now: {when_text(start)}→{when_text(end)}, "
    detail += f"while this host's clock says {when_text(now)}"
    detail += f" and the record was written {when_text(at)}" if at else ""
    raise damaged_record(path, detail)


def when_text(ms: int) -> str:
    """`iso(ms)`, or the number itself for a time no calendar holds (a garbage record's)."""
    try:
        return iso(ms)
    except (ValueError, OverflowError, OSError):
        return f"{ms} ms"
