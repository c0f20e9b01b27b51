"""`live` against the simulator's WebSocket and REST: closes equal REST, repairs, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pandas as pd
import pytest
from conftest import DEADLINE, FAST_RATE, NOW, Procs, plain, read_until, truth

from upbit_cache.collector.config import ClientConfig
from upbit_cache.collector.websocket import (
    ERRORS_IN_A_ROW,
    Connected,
    Disconnected,
    StreamEvent,
    Trade,
    trade_stream,
)
from upbit_cache.errors import ExchangeError, StorageError, UsageError
from upbit_cache.manager.live import LiveEvent, live_candles
from upbit_cache.ranges import TimeRange
from upbit_cache.simulator import SimulatorServer
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.timeframes.live import Candle
from upbit_cache.times import to_ms

MARKETS = ["KRW-BTC", "KRW-ETH"]
TFS = Timeframe.parse_list("1m,15m")
MINUTE = 60_000


class Watch:
    """`live_candles` running in the background, its events collected."""

    def __init__(self, sim: SimulatorServer, store: CandleStore | None) -> None:
        config = ClientConfig(
            api_url=sim.url, rate=FAST_RATE, backoff=0.01, ws_url=sim.ws_url, settle=0
        )
        self.stream = live_candles(MARKETS, TFS, config=config, store=store)
        self.events: list[LiveEvent] = []
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with contextlib.aclosing(self.stream):
            async for item in self.stream:
                self.events.append(item)

    async def __aenter__(self) -> Watch:
        self.task = asyncio.create_task(self._run())
        series = len(MARKETS) * len(TFS)
        await self.until(lambda: sum(e.event.kind == "snapshot" for e in self.events) >= series)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        # A stream that outlives its cancel (a swallowed CancelledError) fails here, not
        # at the suite's timeout.
        done, _ = await asyncio.wait({self.task}, timeout=10)
        assert done, "the live stream did not stop when cancelled"
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    def closed(self, tf: Timeframe | None = None) -> list[Candle]:
        return [
            e.event.candle
            for e in self.events
            if e.event.kind == "close" and (tf is None or e.event.candle.timeframe == tf)
        ]

    async def until(self, done: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if self.task is not None and self.task.done():
                self.task.result()  # raises what the stream raised
            assert time.monotonic() < deadline, "timed out waiting for live events"
            await asyncio.sleep(0.02)


def frame(candles: list[Candle]) -> pd.DataFrame:
    ordered = sorted(candles, key=lambda c: c.time)
    return pd.DataFrame(
        {
            "time": pd.to_datetime([c.time for c in ordered], unit="ms", utc=True),
            "open": [c.open for c in ordered],
            "high": [c.high for c in ordered],
            "low": [c.low for c in ordered],
            "close": [c.close for c in ordered],
            "volume": [c.volume for c in ordered],
            "value": [c.value for c in ordered],
            "timestamp": pd.to_datetime([c.last_trade for c in ordered], unit="ms", utc=True),
        }
    ).astype({"time": "datetime64[ms, UTC]", "timestamp": "datetime64[ms, UTC]"})


def check(sim: SimulatorServer, got: list[Candle], market: str, tf: str, start: int, end: int):
    """`got`'s closes of (market, tf) in [start, end) are exactly the REST candles."""
    mine = [
        c for c in got if c.market == market and c.timeframe.name == tf and start <= c.time < end
    ]
    want = truth(sim, market, tf, start, end)
    pd.testing.assert_frame_equal(frame(mine), want, rtol=1e-9)


def test_closed_live_candles_equal_rest_and_are_stored(sim: SimulatorServer, tmp_path: Path):
    async def scenario() -> list[Candle]:
        async with Watch(sim, CandleStore(tmp_path)) as watch:
            sim.clock.advance(20 * 60)
            m15 = Timeframe.parse("15m")
            await watch.until(lambda: len(watch.closed(m15)) >= len(MARKETS))
            await watch.until(lambda: len(watch.closed(TFS[0])) >= 19 * len(MARKETS))
            # Closed candles are provisional until their periods settle through REST.
            span = TimeRange(to_ms(NOW), to_ms(NOW) + 15 * MINUTE)
            store = CandleStore(tmp_path)
            await watch.until(lambda: all(store.fetched(m15, m).covers(span) for m in MARKETS))
            return watch.closed()

    closed = asyncio.run(scenario())
    start = to_ms(NOW)
    for market in MARKETS:
        check(sim, closed, market, "1m", start, start + 19 * MINUTE)
        check(sim, closed, market, "15m", start, start + 15 * MINUTE)
        stored = CandleStore(tmp_path).load(
            market, Timeframe.parse("15m"), TimeRange(start, start + 15 * MINUTE)
        )
        pd.testing.assert_frame_equal(
            stored, truth(sim, market, "15m", start, start + 15 * MINUTE), rtol=1e-9
        )
        assert (
            CandleStore(tmp_path)
            .fetched(Timeframe.parse("15m"), market)
            .covers(TimeRange(start, start + 15 * MINUTE))
        )


