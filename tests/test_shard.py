"""`fetch --shard K/N`: N runs, one per shard, do exactly what one unsharded run does.

Stores are compared through the library (CandleStore loads and records), never by path.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import FAST_RATE, candle_requests, plain
from typer.testing import CliRunner

from upbit_cache import InvalidTimeframeError, Shard, UpbitCache, UsageError, Window
from upbit_cache.cli import app
from upbit_cache.cli.render import summary
from upbit_cache.manager.fetch import SyncReport
from upbit_cache.manager.planner import cold_base, plan_fetch
from upbit_cache.manager.scope import assign
from upbit_cache.ranges import TimeRange
from upbit_cache.simulator import SimulatorServer
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import SUPPORTED, Timeframe
from upbit_cache.times import to_ms

M15 = Timeframe.parse("15m")
H1 = Timeframe.parse("1h")
# Liquid markets, two sparse ones (KRW-PUVEF, KRW-RUN) and one listed 8 days before NOW
# (KRW-COBU), so a 10-day window starts before its listing.
MARKETS = [
    "KRW-BTC",
    "KRW-ETH",
    "KRW-XRP",
    "KRW-DOGE",
    "KRW-ADA",
    "KRW-LINK",
    "KRW-ETC",
    "KRW-PUVEF",
    "KRW-RUN",
    "KRW-COBU",
]

runner = CliRunner()


def cache(data_dir: Path, sim: SimulatorServer) -> UpbitCache:
    """A fresh cache (no memory carried over), as a new process on another host would be."""
    return UpbitCache(data_dir, api_url=sim.url, rate=FAST_RATE)


def even(markets: list[str], k: int, count: int) -> set[str]:
    """The documented rule where every job weighs the same (a window of the last days):
    the heaviest first, ties by name, each to the lightest shard: round robin by name."""
    return set(sorted(markets)[k - 1 :: count])


def contents(data_dir: Path) -> dict[tuple[str, str], tuple[pd.DataFrame, dict[str, Any]]]:
    """Every stored series: its candles and its record (fingerprints, which hold file
    names, by base partition only)."""
    store = CandleStore(data_dir)
    found = {}
    for tf in store.timeframes():
        for market in store.stored_markets(tf):
            record = store.record(tf, market)
            facts = {
                "fetched": record.fetched.intervals,
                "derived": {b: r.intervals for b, r in record.derived.items()},
                "sources": {b: sorted(marks) for b, marks in record.sources.items()},
                "pruned": record.pruned.intervals,
                # Partitions, not files: how rows split into files written once follows the
                # order of the writes, not what they hold.
                "partitions": sorted({name.rpartition("/")[0] for name in record.files}),
            }
            found[(tf.name, market)] = (store.load(market, tf), facts)
    return found


def assert_same_store(one: Path, other: Path) -> None:
    got, want = contents(one), contents(other)
    assert sorted(got) == sorted(want)
    for series, (frame, facts) in want.items():
        assert got[series][1] == facts, series
        pd.testing.assert_frame_equal(got[series][0], frame, obj=str(series))


def fetched_markets(data_dir: Path, tf: Timeframe) -> set[str]:
    return set(CandleStore(data_dir).markets(tf))


@pytest.mark.slow
def test_three_shards_one_after_another_are_the_unsharded_run(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    window = Window(days=10)
    whole = cache(tmp_path / "whole", sim).fetch(MARKETS, timeframes="15m,1h,4h", window=window)
    assert whole.failed == [] and whole.plan is not None and whole.plan.base == M15
    requests = {o.market: o.requests for o in whole.outcomes}

    split = tmp_path / "split"
    taken: list[set[str]] = []
    planned: list[int] = []
    for k in (1, 2, 3):
        sim.reset_stats()
        report = cache(split, sim).fetch(
            MARKETS, timeframes="15m,1h,4h", window=window, shard=f"{k}/3"
        )
        mine = {o.market for o in report.outcomes}
        # Keyed on what is fetched (15m), and the derived 1h and 4h go with it.
        assert mine == even(MARKETS, k, 3)
        assert mine, "each shard should have work, or the test proves little"
        assert report.failed == [] and report.shard == Shard(k, 3)
        assert report.total_markets == len(MARKETS)
        assert {d.market for d in report.derived} == mine
        assert {d.target.name for d in report.derived} == {"1h", "4h"}
        # Only its own jobs: its requests are its markets' requests in the unsharded run.
        assert candle_requests(sim) == report.candle_requests
        assert report.candle_requests == sum(requests[m] for m in mine)
        assert {o.market: o.requests for o in report.outcomes} == {m: requests[m] for m in mine}
        assert report.plan is not None and report.plan.base == M15
        planned.append(report.plan.planned_requests)
        taken.append(mine)
        done = set().union(*taken)
        for tf in ("15m", "1h", "4h"):
            assert fetched_markets(split, Timeframe.parse(tf)) == done, (k, tf)

    assert taken[0].isdisjoint(taken[1]) and taken[1].isdisjoint(taken[2])
    assert taken[0].isdisjoint(taken[2])
    assert set().union(*taken) == set(MARKETS)
    assert sum(len(t) for t in taken) == len(MARKETS)
    assert sum(planned) == whole.plan.planned_requests  # each shard planned its own part
    assert_same_store(split, tmp_path / "whole")

    # Nothing was lost: an unsharded run over the split store has nothing left to ask.
    sim.reset_stats()
    again = cache(split, sim).fetch(MARKETS, timeframes="15m,1h,4h", window=window)
    assert again.failed == [] and candle_requests(sim) == 0


def test_a_store_with_a_finer_base_derives_per_shard(sim: SimulatorServer, tmp_path: Path) -> None:
    # 15m is stored already, so -t 1h,4h fetches nothing and derives from 15m; the shards are
    # still keyed as a run on an empty store would fetch (1h), the same on every host.
    window = Window(days=2)
    for name in ("whole", "split"):
        cache(tmp_path / name, sim).fetch(MARKETS, timeframes="15m", window=window)
    sim.reset_stats()
    whole = cache(tmp_path / "whole", sim).fetch(MARKETS, timeframes="1h,4h", window=window)
    assert whole.plan is not None and whole.plan.base == M15 and candle_requests(sim) == 0
    for k in (1, 2, 3):
        report = cache(tmp_path / "split", sim).fetch(
            MARKETS, timeframes="1h,4h", window=window, shard=Shard(k, 3)
        )
        mine = even(MARKETS, k, 3)
        assert {o.market for o in report.outcomes} == mine
        assert {d.market for d in report.derived} == mine
        assert report.plan is not None and report.plan.planned_requests == 0
    assert candle_requests(sim) == 0
    assert_same_store(tmp_path / "split", tmp_path / "whole")


def test_the_key_is_what_a_fetch_on_an_empty_store_asks_for(tmp_path: Path) -> None:
    empty = CandleStore(tmp_path)
    span = TimeRange(to_ms("2025-01-01"), to_ms("2026-11-20"))
    for pair in itertools.combinations_with_replacement(SUPPORTED, 2):
        tfs = list(dict.fromkeys(pair))
        try:
            base = cold_base(tfs)
        except InvalidTimeframeError:
            continue
        assert plan_fetch(empty.coverage(), ["KRW-BTC", "KRW-ETH"], tfs, span).base == base, tfs


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 16])
def test_every_job_is_in_exactly_one_shard(count: int) -> None:
    weights = {f"KRW-C{i}": (i * 7919) % 97 for i in range(200)}
    parts = [Shard(k, count).pick(weights) for k in range(1, count + 1)]
    assert sorted(m for part in parts for m in part) == sorted(weights)
    assert parts == assign(weights, count)
    loads = [sum(weights[m] for m in part) for part in parts]
    assert max(loads) - min(loads) <= max(weights.values())  # LPT: within one job


def test_the_heaviest_go_first_each_to_the_lightest_shard() -> None:
    weights = {"A": 5, "B": 4, "C": 3, "D": 3, "E": 2, "F": 1}
    # A->1, B->2, C->3 (loads 5 4 3), D->3 (6), E->2 (6), F->1 (6): ties by name.
    assert assign(weights, 3) == [["A", "F"], ["B", "E"], ["C", "D"]]
    assert assign(dict.fromkeys("DCBA", 1), 2) == [["A", "C"], ["B", "D"]]


def test_a_job_that_weighs_nothing_moves_no_other() -> None:
    # A market listed after a fixed window's end (one shard's list has it, an earlier's not).
    weights = {f"KRW-C{i}": (i * 31) % 23 + 1 for i in range(40)}
    for count in (2, 3, 4):
        before = assign(weights, count)
        after = assign({**weights, "KRW-AAA": 0}, count)
        assert [[m for m in part if m != "KRW-AAA"] for part in after] == before


@pytest.mark.slow
def test_the_split_is_the_same_in_every_python_process() -> None:
    code = (
        "from upbit_cache.manager.scope import assign; "
        "print(assign({f'KRW-C{i}': i % 5 for i in range(30)}, 3))"
    )
    seen = set()
    for seed in ("1", "2", "12345"):
        env = {"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        seen.add(done.stdout)
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("text", "want"),
    [("1/4", Shard(1, 4)), ("4/4", Shard(4, 4)), (" 2/3 ", Shard(2, 3)), ("1/1", Shard(1, 1))],
)
def test_shard_parses_k_of_n(text: str, want: Shard) -> None:
    assert Shard.parse(text) == want
    assert str(want) == f"{want.index}/{want.count}"
    assert Shard.parse(want) is want


@pytest.mark.parametrize("text", ["0/4", "5/4", "1/0", "a/b", "1-4", "", "1/4/4", "-1/4", "1/ 4"])
def test_shard_refuses_anything_but_k_of_n(text: str) -> None:
    with pytest.raises(UsageError, match=r"--shard must be K/N with 1 <= K <= N"):
        Shard.parse(text)


@pytest.mark.parametrize(("index", "count"), [(0, 4), (5, 4), (1, 0), (True, 2)])
def test_shard_refuses_numbers_out_of_range(index: int, count: int) -> None:
    with pytest.raises(UsageError, match=r"--shard must be K/N with 1 <= K <= N"):
        Shard(index, count)


def test_python_fetch_refuses_a_bad_shard_before_asking(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match="--shard must be K/N"):
        cache(tmp_path, sim).fetch(["KRW-BTC"], shard="5/4")
    assert sim.stats()["requests"] == 0
    assert CandleStore(tmp_path).timeframes() == []


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, plain(result.stderr)


def cli_fetch(sim: SimulatorServer, data_dir: Path, *args: str) -> tuple[int, str, str]:
    common = ["--api-url", sim.url, "--data-dir", str(data_dir), "--rate", str(FAST_RATE)]
    return invoke("fetch", *MARKETS, *args, *common)


def test_cli_summary_names_the_shard(sim: SimulatorServer, tmp_path: Path) -> None:
    mine = sorted(even(MARKETS, 2, 3))
    code, out, err = cli_fetch(sim, tmp_path / "a", "-t", "1h", "--days", "2", "--shard", "2/3")
    assert code == 0, err
    assert out.startswith(f"shard 2/3: {len(mine)} of {len(MARKETS)} markets, "), out
    assert sorted(line.split()[0] for line in err.splitlines()) == sorted(mine)
    assert candle_requests(sim) == len(mine)  # 48 hourly candles: one page each
    # -t 2h,4h fetches 1h too (2h is derived), so it takes the same markets.
    code, out, err = cli_fetch(sim, tmp_path / "b", "-t", "2h,4h", "--days", "2", "--shard", "2/3")
    assert code == 0, err
    assert out.startswith(f"shard 2/3: {len(mine)} of {len(MARKETS)} markets, "), out
    assert "; plan: base 1h" in out
    assert fetched_markets(tmp_path / "b", H1) == set(mine)
    assert fetched_markets(tmp_path / "b", Timeframe.parse("2h")) == set(mine)


def test_cli_without_shard_says_nothing_of_shards(sim: SimulatorServer, tmp_path: Path) -> None:
    code, out, err = cli_fetch(sim, tmp_path, "-t", "1d", "--days", "2")
    assert code == 0, err
    assert out.startswith(f"{len(MARKETS)} markets, "), out


@pytest.mark.parametrize("text", ["0/4", "5/4", "1/0", "a/b", "1-4", "", "2/4x"])
def test_cli_bad_shard_is_one_line_and_exit_2(
    sim: SimulatorServer, tmp_path: Path, text: str
) -> None:
    code, out, err = cli_fetch(sim, tmp_path, "--shard", text)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("upbit-cache: error: "), err
    assert "--shard must be K/N with 1 <= K <= N" in err
    assert "Traceback" not in out + err
    assert sim.stats()["requests"] == 0  # not even the market list
    assert CandleStore(tmp_path).timeframes() == []


def test_shard_report_is_a_sync_report() -> None:
    report = SyncReport(shard=Shard(2, 4), total_markets=200)
    assert summary(report).startswith("shard 2/4: 0 of 200 markets, 0 candles written")
