"""Turn Upbit candle pages into typed tables, refusing anything the API sheet does not allow."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from upbit_cache.candles import CANDLE_SCHEMA, TIME_TYPE
from upbit_cache.collector.listing import kind_of
from upbit_cache.errors import ResponseFormatError
from upbit_cache.timeframes import Timeframe

# Upbit field -> our column. trade_price is the close; acc_trade_price is the quote turnover.
_CANDLE_FIELDS = {
    "opening_price": "open",
    "high_price": "high",
    "low_price": "low",
    "trade_price": "close",
    "candle_acc_trade_volume": "volume",
    "candle_acc_trade_price": "value",
}
_REQUIRED = ("market", "candle_date_time_utc", "timestamp", *_CANDLE_FIELDS)
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"


def parse_candles(body: Any, market: str, timeframe: Timeframe) -> pa.Table:
    """A candle page (newest first on the wire) as a CANDLE_SCHEMA table, oldest first."""
    where = f"{market} {timeframe}"
    if not isinstance(body, list):
        raise ResponseFormatError(f"{where}: expected a JSON array of candles, got {kind_of(body)}")
    if not body:
        return CANDLE_SCHEMA.empty_table()
    if not all(isinstance(item, dict) for item in body):
        raise ResponseFormatError(f"{where}: candle array holds something that is not an object")
    try:
        raw = pa.Table.from_pylist(body)  # columns converted in C, no loop per candle here
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ResponseFormatError(f"{where}: a field mixes types across candles ({exc})") from exc
    missing = [f for f in _REQUIRED if f not in raw.column_names or raw[f].null_count]
    if missing:
        raise ResponseFormatError(f"{where}: candles lack field(s) {', '.join(missing)}")
    if not pc.all(pc.equal(raw["market"], pa.scalar(market))).as_py():
        raise ResponseFormatError(f"{where}: answer holds candles of another market")
    for field in (*_CANDLE_FIELDS, "timestamp"):
        kind = raw.schema.field(field).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            example = raw[field][0].as_py()
            raise ResponseFormatError(
                f"{where}: field {field} holds non-numbers (e.g. {example!r})"
            )
    try:
        start = pc.strptime(raw["candle_date_time_utc"], format=_TIME_FORMAT, unit="ms")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ResponseFormatError(f"{where}: bad candle_date_time_utc ({exc})") from exc
    start_ms = start.cast(pa.int64()).to_numpy()
    if (timeframe.floor(start_ms) != start_ms).any():
        raise ResponseFormatError(f"{where}: candle times are not aligned to {timeframe}")
    columns: list[pa.Array[Any] | pa.ChunkedArray[Any]] = [start.cast(TIME_TYPE)]
    columns += [raw[field].cast(pa.float64()) for field in _CANDLE_FIELDS]
    columns.append(raw["timestamp"].cast(pa.int64()).cast(TIME_TYPE))
    table = pa.Table.from_arrays(columns, schema=CANDLE_SCHEMA)
    # Oldest first; a repeated time is left for the page checks to refuse (checks.py).
    return table.take(pc.sort_indices(start))
