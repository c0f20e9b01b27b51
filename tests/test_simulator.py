"""The Upbit simulator over real HTTP on loopback: data model, Upbit semantics, limits, faults."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import DEADLINE, Procs, Reply, StoppedTime, read_until, request

from upbit_cache.simulator import (
    FAULT_KINDS,
    History,
    SimClock,
    SimulatorConfig,
    SimulatorServer,
    to_epoch_ms,
)
from upbit_cache.simulator import app as simulator_app
from upbit_cache.simulator import stamps as simulator_stamps

NOW = "2026-11-20T00:00:00Z"
NOW_MS = to_epoch_ms(NOW)
MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000
# A "now" in the middle of every period, for in-progress candles.
MID_NOW_MS = NOW_MS + 3 * DAY + 7 * HOUR + 13 * MINUTE + 27_456
ROOT = Path(__file__).resolve().parents[1]

MINUTE_FIELDS = [
    "market",
    "candle_date_time_utc",
    "candle_date_time_kst",
    "opening_price",
    "high_price",
    "low_price",
    "trade_price",
    "timestamp",
    "candle_acc_trade_price",
    "candle_acc_trade_volume",
]


# ---- helpers --------------------------------------------------------------------------------


def candles(url: str, tf: str, market: str, **params: Any) -> Reply:
    return request(url, f"/v1/candles/{tf}", {"market": market, **params})


def fmt(ms: int, pattern: str = "%Y-%m-%dT%H:%M:%SZ") -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime(pattern)


def utc_ms(text: str) -> int:
    """Epoch ms of a `candle_date_time_utc` value."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Wire candles (any order) as an oldest-first DataFrame keyed by period start."""
    df = pd.DataFrame(rows)
    df["start"] = [utc_ms(t) for t in df["candle_date_time_utc"]]
    return df.sort_values("start").set_index("start")


def aggregate(minutes: pd.DataFrame, key: pd.Series) -> pd.DataFrame:
    """Independent OHLCV aggregation of 1m candles (history API columns) by period key."""
    g = minutes.groupby(key.to_numpy(), sort=True)
    return pd.DataFrame(
        {
            "open": g["open"].first(),
            "high": g["high"].max(),
            "low": g["low"].min(),
            "close": g["close"].last(),
            "volume": g["volume"].sum(),
            "value": g["value"].sum(),
            "timestamp": g["timestamp"].last(),
        }
    )


def period_key(tf: str, start_ms: pd.Series) -> pd.Series:
    """Period start (epoch ms) of each 1m candle, computed with pandas, not the simulator."""
    if tf.startswith("minutes/"):
        size = int(tf.split("/")[1]) * MINUTE
        return start_ms // size * size
    stamps = pd.to_datetime(start_ms, unit="ms")
    freq = {"days": "D", "weeks": "W-SUN", "months": "M"}[tf]
    starts = stamps.dt.to_period(freq).dt.start_time
    return (starts - pd.Timestamp(0)) // pd.Timedelta(milliseconds=1)


