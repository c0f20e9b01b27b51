"""`verify --upbit`: Upbit asked again, within a budget, about the newest candles and the
recorded quiet stretches; what it contradicts is reported and, with --repair, fetched again."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from conftest import NOW, candle_requests, plain, run_fetch, truth
from typer.testing import CliRunner

from upbit_cache.cli import app
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.simulator import SimulatorServer
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import iso, to_ms

H1 = Timeframe.parse("1h")
HOUR, DAY = 3_600_000, 86_400_000
NOW_MS = to_ms(NOW)
START = NOW_MS - 10 * DAY
runner = CliRunner()


def cli(*args: str) -> tuple[int, str, str]:
    done = runner.invoke(app, list(args))
    return done.exit_code, done.stdout, plain(done.stderr)


def wrong_beliefs(sim: SimulatorServer, root: Path) -> tuple[TimeRange, TimeRange]:
    """KRW-BTC 1h over ten days as if fetched, but with 20 traded hours recorded as quiet and
    the newest candle's close off by one tick: damage no file check can see."""
    frame = truth(sim, "KRW-BTC", "1h", START, NOW_MS)
    hole = TimeRange(NOW_MS - 228 * HOUR, NOW_MS - 208 * HOUR)  # older than the newest page
    times = frame["time"].astype("int64")
    kept = frame[(times < hole.start) | (times >= hole.end)].copy()
    kept.loc[kept.index[-1], "close"] += 1000.0
    CandleStore(root).write("KRW-BTC", H1, kept, Ranges.of([(START, NOW_MS)]))
    return hole, TimeRange(NOW_MS - 200 * HOUR, NOW_MS)


def test_upbit_contradictions_are_reported_forgotten_and_fetched_again(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    data = ["--data-dir", str(tmp_path), "--api-url", sim.url, "--rate", "200"]
    hole, newest = wrong_beliefs(sim, tmp_path)
    code, out, _ = cli("verify", *data)
    assert code == 0 and out.startswith("healthy: ")  # the files alone look fine

    code, out, _ = cli("verify", "--upbit", *data)
    assert code == 1, out
    assert f"1h KRW-BTC: Upbit contradicts the quiet stretch {iso(hole.start)}→" in out
    assert f"{iso(hole.end)}: an empty answer for" not in out  # its own words, not a page's
    assert (
        f"1h KRW-BTC: Upbit contradicts the newest candles {iso(newest.start)}→"
        f"{iso(newest.end)}: the candle at {iso(NOW_MS - HOUR)} differs in close"
    ) in out
    assert "files healthy: 1 series" in out and ": 2 contradictions" in out
    assert "run `upbit-cache verify --upbit --repair`" in out

    code, out, _ = cli("verify", "--upbit", "--repair", "--json", *data)
    found = json.loads(out)
    assert code == 0 and not found["healthy"] and found["upbit"]["forgotten"]
    assert {c["kind"] for c in found["upbit"]["contradictions"]} == {"quiet", "newest"}
    fetched = CandleStore(tmp_path).fetched(H1, "KRW-BTC")
    assert not fetched.covers(hole) and not fetched.covers(newest)

    sim.reset_stats()
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "1h", start=START, end=NOW_MS)
    assert 0 < candle_requests(sim) <= 3  # only the forgotten spans
    got = CandleStore(tmp_path).load("KRW-BTC", H1)
    pd.testing.assert_frame_equal(got, truth(sim, "KRW-BTC", "1h", START, NOW_MS))
    code, out, _ = cli("verify", "--upbit", *data)
    assert code == 0 and "healthy: 1 series" in out and ": agreed" in out


def test_true_quiet_stretches_are_agreed_within_the_budget(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    sparse = next(m.market for m in sim.history.markets if m.sparse and m.quote == "KRW")
    run_fetch(sim.url, tmp_path, [sparse, "KRW-ETH"], "1m", days=2)
    data = ["--data-dir", str(tmp_path), "--api-url", sim.url, "--rate", "200"]
    sim.reset_stats()
    code, out, _ = cli("verify", "--upbit", "--budget", "12", "--json", *data)
    found = json.loads(out)["upbit"]
    assert code == 0 and found["contradictions"] == []
    assert found["series"] == 2 and found["newest"] == 2 and found["quiet"] >= 1
    assert found["requests"] == candle_requests(sim) <= 12
