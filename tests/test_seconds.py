"""1s candles: Upbit's three-month horizon, parity with the native minutes, live seconds."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pandas as pd
from conftest import FAST_RATE, NOW, candle_requests, plain, request, run_fetch, truth
from typer.testing import CliRunner

from upbit_cache.cli import app
from upbit_cache.collector.config import ClientConfig
from upbit_cache.collector.paging import DEFAULT_WINDOW
from upbit_cache.manager.fetch import fetch
from upbit_cache.manager.live import LiveEvent, live_candles
from upbit_cache.manager.prune import Policy, prune
from upbit_cache.manager.scope import Window
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.simulator import SimulatorConfig, SimulatorServer
from upbit_cache.store import layout
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.timeframes.live import Candle
from upbit_cache.times import to_ms

SEC = Timeframe.parse("1s")
DAY, HOUR, MINUTE = 86_400_000, 3_600_000, 60_000
# Upbit keeps three months of 1s; we ask 89 days back at most, less 10 minutes of margin.
EDGE = "2026-08-23T00:10:00Z"
runner = CliRunner()


def fetch_cli(
    sim: SimulatorServer, data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    common = ["--data-dir", str(data_dir), "--api-url", sim.url, "--rate", str(FAST_RATE)]
    result = runner.invoke(app, ["fetch", *args, *common], env=env)
    return result.exit_code, result.stdout, plain(result.stderr)


def stored(data_dir: Path, market: str, tf: str, start: str | int, end: str | int) -> pd.DataFrame:
    lo = to_ms(start) if isinstance(start, str) else start
    hi = to_ms(end) if isinstance(end, str) else end
    return CandleStore(data_dir).load(market, Timeframe.parse(tf), TimeRange(lo, hi))


def assert_parity(got: pd.DataFrame, native: pd.DataFrame) -> None:
    """Equal to Upbit's own candles: OHLC and times exactly; sums to float rounding."""
    assert len(got) == len(native) > 0
    exact = ["time", "open", "high", "low", "close", "timestamp"]
    pd.testing.assert_frame_equal(got[exact], native[exact])
    pd.testing.assert_frame_equal(got[["volume", "value"]], native[["volume", "value"]], rtol=1e-9)