def test_a_dropped_connection_is_repaired_through_rest(sim: SimulatorServer) -> None:
    async def scenario() -> list[Candle]:
        async with Watch(sim, None) as watch:
            sim.clock.advance(4 * 60)
            await watch.until(lambda: len(watch.closed(TFS[0])) >= 3 * len(MARKETS))
            sim.drop_websockets()
            sim.clock.advance(6 * 60)  # these trades happen while we are away
            await watch.until(lambda: len(watch.closed(TFS[0])) >= 9 * len(MARKETS))
            sim.clock.advance(8 * 60)
            await watch.until(lambda: len(watch.closed(TFS[1])) >= len(MARKETS))
            return watch.closed()

    closed = asyncio.run(scenario())
    start = to_ms(NOW)
    for market in MARKETS:
        check(sim, closed, market, "1m", start, start + 17 * MINUTE)  # each exactly once
        check(sim, closed, market, "15m", start, start + 15 * MINUTE)


def test_duplicate_trades_are_counted_once(sim: SimulatorServer) -> None:
    sim.faults.inject("ws_duplicate", count=200, market="KRW-BTC")

    async def scenario() -> list[Candle]:
        async with Watch(sim, None) as watch:
            sim.clock.advance(3 * 60)
            await watch.until(lambda: len(watch.closed(TFS[0])) >= 2 * len(MARKETS))
            return watch.closed()

    closed = asyncio.run(scenario())
    check(sim, closed, "KRW-BTC", "1m", to_ms(NOW), to_ms(NOW) + 2 * MINUTE)


def test_bad_input_is_refused_before_connecting(sim: SimulatorServer) -> None:
    config = ClientConfig(api_url=sim.url, ws_url=sim.ws_url, settle=0)

    async def first(markets: list[str], tfs: list[Timeframe]) -> None:
        async for _ in live_candles(markets, tfs, config=config, store=None):
            break

    with pytest.raises(UsageError, match="timeframes Upbit serves"):
        asyncio.run(first(["KRW-BTC"], Timeframe.parse_list("2h")))
    with pytest.raises(UsageError, match="does not list KRW-NOPE"):
        asyncio.run(first(["KRW-NOPE"], TFS))


@pytest.mark.slow
def test_cli_jsonl_then_sigterm_stores_and_exits_cleanly(
    sim: SimulatorServer, tmp_path: Path, procs: Procs
):
    command = [sys.executable, "-m", "upbit_cache", "live", "KRW-BTC", "-t", "1m", "--jsonl"]
    command += ["--api-url", sim.url, "--ws-url", sim.ws_url, "--data-dir", str(tmp_path)]
    proc = procs.popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Frozen 5 s before the 00:02 minute ends: live closes it by its own clock (Upbit's, as
    # last seen, running on) a moment later, not half a minute later.
    sim.clock.advance(175)
    lines = read_until(
        proc, lambda lines: any(json.loads(line)["event"] == "close" for line in lines), "a close"
    )
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 143, err  # 128 + SIGTERM, as for every command
    assert "stopped (SIGTERM); closed candles are stored" in err
    for line in lines + out.splitlines():
        row = json.loads(line)
        assert list(row) == [  # export's keys in its order, then live's own
            "market", "timeframe", "time", "open", "high", "low", "close", "volume", "value",
            "event", "last_trade",
        ]  # fmt: skip
        assert row["event"] in {"snapshot", "update", "close"} and row["market"] == "KRW-BTC"
    start = to_ms(NOW)
    stored = CandleStore(tmp_path).load(
        "KRW-BTC", Timeframe.parse("1m"), TimeRange(start, start + 2 * MINUTE)
    )
    pd.testing.assert_frame_equal(
        stored, truth(sim, "KRW-BTC", "1m", start, start + 2 * MINUTE), rtol=1e-9
    )


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_stop_live_in_order_with_the_signal_status(
    sim: SimulatorServer, tmp_path: Path, procs: Procs, sig: signal.Signals, code: int
) -> None:
    command = [sys.executable, "-m", "upbit_cache", "live", "KRW-BTC", "-t", "1m", "--jsonl"]
    command += ["--no-store", "-q", "--api-url", sim.url, "--ws-url", sim.ws_url]
    proc = procs.popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    read_until(proc, lambda lines: len(lines) >= 1, "the first line")  # streaming: instead is set
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=DEADLINE)
    why = "SIGTERM" if sig == signal.SIGTERM else "interrupted"
    assert proc.returncode == code, err
    # Said even with -q (the status needs its reason); no claim of storing with --no-store.
    assert plain(err).splitlines() == [f"upbit-cache: stopped ({why}); nothing stored (--no-store)"]


