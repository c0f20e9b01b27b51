"""`fetch --shard K/N` balanced: jobs split by estimated requests, the same on every host,
whatever the other shards wrote meanwhile and whenever each started; `auto/N` for
Kubernetes Indexed Jobs (K from JOB_COMPLETION_INDEX).

Markets listed at mixed times inside a fixed window (the simulator's `listings`), so the
jobs weigh very differently: a shard that counted markets alone would get far more or far
fewer requests than another.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FAST_RATE, NOW, plain
from test_shard import assert_same_store
from typer.testing import CliRunner

from upbit_cache import Shard, UpbitCache, UsageError, Window
from upbit_cache.cli import app
from upbit_cache.collector.config import ClientConfig
from upbit_cache.collector.paging import DEFAULT_WINDOW
from upbit_cache.manager.balance import PROBES_IN_FLIGHT, job_weights, probe_timeframe, whole_window
from upbit_cache.manager.scope import assign
from upbit_cache.manager.session import new_client
from upbit_cache.ranges import TimeRange
from upbit_cache.simulator import SimulatorConfig, SimulatorServer
from upbit_cache.simulator.history import History
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.store.listings import read_first
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import iso, to_ms

M1 = Timeframe.parse("1m")
SINCE, UNTIL = "2026-11-13T00:00:00Z", "2026-11-19T00:00:00Z"  # 6 days of 1m: 44 pages
KRW = [m.market for m in History().markets if m.market.startswith("KRW-")][:48]
# Every other market listed inside the window, spread over it; the others years before.
LISTED = {
    m: iso(to_ms(SINCE) + i * (to_ms(UNTIL) - to_ms(SINCE)) // 24) for i, m in enumerate(KRW[1::2])
}

runner = CliRunner()


@pytest.fixture(scope="module")
def mixed() -> Iterator[SimulatorServer]:
    config = SimulatorConfig(rate=FAST_RATE, clock_start=NOW, frozen=True)
    with SimulatorServer(config, history=History(listings=LISTED)) as server:
        yield server


@pytest.fixture
def msim(mixed: SimulatorServer) -> SimulatorServer:
    mixed.clock.set(NOW)
    mixed.clock.freeze()
    mixed.reset_stats()
    return mixed


def weights_of(
    sim: SimulatorServer,
    markets: list[str],
    count: int,
    window: Window,
    span: TimeRange | None = None,
) -> dict[str, int]:
    """The weights a sharded fetch of `window` computes (`span`: the fixed window it weighs)."""

    async def run() -> dict[str, int]:
        config = ClientConfig(api_url=sim.url, rate=FAST_RATE)
        async with new_client(config) as client:
            await client.markets()
            whole = span or window.span_at(client.now_ms())
            return await job_weights(client, markets, M1, whole, count, fixed=True)

    return asyncio.run(run())


def test_mixed_listings_are_weighed_and_the_shards_balanced(msim: SimulatorServer) -> None:
    weights = weights_of(msim, KRW, 4, Window.of(SINCE, UNTIL))
    assert msim.stats()["candle_requests"] == len(KRW)  # one probe per market
    old = {m: w for m, w in weights.items() if m not in LISTED}
    assert set(old.values()) == {44}  # 8,640 minutes: 44 pages
    young = [weights[m] for m in KRW[1::2]]
    # From the first candle on (a sparse market's first trade may come hours after it lists).
    assert young[0] == 44 and min(young) <= 4 and len(set(young)) > 12, young
    for count in (2, 3, 4):
        parts = assign(weights, count)
        loads = [sum(weights[m] for m in part) for part in parts]
        mean = statistics.mean(loads)
        assert max(loads) <= mean * 1.02, (count, loads)
        assert sorted(m for p in parts for m in p) == sorted(KRW)
    # Counted by markets alone (round robin by name), the same jobs are far apart.
    even = [sum(weights[m] for m in sorted(KRW)[k::4]) for k in range(4)]
    assert max(even) > statistics.mean(even) * 1.05, even


def test_a_fixed_window_ending_between_two_shards_starts_weighs_alike(
    msim: SimulatorServer,
) -> None:
    # The window ends 6 hours after NOW: one shard starts before its end, one 8 hours later.
    window = Window.of(SINCE, "2026-11-20T06:00:00Z")
    span = TimeRange(to_ms(SINCE), to_ms("2026-11-20T06:00:00Z"))
    before = weights_of(msim, KRW, 4, window, span)
    msim.clock.set(to_ms(NOW) + 8 * 3_600_000)
    msim.clock.freeze()
    after = weights_of(msim, KRW, 4, window, span)
    assert before == after and len(set(before.values())) > 12


def test_a_short_window_or_one_up_to_now_weighs_every_market_alike(msim: SimulatorServer) -> None:
    for window in (Window.of("2026-11-18T20:00:00Z", UNTIL), Window(days=3)):
        msim.reset_stats()
        fixed = window.end is not None

        async def run(window: Window = window, fixed: bool = fixed) -> dict[str, int]:
            async with new_client(ClientConfig(api_url=msim.url, rate=FAST_RATE)) as client:
                span = window.span_at(client.now_ms())
                return await job_weights(client, KRW, M1, span, 4, fixed=fixed)

        weights = asyncio.run(run())
        assert len(set(weights.values())) == 1, window
        assert msim.stats()["candle_requests"] == 0  # nothing asked: nothing to weigh


def kept_weights(
    sim: SimulatorServer, store: CandleStore, parts: list[int], count: int, span: TimeRange
) -> list[dict[str, int]]:
    """The weights shards `parts` (from 0) of `count` compute at once, in one loop, each with
    its own client, keeping and reading the probes' answers in `store`."""

    async def one(index: int) -> dict[str, int]:
        async with new_client(ClientConfig(api_url=sim.url, rate=FAST_RATE)) as client:
            await client.markets()
            return await job_weights(
                client, KRW, M1, span, count, fixed=True, store=store, index=index
            )

    async def run() -> list[dict[str, int]]:
        return list(await asyncio.gather(*(one(k) for k in parts)))

    return asyncio.run(run())


