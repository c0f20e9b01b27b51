"""Timeframe conversion: Upbit parity on real candles, properties against a naive reference."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from upbit_cache.candles import CANDLE_COLUMNS, dedupe_by_time, empty_candles, from_table
from upbit_cache.collector.parse import parse_candles
from upbit_cache.errors import InvalidTimeframeError
from upbit_cache.ranges import TimeRange
from upbit_cache.timeframes import COMPLETE, FILLED, Timeframe, fill_gaps, resample
from upbit_cache.times import to_ms

CASSETTES = Path(__file__).parent / "cassettes"
TF = {name: Timeframe.parse(name) for name in "1s 1m 3m 5m 15m 1h 4h 6h 1d 3d 1w 1M 1y".split()}
PAIRS = [
    ("1s", "1m"),
    ("1s", "5m"),
    ("1s", "1h"),
    ("1m", "3m"),
    ("1m", "15m"),
    ("1m", "1h"),
    ("1m", "4h"),
    ("1m", "1d"),
    ("1h", "6h"),
    ("1h", "1d"),
    ("1h", "1w"),
    ("1h", "1M"),
    ("1d", "3d"),
    ("1d", "1w"),
    ("1d", "1M"),
    ("1h", "1y"),
    ("1d", "1y"),
    ("1h", "1h"),
]
CHAINS = [
    ("1m", "15m", "1h"),
    ("1m", "5m", "15m"),
    ("1m", "1h", "1d"),
    ("1h", "4h", "1d"),
    ("1h", "1d", "1w"),
    ("1h", "1d", "1M"),
    ("1s", "1m", "1h"),
    ("1d", "1M", "1y"),
]
# Month starts to build data around: after a leap day, a year end on a Wednesday, a Monday.
ANCHORS = [to_ms(day) for day in ("2024-03-01", "2025-01-01", "2026-06-01")]
FEW = settings(max_examples=40, deadline=None)


def frame(
    times: list[int],
    prices: list[tuple[float, float, float, float]],
    volumes: list[float],
    values: list[float],
    stamps: list[int],
) -> pd.DataFrame:
    """A typed candle frame from plain columns (times in epoch ms)."""
    ohlc = np.array(prices, dtype=np.float64).reshape(-1, 4)
    out = pd.DataFrame(
        {
            "time": pd.to_datetime(np.array(times, dtype="datetime64[ms]"), utc=True),
            "open": ohlc[:, 0],
            "high": ohlc[:, 1],
            "low": ohlc[:, 2],
            "close": ohlc[:, 3],
            "volume": np.array(volumes, dtype=np.float64),
            "value": np.array(values, dtype=np.float64),
            "timestamp": pd.to_datetime(np.array(stamps, dtype="datetime64[ms]"), utc=True),
        }
    )
    return out.astype(empty_candles().dtypes.to_dict())


@st.composite
def candle_frames(draw: st.DrawFn, source: Timeframe, min_size: int = 0) -> pd.DataFrame:
    """Sorted `source` candles with random gaps (minutes to days) around a month start."""
    size = source.fixed_ms
    assert size is not None
    per_day = 86_400_000 // size
    first = draw(st.sampled_from(ANCHORS)) - draw(st.integers(0, 20 * per_day)) * size
    steps = draw(
        st.lists(
            st.one_of(st.just(1), st.integers(1, 10), st.integers(1, 3 * per_day)),
            min_size=min_size,
            max_size=40,
        )
    )
    times = [first + int(k) * size for k in np.cumsum(steps, dtype=np.int64)]
    cents = st.integers(100, 10**9)
    prices = []
    for _ in times:
        open_, close, up, down = draw(st.tuples(cents, cents, st.integers(0, 10**5), cents))
        high = max(open_, close) + up
        prices.append((open_ / 100, high / 100, min(open_, close, down) / 100, close / 100))
    # Upbit numbers have at most 8 decimals; these stay within 15 significant digits even
    # when summed, so float64 holds their decimals exactly (as it does Upbit's 1m candles).
    count = len(times)
    volumes = [
        n / 1e8 for n in draw(st.lists(st.integers(0, 10**11), min_size=count, max_size=count))
    ]
    values = [
        n / 1e5 for n in draw(st.lists(st.integers(0, 10**13), min_size=count, max_size=count))
    ]
    stamps = [t + draw(st.integers(0, size - 1)) for t in times]
    return frame(times, prices, volumes, values, stamps)


@st.composite
def pair_and_candles(draw: st.DrawFn, min_size: int = 0) -> tuple[str, str, pd.DataFrame]:
    source, target = draw(st.sampled_from(PAIRS))
    return source, target, draw(candle_frames(TF[source], min_size))


def naive_start(at: pd.Timestamp, tf: Timeframe) -> pd.Timestamp:
    """Upbit's period start, from the calendar rather than from Timeframe."""
    if tf.kind == "month":
        return at.normalize().replace(day=1)
    if tf.kind == "year":
        return at.normalize().replace(month=1, day=1)
    if tf.kind == "week":
        return at.normalize() - pd.Timedelta(days=at.weekday())
    return at.floor(pd.Timedelta(milliseconds=tf.approx_ms))  # epoch-aligned