def assert_same_candles(native: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(native.index) == list(expected.index)
    for wire, mine in [
        ("opening_price", "open"),
        ("high_price", "high"),
        ("low_price", "low"),
        ("trade_price", "close"),
        ("timestamp", "timestamp"),
    ]:
        assert (native[wire].to_numpy() == expected[mine].to_numpy()).all(), wire
    for wire, mine in [("candle_acc_trade_volume", "volume"), ("candle_acc_trade_price", "value")]:
        np.testing.assert_allclose(native[wire], expected[mine], rtol=1e-9)


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    # A generous rate so ordinary tests are never throttled; limits have their own server.
    config = SimulatorConfig(clock_start=NOW, frozen=True, rate=100_000)
    with SimulatorServer(config) as srv:
        yield srv


@pytest.fixture(scope="module")
def mid_server() -> Iterator[SimulatorServer]:
    config = SimulatorConfig(clock_start=MID_NOW_MS, frozen=True, rate=100_000)
    with SimulatorServer(config) as srv:
        yield srv


@pytest.fixture
def clock(server: SimulatorServer) -> Iterator[SimClock]:
    """The module server's clock, frozen at NOW again afterwards."""
    yield server.clock
    server.clock.freeze()
    server.clock.set(NOW)


@pytest.fixture(scope="module")
def sparse_market(server: SimulatorServer) -> str:
    return next(
        m.market
        for m in server.history.markets
        if m.sparse and m.market.startswith("KRW-") and m.listed_ms < NOW_MS - 400 * DAY
    )


@pytest.fixture(scope="module")
def recent_market(server: SimulatorServer) -> str:
    recent = [m for m in server.history.markets if m.listed_ms > NOW_MS - 30 * DAY]
    assert len(recent) >= 3 and all(m.market.startswith("KRW-") for m in recent)
    return recent[0].market


# ---- clock ----------------------------------------------------------------------------------


def test_clock_frozen_running_set_advance() -> None:
    frozen = SimClock(NOW, frozen=True)
    assert frozen.now_ms() == NOW_MS and frozen.frozen
    frozen.advance(90.5)
    assert frozen.now_ms() == NOW_MS + 90_500
    frozen.set(datetime(2026, 1, 2, 3, 4, 5))  # naive = UTC
    assert frozen.now_ms() == to_epoch_ms("2026-01-02T03:04:05Z")
    frozen.set(NOW_MS)
    began = time.monotonic()
    frozen.run()
    time.sleep(0.02)
    # As much as really passed (the sleep at least; more on a busy machine), to the ms.
    passed = frozen.now_ms() - NOW_MS
    assert 15 <= passed <= (time.monotonic() - began) * 1000 + 1 and not frozen.frozen
    frozen.freeze()
    stopped = frozen.now_ms()
    time.sleep(0.02)
    assert frozen.now_ms() == stopped
    real = SimClock()
    assert abs(real.now_ms() - time.time() * 1000) < 1_000


# ---- markets --------------------------------------------------------------------------------


def test_market_all(server: SimulatorServer) -> None:
    reply = request(server.url, "/v1/market/all", {"isDetails": "true"})
    assert reply.status == 200
    assert reply.headers["Remaining-Req"].startswith("group=market; min=600; sec=")
    rows = reply.json()
    codes = [row["market"] for row in rows]
    assert len(codes) == len(set(codes))
    assert all(re.fullmatch(r"[A-Z]{2,5}-[A-Z0-9]{1,10}", c) for c in codes)
    quotes = pd.Series([c.split("-")[0] for c in codes]).value_counts()
    assert 200 <= quotes["KRW"] <= 230 and 25 <= quotes["BTC"] <= 35 and quotes["USDT"] >= 8
    assert codes[:3] == ["KRW-BTC", "KRW-ETH", "KRW-XRP"]
    assert set(rows[0]) == {"market", "korean_name", "english_name", "market_event"}
    event = rows[0]["market_event"]
    assert set(event["caution"]) == {
        "PRICE_FLUCTUATIONS",
        "TRADING_VOLUME_SOARING",
        "DEPOSIT_AMOUNT_SOARING",
        "GLOBAL_PRICE_DIFFERENCES",
        "CONCENTRATION_OF_SMALL_ACCOUNTS",
    }
    warned = [r["market"] for r in rows if r["market_event"]["warning"]]
    assert 1 <= len(warned) <= 10 and all(m.startswith("KRW-") for m in warned)
    plain = request(server.url, "/v1/market/all").json()
    assert [r["market"] for r in plain] == codes and "market_event" not in plain[0]


def test_unlisted_markets_are_hidden_until_listed(
    server: SimulatorServer, recent_market: str, clock: SimClock
) -> None:
    listed = server.history.market_info(recent_market).listed_ms
    clock.set(listed - 1)
    codes = [r["market"] for r in request(server.url, "/v1/market/all").json()]
    assert recent_market not in codes
    assert candles(server.url, "minutes/1", recent_market).status == 404
    clock.set(listed + HOUR)
    codes = [r["market"] for r in request(server.url, "/v1/market/all").json()]
    assert recent_market in codes


# ---- data model -----------------------------------------------------------------------------


def test_determinism_across_requests_and_instances(server: SimulatorServer) -> None:
    queries = [
        ("minutes/1", {"count": 200}),
        ("minutes/60", {"count": 50, "to": "2026-11-10T05:00:00Z"}),
        ("days", {"count": 30}),
    ]
    first = [candles(server.url, tf, "KRW-XRP", **q).body for tf, q in queries]
    again = [candles(server.url, tf, "KRW-XRP", **q).body for tf, q in queries]
    with SimulatorServer(SimulatorConfig(clock_start=NOW, frozen=True)) as other:
        fresh = [candles(other.url, tf, "KRW-XRP", **q).body for tf, q in queries]
    assert first == again == fresh
    assert all(json.loads(body) for body in first)


@pytest.mark.parametrize("kind", ["liquid", "sparse"])
@pytest.mark.parametrize(
    ("tf", "count"),
    [
        ("minutes/3", 60),
        ("minutes/5", 60),
        ("minutes/10", 40),
        ("minutes/15", 40),
        ("minutes/30", 40),
        ("minutes/60", 48),
        ("minutes/240", 30),
        ("days", 12),
        ("weeks", 4),
        ("months", 2),
    ],
)
def test_every_timeframe_is_the_aggregate_of_its_1m_candles(
    mid_server: SimulatorServer, sparse_market: str, kind: str, tf: str, count: int
) -> None:
    params: dict[str, Any] = {"count": count}
    if kind == "liquid":
        market = "KRW-BTC"
        # A `to` inside a period: the window ends with that (complete) period.
        to = (MID_NOW_MS - 2 * DAY - 3 * HOUR - 50 * MINUTE) // 1000 * 1000
        params["to"] = fmt(to, "%Y-%m-%d %H:%M:%S")
        newest = to - 1
    else:
        # Without `to`: the window ends with the in-progress period.
        market = sparse_market
        newest = MID_NOW_MS
    reply = candles(mid_server.url, tf, market, **params)
    assert reply.status == 200
    native = frame(reply.json())
    assert 0 < len(native) <= count
    if kind == "liquid":
        assert len(native) == count
    one = mid_server.history.candles(market, 1, int(native.index[0]), MID_NOW_MS, MID_NOW_MS)
    expected = aggregate(one, period_key(tf, one["start"]))
    last = int(period_key(tf, pd.Series([newest])).iloc[0])
    assert_same_candles(native, expected[expected.index <= last])


def test_hourly_candles_equal_aggregated_1m_pages(server: SimulatorServer) -> None:
    to = "2026-11-18T06:00:00Z"
    hours = frame(candles(server.url, "minutes/60", "KRW-ETH", count=5, to=to).json())
    newer = candles(server.url, "minutes/1", "KRW-ETH", count=200, to=to).json()
    oldest = newer[-1]["candle_date_time_utc"] + "Z"
    older = candles(server.url, "minutes/1", "KRW-ETH", count=100, to=oldest).json()
    minutes = frame(newer + older)
    minutes = minutes.rename(
        columns={
            "opening_price": "open",
            "high_price": "high",
            "low_price": "low",
            "trade_price": "close",
            "candle_acc_trade_volume": "volume",
            "candle_acc_trade_price": "value",
        }
    )
    expected = aggregate(minutes, pd.Series(minutes.index // HOUR * HOUR))
    assert_same_candles(hours, expected)


def test_trades_api_builds_the_1m_and_second_candles(server: SimulatorServer) -> None:
    start, end = NOW_MS - 2 * HOUR, NOW_MS - HOUR
    trades = server.history.trades("KRW-BTC", start, end)
    assert list(trades.columns) == ["timestamp", "price", "volume", "ask_bid", "sequential_id"]
    assert trades["timestamp"].between(start, end - 1).all()
    assert trades["timestamp"].is_monotonic_increasing
    assert trades["sequential_id"].is_unique and trades["sequential_id"].is_monotonic_increasing
    assert set(trades["ask_bid"]) == {"ASK", "BID"} and (trades["volume"] > 0).all()
    trades = trades.assign(
        open=trades.price, high=trades.price, low=trades.price, close=trades.price
    ).assign(value=trades.price * trades.volume)
    for unit, size in [(1, MINUTE), ("seconds", 1000)]:
        native = server.history.candles("KRW-BTC", unit, start, end, NOW_MS).set_index("start")
        expected = aggregate(trades, trades["timestamp"] // size * size)
        assert list(native.index) == list(expected.index)
        for col in ["open", "high", "low", "close", "timestamp"]:
            assert (native[col] == expected[col]).all(), col
        np.testing.assert_allclose(native[["volume", "value"]], expected[["volume", "value"]])


def test_prices_look_like_upbit(server: SimulatorServer) -> None:
    btc = candles(server.url, "days", "KRW-BTC", count=1, to=NOW).json()[0]
    assert 0.7e8 < btc["trade_price"] < 3e8 and btc["trade_price"] % 1000 == 0
    raw = candles(server.url, "minutes/1", "KRW-BTC", count=1, to="2026-11-19T12:00:00Z").text
    # Upbit prints prices and volumes with 8 decimals and the timestamp as an integer.
    assert re.search(r'"opening_price":\d+\.\d{8},', raw)
    assert re.search(r'"timestamp":\d{13},', raw)
    small = [
        candles(server.url, "days", m.market, count=1, to=NOW).json()
        for m in server.history.markets[40:60]
    ]
    prices = [rows[0]["trade_price"] for rows in small if rows]
    assert min(prices) >= 0.1 and max(prices) < 1e7


# ---- Upbit request semantics ----------------------------------------------------------------


def test_to_is_exclusive_in_all_three_forms_and_answers_are_newest_first(
    server: SimulatorServer,
) -> None:
    forms = ["2026-11-18T04:56:53Z", "2026-11-18T13:56:53+09:00", "2026-11-18 04:56:53"]
    bodies = [candles(server.url, "minutes/60", "KRW-BTC", count=5, to=t).body for t in forms]
    assert bodies[0] == bodies[1] == bodies[2]
    rows = json.loads(bodies[0])
    starts = [r["candle_date_time_utc"] for r in rows]
    assert starts == [f"2026-11-18T0{h}:00:00" for h in (4, 3, 2, 1, 0)]
    assert [list(r) for r in rows] == [[*MINUTE_FIELDS, "unit"]] * 5
    assert rows[0]["candle_date_time_kst"] == "2026-11-18T13:00:00" and rows[0]["unit"] == 60
    # `to` only bounds period starts: the 04:00 candle is whole, trades after 04:56:53 included.
    assert to_epoch_ms(forms[0]) < rows[0]["timestamp"] < to_epoch_ms("2026-11-18T05:00:00Z")
    # A `to` on a period boundary excludes the period starting there.
    edge = candles(server.url, "minutes/60", "KRW-BTC", count=2, to="2026-11-18T04:00:00Z")
    assert [r["candle_date_time_utc"] for r in edge.json()] == [
        "2026-11-18T03:00:00",
        "2026-11-18T02:00:00",
    ]


def test_without_to_the_newest_periods_include_the_in_progress_one(
    server: SimulatorServer, clock: SimClock
) -> None:
    clock.set(NOW_MS + 30 * MINUTE + 30_000)
    rows = candles(server.url, "minutes/60", "KRW-BTC", count=3).json()
    assert [r["candle_date_time_utc"] for r in rows] == [
        "2026-11-20T00:00:00",
        "2026-11-19T23:00:00",
        "2026-11-19T22:00:00",
    ]
    assert rows[0]["timestamp"] < clock.now_ms()
    # A `to` in the future is capped at now: no period starting after now exists.
    future = candles(server.url, "minutes/60", "KRW-BTC", count=3, to="2026-12-01T00:00:00Z")
    assert future.body == candles(server.url, "minutes/60", "KRW-BTC", count=3).body


def test_in_progress_candle_grows_as_the_clock_advances(
    server: SimulatorServer, clock: SimClock
) -> None:
    clock.set(NOW_MS + 20 * MINUTE + 500)
    before = candles(server.url, "minutes/60", "KRW-BTC", count=1).json()[0]
    day_before = candles(server.url, "days", "KRW-BTC", count=1).json()[0]
    clock.advance(15 * 60)
    after = candles(server.url, "minutes/60", "KRW-BTC", count=1).json()[0]
    day_after = candles(server.url, "days", "KRW-BTC", count=1).json()[0]
    assert before["candle_date_time_utc"] == after["candle_date_time_utc"] == "2026-11-20T00:00:00"
    assert after["candle_acc_trade_volume"] > before["candle_acc_trade_volume"]
    assert after["timestamp"] > before["timestamp"]
    assert after["opening_price"] == before["opening_price"]
    assert day_after["candle_acc_trade_volume"] > day_before["candle_acc_trade_volume"]
    # The 1m candles of the hour so far add up to the in-progress hourly candle.
    minutes = candles(server.url, "minutes/1", "KRW-BTC", count=40).json()
    minutes = [m for m in minutes if m["candle_date_time_utc"] >= "2026-11-20T00:00:00"]
    assert sum(m["candle_acc_trade_volume"] for m in minutes) == pytest.approx(
        after["candle_acc_trade_volume"], rel=1e-12
    )
    assert minutes[0]["timestamp"] == after["timestamp"]


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"market": "KRW-BTC", "count": 0}, 400),
        ({"market": "KRW-BTC", "count": 201}, 400),
        ({"market": "KRW-BTC", "count": "ten"}, 400),
        ({"market": "KRW-BTC", "to": "yesterday"}, 400),
        # An unencoded "+" arrives as a space.
        ({"market": "KRW-BTC", "to": "2026-11-18T13:56:53 09:00"}, 400),
        ({}, 400),
        ({"market": "KRW-NOPE"}, 404),
        ({"market": "krw-btc"}, 404),
    ],
)
def test_bad_requests_get_json_errors(
    server: SimulatorServer, params: dict[str, Any], status: int
) -> None:
    reply = request(server.url, "/v1/candles/minutes/1", params)
    assert reply.status == status
    error = reply.json()["error"]
    assert set(error) == {"name", "message"}
    if status == 404:
        assert reply.json() == {"error": {"name": 404, "message": "Code not found"}}


