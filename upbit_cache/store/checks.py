"""What a data file and a record must be before anyone reads them: one set of checks.

Every read of a data file from disk goes through `decode` (CandleStore's reads, a writer's
merge, prune, verify), so a reader never serves, merges, compacts or derives from a file that
is not what its place says: Parquet that opens, the candle schema, no empty value, every row
inside the span its name says (a legacy file: its partition), times sorted and each once, no
impossible value.
A table from the memory layer was checked when it was read (or made by a write) and is not
checked again. A record that claims ranges after now (beyond a margin for clocks) is damaged
too: it would hide everything after the real last fetch as fetched and quiet. Damage is a
`DamageError` naming the file and pointing to `verify --repair`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from upbit_cache.candles import CANDLE_SCHEMA, impossible_values
from upbit_cache.errors import DamageError
from upbit_cache.store import layout
from upbit_cache.store.records import REPAIR, check_record, future_claim
from upbit_cache.store.records import when_text as _when

__all__ = ["FileDamage", "check_candles", "check_record", "decode", "future_claim"]

FileDamage = Literal[
    "unreadable",
    "wrong schema",
    "wrong partition",
    "duplicate times",
    "unsorted times",
    "impossible values",
]


def damaged_file(path: str, kind: FileDamage, detail: str) -> DamageError:
    """The error of a data file that fails a check."""
    return DamageError(f"cannot read {path} ({kind}: {detail}); {REPAIR}", path, kind, detail)


def missing_file(path: str, count: int = 1) -> DamageError:
    """The error of a file its record lists that is not on disk (`count`: of that many)."""
    more = f" (and {count - 1} more)" if count > 1 else ""
    message = f"{path} is listed in its record but gone (a hole){more}; {REPAIR}"
    return DamageError(message, path, "missing", "listed in the record, not on disk")


def decode(path: str, source: Callable[[], pa.NativeFile]) -> pa.Table:
    """The candles of the data file at `path`, checked (`check_candles`).

    FileNotFoundError passes: a file removed meanwhile is for the caller to look for again.
    """
    try:
        with source() as opened:
            table = pq.ParquetFile(opened).read()
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise damaged_file(path, "unreadable", str(exc)) from exc
    return check_candles(path, table)


def check_candles(path: str, table: pa.Table) -> pa.Table:
    """`table` as CANDLE_SCHEMA, if it is what the data file at `path` may hold.

    Vectorised and cheap next to decoding (a few passes over the columns): a day of 1s is
    86,400 rows, a cold month of 1m about 43,000.
    """
    if not table.schema.equals(CANDLE_SCHEMA):  # ours are: their columns cannot hold nulls
        table = _as_candles(path, table)
    if not table.num_rows:
        return table
    times = table["time"].to_numpy().view(np.int64)  # ms since the epoch, as stored
    ordered = bool((times[1:] > times[:-1]).all())  # sorted, each time once
    first, last = (times[0], times[-1]) if ordered else (times.min(), times.max())
    tf = layout.parse_partition(path)[0]
    partition = layout.partition_of(tf, path)
    span = layout.file_span(tf, path)  # ends with its last period: past the partition, maybe
    if not partition.start <= span.start < partition.end:
        detail = f"its name's span {_when(span.start)}→{_when(span.end)} is not in its partition"
        raise damaged_file(path, "wrong partition", detail)
    span = span.clip(partition)  # where its candles may start
    if first < span.start or last >= span.end:
        outside = int(((times < span.start) | (times >= span.end)).sum())
        detail = f"{outside} of {len(times)} rows outside {_when(span.start)}→{_when(span.end)}"
        raise damaged_file(path, "wrong partition", detail)
    if not ordered:
        repeated = len(times) - len(np.unique(times))
        if repeated:
            raise damaged_file(path, "duplicate times", f"{repeated} repeated")
        raise damaged_file(path, "unsorted times", "rows out of time order")
    why = impossible_values(table)
    if why is not None:
        raise damaged_file(path, "impossible values", f"a candle with {why}")
    return table


def _as_candles(path: str, table: pa.Table) -> pa.Table:
    """A table of another schema cast to CANDLE_SCHEMA, if it has its columns and no nulls."""
    if table.schema.names != CANDLE_SCHEMA.names:
        raise damaged_file(path, "wrong schema", f"columns {', '.join(table.schema.names)}")
    try:
        table = table.cast(CANDLE_SCHEMA)
    except (pa.ArrowException, ValueError) as exc:  # ValueError: what pyarrow's cast raises
        raise damaged_file(path, "wrong schema", str(exc)) from exc
    if any(column.null_count for column in table.columns):
        empty = ", ".join(name for name in table.column_names if table[name].null_count)
        raise damaged_file(path, "impossible values", f"empty values in {empty}")
    return table