def naive_end(start: pd.Timestamp, tf: Timeframe) -> pd.Timestamp:
    if tf.kind == "month":
        return start + pd.DateOffset(months=1)
    if tf.kind == "year":
        return start + pd.DateOffset(years=1)
    return start + pd.Timedelta(milliseconds=tf.approx_ms)


def decimal_sum(values: list[float]) -> float:
    return float(sum(Decimal(repr(float(v))) for v in values))


def naive_resample(candles: pd.DataFrame, target: Timeframe) -> pd.DataFrame:
    """Upbit's aggregation rules, one period at a time."""
    groups: dict[pd.Timestamp, list[pd.Series]] = {}
    for _, row in candles.iterrows():
        groups.setdefault(naive_start(row["time"], target), []).append(row)
    rows = [
        {
            "time": start,
            "open": rows[0]["open"],
            "high": max(r["high"] for r in rows),
            "low": min(r["low"] for r in rows),
            "close": rows[-1]["close"],
            "volume": decimal_sum([r["volume"] for r in rows]),
            "value": decimal_sum([r["value"] for r in rows]),
            "timestamp": rows[-1]["timestamp"],
        }
        for start, rows in sorted(groups.items())
    ]
    return pd.DataFrame(rows, columns=list(CANDLE_COLUMNS)).astype(empty_candles().dtypes)


def ms(stamp: pd.Timestamp) -> int:
    return int(stamp.value // 1_000_000)


def sample_candles(cassette: str, tf: str) -> pd.DataFrame:
    """The real KRW-BTC pages recorded from ../shared/upbit-samples, parsed by the collector."""
    text = (CASSETTES / f"{cassette}.yaml").read_text()
    pages = [
        parse_candles(json.loads(i["response"]["body"]["string"]), "KRW-BTC", TF[tf])
        for i in yaml.safe_load(text)["interactions"]
    ]
    return from_table(dedupe_by_time(pa.concat_tables(pages)))


def test_1m_to_3m_equals_upbit_native_3m_candles_exactly() -> None:
    minutes = sample_candles("krw_btc_1m_2020-02-20", "1m")  # 08:00-11:59 UTC, no gaps
    native = sample_candles("krw_btc_3m_2020-02-20", "3m")
    native = native[native["time"] >= minutes["time"].iloc[0]].reset_index(drop=True)
    assert len(minutes) == 240
    assert len(native) == 60  # 08:00-10:57

    ours = resample(minutes, TF["1m"], TF["3m"])

    assert len(ours) == 80
    assert ours[COMPLETE].all()
    got = ours.drop(columns=COMPLETE).iloc[: len(native)]
    pd.testing.assert_frame_equal(got, native, check_exact=True)
    # Why the sums are done in decimal: plain float sums, even rounded to 8 places, miss some.
    keys = minutes["time"].dt.floor("3min")
    plain = minutes.groupby(keys)["value"].sum().to_numpy()[: len(native)]
    assert (np.round(plain, 8) != native["value"].to_numpy()).any()


@FEW
@given(pair_and_candles())
def test_matches_a_naive_reference(case: tuple[str, str, pd.DataFrame]) -> None:
    source, target, candles = case
    got = resample(candles, TF[source], TF[target])
    assert list(got.columns) == [*CANDLE_COLUMNS, COMPLETE]
    pd.testing.assert_frame_equal(
        got.drop(columns=COMPLETE), naive_resample(candles, TF[target]), check_exact=True
    )


@FEW
@given(pair_and_candles())
def test_rows_only_for_periods_with_candles_aligned_and_unique(
    case: tuple[str, str, pd.DataFrame],
) -> None:
    source, target, candles = case
    got = resample(candles, TF[source], TF[target])
    starts = got["time"]
    assert starts.is_monotonic_increasing and starts.is_unique
    assert all(naive_start(t, TF[target]) == t for t in starts)
    with_candles = {naive_start(t, TF[target]) for t in candles["time"]}
    assert set(starts) == with_candles
    assert got["timestamp"].ge(got["time"]).all()


@FEW
@given(st.sampled_from(CHAINS).flatmap(lambda c: st.tuples(st.just(c), candle_frames(TF[c[0]]))))
def test_two_steps_equal_one_step(case: tuple[tuple[str, str, str], pd.DataFrame]) -> None:
    (fine, middle, coarse), candles = case
    direct = resample(candles, TF[fine], TF[coarse])
    stepped = resample(resample(candles, TF[fine], TF[middle]), TF[middle], TF[coarse])
    pd.testing.assert_frame_equal(stepped, direct, check_exact=True)


@FEW
@given(pair_and_candles(min_size=1), st.data())
def test_split_on_a_target_boundary_changes_nothing(
    case: tuple[str, str, pd.DataFrame], data: st.DataObject
) -> None:
    source, target, candles = case
    at = data.draw(st.integers(0, len(candles) - 1))
    boundary = TF[target].floor_one(ms(candles["time"].iloc[at]))
    before = candles["time"] < pd.Timestamp(boundary, unit="ms", tz="UTC")
    parts = [
        resample(part.reset_index(drop=True), TF[source], TF[target])
        for part in (candles[before], candles[~before])
    ]
    whole = resample(candles, TF[source], TF[target])
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), whole, check_exact=True)