def test_shards_started_together_ask_each_probe_about_once(
    msim: SimulatorServer, tmp_path: Path
) -> None:
    span = TimeRange(to_ms(SINCE), to_ms(UNTIL))
    fresh = weights_of(msim, KRW, 4, Window.of(SINCE, UNTIL), span)
    msim.reset_stats()
    store = CandleStore(tmp_path)
    together = kept_weights(msim, store, [0, 1, 2, 3], 4, span)
    assert all(w == fresh for w in together)  # the same parts as shards that keep nothing
    # Each starts at its own quarter: between them about one probe per market, not four.
    asked = msim.stats()["candle_requests"]
    assert len(KRW) <= asked <= len(KRW) + 4 * PROBES_IN_FLIGHT, asked
    probe = probe_timeframe(whole_window(M1, span))
    kept = {m: read_first(store, probe, m) for m in KRW}
    assert all(f is not None and f.to == span.end for f in kept.values())
    msim.reset_stats()
    assert kept_weights(msim, store, [2], 4, span) == [fresh]  # run again: nothing asked
    assert msim.stats()["candle_requests"] == 0


def test_a_kept_answer_serves_only_its_own_request(msim: SimulatorServer, tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    first = TimeRange(to_ms(SINCE), to_ms(UNTIL))
    kept_weights(msim, store, [0], 2, first)
    # A window of the same length ending a day earlier: its probe asks another page (the
    # same timeframe); the answers kept say nothing of it, however Upbit counts a page.
    other = TimeRange(first.start - 86_400_000, first.end - 86_400_000)
    assert probe_timeframe(whole_window(M1, other)) == probe_timeframe(whole_window(M1, first))
    msim.reset_stats()
    fresh = weights_of(msim, KRW, 2, Window(), other)
    msim.reset_stats()
    assert kept_weights(msim, store, [1], 2, other) == [fresh]
    assert msim.stats()["candle_requests"] == len(KRW)
    # A damaged answer is asked again.
    probe = probe_timeframe(whole_window(M1, other))
    damaged = KRW[1]
    (tmp_path / "listings" / probe.name / f"{damaged}.json").write_text("{not json")
    msim.reset_stats()
    assert kept_weights(msim, store, [0], 2, other) == [fresh]
    assert msim.stats()["candle_requests"] == 1


def test_a_window_not_yet_settled_keeps_no_answer(msim: SimulatorServer, tmp_path: Path) -> None:
    # A fixed window ending an hour after Upbit's now: its pages may still change.
    span = TimeRange(to_ms(SINCE), to_ms(NOW) + 3_600_000)
    store = CandleStore(tmp_path)
    kept_weights(msim, store, [0, 1], 2, span)
    assert msim.stats()["candle_requests"] == 2 * len(KRW)  # each shard asks its own
    assert not (tmp_path / "listings").exists()


@pytest.mark.slow
def test_shards_started_apart_while_the_other_writes_do_every_job_once(
    msim: SimulatorServer, tmp_path: Path
) -> None:
    markets = KRW[:16]  # 8 listed years ago, 8 inside the window
    window = Window.of(SINCE, UNTIL)
    whole = UpbitCache(tmp_path / "whole", api_url=msim.url, rate=FAST_RATE)
    unsharded = whole.fetch(markets, timeframes="1m", window=window)
    assert unsharded.failed == []
    requests = {o.market: o.requests for o in unsharded.outcomes}

    split = tmp_path / "split"
    reports = []
    for k in (1, 2):
        # A new process on another host, started 7 minutes after the first, which by then
        # has written its whole share of the same data dir.
        msim.clock.set(to_ms(NOW) + (k - 1) * 420_000)
        msim.clock.freeze()
        msim.reset_stats()
        cache = UpbitCache(split, api_url=msim.url, rate=FAST_RATE)
        report = cache.fetch(markets, timeframes="1m", window=window, shard=Shard(k, 2))
        assert report.failed == []
        # Its own jobs only, each about as many requests as in the unsharded run, plus one
        # probe per market of the whole run. Pages before a listing are skipped once an
        # answer proves them quiet; those already in flight by then (up to the paging window
        # less the one that proves it) depend on the order answers land in, in either run.
        for o in report.outcomes:
            assert abs(o.requests - requests[o.market]) <= DEFAULT_WINDOW, (o.market, o.requests)
        # The first asks one probe per market of the whole run; the second finds their
        # answers in the data dir and asks none.
        probes = len(markets) if k == 1 else 0
        assert msim.stats()["candle_requests"] == report.candle_requests + probes
        reports.append(report)
    one, two = reports
    assert one.weights == two.weights  # the same estimate, though the store and clock moved
    assert len(set(one.weights.values())) > 4  # mixed: not a count of markets
    mine = [{o.market for o in r.outcomes} for r in reports]
    assert mine[0].isdisjoint(mine[1]) and mine[0] | mine[1] == set(markets)
    loads = [sum(requests[m] for m in part) for part in mine]
    assert max(loads) <= statistics.mean(loads) * 1.1, loads  # the real requests are even too
    assert_same_store(split, tmp_path / "whole")  # every job once: parity, no duplicates
    again = UpbitCache(split, api_url=msim.url, rate=FAST_RATE)
    msim.reset_stats()
    assert again.fetch(markets, timeframes="1m", window=window).failed == []
    assert msim.stats()["candle_requests"] == 0


@pytest.mark.parametrize(("index", "want"), [("0", Shard(1, 4)), ("3", Shard(4, 4))])
def test_auto_takes_k_from_the_job_completion_index(index: str, want: Shard) -> None:
    assert Shard.parse("auto/4", env={"JOB_COMPLETION_INDEX": index}) == want


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "--shard auto/4 takes K from JOB_COMPLETION_INDEX, which is not set"),
        ({"JOB_COMPLETION_INDEX": "4"}, "must be a whole number from 0 to 3"),
        ({"JOB_COMPLETION_INDEX": "-1"}, "must be a whole number from 0 to 3"),
        ({"JOB_COMPLETION_INDEX": "x"}, "must be a whole number from 0 to 3"),
        ({"JOB_COMPLETION_INDEX": ""}, "must be a whole number from 0 to 3"),
    ],
)
def test_auto_refuses_a_missing_or_bad_index(env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        Shard.parse("auto/4", env=env)


def cli(sim: SimulatorServer, data_dir: Path, env: dict[str, str], *args: str) -> tuple:
    common = ["--api-url", sim.url, "--data-dir", str(data_dir), "--rate", str(FAST_RATE)]
    result = runner.invoke(app, ["fetch", *KRW[:6], *args, *common], env=env)
    return result.exit_code, result.stdout, plain(result.stderr)


def test_cli_auto_shard_from_the_pod_index(msim: SimulatorServer, tmp_path: Path) -> None:
    args = ("-t", "1h", "--days", "2", "--shard", "auto/3")
    code, out, err = cli(msim, tmp_path, {"JOB_COMPLETION_INDEX": "1"}, *args)
    assert code == 0, err
    assert out.startswith("shard 2/3: 2 of 6 markets, "), out
    assert set(CandleStore(tmp_path).markets(Timeframe.parse("1h"))) == set(sorted(KRW[:6])[1::3])


@pytest.mark.parametrize(
    ("shard", "index", "message"),
    [
        ("auto/3", None, "JOB_COMPLETION_INDEX, which is not set"),
        ("auto/3", "3", "JOB_COMPLETION_INDEX must be a whole number from 0 to 2"),
        ("auto/3", "two", "JOB_COMPLETION_INDEX must be a whole number from 0 to 2"),
        ("auto/0", "0", "--shard must be K/N with 1 <= K <= N, or auto/N"),
        ("4/3", None, "--shard must be K/N with 1 <= K <= N, or auto/N"),
        ("x/3", None, "--shard must be K/N with 1 <= K <= N, or auto/N"),
    ],
)
def test_cli_bad_auto_shard_is_one_line_and_exit_2(
    msim: SimulatorServer, tmp_path: Path, shard: str, index: str | None, message: str
) -> None:
    env = {"JOB_COMPLETION_INDEX": index} if index is not None else {}
    code, out, err = cli(msim, tmp_path, env, "--shard", shard)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("upbit-cache: error: "), err
    assert message in err and "Traceback" not in out + err
    assert msim.stats()["requests"] == 0
