"""The simulator's strictness options over real HTTP on loopback: store lag, page readings,
quiet markets, market/all parameter names, Upbit's error bodies, groups, count, WS limits."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import Reply, request
from test_simulator_ws import Client, with_clients

from upbit_cache.simulator import CandleBars, SimulatorConfig, SimulatorServer, to_epoch_ms
from upbit_cache.simulator.__main__ import parse_args

NOW = "2026-11-20T00:00:00Z"
NOW_MS = to_epoch_ms(NOW)
SECOND = 1_000
MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000
LAG = 2.0
FAST = {"clock_start": NOW, "frozen": True, "rate": 100_000}
# Quiet spans: two whole weeks of KRW-BTC (Mondays), 47 days of KRW-ETH (past every lookback
# of the ticker and WebSocket snapshots), ten days of KRW-XRP.
BTC_QUIET = (to_epoch_ms("2026-11-02T00:00:00Z"), to_epoch_ms("2026-11-16T00:00:00Z"))
ETH_QUIET = (to_epoch_ms("2026-10-01T00:00:00Z"), to_epoch_ms("2026-11-17T00:00:00Z"))
XRP_QUIET = (to_epoch_ms("2026-11-05T07:30:00Z"), to_epoch_ms("2026-11-15T07:30:00Z"))
DOGE_LISTED = to_epoch_ms("2026-11-19T20:00:00Z")
# A sparse KRW market (about one minute in eight trades in its live hours).
SPARSE = "KRW-PUVEF"


# ---- helpers --------------------------------------------------------------------------------


def fmt(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def page(url: str, tf: str, market: str, **params: Any) -> list[dict[str, Any]]:
    reply = request(url, f"/v1/candles/{tf}", {"market": market, **params})
    assert reply.status == 200, reply.text
    rows: list[dict[str, Any]] = reply.json()
    return rows


def starts(rows: list[dict[str, Any]]) -> list[int]:
    """Candle starts of a page, newest first as sent."""
    return [utc_ms(r["candle_date_time_utc"]) for r in rows]


def table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Wire candles as an oldest-first frame indexed by start."""
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["start"] = starts(rows)
    return df.sort_values("start").set_index("start")


def minutes_of(url: str, market: str, start: int, now: int) -> pd.DataFrame:
    """Every 1m candle from `start` on at the server's clock `now`, from window pages."""
    rows: list[dict[str, Any]] = []
    to = start + 200 * MINUTE
    while to - 200 * MINUTE <= now:
        rows += page(url, "minutes/1", market, count=200, to=fmt(to))
        to += 200 * MINUTE
    df = table(rows)
    return df[~df.index.duplicated() & (df.index >= start)]