def test_terminal_table_shows_every_series() -> None:
    import io

    from upbit_cache.cli.live_view import LiveTable
    from upbit_cache.timeframes.live import CandleEvent

    out = io.StringIO()
    start = to_ms(NOW)
    with LiveTable(out, width=160) as view:
        for market in MARKETS:
            for tf in TFS:
                candle = Candle(market, tf, start, 1.0, 2.0, 0.5, 1.5, 3.0, 4.5, start + 5_000)
                view.show(LiveEvent(CandleEvent("update", candle)))
    text = out.getvalue()
    for market in MARKETS:
        assert market in text
    assert "15m" in text and "2026-11-20 00:00" in text and "0.0 s ago" in text


def test_the_terminal_table_reads_as_asked() -> None:
    # Rows in the order asked, prices to the market's tick with thousands separators, and a
    # line while the backfill runs (the stream's first event waits for it).
    import io

    from upbit_cache.cli.live_view import LiveTable
    from upbit_cache.timeframes.live import CandleEvent

    out, start = io.StringIO(), to_ms(NOW)
    markets, tfs = ["KRW-ETH", "KRW-BTC", "BTC-XRP"], Timeframe.parse_list("1m,15m,1h")
    prices = {"KRW-BTC": 198_381_000.0, "KRW-ETH": 4_512_000.0, "BTC-XRP": 0.00001234}
    with LiveTable(out, width=200, markets=markets, timeframes=tfs):
        pass  # stopped before the first event: what showed until then (off a terminal: last)
    assert "backfilling 9 series from the store and Upbit" in out.getvalue()
    with LiveTable(out, width=200, markets=markets, timeframes=tfs) as view:
        for market in reversed(markets):  # the stream's order is not the one asked
            for tf in reversed(tfs):
                p = prices[market]
                candle = Candle(market, tf, start, p, p * 1.01, p * 0.99, p, 3.0, 4.5, start)
                view.show(LiveEvent(CandleEvent("snapshot", candle)))
    final = out.getvalue().rpartition("backfilling")[2]
    rows = [
        line.split("│")[1:3] for line in final.splitlines() if "│ KRW-" in line or "│ BTC-" in line
    ]
    assert [(m.strip(), tf.strip()) for m, tf in rows] == [
        (m, t.name) for m in markets for t in tfs
    ]
    assert "198,381,000" in final and "200,364,810" in final and "1.98381e+08" not in final
    assert "4,512,000" in final and "0.00001234" in final and "0.00001246" in final


@pytest.mark.slow
def test_back_within_two_seconds_of_the_servers_return(sim: SimulatorServer) -> None:
    async def scenario() -> float:
        async with Watch(sim, None) as watch:
            connections = sim.stats()["ws_connections"]
            sim.drop_websockets(down_for=3.0)
            back, before = time.monotonic() + 3.0, len(watch.events)
            await watch.until(lambda: sim.stats()["ws_connections"] > connections)
            reconnected = time.monotonic() - back
            await watch.until(  # and the book is repaired through REST: snapshots again
                lambda: sum(e.event.kind == "snapshot" for e in watch.events[before:]) >= 1
            )
            return reconnected

    assert asyncio.run(scenario()) <= 2.0