def test_unit_and_count_limits(server: SimulatorServer) -> None:
    assert request(server.url, "/v1/candles/minutes/2", {"market": "KRW-BTC"}).status == 400
    assert request(server.url, "/v1/candles/minutes/1", {"market": "KRW-BTC"}).status == 200
    default = candles(server.url, "minutes/1", "KRW-BTC", to="2026-11-19T10:00:00Z").json()
    assert len(default) == 1
    full = candles(server.url, "minutes/1", "KRW-BTC", count=200, to="2026-11-19T10:00:00Z")
    assert len(full.json()) == 200


def test_sparse_market_pages_are_short_but_not_the_end(
    server: SimulatorServer, sparse_market: str
) -> None:
    page = candles(server.url, "minutes/60", sparse_market, count=200, to=NOW).json()
    assert 0 < len(page) < 150
    starts = [utc_ms(r["candle_date_time_utc"]) for r in page]
    assert max(a - b for a, b in pairwise(starts)) >= 3 * HOUR
    assert utc_ms(page[-1]["candle_date_time_utc"]) >= NOW_MS - 200 * HOUR
    # Older history is still there, right before the window of the short page.
    window_start = fmt(NOW_MS - 199 * HOUR)
    older = candles(server.url, "minutes/60", sparse_market, count=200, to=window_start).json()
    assert older and utc_ms(older[0]["candle_date_time_utc"]) < NOW_MS - 199 * HOUR
    days = candles(server.url, "days", sparse_market, count=200).json()
    assert 100 < len(days) < 200