def test_a_range_across_the_horizon_fetches_what_upbit_keeps_and_says_so(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    markets = ["KRW-BTC", "KRW-ETH"]
    window = ("--since", "2026-08-22T23:00", "--until", "2026-08-23T01:00")
    code, out, err = fetch_cli(sim, tmp_path, *markets, "-t", "1s", *window)
    assert code == 0, err
    warning = (
        "upbit-cache: warning: Upbit keeps 1s candles for about three months only: "
        f"2026-08-22T23:00:00Z→{EDGE} was not fetched (2 markets) nor recorded as fetched; "
        f"{EDGE}→2026-08-23T01:00:00Z was\n"
    )
    assert err.splitlines(keepends=True)[-1] == warning
    # 50 minutes of seconds are 15 pages of 200; nothing was asked of the hour before.
    assert candle_requests(sim) == 2 * 15
    assert out.startswith("2 markets, ")
    for market in markets:
        got = stored(tmp_path, market, "1s", "2026-08-22", "2026-08-24")
        assert_parity(got, truth(sim, market, "1s", EDGE, "2026-08-23T01:00"))
        recorded = CandleStore(tmp_path).fetched(SEC, market)
        assert recorded == Ranges.of([(to_ms(EDGE), to_ms("2026-08-23T01:00"))])
    # Again: nothing to ask for, and the same warning (the hole is still a hole).
    sim.reset_stats()
    code, _, err = fetch_cli(sim, tmp_path, *markets, "-t", "1s", *window)
    assert (code, err.splitlines(keepends=True)[-1]) == (0, warning)
    assert candle_requests(sim) == 0

    # A month later Upbit has dropped those seconds; the store keeps them, and a cron's
    # overlapping window asks only for what is new.
    kept_rows = stored(tmp_path, "KRW-BTC", "1s", EDGE, "2026-08-23T01:00")
    sim.clock.set(to_ms(NOW) + 30 * DAY)
    sim.reset_stats()
    window = ("--since", EDGE, "--until", "2026-08-23T01:00")
    code, _, err = fetch_cli(sim, tmp_path, "KRW-BTC", "-t", "1s", *window)
    assert code == 0 and "warning" not in err
    assert candle_requests(sim) == 0
    page = {"market": "KRW-BTC", "count": 200, "to": "2026-08-23T01:00:00Z"}
    assert request(sim.url, "/v1/candles/seconds", page).json() == []  # Upbit's answer now
    pd.testing.assert_frame_equal(
        stored(tmp_path, "KRW-BTC", "1s", EDGE, "2026-08-23T01:00"), kept_rows
    )


def test_an_export_across_the_horizon_says_so_too(sim: SimulatorServer, tmp_path: Path) -> None:
    window = ["--since", "2026-08-22T23:00", "--until", "2026-08-23T01:00"]
    common = ["--data-dir", str(tmp_path / "d"), "--api-url", sim.url, "--rate", str(FAST_RATE)]
    out = ["--out", str(tmp_path / "s.csv")]
    result = runner.invoke(app, ["export", "KRW-BTC", "-t", "1s", *window, *out, *common])
    assert result.exit_code == 0, result.stderr
    assert f"was not fetched (1 market) nor recorded as fetched; {EDGE}→" in result.stderr
    rows = pd.read_csv(tmp_path / "s.csv")
    assert len(rows) == len(truth(sim, "KRW-BTC", "1s", EDGE, "2026-08-23T01:00")) > 0


def test_a_range_wholly_past_the_horizon_is_one_line_and_no_request(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    code, out, err = fetch_cli(
        sim, tmp_path, "KRW-BTC", "-t", "1s", "--since", "2026-08-01", "--until", "2026-08-02"
    )
    assert (code, out) == (2, "")
    assert err == (
        "upbit-cache: error: Upbit keeps 1s candles for about three months only (since "
        f"{EDGE}): nothing of 2026-08-01T00:00:00Z→2026-08-02T00:00:00Z can be fetched\n"
    )
    # Should Upbit change its horizon, a setting follows it.
    window = ("--since", "2026-10-01", "--until", "2026-10-02")
    shorter = {"UPBIT_SECONDS_HORIZON_DAYS": "30"}
    code, _, err = fetch_cli(sim, tmp_path, "KRW-BTC", "-t", "1s", *window, env=shorter)
    assert code == 2 and "(since 2026-10-21T00:10:00Z): nothing of" in err
    bad = {"UPBIT_SECONDS_HORIZON_DAYS": "three months"}
    assert fetch_cli(sim, tmp_path, "KRW-BTC", "-t", "1s", *window, env=bad)[::2] == (
        2,
        "upbit-cache: error: UPBIT_SECONDS_HORIZON_DAYS must be a number of days above 0, "
        "not 'three months'\n",
    )
    assert candle_requests(sim) == 0


def test_the_horizon_moving_during_a_run_cuts_the_oldest_pages_cleanly(tmp_path: Path) -> None:
    # A backfill goes newest first, so its oldest pages are sent last, when the horizon has
    # moved on: here simulated time runs 5400x (1.5 h per second) against 50 requests/s.
    # Upbit (the simulator) keeps exactly 90 days; so does the client, less its margin.
    speedy = SimulatorConfig(rate=100, clock_start=NOW, clock_speed=5400.0)
    since = to_ms(NOW) - 90 * DAY + 15 * MINUTE
    until = since + 3 * HOUR
    with SimulatorServer(speedy) as server:
        config = ClientConfig(
            api_url=server.url, rate=50, backoff=0.01, seconds_horizon_days=90, settle=0
        )
        run = fetch(CandleStore(tmp_path), config, ["KRW-BTC"], [SEC], Window(since, until))
        report = asyncio.run(run)
        assert not report.failed, report.failed[0].error
        recorded = CandleStore(tmp_path).fetched(SEC, "KRW-BTC")
        cut = report.beyond["KRW-BTC"]
        # Each page was asked while Upbit had it, or not at all: the part that aged out
        # meanwhile is a hole, not recorded as quiet, and the rest is exact.
        assert cut and cut.intervals[0][0] == since
        assert recorded.union(cut) == Ranges.of([(since, until)])
        assert recorded and recorded.intervals[0][0] == cut.intervals[-1][1]
        lo, hi = recorded.intervals[0]
        assert_parity(
            stored(tmp_path, "KRW-BTC", "1s", lo, hi), truth(server, "KRW-BTC", "1s", lo, hi)
        )


def test_seconds_derive_the_minute_timeframes_exactly(sim: SimulatorServer, tmp_path: Path) -> None:
    start, end = to_ms(NOW) - 4 * HOUR, to_ms(NOW) - 2 * HOUR
    markets = ["KRW-BTC", "KRW-MUC"]  # KRW-MUC has minutes without a trade in these hours
    run_fetch(sim.url, tmp_path, markets, "1s", start=start, end=end)
    # A fetch of minutes inside the stored seconds is planned on them: no request.
    sim.reset_stats()
    report = run_fetch(sim.url, tmp_path, markets, "3m", start=start, end=end)
    assert report.plan is not None and report.plan.base == SEC
    assert candle_requests(sim) == 0
    result = runner.invoke(
        app, ["resample", *markets, "-t", "1m,5m,1h", "--from", "1s", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.stderr
    # A minute without a trade has no candle, derived or native.
    assert len(truth(sim, "KRW-MUC", "1m", start, end)) < 120
    for market in markets:
        for tf in ("1m", "3m", "5m", "1h"):
            native = truth(sim, market, tf, start, end)
            assert_parity(stored(tmp_path, market, tf, start, end), native)


def test_seconds_are_not_planned_on_past_the_horizon(sim: SimulatorServer, tmp_path: Path) -> None:
    edge = to_ms(EDGE)
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "1s", start=edge, end=edge + HOUR)
    sim.reset_stats()
    # 1s holds the second hour and costs nothing there, but cannot give the first: 1m can.
    report = run_fetch(sim.url, tmp_path, ["KRW-BTC"], "5m", start=edge - HOUR, end=edge + HOUR)
    assert report.plan is not None and report.plan.base.name == "5m"
    assert not report.beyond and candle_requests(sim) == 1
    assert_parity(
        stored(tmp_path, "KRW-BTC", "5m", edge - HOUR, edge + HOUR),
        truth(sim, "KRW-BTC", "5m", edge - HOUR, edge + HOUR),
    )


def test_quiet_seconds_share_one_witness_per_200_minutes(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    # KRW-PUVEF has no trade in these two hours, and trades after them: an empty 1s page
    # needs a witness (its last trade is newer), and one 1m page covers 60 of them: the
    # pages it proves quiet are not even sent.
    start, end = to_ms(NOW) - 4 * HOUR, to_ms(NOW) - 2 * HOUR
    assert truth(sim, "KRW-PUVEF", "1s", start, end).empty
    assert not truth(sim, "KRW-PUVEF", "1m", end, NOW).empty
    run_fetch(sim.url, tmp_path, ["KRW-PUVEF"], "1s", start=start, end=end)
    asked = sim.stats()["by_path"]
    assert asked["/v1/candles/minutes/1"] == 1
    assert asked["/v1/candles/seconds"] <= DEFAULT_WINDOW  # those in flight before it came
    assert sum(asked.values()) == asked["/v1/candles/seconds"] + 3  # + markets, ticker
    assert CandleStore(tmp_path).fetched(SEC, "KRW-PUVEF") == Ranges.of([(start, end)])


def folders(store: CandleStore, tier: str) -> list[str]:
    """The partition folder of each data file of the 1s KRW-BTC series, for files of `tier`."""
    found = store.data_files(SEC, "KRW-BTC")
    assert all(layout.tier_of(f.path) == tier for f in found)
    return [f.path.rpartition("/")[0] for f in found]


def test_a_day_of_seconds_is_hot_files_of_that_day(sim: SimulatorServer, tmp_path: Path) -> None:
    midnight = to_ms("2026-11-19")
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "1s", start=midnight - HOUR, end=midnight + HOUR)
    store = CandleStore(tmp_path)
    days = [layout.partition_dir(store.root, SEC, "KRW-BTC", d) for d in (midnight - DAY, midnight)]
    assert sorted(set(folders(store, "hot"))) == days


def test_prune_compacts_a_day_of_seconds_into_one_cold_file(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    midnight = to_ms("2026-11-10")
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "1s", start=midnight - HOUR, end=midnight + HOUR)
    before = stored(tmp_path, "KRW-BTC", "1s", midnight - HOUR, midnight + HOUR)
    store = CandleStore(tmp_path)
    asyncio.run(prune(store, Policy(compact_after_ms=7 * DAY), now=to_ms(NOW)))
    days = [layout.partition_dir(store.root, SEC, "KRW-BTC", d) for d in (midnight - DAY, midnight)]
    assert folders(store, "cold") == days  # one cold file a day
    pd.testing.assert_frame_equal(
        stored(tmp_path, "KRW-BTC", "1s", midnight - HOUR, midnight + HOUR), before
    )


def test_live_seconds_close_equal_to_rest_and_are_stored(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    config = ClientConfig(
        api_url=sim.url, rate=FAST_RATE, backoff=0.01, ws_url=sim.ws_url, settle=0
    )
    tfs = Timeframe.parse_list("1s,1m")
    start = to_ms(NOW)
    events: list[LiveEvent] = []

    def seen(kind: str, tf: Timeframe) -> list[Candle]:
        return [
            e.event.candle
            for e in events
            if e.event.kind == kind and e.event.candle.timeframe == tf
        ]

    async def watch() -> None:
        stream = live_candles(["KRW-BTC"], tfs, config=config, store=CandleStore(tmp_path))
        async with contextlib.aclosing(stream):
            async for item in stream:
                events.append(item)

    async def scenario() -> None:
        task = asyncio.create_task(watch())
        try:
            async with asyncio.timeout(30):
                while len([e for e in events if e.event.kind == "snapshot"]) < len(tfs):
                    await asyncio.sleep(0.02)
                sim.clock.advance(3 * 60)
                while not any(c.time == start + MINUTE for c in seen("close", tfs[1])):
                    assert not task.done()
                    await asyncio.sleep(0.02)
                # Closed 1s candles settle through REST every SECONDS_FLUSH.
                store, settled = CandleStore(tmp_path), TimeRange(start, start + MINUTE)
                while not store.fetched(SEC, "KRW-BTC").covers(settled):
                    assert not task.done()
                    await asyncio.sleep(0.05)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
    closed = [c for c in seen("close", SEC) if c.time >= start]
    end = closed[-1].time + 1000
    want = truth(sim, "KRW-BTC", "1s", start, end)
    assert len(closed) == len(want) >= 3
    assert_parity(frame(closed), want)
    # Written, and settled through REST: a fetch asks for none of it.
    assert_parity(stored(tmp_path, "KRW-BTC", "1s", start, end), want)
    assert CandleStore(tmp_path).fetched(SEC, "KRW-BTC").covers(TimeRange(start, end))


def frame(candles: list[Candle]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time": pd.to_datetime([c.time for c in candles], unit="ms", utc=True),
            "open": [c.open for c in candles],
            "high": [c.high for c in candles],
            "low": [c.low for c in candles],
            "close": [c.close for c in candles],
            "volume": [c.volume for c in candles],
            "value": [c.value for c in candles],
            "timestamp": pd.to_datetime([c.last_trade for c in candles], unit="ms", utc=True),
        }
    ).astype({"time": "datetime64[ms, UTC]", "timestamp": "datetime64[ms, UTC]"})