def test_an_unwritable_data_dir_fails_before_streaming(sim: SimulatorServer) -> None:
    async def first() -> None:
        async with Watch(sim, CandleStore("/proc/nope")):
            pass

    began = time.monotonic()
    with pytest.raises(StorageError, match="data dir /proc/nope is not writable"):
        asyncio.run(first())
    assert time.monotonic() - began < 5


async def stream_events(sim: SimulatorServer, markets: list[str], wanted: int) -> list[StreamEvent]:
    """The first `wanted` events of a trade stream of `markets`; the clock moves on ten minutes
    after each first trade (the snapshot) of a connection, so that there are trades to push."""
    events: list[StreamEvent] = []
    async with (
        aiohttp.ClientSession() as session,
        contextlib.aclosing(trade_stream(session, sim.ws_url, markets)) as stream,
        asyncio.timeout(30),
    ):
        async for event in stream:
            if isinstance(event, Trade) and isinstance(events[-1], Connected):
                sim.clock.advance(600)
            events.append(event)
            if len(events) >= wanted:
                break
    return events


def test_a_transient_error_frame_is_a_reconnect(sim: SimulatorServer) -> None:
    sim.faults.inject("ws_error", count=2, market="KRW-BTC")
    events = asyncio.run(stream_events(sim, ["KRW-BTC"], 8))
    kinds = [type(e).__name__ for e in events]
    assert kinds[:6] == ["Connected", "Disconnected"] * 2 + ["Connected", "Trade"], kinds
    assert [e.again for e in events if isinstance(e, Connected)] == [False, True, True]
    [why, *_] = [e.reason for e in events if isinstance(e, Disconnected)]
    assert why == "Upbit's WebSocket sent an error (INTERNAL_ERROR: try again (injected))"
    assert sim.stats()["faults_by_kind"] == {"ws_error": 2}


def test_a_transient_error_frame_mid_stream_is_repaired_through_rest(
    sim: SimulatorServer,
) -> None:
    async def scenario() -> list[Candle]:
        async with Watch(sim, None) as watch:
            sim.clock.advance(4 * 60)
            await watch.until(lambda: len(watch.closed(TFS[0])) >= 3 * len(MARKETS))
            sim.faults.inject("ws_error", count=2, market="KRW-ETH")
            sim.drop_websockets()  # the next two subscribes are answered with the error
            sim.clock.advance(6 * 60)  # these trades happen while we are away
            await watch.until(lambda: sim.stats()["ws_subscribes"] == 2)  # the third took
            assert sim.stats()["faults_by_kind"] == {"ws_error": 2}
            # Each connection (the first, two refused, the third) resyncs and snapshots every
            # series: the clock moves on only once the last resync is done.
            series = len(MARKETS) * len(TFS)
            await watch.until(
                lambda: sum(e.event.kind == "snapshot" for e in watch.events) >= 4 * series
            )
            await watch.until(lambda: len(watch.closed(TFS[0])) >= 9 * len(MARKETS))
            sim.clock.advance(8 * 60)
            await watch.until(lambda: len(watch.closed(TFS[1])) >= len(MARKETS))
            return watch.closed()

    closed = asyncio.run(scenario())
    start = to_ms(NOW)
    for market in MARKETS:
        check(sim, closed, market, "1m", start, start + 17 * MINUTE)  # each exactly once
        check(sim, closed, market, "15m", start, start + 15 * MINUTE)


@pytest.mark.slow
def test_error_frames_again_and_again_with_no_trade_stop_the_stream(sim: SimulatorServer) -> None:
    sim.faults.inject("ws_error", count=100, market="KRW-BTC")
    with pytest.raises(ExchangeError) as caught:
        asyncio.run(stream_events(sim, ["KRW-BTC"], 1000))
    assert str(caught.value) == (
        f"Upbit's WebSocket answered with an error {ERRORS_IN_A_ROW} times in a row with no "
        "trade in between (last: INTERNAL_ERROR: try again (injected)); stopped. Run again later."
    )
    assert sim.stats()["faults_by_kind"] == {"ws_error": ERRORS_IN_A_ROW}


def test_an_error_frame_that_says_the_request_is_wrong_stops_at_once(sim: SimulatorServer) -> None:
    with pytest.raises(ExchangeError) as caught:  # no codes: Upbit answers NO_CODES
        asyncio.run(stream_events(sim, [], 1000))
    assert str(caught.value).startswith("Upbit's WebSocket refused the subscription (NO_CODES: ")
    assert sim.stats()["ws_connections"] == 1