def test_recently_listed_market_is_empty_before_its_listing(
    server: SimulatorServer, recent_market: str
) -> None:
    listed = server.history.market_info(recent_market).listed_ms
    assert candles(server.url, "minutes/1", recent_market, count=200, to=fmt(listed)).json() == []
    listing_day = fmt(listed // DAY * DAY)
    assert candles(server.url, "days", recent_market, count=5, to=listing_day).json() == []
    after = fmt(listed + 2 * HOUR)
    rows = candles(server.url, "minutes/1", recent_market, count=200, to=after).json()
    assert 0 < len(rows) <= 120
    assert min(utc_ms(r["candle_date_time_utc"]) for r in rows) >= listed
    days = candles(server.url, "days", recent_market, count=200).json()
    assert utc_ms(days[-1]["candle_date_time_utc"]) == listed // DAY * DAY
    assert days[-1]["prev_closing_price"] == days[-1]["opening_price"]


def test_listing_override() -> None:
    history = History(listings={"KRW-ETH": "2026-11-19T06:30:00Z"})
    info = history.market_info("KRW-ETH")
    assert info.listed_at == datetime(2026, 11, 19, 6, 30, tzinfo=UTC)
    first = history.candles("KRW-ETH", 60, NOW_MS - 2 * DAY, NOW_MS, NOW_MS)
    assert int(first["start"].iloc[0]) == to_epoch_ms("2026-11-19T06:00:00Z")
    assert int(history.trades("KRW-ETH", 0, NOW_MS)["timestamp"].min()) >= info.listed_ms
    with pytest.raises(KeyError):
        History(listings={"KRW-NOPE": NOW})


def test_day_week_month_fields(server: SimulatorServer) -> None:
    days = candles(server.url, "days", "KRW-BTC", count=5, converting_price_unit="KRW").json()
    assert list(days[0]) == [
        *MINUTE_FIELDS,
        "prev_closing_price",
        "change_price",
        "change_rate",
        "converted_trade_price",
    ]
    assert days[0]["candle_date_time_kst"].endswith("T09:00:00")
    for newer, older in pairwise(days):
        assert newer["prev_closing_price"] == older["trade_price"]
    for day in days:
        assert day["change_price"] == pytest.approx(day["trade_price"] - day["prev_closing_price"])
        assert day["change_rate"] == pytest.approx(
            day["change_price"] / day["prev_closing_price"], abs=1e-8
        )
        assert day["converted_trade_price"] == day["trade_price"]
    plain = candles(server.url, "days", "KRW-BTC", count=2).json()[0]
    assert "converted_trade_price" not in plain
    eth = candles(server.url, "days", "BTC-ETH", count=3, converting_price_unit="KRW").json()
    btc = {d["candle_date_time_utc"]: d["trade_price"] for d in days}
    for day in eth:
        rate = btc[day["candle_date_time_utc"]]
        assert day["converted_trade_price"] == pytest.approx(day["trade_price"] * rate)
    weeks = candles(server.url, "weeks", "KRW-BTC", count=3).json()
    assert list(weeks[0]) == [*MINUTE_FIELDS, "first_day_of_period"]
    assert weeks[0]["first_day_of_period"] == "2026-11-16"  # a Monday
    assert weeks[0]["candle_date_time_utc"] == "2026-11-16T00:00:00"
    months = candles(server.url, "months", "KRW-BTC", count=2).json()
    assert [m["first_day_of_period"] for m in months] == ["2026-11-01", "2026-10-01"]


def test_second_and_year_fields(server: SimulatorServer) -> None:
    seconds = candles(server.url, "seconds", "KRW-BTC", count=200, to=NOW).json()
    assert list(seconds[0]) == MINUTE_FIELDS  # no `unit`
    starts = [utc_ms(c["candle_date_time_utc"]) for c in seconds]
    assert starts == sorted(starts, reverse=True) and starts[0] < NOW_MS
    assert starts[-1] >= NOW_MS - 200_000 and all(t % 1000 == 0 for t in starts)
    years = candles(server.url, "years", "KRW-BTC", count=3).json()
    assert list(years[0]) == [*MINUTE_FIELDS, "first_day_of_period"]
    assert [y["first_day_of_period"] for y in years] == ["2026-01-01", "2025-01-01", "2024-01-01"]
    assert years[1]["candle_date_time_utc"] == "2025-01-01T00:00:00"
    # A closed year is the aggregate of its months.
    months = frame(
        candles(server.url, "months", "KRW-BTC", count=12, to="2026-01-01T00:00:00Z").json()
    )
    year = months.reset_index(drop=True)
    assert years[1]["opening_price"] == year["opening_price"].iloc[0]
    assert years[1]["trade_price"] == year["trade_price"].iloc[-1]
    assert years[1]["high_price"] == year["high_price"].max()
    assert years[1]["low_price"] == year["low_price"].min()
    assert years[1]["timestamp"] == year["timestamp"].iloc[-1]
    assert years[1]["candle_acc_trade_volume"] == pytest.approx(
        year["candle_acc_trade_volume"].sum(), rel=1e-9
    )


def test_seconds_exist_for_ninety_days_only(server: SimulatorServer) -> None:
    # Upbit: "only the last 3 months"; past that a page is empty, across it short.
    edge = NOW_MS - 90 * DAY
    past = candles(server.url, "seconds", "KRW-BTC", count=200, to=fmt(edge)).json()
    assert past == []
    assert candles(server.url, "minutes/1", "KRW-BTC", count=5, to=fmt(edge)).json()  # traded
    across = candles(server.url, "seconds", "KRW-BTC", count=200, to=fmt(edge + 100_000)).json()
    assert across and all(utc_ms(c["candle_date_time_utc"]) >= edge for c in across)
    # The history has them; the API does not serve them.
    assert len(server.history.candles("KRW-BTC", "seconds", edge - 100_000, edge, NOW_MS))


# ---- headers, rate limits -------------------------------------------------------------------


def test_date_and_remaining_req_headers(server: SimulatorServer, clock: SimClock) -> None:
    clock.set("2026-11-25T03:00:00Z")
    reply = candles(server.url, "minutes/1", "KRW-BTC")
    assert reply.headers["Date"] == "Wed, 25 Nov 2026 03:00:00 GMT"
    assert re.fullmatch(r"group=candles; min=600; sec=\d+", reply.headers["Remaining-Req"])


def test_rate_limit_429_then_418_ban(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = StoppedTime()
    monkeypatch.setattr(simulator_app, "time", clock)
    # The kernel's arrival stamps too: on real monotonic time a machine up for less than the
    # stopped clock's start would stamp every request older than the window, admitting all.
    monkeypatch.setattr(simulator_stamps, "time", clock)
    config = SimulatorConfig(
        clock_start=NOW, frozen=True, rate=3, ban_after_429s=2, ban_seconds=0.5
    )
    with SimulatorServer(config) as srv:

        def hit() -> Reply:
            return candles(srv.url, "minutes/1", "KRW-BTC")

        replies = [hit() for _ in range(4)]
        assert [r.status for r in replies] == [200, 200, 200, 429]
        assert [r.headers["Remaining-Req"][-5:] for r in replies[:3]] == [
            "sec=2",
            "sec=1",
            "sec=0",
        ]
        assert replies[3].json()["error"]["name"] == "too_many_requests"
        # Groups are limited separately.
        assert request(srv.url, "/v1/market/all").status == 200
        # The window slides in monotonic time, and the 429 did not use it up.
        clock.sleep(0.6)
        assert hit().status == 429
        clock.sleep(0.5)
        assert [hit().status for _ in range(3)] == [200, 200, 200]

        request(srv.url, "/_sim/reset", body={})
        statuses = [hit().status for _ in range(7)]
        assert statuses == [200, 200, 200, 429, 429, 418, 418]
        assert request(srv.url, "/v1/market/all").status == 418
        clock.sleep(1.1)  # the ban (0.5 s) and the 1 s window are both over
        assert hit().status == 200
        # A repeat offender is banned twice as long.
        statuses = [hit().status for _ in range(5)]
        assert statuses[-1] == 418
        clock.sleep(0.6)
        assert hit().status == 418
        clock.sleep(0.5)
        assert hit().status == 200
        stats = srv.stats()  # counted since the reset
        assert stats["banned"] == 5 and stats["rate_limited"] == 4


def test_latency_is_applied() -> None:
    config = SimulatorConfig(clock_start=NOW, frozen=True, latency=0.15, jitter=0.05)
    with SimulatorServer(config) as srv:
        started = time.monotonic()
        assert candles(srv.url, "minutes/1", "KRW-BTC").status == 200
        assert 0.15 <= time.monotonic() - started < 2.0


# ---- faults and counters --------------------------------------------------------------------


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_hits_only_the_next_matching_request(server: SimulatorServer, kind: str) -> None:
    params = {"count": 3, "to": "2026-11-19T12:00:00Z"}
    normal = candles(server.url, "minutes/1", "KRW-XRP", **params)
    server.reset_stats()
    server.faults.inject(kind, market="KRW-XRP", seconds=0.3)
    # Another market does not match the filter.
    assert candles(server.url, "minutes/1", "KRW-ETH", **params).status == 200
    started = time.monotonic()
    if kind == "drop":
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            candles(server.url, "minutes/1", "KRW-XRP", **params)
    else:
        faulty = candles(server.url, "minutes/1", "KRW-XRP", **params)
        check_fault(kind, faulty, normal, time.monotonic() - started)
    assert candles(server.url, "minutes/1", "KRW-XRP", **params).body == normal.body
    stats = server.stats()
    assert stats["faults_served"] == 1 and stats["faults_by_kind"] == {kind: 1}


def check_fault(kind: str, faulty: Reply, normal: Reply, elapsed: float) -> None:
    if kind == "500":
        assert faulty.status == 500 and set(faulty.json()["error"]) == {"name", "message"}
        return
    assert faulty.status == 200
    if kind == "slow":
        assert elapsed >= 0.3 and faulty.body == normal.body
    elif kind == "truncate":
        assert normal.body.startswith(faulty.body) and len(faulty.body) < len(normal.body)
        with pytest.raises(ValueError):
            faulty.json()
    elif kind == "non_json":
        assert faulty.headers["Content-Type"].startswith("text/html")
        with pytest.raises(ValueError):
            faulty.json()
    elif kind == "bad_types":
        bad, good = faulty.json()[0], normal.json()[0]
        assert isinstance(bad["opening_price"], str) and isinstance(bad["timestamp"], str)
        assert float(bad["opening_price"]) == good["opening_price"]
        assert int(bad["timestamp"]) == good["timestamp"] and bad["unit"] == "1"
    elif kind == "missing_field":
        rows = faulty.json()
        assert all("trade_price" not in row for row in rows)
        assert len(rows) == len(normal.json())


def test_faults_by_path_count_and_over_http(server: SimulatorServer) -> None:
    reply = request(
        server.url, "/_sim/faults", body={"kind": "500", "count": 2, "path": "/v1/candles/days"}
    )
    assert reply.status == 200 and reply.json() == {"pending": 2}
    assert candles(server.url, "minutes/1", "KRW-BTC").status == 200
    assert [candles(server.url, "days", "KRW-BTC").status for _ in range(3)] == [500, 500, 200]
    assert request(server.url, "/_sim/faults", body={"kind": "nope"}).status == 400
    with pytest.raises(ValueError):
        server.faults.inject("nope")


def test_counters(server: SimulatorServer) -> None:
    server.reset_stats()
    for _ in range(3):
        candles(server.url, "minutes/60", "KRW-BTC")
    candles(server.url, "days", "KRW-BTC")
    candles(server.url, "days", "KRW-NOPE")
    request(server.url, "/v1/market/all")
    stats = server.stats()
    assert stats["by_path"] == {
        "/v1/candles/minutes/60": 3,
        "/v1/candles/days": 2,
        "/v1/market/all": 1,
    }
    assert stats["requests"] == 6 and stats["candle_requests"] == 5
    assert stats["by_status"] == {"200": 5, "404": 1}
    # Control endpoints are neither counted nor limited.
    assert request(server.url, "/_sim/stats").json() == server.stats()
    server.reset_stats()
    assert server.stats()["requests"] == 0


def test_clock_control_over_http(server: SimulatorServer, clock: SimClock) -> None:
    reply = request(server.url, "/_sim/clock", body={"set": "2026-11-21T00:00:00Z"})
    assert reply.json()["now_ms"] == to_epoch_ms("2026-11-21T00:00:00Z")
    request(server.url, "/_sim/clock", body={"advance": 90})
    assert clock.now_ms() == to_epoch_ms("2026-11-21T00:01:30Z")
    assert request(server.url, "/_sim/clock").json()["frozen"] is True
    request(server.url, "/_sim/clock", body={"freeze": False})
    assert not clock.frozen
    request(server.url, "/_sim/clock", body={"freeze": True})
    assert clock.frozen
    assert request(server.url, "/_sim/clock", body={"set": "soon"}).status == 400


# ---- command line ---------------------------------------------------------------------------


@pytest.mark.slow
def test_command_line_prints_its_url_and_stops_on_sigterm(procs: Procs) -> None:
    proc = procs.popen(
        [
            sys.executable,
            "-m",
            "upbit_cache.simulator",
            "--port",
            "0",
            "--clock",
            NOW,
            "--frozen",
            "--latency",
            "0.01",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = read_until(proc, lambda lines: len(lines) >= 1, "the URL line")[0]
    match = re.fullmatch(r"upbit-simulator listening on (http://127\.0\.0\.1:\d+)\n", line)
    assert match, line
    reply = request(match.group(1), "/v1/market/all")
    assert reply.status == 200 and reply.json()[0]["market"] == "KRW-BTC"
    assert reply.headers["Date"] == "Fri, 20 Nov 2026 00:00:00 GMT"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=DEADLINE) == 0


def test_day_page_is_fast_enough() -> None:
    def cpu_seconds(history: History) -> float:
        started = time.process_time()
        history.candles("KRW-SOL", "days", NOW_MS - 200 * DAY, NOW_MS, NOW_MS)
        return time.process_time() - started

    # This process's CPU time, the least of three: what the work costs, not how long a busy
    # machine kept us waiting for a core.
    first = min(cpu_seconds(History()) for _ in range(3))
    history = History()
    cpu_seconds(history)
    again = min(cpu_seconds(history) for _ in range(3))
    # Generous bounds: this guards against accidental per-candle Python loops, not noise.
    assert first < 1.0 and again < 0.05, (first, again)


def test_period_boundaries_are_utc_aligned(server: SimulatorServer) -> None:
    rows = candles(server.url, "minutes/240", "KRW-BTC", count=6, to=NOW).json()
    assert [r["candle_date_time_utc"][11:13] for r in rows] == ["20", "16", "12", "08", "04", "00"]
    assert [r["candle_date_time_kst"][11:13] for r in rows] == ["05", "01", "21", "17", "13", "09"]


def test_ticker_all_gives_each_markets_last_trade(server: SimulatorServer) -> None:
    reply = request(server.url, "/v1/ticker/all", {"quote_currencies": "KRW"})
    assert reply.status == 200
    rows = reply.json()
    assert rows and all(r["market"].startswith("KRW-") for r in rows)
    btc = next(r for r in rows if r["market"] == "KRW-BTC")
    now = server.clock.now_ms()
    last_hour = server.history.candles("KRW-BTC", 1, now - 3_600_000, now, now)
    assert btc["trade_timestamp"] == int(list(last_hour["timestamp"])[-1])
    assert request(server.url, "/v1/ticker/all").status == 400
