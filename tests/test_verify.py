"""`verify` and `verify --repair`: damaged, lost and stray files found, quarantined, refetched."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import NOW, candle_requests, data_file, plain, run_fetch, truth
from typer.testing import CliRunner

import upbit_cache
from upbit_cache.cli import app
from upbit_cache.errors import StorageError
from upbit_cache.ranges import Ranges
from upbit_cache.simulator import SimulatorServer
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

M1 = Timeframe.parse("1m")
MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP"]
DAYS = 3
runner = CliRunner()


def cli(*args: str) -> tuple[int, str, str]:
    done = runner.invoke(app, list(args))
    return done.exit_code, done.stdout, plain(done.stderr)


@pytest.fixture
def store_dir(sim: SimulatorServer, tmp_path: Path) -> Path:
    """Three days of 1m for three markets: three or four day files each."""
    report = run_fetch(sim.url, tmp_path, MARKETS, "1m", days=DAYS)
    assert report.failed == []
    return tmp_path


def day_file(root: Path, market: str, day: str) -> Path:
    return data_file(root, day, market)


def exact(sim: SimulatorServer, root: Path) -> None:
    start = to_ms(NOW) - DAYS * 86_400_000
    for market in MARKETS:
        got = CandleStore(root).load(market, M1)
        pd.testing.assert_frame_equal(got, truth(sim, market, "1m", start, NOW))


def test_a_healthy_store_verifies_clean(store_dir: Path) -> None:
    code, out, _ = cli("verify", "--data-dir", str(store_dir))
    assert code == 0, out
    assert out.startswith("healthy: 3 series, ") and " files, " in out


def test_damage_is_found_named_and_repaired_then_a_fetch_restores_parity(
    sim: SimulatorServer, store_dir: Path
) -> None:
    truncated = day_file(store_dir, "KRW-BTC", "2026-11-18")
    truncated.write_bytes(truncated.read_bytes()[:500])
    day_file(store_dir, "KRW-BTC", "2026-11-19").unlink()  # lost
    day_file(store_dir, "KRW-ETH", "2026-11-18").write_bytes(b"")  # a stray empty file

    # Other commands name the bad file in one line, point to verify, and do the rest.
    code, out, err = cli("info", "--data-dir", str(store_dir))
    assert code == 1 and "KRW-XRP" in out and "KRW-BTC" not in out and "KRW-ETH" not in out
    assert "1m KRW-BTC: cannot read" in err and "upbit-cache verify --repair" in err
    assert "1m KRW-ETH: cannot read" in err
    code, out, err = cli(
        "prune", "--as-of", NOW, "--compact-after", "1h", "--dry-run", "--data-dir", str(store_dir)
    )
    assert code == 1 and "verify --repair" in err and "compact   1m: 1 market" in out

    code, out, _ = cli("verify", "--data-dir", str(store_dir))
    assert code == 1
    assert "1m KRW-BTC: unreadable: candles/timeframe=1m/market=KRW-BTC/date=2026-11-18" in out
    assert "1m KRW-BTC: missing: candles/timeframe=1m/market=KRW-BTC/date=2026-11-19" in out
    assert "1m KRW-ETH: unreadable: candles/timeframe=1m/market=KRW-ETH/date=2026-11-18" in out
    assert "3 problems" in out and "verify --repair" in out

    code, out, _ = cli("verify", "--repair", "--data-dir", str(store_dir))
    assert code == 0, out  # `verify --repair && upbit-cache fetch ...` fetches
    assert "repaired all 3 problems: 2 files moved to " in out
    assert "the spans of 1 missing file forgotten" in out
    assert len(list((store_dir / "quarantine").rglob("part-*.parquet"))) == 2
    code, out, _ = cli("verify", "--data-dir", str(store_dir))
    assert code == 0 and out.startswith("healthy"), out

    sim.reset_stats()
    report = run_fetch(sim.url, store_dir, MARKETS, "1m", days=DAYS)
    assert report.failed == []
    assert candle_requests(sim) == 15 + 8  # 2 lost days in a row (2,880 minutes) and 1 more
    exact(sim, store_dir)


def test_a_deleted_market_folder_is_a_hole_verify_finds(
    sim: SimulatorServer, store_dir: Path
) -> None:
    shutil.rmtree(store_dir / "candles" / "timeframe=1m" / "market=KRW-ETH")
    code, out, _ = cli("verify", "--repair", "--json", "--data-dir", str(store_dir))
    found = json.loads(out)
    assert code == 0 and not found["healthy"] and found["repaired"] and found["remaining"] == []
    assert {p["kind"] for p in found["problems"]} == {"missing"}
    assert {p["market"] for p in found["problems"]} == {"KRW-ETH"}
    sim.reset_stats()
    run_fetch(sim.url, store_dir, MARKETS, "1m", days=DAYS)
    assert 0 < candle_requests(sim) <= (DAYS + 1) * 8
    exact(sim, store_dir)


def next_day(times: pa.ChunkedArray) -> pa.Array:  # type: ignore[type-arg]
    later = times.cast(pa.int64()).to_numpy() + 86_400_000
    return pa.array(later).cast(pa.timestamp("ms", tz="UTC"))


def rewrite(path: Path, change: object) -> None:
    table = pq.read_table(path)
    pq.write_table(change(table), path)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("kind", "change"),
    [
        ("duplicate times", lambda t: pa.concat_tables([t, t.slice(0, 1)])),
        ("impossible values", lambda t: t.set_column(4, "close", pa.array([-1.0] * len(t)))),
        ("wrong schema", lambda t: t.drop_columns(["value"])),
        ("wrong partition", lambda t: t.set_column(0, "time", next_day(t["time"]))),
    ],
)
def test_each_kind_of_bad_file_is_named(store_dir: Path, kind: str, change: object) -> None:
    rewrite(day_file(store_dir, "KRW-BTC", "2026-11-18"), change)
    code, out, _ = cli("verify", "--json", "--data-dir", str(store_dir))
    found = json.loads(out)
    assert code == 1
    assert [(p["market"], p["kind"]) for p in found["problems"]] == [("KRW-BTC", kind)]


def test_rows_nobody_recorded_and_a_damaged_record(sim: SimulatorServer, store_dir: Path) -> None:
    store = CandleStore(store_dir)
    extra = truth(sim, "KRW-BTC", "1m", "2026-11-15T00:00Z", "2026-11-15T01:00Z")
    from upbit_cache.ranges import Ranges

    store.write("KRW-BTC", M1, extra, Ranges())  # rows, but no range recorded for them
    (store_dir / "fetched" / "1m" / "KRW-ETH.json").write_text("{not json")
    code, out, _ = cli("verify", "--data-dir", str(store_dir))
    assert code == 1
    outside = "rows outside recorded ranges: candles/timeframe=1m/market=KRW-BTC/date=2026-11-15"
    assert f"1m KRW-BTC: {outside}" in out
    assert "1m KRW-ETH: damaged record: fetched/1m/KRW-ETH.json" in out
    code, _, _ = cli("verify", "--repair", "--data-dir", str(store_dir))
    assert (store_dir / "quarantine").exists() and code == 0
    assert cli("verify", "--data-dir", str(store_dir))[0] == 0
    run_fetch(sim.url, store_dir, MARKETS, "1m", days=DAYS)
    exact(sim, store_dir)


def test_a_lost_file_is_a_hole_readers_name_not_hide(sim: SimulatorServer, store_dir: Path) -> None:
    day_file(store_dir, "KRW-BTC", "2026-11-18").unlink()
    with pytest.raises(StorageError, match="listed in its record but gone"):
        upbit_cache.load("KRW-BTC", "1m", "2026-11-18", "2026-11-19", data_dir=store_dir)
    assert len(upbit_cache.load("KRW-BTC", "1m", "2026-11-19", "2026-11-20", data_dir=store_dir))
    code, _, err = cli(
        "screen-prep",
        "KRW-BTC",
        "-t",
        "1m",
        "--days",
        "3",
        "--no-refresh",
        "--data-dir",
        str(store_dir),
    )
    assert code == 1 and "verify --repair" in err and err.count("upbit-cache: error: ") == 1
    # A write into that partition would make the hole permanent: it is refused, named.
    store = CandleStore(store_dir)
    rows = truth(sim, "KRW-BTC", "1m", "2026-11-18T00:00Z", "2026-11-18T01:00Z")
    with pytest.raises(StorageError, match="listed in its record but gone"):
        store.write("KRW-BTC", M1, rows, Ranges())
    assert cli("verify", "--repair", "--data-dir", str(store_dir))[0] == 0
    run_fetch(sim.url, store_dir, MARKETS, "1m", days=DAYS)
    exact(sim, store_dir)


def test_a_repair_that_leaves_something_says_so_and_fails() -> None:
    # What the repaired series' second check still finds is named, and verify exits 1.
    from upbit_cache.cli.render import verify_json, verify_lines
    from upbit_cache.manager.verify import VerifyReport
    from upbit_cache.store.audit import Problem, SeriesAudit

    path = "/d/candles/timeframe=1m/market=KRW-BTC/date=2026-11-18/part-0.parquet"
    problem = Problem(M1, "KRW-BTC", "unreadable", path, "12 bytes: not Parquet")
    report = VerifyReport([SeriesAudit(M1, "KRW-BTC", 1, 0, [problem])], repaired=True)
    report.moved = ["/d/quarantine/x/" + path.removeprefix("/d/")]
    assert report.ok and not report.healthy
    report.remaining = [problem]
    assert not report.ok
    lines = verify_lines(report, "/d").splitlines()
    assert lines[-3] == "repair tried: 1 file moved to /d/quarantine/; checked again, still found:"
    assert lines[-2].startswith("   1m KRW-BTC: unreadable: candles/timeframe=1m/")
    assert lines[-1] == "1 problem not repaired"
    assert verify_json(report, "/d")["remaining"] == verify_json(report, "/d")["problems"]