@FEW
@given(pair_and_candles(min_size=1), st.data())
def test_complete_when_the_period_ends_by_complete_until(
    case: tuple[str, str, pd.DataFrame], data: st.DataObject
) -> None:
    source, target, candles = case
    first, last = ms(candles["time"].iloc[0]), ms(candles["time"].iloc[-1])
    span = TF[target].approx_ms
    ends = [ms(naive_end(naive_start(t, TF[target]), TF[target])) for t in candles["time"]]
    # Exactly a period end is the edge case that matters; anything around the data too.
    until = data.draw(st.sampled_from(ends) | st.integers(first - span, last + 2 * span))
    got = resample(candles, TF[source], TF[target], complete_until=until)
    expected = [ms(naive_end(t, TF[target])) <= until for t in got["time"]]
    assert got[COMPLETE].tolist() == expected
    assert got[COMPLETE].dtype == bool
    assert resample(candles, TF[source], TF[target])[COMPLETE].all()


def test_complete_until_a_fetched_range_end() -> None:
    hour = to_ms("2026-01-01T10:00")
    candles = frame(
        [hour, hour + 59 * 60_000, hour + 60 * 60_000],
        [(1, 2, 1, 2), (2, 3, 2, 3), (3, 4, 3, 4)],
        [1, 1, 1],
        [1, 1, 1],
        [hour + 1, hour + 59 * 60_000 + 1, hour + 60 * 60_000 + 1],
    )
    got = resample(candles, TF["1m"], TF["1h"], complete_until=hour + 60 * 60_000)
    assert got[COMPLETE].tolist() == [True, False]
    got = resample(candles, TF["1m"], TF["1h"], complete_until=hour + 60 * 60_000 - 1)
    assert got[COMPLETE].tolist() == [False, False]


def test_empty_input_gives_an_empty_typed_frame() -> None:
    got = resample(empty_candles(), TF["1m"], TF["1h"], complete_until=0)
    expected = empty_candles().assign(**{COMPLETE: np.array([], dtype=bool)})
    pd.testing.assert_frame_equal(got, expected)


@pytest.mark.parametrize(
    ("source", "target"), [("4h", "6h"), ("1w", "1M"), ("3d", "1w"), ("1h", "1m"), ("1M", "1w")]
)
def test_non_dividing_pair_is_refused_naming_both(source: str, target: str) -> None:
    pattern = f"{re.escape(source)} candles to {re.escape(target)}"
    with pytest.raises(InvalidTimeframeError, match=pattern):
        resample(empty_candles(), TF[source], TF[target])