def aggregate(minutes: pd.DataFrame, size_ms: int) -> pd.DataFrame:
    """Independent aggregation of wire 1m candles into periods of `size_ms`."""
    g = minutes.groupby(minutes.index.to_numpy() // size_ms * size_ms)
    return pd.DataFrame(
        {
            "opening_price": g["opening_price"].first(),
            "high_price": g["high_price"].max(),
            "low_price": g["low_price"].min(),
            "trade_price": g["trade_price"].last(),
            "timestamp": g["timestamp"].last(),
            "candle_acc_trade_volume": g["candle_acc_trade_volume"].sum(),
            "candle_acc_trade_price": g["candle_acc_trade_price"].sum(),
        }
    )


def assert_aggregates(native: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(native.index) == list(expected.index)
    for column in ("opening_price", "high_price", "low_price", "trade_price", "timestamp"):
        assert (native[column].to_numpy() == expected[column].to_numpy()).all(), column
    for column in ("candle_acc_trade_volume", "candle_acc_trade_price"):
        np.testing.assert_allclose(native[column], expected[column], rtol=1e-9)


def wire_of(bars: CandleBars) -> pd.DataFrame:
    """History candles in the wire columns, for comparison with a page."""
    return pd.DataFrame(
        {
            "opening_price": bars.open,
            "high_price": bars.high,
            "low_price": bars.low,
            "trade_price": bars.close,
            "timestamp": bars.timestamp,
            "candle_acc_trade_volume": bars.volume,
            "candle_acc_trade_price": bars.value,
        },
        index=bars.start,
    )


def serve(**options: Any) -> SimulatorServer:
    return SimulatorServer(SimulatorConfig(**{**FAST, **options}))


@pytest.fixture(scope="module")
def lagged() -> Iterator[SimulatorServer]:
    with serve(store_lag=LAG, ws_candle_interval=0.05) as server:
        yield server


@pytest.fixture
def lag_server(lagged: SimulatorServer) -> Iterator[SimulatorServer]:
    """The store-lag server; its clock frozen at NOW again afterwards."""
    yield lagged
    lagged.clock.freeze()
    lagged.clock.set(NOW)


@pytest.fixture(scope="module")
def quiet() -> Iterator[SimulatorServer]:
    spans = {
        "KRW-BTC": [BTC_QUIET],
        "KRW-ETH": [(fmt(ETH_QUIET[0]), fmt(ETH_QUIET[1]))],
        "KRW-XRP": [XRP_QUIET],
    }
    with serve(quiet=spans) as server:
        yield server


@pytest.fixture(scope="module")
def newest() -> Iterator[SimulatorServer]:
    with serve(
        pages="newest", quiet={"KRW-XRP": [XRP_QUIET]}, listings={"KRW-DOGE": DOGE_LISTED}
    ) as server:
        yield server


@pytest.fixture(scope="module")
def window() -> Iterator[SimulatorServer]:
    with serve(quiet={"KRW-XRP": [XRP_QUIET]}, listings={"KRW-DOGE": DOGE_LISTED}) as server:
        yield server


def late_trade(server: SimulatorServer, market: str, day: int) -> tuple[int, int, int]:
    """A trade of `day` stored after its minute ended: (its time, stored time, that boundary)."""
    trades = server.history.trades(market, day, day + DAY, stored=True)
    boundary = (trades["timestamp"] // MINUTE + 1) * MINUTE
    late = trades[trades["stored_at"] > boundary + 1]
    assert len(late), "no trade stored after its minute"
    row = late.iloc[0]
    return (
        int(row["timestamp"]),
        int(row["stored_at"]),
        int(row["timestamp"] // MINUTE + 1) * MINUTE,
    )


# ---- store lag ------------------------------------------------------------------------------


def test_a_page_right_after_a_boundary_lacks_trades_stored_later(
    lag_server: SimulatorServer,
) -> None:
    market = "KRW-BTC"
    _, stored_at, boundary = late_trade(lag_server, market, NOW_MS - DAY)
    minute = boundary - MINUTE
    settled = lag_server.history.settled_candles(market, 1, minute, boundary)
    trades = lag_server.history.trades(market, minute, boundary, stored=True)

    lag_server.clock.set(boundary + 1)
    early = table(page(lag_server.url, "minutes/1", market, count=1, to=fmt(boundary)))
    # REST counts exactly the trades stored by now: the late one is missing.
    seen = trades[trades["stored_at"] < boundary + 1]
    assert stored_at >= boundary + 1
    if len(seen):
        assert early["candle_acc_trade_volume"].iloc[0] == pytest.approx(seen["volume"].sum())
        assert early["candle_acc_trade_volume"].iloc[0] < settled.volume[0]
    else:
        assert early.empty

    lag_server.clock.set(boundary + round(LAG * 1000))
    later = table(page(lag_server.url, "minutes/1", market, count=1, to=fmt(boundary)))
    assert_aggregates(later, wire_of(settled))
    assert later["timestamp"].iloc[0] == trades["stored_at"].iloc[-1]


def test_settled_timestamps_can_lie_after_the_period_end(lag_server: SimulatorServer) -> None:
    start = NOW_MS - DAY
    # Once the lag has passed, the closed candles are final.
    lag_server.clock.set(NOW_MS + round(LAG * 1000))
    minutes = minutes_of(lag_server.url, "KRW-BTC", start, NOW_MS + round(LAG * 1000))
    minutes = minutes[minutes.index < NOW_MS]
    late = minutes["timestamp"] - (minutes.index + MINUTE)
    assert (late >= 0).sum() > 0 and late.max() <= LAG * 1000
    assert (minutes["timestamp"] >= minutes.index).all()
    assert_aggregates(
        minutes, wire_of(lag_server.history.settled_candles("KRW-BTC", 1, start, NOW_MS))
    )
    # A 3m candle's timestamp is its last 1m candle's, late or not.
    threes = table(page(lag_server.url, "minutes/3", "KRW-BTC", count=200, to=fmt(NOW_MS)))
    expected = aggregate(minutes, 3 * MINUTE).loc[threes.index]
    assert_aggregates(threes, expected)
    # The history's settled candles of every unit aggregate its settled 1m candles.
    for unit, size in ((3, 3 * MINUTE), (60, HOUR), (240, 4 * HOUR), ("days", DAY)):
        settled = lag_server.history.settled_candles("KRW-BTC", unit, start, NOW_MS)
        assert_aggregates(wire_of(settled), aggregate(minutes, size))


@pytest.mark.parametrize("after_ms", [1, 700, 1_999])
def test_partial_views_keep_aggregation_parity(lag_server: SimulatorServer, after_ms: int) -> None:
    market = "KRW-BTC"
    _, stored_at, boundary = late_trade(lag_server, market, NOW_MS - DAY)
    now = boundary + after_ms
    lag_server.clock.set(now)
    day = boundary // DAY * DAY
    minutes = minutes_of(lag_server.url, market, day, now)
    for tf, size, count in (
        ("minutes/3", 3 * MINUTE, 200),
        ("minutes/60", HOUR, 24),
        ("minutes/240", 4 * HOUR, 6),
        ("days", DAY, 1),
    ):
        native = table(page(lag_server.url, tf, market, count=count))
        native = native[native.index >= day]
        assert_aggregates(native, aggregate(minutes, size).loc[native.index])
    # Until the late trade is stored, its candle is not final yet.
    settled = lag_server.history.settled_candles(market, 1, boundary - MINUTE, boundary)
    if now <= stored_at:
        assert boundary - MINUTE not in minutes.index or (
            minutes.loc[boundary - MINUTE, "candle_acc_trade_volume"] < settled.volume[0]
        )


def test_websocket_and_ticker_see_trades_at_once(lag_server: SimulatorServer) -> None:
    market = "KRW-BTC"
    trade_ms, stored_at, boundary = late_trade(lag_server, market, NOW_MS - DAY)
    minute = boundary - MINUTE
    lag_server.clock.set(trade_ms)

    async def body(connect: Callable[..., Awaitable[Client]]) -> None:
        client = await connect()
        await client.subscribe(("trade", [market]), is_only_realtime=True)
        lag_server.clock.set(trade_ms + 1)
        message = await client.next()
        assert message["trade_timestamp"] == trade_ms and message["stream_type"] == "REALTIME"

    with_clients(lag_server, body)
    assert stored_at > trade_ms + 1
    ticker = request(lag_server.url, "/v1/ticker", {"markets": market}).json()
    assert ticker[0]["trade_timestamp"] == trade_ms
    # REST does not have it yet.
    rest = table(page(lag_server.url, "minutes/1", market, count=1, to=fmt(boundary)))
    at_once = lag_server.history.candle_bars(
        market, 1, minute, boundary, trade_ms + 1, stored=False
    )
    assert at_once.timestamp[-1] == trade_ms
    assert rest.empty or rest["candle_acc_trade_volume"].iloc[-1] < at_once.volume[-1]


def test_no_store_lag_is_one_view() -> None:
    with serve() as plain, serve(store_lag=0.0) as zero:
        for tf in ("seconds", "minutes/1", "minutes/240", "days"):
            params = {"market": "KRW-BTC", "count": 200}
            assert (
                request(plain.url, f"/v1/candles/{tf}", params).body
                == request(zero.url, f"/v1/candles/{tf}", params).body
            )
        history = plain.history
        for stored in (True, False):
            bars = history.candle_bars("KRW-BTC", 1, NOW_MS - HOUR, NOW_MS, NOW_MS, stored=stored)
            assert (bars.timestamp < bars.start + MINUTE).all()


# ---- page readings --------------------------------------------------------------------------


def gap_minute(server: SimulatorServer) -> int:
    """A minute x of SPARSE with candles at x and x + 2 min, none at x + 1 min."""
    bars = server.history.settled_candles(SPARSE, 1, NOW_MS - DAY, NOW_MS)
    have = set(bars.start.tolist())
    return next(x for x in bars.start.tolist() if x + MINUTE not in have and x + 2 * MINUTE in have)


def test_newest_pages_reach_back_past_an_empty_period(
    newest: SimulatorServer, window: SimulatorServer
) -> None:
    # The third-party report's shape: to=20:04, count=2, 20:02 missing -> 20:03 and 20:01.
    x = gap_minute(newest)
    to = fmt(x + 3 * MINUTE)
    assert starts(page(newest.url, "minutes/1", SPARSE, count=2, to=to)) == [x + 2 * MINUTE, x]
    assert starts(page(window.url, "minutes/1", SPARSE, count=2, to=to)) == [x + 2 * MINUTE]


def test_newest_pages_reach_back_past_a_long_quiet_span(
    newest: SimulatorServer, window: SimulatorServer
) -> None:
    q0, q1 = XRP_QUIET
    started = time.monotonic()
    got = page(newest.url, "minutes/1", "KRW-XRP", count=200, to=fmt(q1))
    assert time.monotonic() - started < 5.0
    # The 200 newest before the span: what two window pages ending at its start hold.
    pair = page(window.url, "minutes/1", "KRW-XRP", count=200, to=fmt(q0))
    pair += page(window.url, "minutes/1", "KRW-XRP", count=200, to=fmt(q0 - 200 * MINUTE))
    assert len(got) == 200 and got == pair[:200]
    assert page(window.url, "minutes/1", "KRW-XRP", count=200, to=fmt(q1)) == []
    hours = page(newest.url, "minutes/60", "KRW-XRP", count=3, to=fmt(q1 // HOUR * HOUR))
    assert len(hours) == 3 and max(starts(hours)) < q0


def test_newest_pages_are_short_only_at_the_listing_and_retention(
    newest: SimulatorServer, window: SimulatorServer
) -> None:
    hours = page(newest.url, "minutes/60", "KRW-DOGE", count=200)
    assert 0 < len(hours) <= 4 and min(starts(hours)) >= DOGE_LISTED
    to = fmt(DOGE_LISTED + 30 * MINUTE)
    since = page(newest.url, "minutes/1", "KRW-DOGE", count=200, to=to)
    assert since == page(window.url, "minutes/1", "KRW-DOGE", count=200, to=to)
    assert 0 < len(since) <= 30
    # Seconds: not past Upbit's ~90-day retention.
    edge = NOW_MS - 90 * DAY
    seconds = page(newest.url, "seconds", "KRW-BTC", count=200, to=fmt(edge + 100 * SECOND))
    assert 0 < len(seconds) < 200 and min(starts(seconds)) >= edge
    assert page(newest.url, "seconds", "KRW-BTC", count=200, to=fmt(edge)) == []
    # The newest candles, with no `to`: exactly `count`, the in-progress one first.
    assert len(page(newest.url, "minutes/1", SPARSE, count=200)) == 200


def test_newest_and_window_agree_where_no_period_is_empty(
    newest: SimulatorServer, window: SimulatorServer
) -> None:
    for tf in ("minutes/240", "days", "weeks", "months"):
        params = {"count": 20, "to": "2026-11-19T12:00:00Z"}
        assert page(newest.url, tf, "KRW-BTC", **params) == page(
            window.url, tf, "KRW-BTC", **params
        )


# ---- quiet markets --------------------------------------------------------------------------


def test_a_quiet_span_has_no_candle_in_any_timeframe(quiet: SimulatorServer) -> None:
    q0, q1 = BTC_QUIET
    to = fmt(q1)
    for tf in ("seconds", "minutes/1", "minutes/3", "minutes/30", "minutes/60"):
        assert page(quiet.url, tf, "KRW-BTC", count=200, to=to) == []
    fours = page(quiet.url, "minutes/240", "KRW-BTC", count=200, to=to)
    assert fours and max(starts(fours)) < q0
    assert page(quiet.url, "days", "KRW-BTC", count=14, to=to) == []
    assert page(quiet.url, "weeks", "KRW-BTC", count=2, to=to) == []
    days = table(page(quiet.url, "days", "KRW-BTC", count=30))
    assert not ((days.index >= q0) & (days.index < q1)).any()
    # The month candle aggregates the trading days only.
    month = table(page(quiet.url, "months", "KRW-BTC", count=1))
    november = days[days.index >= month.index[0]]
    assert month["candle_acc_trade_volume"].iloc[0] == pytest.approx(
        november["candle_acc_trade_volume"].sum(), rel=1e-9
    )
    assert quiet.history.trades("KRW-BTC", q0, q1).empty
    # Quiet spans are whole minutes: ETH's was given as text.
    assert quiet.history.trades("KRW-ETH", ETH_QUIET[0], ETH_QUIET[1]).empty


def test_quiet_markets_stay_consistent_on_the_websocket_and_ticker(quiet: SimulatorServer) -> None:
    q0, q1 = BTC_QUIET
    quiet.clock.set(q1 - 30 * MINUTE)
    try:
        last_btc = int(quiet.history.trades("KRW-BTC", q0 - HOUR, q0)["timestamp"].iloc[-1])
        eth = quiet.history.trades("KRW-ETH", ETH_QUIET[0] - DAY, ETH_QUIET[0])
        last_eth = int(eth["timestamp"].iloc[-1])
        tickers = request(quiet.url, "/v1/ticker", {"markets": "KRW-BTC,KRW-ETH"}).json()
        assert [t["trade_timestamp"] for t in tickers] == [last_btc, last_eth]

        async def body(connect: Callable[..., Awaitable[Client]]) -> None:
            client = await connect()
            await client.subscribe(("trade", ["KRW-BTC", "KRW-ETH"]))
            snapshots = await client.take(2)
            assert {m["code"]: m["trade_timestamp"] for m in snapshots} == {
                "KRW-BTC": last_btc,
                "KRW-ETH": last_eth,
            }
            quiet.clock.set(q1 + MINUTE)
            live = await client.until(lambda m: any(x["code"] == "KRW-BTC" for x in m))
            assert all(m["trade_timestamp"] >= q1 for m in live)

        with_clients(quiet, body)
    finally:
        quiet.clock.set(NOW)


def test_long_quiet_thin_markets_go_more_than_a_week_without_a_trade() -> None:
    with serve(long_quiet=True) as strict, serve() as plain:
        thin = [m for m in strict.history.markets if m.sparse and m.quote in ("BTC", "USDT")]
        assert thin
        for info in thin:
            days = starts(page(strict.url, "days", info.market, count=200))[::-1]
            gaps = np.diff(days)
            assert gaps.max() > 7 * DAY, info.market
            assert (
                np.diff(starts(page(plain.url, "days", info.market, count=200))[::-1]).max()
                <= 7 * DAY
            )
        # Inside a stretch: no candle of any timeframe.
        market = thin[0].market
        days = starts(page(strict.url, "days", market, count=200))[::-1]
        after = days[int(np.argmax(np.diff(days))) + 1]
        for tf, count in (("seconds", 200), ("minutes/1", 200), ("minutes/60", 168), ("days", 7)):
            assert page(strict.url, tf, market, count=count, to=fmt(after)) == [], tf
        assert strict.history.trades(market, after - 7 * DAY, after).empty
        # Other markets are untouched.
        for market in ("KRW-BTC", SPARSE, "BTC-ETH"):
            params = {"market": market, "count": 200}
            assert (
                request(strict.url, "/v1/candles/days", params).body
                == request(plain.url, "/v1/candles/days", params).body
            )


# ---- market list, errors, groups, count -----------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "old", "new"),
    [("both", True, True), ("is_details", False, True), ("ignored", False, False)],
)
def test_market_list_detail_parameter(mode: str, old: bool, new: bool) -> None:
    with serve(details=mode) as server:
        for name, expected in (("isDetails", old), ("is_details", new)):
            rows = request(server.url, "/v1/market/all", {name: "true"}).json()
            assert all(("market_event" in row) is expected for row in rows), name
        assert all("market_event" not in r for r in request(server.url, "/v1/market/all").json())


def test_429_in_plain_text_and_418_naming_its_length() -> None:
    with serve(rate=1, ban_after_429s=1, ban_seconds=30, plain_429=True) as server:

        def hit() -> Reply:
            return request(server.url, "/v1/candles/minutes/1", {"market": "KRW-BTC"})

        assert hit().status == 200
        limited = hit()
        assert limited.status == 429 and limited.body == b"Too many API requests."
        assert limited.headers["Content-Type"].startswith("text/plain")
        assert limited.headers["Remaining-Req"] == "group=candles; min=600; sec=0"
        for reply in (hit(), request(server.url, "/v1/market/all")):
            assert reply.status == 418 and "Retry-After" not in reply.headers
            error = reply.json()["error"]
            assert error["name"] == 418
            seconds = re.search(r"blocked for (\d+) seconds", error["message"])
            assert seconds is not None and 29 <= int(seconds.group(1)) <= 30


def test_the_ticker_trade_and_orderbook_have_their_own_groups() -> None:
    with serve(rate=3) as server:
        remaining = []
        for params in ({"quote_currencies": "KRW"}, {"markets": "KRW-BTC,KRW-ETH"}):
            path = "/v1/ticker/all" if "quote_currencies" in params else "/v1/ticker"
            reply = request(server.url, path, params)
            assert reply.status == 200
            remaining.append(reply.headers["Remaining-Req"])
        assert remaining == ["group=ticker; min=600; sec=2", "group=ticker; min=600; sec=1"]
        rows = request(server.url, "/v1/ticker", {"markets": "KRW-BTC,KRW-ETH"}).json()
        assert [r["market"] for r in rows] == ["KRW-BTC", "KRW-ETH"]
        assert request(server.url, "/v1/ticker", {"markets": "KRW-BTC"}).status == 429
        reply = request(server.url, "/v1/candles/minutes/1", {"market": "KRW-BTC"})
        assert reply.headers["Remaining-Req"] == "group=candles; min=600; sec=2"
        for path, group in (("/v1/trades/ticks", "trade"), ("/v1/orderbook", "orderbook")):
            reply = request(server.url, path, {"market": "KRW-BTC"})
            assert reply.headers["Remaining-Req"].startswith(f"group={group}; ")


def test_unknown_ticker_markets_are_404() -> None:
    with serve() as server:
        assert request(server.url, "/v1/ticker", {"markets": "KRW-NOPE"}).status == 404
        assert request(server.url, "/v1/ticker").status == 400


def test_count_above_200_is_clamped() -> None:
    with serve(clamp_count=True) as server, serve() as plain:
        params = {"market": "KRW-BTC", "to": "2026-11-19T12:00:00Z"}
        clamped = request(server.url, "/v1/candles/minutes/1", {**params, "count": 500})
        assert clamped.status == 200 and len(clamped.json()) == 200
        full = request(server.url, "/v1/candles/minutes/1", {**params, "count": 200})
        assert clamped.body == full.body
        for bad in (0, -5, "ten", "1.5"):
            reply = request(server.url, "/v1/candles/minutes/1", {**params, "count": bad})
            assert reply.status == 400 and "error" in reply.json()
        assert request(plain.url, "/v1/candles/minutes/1", {**params, "count": 500}).status == 400


# ---- WebSocket limits -----------------------------------------------------------------------


def test_websocket_subscribe_limits_per_connection() -> None:
    options = {"ws_subscribe_rate": 1_000, "ws_subscribe_per_minute": 10}
    with serve(ws_limits_per="connection", **options) as server:

        async def body(connect: Callable[..., Awaitable[Client]]) -> None:
            first, second = await connect(), await connect()
            for client in (first, second):
                for _ in range(10):
                    await client.subscribe(("trade", ["KRW-BTC"]))
                await client.take(10)
            for client in (first, second):
                await client.subscribe(("trade", ["KRW-BTC"]))
                assert (await client.next())["error"]["name"] == "TOO_MANY_SUBSCRIBE"
            third = await connect()
            await third.subscribe(("trade", ["KRW-BTC"]))
            assert (await third.next())["type"] == "trade"

        with_clients(server, body)
        assert server.stats()["ws_rejected"] == 2


# ---- configuration --------------------------------------------------------------------------


def test_strict_preset_and_command_line() -> None:
    strict = SimulatorConfig.strict()
    assert (strict.store_lag, strict.pages, strict.long_quiet, strict.details) == (
        2.0,
        "newest",
        True,
        "is_details",
    )
    assert strict.plain_429 and strict.clamp_count and strict.ws_limits_per == "ip"
    assert SimulatorConfig.strict(pages="window").pages == "window"
    assert parse_args([]) == SimulatorConfig()
    assert parse_args(["--strict"]) == strict
    config = parse_args(
        [
            "--strict",
            "--pages",
            "window",
            "--no-long-quiet",
            "--store-lag",
            "0.5",
            "--details",
            "ignored",
            "--ws-limits-per",
            "connection",
            "--quiet",
            "KRW-BTC=2026-11-02T00:00:00Z/2026-11-16T00:00:00Z",
            "--quiet",
            "KRW-BTC=2026-11-18T00:00:00Z/2026-11-19T00:00:00Z",
        ]
    )
    assert (config.pages, config.long_quiet, config.store_lag, config.details) == (
        "window",
        False,
        0.5,
        "ignored",
    )
    assert config.ws_limits_per == "connection" and config.plain_429
    assert config.quiet == {
        "KRW-BTC": [
            ("2026-11-02T00:00:00Z", "2026-11-16T00:00:00Z"),
            ("2026-11-18T00:00:00Z", "2026-11-19T00:00:00Z"),
        ]
    }
    for bad in (["--quiet", "KRW-BTC"], ["--quiet", "KRW-BTC=x/y"], ["--pages", "all"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
    for field, value in (("pages", "all"), ("details", "yes"), ("ws_limits_per", "x")):
        with pytest.raises(ValueError, match=field):
            SimulatorConfig(**{field: value})
    with pytest.raises(ValueError):
        SimulatorConfig(store_lag=-1.0)


def test_a_strict_server_serves_consistent_pages() -> None:
    config = SimulatorConfig.strict(clock_start=NOW_MS + 500, frozen=True, rate=100_000)
    with SimulatorServer(config) as server:
        minutes = table(page(server.url, "minutes/1", "KRW-BTC", count=200))
        hours = table(page(server.url, "minutes/60", "KRW-BTC", count=3))
        hours = hours[hours.index >= minutes.index[0] // HOUR * HOUR + HOUR]
        assert_aggregates(hours, aggregate(minutes, HOUR).loc[hours.index])
        rows = request(server.url, "/v1/market/all", {"is_details": "true"}).json()
        assert all("market_event" in r for r in rows)
