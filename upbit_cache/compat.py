"""pyupbit's shapes over the cache: `get_ohlcv` with pyupbit's arguments and frame.

    from upbit_cache.compat import get_ohlcv      # instead of: from pyupbit import get_ohlcv
    df = get_ohlcv("KRW-BTC", interval="minute60", count=200)

The frame is pyupbit's: a naive DatetimeIndex of Korea time (KST, Upbit's
`candle_date_time_kst`), columns open, high, low, close, volume, value, oldest first. The
differences, on purpose: closed candles only (pyupbit's newest row is the candle still in
progress), an unknown interval or market is an error (pyupbit falls back to days, or
returns None on any failure), and `period` (pyupbit's pause between pages) is ignored:
the cache's one rate budget paces every request.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from upbit_cache.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

    from upbit_cache.manager.cache import UpbitCache

# pyupbit's interval names (quotation_api.get_url_ohlcv), and the plural it takes too.
INTERVALS = {
    **{f"minute{n}": f"{n}m" for n in (1, 3, 5, 10, 15, 30)},
    "minute60": "1h",
    "minute240": "4h",
    "day": "1d",
    "week": "1w",
    "month": "1M",
}
INTERVALS.update({name + "s": tf for name, tf in list(INTERVALS.items())})
COLUMNS = ["open", "high", "low", "close", "volume", "value"]
_default: UpbitCache | None = None


def get_ohlcv(
    ticker: str = "KRW-BTC",
    interval: str = "day",
    count: int = 200,
    to: str | datetime | pd.Timestamp | None = None,
    period: float = 0.1,
    *,
    cache: UpbitCache | None = None,
) -> pd.DataFrame:
    """The newest `count` closed candles that start before `to` (None: now), as pyupbit's
    `get_ohlcv` frames them. A `to` without a zone is UTC, as pyupbit sends it to Upbit.
    `cache`: the UpbitCache to read through (default: one with the default settings)."""
    tf = INTERVALS.get(interval) if isinstance(interval, str) else None
    if tf is None:
        names = ", ".join(n for n in INTERVALS if not n.endswith("s"))
        raise UsageError(f"get_ohlcv: unknown interval {interval!r}: use one of {names}")
    if isinstance(count, bool) or not isinstance(count, int):
        raise UsageError(f"get_ohlcv: count takes an int, not {count!r}")
    store = cache if cache is not None else _cache()
    frame = _newest(store, ticker, tf, max(count, 1), to)
    return pyupbit_frame(frame)


def pyupbit_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Candles in the store's columns as pyupbit's frame (KST wall times as the index)."""
    import pandas as pd

    kst = frame["time"].dt.tz_convert("Asia/Seoul").dt.tz_localize(None)
    # pyupbit builds its index from datetime objects: the unit pandas gives those.
    unit = pd.DatetimeIndex([datetime(2000, 1, 1)]).unit
    out = frame[COLUMNS].astype("float64")
    out.index = pd.DatetimeIndex(kst.to_numpy()).as_unit(unit)
    return out


def _newest(cache: UpbitCache, ticker: str, tf: str, count: int, to: Any) -> pd.DataFrame:
    """The newest `count` candles before `to`: Upbit's page reaches back past periods
    without trades, so the span widens (four times, then more) until it holds `count`."""
    from upbit_cache.timeframes import Timeframe
    from upbit_cache.times import to_ms

    if to is None:
        return cache.tail(ticker, tf, count)
    end = to_ms(_utc(to))
    frame_tf = Timeframe.parse(tf)
    top = frame_tf.ceil_one(end)
    periods = count
    for _ in range(4):
        start = frame_tf.shift_one(top, -periods)
        frame = cache.get(ticker, tf, start, end)
        if len(frame) >= count:
            break
        periods *= 4
    return frame.iloc[-count:].reset_index(drop=True)


def _utc(to: Any) -> datetime:
    import pandas as pd

    when = pd.Timestamp(to)
    if when.tzinfo is None:
        when = when.tz_localize(UTC)
    return when.tz_convert(UTC).to_pydatetime()


def _cache() -> UpbitCache:
    global _default
    if _default is None:
        from upbit_cache.manager.cache import UpbitCache

        _default = UpbitCache()
    return _default