def test_unsorted_or_misaligned_input_is_refused() -> None:
    start = to_ms("2026-01-01")
    row = [(1.0, 1.0, 1.0, 1.0)]
    swapped = pd.concat(
        [
            frame([start + 60_000], row, [1], [1], [start + 60_000]),
            frame([start], row, [1], [1], [start]),
        ]
    ).reset_index(drop=True)
    with pytest.raises(ValueError, match="sorted"):
        resample(swapped, TF["1m"], TF["1h"])
    with pytest.raises(ValueError, match="aligned to 1h"):
        resample(frame([start + 60_000], row, [1], [1], [start + 60_000]), TF["1h"], TF["1d"])


def naive_fill(candles: pd.DataFrame, tf: Timeframe, start: int, end: int) -> pd.DataFrame:
    """One row per period start in [start, end), from the latest candle at or before it."""
    rows = []
    at = tf.ceil_one(start)
    while at < end:
        stamp = pd.Timestamp(at, unit="ms", tz="UTC")
        known = candles[candles["time"] <= stamp]
        if len(known):
            row = known.iloc[-1].to_dict()
            if row["time"] == stamp:
                rows.append({**row, FILLED: False})
            else:
                price = row["close"]
                rows.append(
                    {
                        **row,
                        "time": stamp,
                        **dict.fromkeys(("open", "high", "low", "close"), price),
                        **dict.fromkeys(("volume", "value"), 0.0),
                        FILLED: True,
                    }
                )
        at = tf.shift_one(at, 1)
    columns = [*CANDLE_COLUMNS, FILLED]
    dtypes = {**empty_candles().dtypes.to_dict(), FILLED: bool}
    return pd.DataFrame(rows, columns=columns).astype(dtypes)


@FEW
@given(
    st.sampled_from(["1m", "1h", "1d"]).flatmap(
        lambda name: st.tuples(st.just(name), candle_frames(TF[name]))
    ),
    st.data(),
)
def test_fill_gaps_matches_a_naive_fill(
    case: tuple[str, pd.DataFrame], data: st.DataObject
) -> None:
    name, candles = case
    tf = TF[name]
    size = tf.approx_ms
    around = ms(candles["time"].iloc[0]) if len(candles) else ANCHORS[0]
    start = around + data.draw(st.integers(-5 * size, 60 * size))
    end = start + data.draw(st.integers(0, 80 * size))

    got = fill_gaps(candles, tf, TimeRange(start, end))

    pd.testing.assert_frame_equal(got, naive_fill(candles, tf, start, end), check_exact=True)
    # Regular grid from the first row on, and real rows untouched.
    assert (got["time"].diff().dropna() == pd.Timedelta(milliseconds=size)).all()
    real = got[~got[FILLED]].drop(columns=FILLED).reset_index(drop=True)
    inside = candles[candles["time"].isin(got["time"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(real, inside, check_exact=True)


def test_fill_gaps_on_months_seeds_from_before_start_and_marks_rows() -> None:
    dec, mar = to_ms("2023-12-01"), to_ms("2024-03-01")
    candles = frame([dec, mar], [(1, 5, 1, 4), (4, 9, 3, 7)], [2, 3], [20, 30], [dec + 5, mar + 7])
    got = fill_gaps(candles, TF["1M"], TimeRange(to_ms("2023-12-15"), to_ms("2024-04-15")))
    assert [t.strftime("%Y-%m") for t in got["time"]] == [
        "2024-01",
        "2024-02",
        "2024-03",
        "2024-04",
    ]
    assert got[FILLED].tolist() == [True, True, False, True]
    assert got["close"].tolist() == [4, 4, 7, 7]
    assert got["open"].tolist() == [4, 4, 4, 7]
    assert got["volume"].tolist() == [0, 0, 3, 0]
    assert got["timestamp"].tolist() == [
        pd.Timestamp(at, unit="ms", tz="UTC") for at in (dec + 5, dec + 5, mar + 7, mar + 7)
    ]
    # Before the first candle there is nothing to fill from.
    early = fill_gaps(candles, TF["1M"], TimeRange(to_ms("2023-10-01"), to_ms("2024-01-01")))
    assert [t.strftime("%Y-%m") for t in early["time"]] == ["2023-12"]
    empty = fill_gaps(empty_candles(), TF["1M"], TimeRange(dec, mar))
    assert list(empty.columns) == [*CANDLE_COLUMNS, FILLED] and empty.empty
