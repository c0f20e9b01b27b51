"""Hot/cold tiers and `prune`: compaction, retention, dry runs, kills and concurrent fetches."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest
from conftest import DEADLINE, NOW, Procs, candle_requests, run_fetch, seed, truth
from typer.testing import CliRunner

from upbit_cache.cli import app
from upbit_cache.manager.prune import Policy, PruneReport, prune
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.simulator import SimulatorServer
from upbit_cache.simulator.history import History
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

HOUR = 3_600_000
DAY = 24 * HOUR
M1, H1 = Timeframe.parse("1m"), Timeframe.parse("1h")
MARKETS = ["KRW-BTC", "KRW-ETH"]
HISTORY = History()


def run_prune(
    root: Path, policy: Policy | None = None, now: str = NOW, dry_run: bool = False
) -> PruneReport:
    store = CandleStore(root)
    return asyncio.run(prune(store, policy or Policy(), now=to_ms(now), dry_run=dry_run))


def files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root: (size, mtime)."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and "locks" not in p.parts
    }


def dataset_rows(root: Path, tf: str) -> pd.DataFrame:
    """The dataset as a plain Hive-partitioned Parquet reader sees it (no help from us)."""
    table = ds.dataset(
        root / "candles" / f"timeframe={tf}", format="parquet", partitioning="hive"
    ).to_table()
    return table.to_pandas().sort_values(["market", "time"]).reset_index(drop=True)


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """40 days of 1m and 1h for two markets, fetched up to NOW."""
    store = CandleStore(tmp_path)
    for market in MARKETS:
        seed(store, HISTORY, market, "1m", to_ms(NOW) - 40 * DAY, NOW)
        seed(store, HISTORY, market, "1h", "2025-06-01", NOW)
    return tmp_path


def test_compaction_keeps_every_row_and_leaves_one_dataset(store_dir: Path) -> None:
    store = CandleStore(store_dir)
    before = {(m, tf): store.load(m, tf) for m in MARKETS for tf in (M1, H1)}
    report = run_prune(store_dir)
    # 1m: the days that ended more than 7 days ago went to per-month cold files.
    cutoff = to_ms(NOW) - 7 * DAY
    for market in MARKETS:
        hot = CandleStore(store_dir).partition_files(M1, market, "hot")
        assert min(hot) == cutoff and len(hot) == 7
        cold = CandleStore(store_dir).partition_files(M1, market, "cold")
        assert sorted(cold) == [to_ms("2026-10-01"), to_ms("2026-11-01")]
        # 1h: 2025 ended long ago and is cold; 2026 is still hot.
        assert list(CandleStore(store_dir).partition_files(H1, market, "cold")) == [
            to_ms("2025-01-01")
        ]
    fresh = CandleStore(store_dir)  # no memory: read back from disk
    for (market, tf), frame in before.items():
        pd.testing.assert_frame_equal(fresh.load(market, tf), frame)
    plain = dataset_rows(store_dir, "1m")
    assert len(plain) == sum(len(before[m, M1]) for m in MARKETS)
    assert not plain.duplicated(["market", "time"]).any()
    assert report.after["cold"].files == 6 and report.before["cold"].files == 0
    assert report.after["hot"].files == report.before["hot"].files - sum(
        len(c.removed) for c in report.changes
    )
    # Nothing left to do the second time.
    again = run_prune(store_dir)
    assert again.changes == [] and again.after == again.before


def test_cold_files_are_zstd_sorted_and_carry_time_statistics(store_dir: Path) -> None:
    run_prune(store_dir)
    import pyarrow.parquet as pq

    cold = next((store_dir / "candles" / "timeframe=1m").rglob("cold-*.parquet"))
    meta = pq.ParquetFile(cold).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert meta.row_group(0).column(0).statistics.has_min_max
    assert meta.row_group(0).sorting_columns[0].column_index == 0
    assert "DELTA_BINARY_PACKED" in meta.row_group(0).column(0).encodings  # time
    assert "BYTE_STREAM_SPLIT" in meta.row_group(0).column(4).encodings  # close
    hot = next((store_dir / "candles" / "timeframe=1m").rglob("part-*.parquet"))
    assert pq.ParquetFile(hot).metadata.row_group(0).column(0).compression == "SNAPPY"


def test_a_backfill_into_a_cold_span_wins_until_the_next_compaction(store_dir: Path) -> None:
    run_prune(store_dir)
    store = CandleStore(store_dir)
    at = to_ms("2026-10-20T00:00Z")
    row = store.load("KRW-BTC", M1, TimeRange(at, at + 60_000))
    top = float(row["high"].iloc[0]) * 2  # a different candle, and still a possible one
    row = row.assign(high=top, close=top)
    store.write("KRW-BTC", M1, row, Ranges())  # lands in a hot partition inside a cold month
    assert CandleStore(store_dir).load("KRW-BTC", M1, TimeRange(at, at + 60_000))[
        "close"
    ].tolist() == [top]
    run_prune(store_dir)
    assert CandleStore(store_dir).load("KRW-BTC", M1, TimeRange(at, at + 60_000))[
        "close"
    ].tolist() == [top]
    assert not dataset_rows(store_dir, "1m").duplicated(["market", "time"]).any()


def test_retention_edges_and_the_record(store_dir: Path) -> None:
    report = run_prune(store_dir, Policy(keep_by_tf={"1m": 10 * DAY}, keep_ms=365 * DAY))
    cutoff_1m = to_ms(NOW) - 10 * DAY
    store = CandleStore(store_dir)
    for market in MARKETS:
        got = store.load(market, M1)
        assert got["time"].min() >= pd.Timestamp(cutoff_1m, unit="ms", tz="UTC")
        want = truth_1m(market, cutoff_1m, to_ms(NOW))
        pd.testing.assert_frame_equal(got, want)
        record = store.record(M1, market)
        assert record.fetched == Ranges.of([(cutoff_1m, to_ms(NOW))])
        assert record.pruned == Ranges.of([(to_ms(NOW) - 40 * DAY, cutoff_1m)])
        hourly = store.load(market, H1)
        assert hourly["time"].min() == pd.Timestamp(to_ms(NOW) - 365 * DAY, unit="ms", tz="UTC")
    retained = [c for c in report.changes if c.action == "retain"]
    assert {c.tf for c in retained} == {M1, H1}


def truth_1m(market: str, start: int, end: int) -> pd.DataFrame:
    from conftest import bars_frame

    return bars_frame(HISTORY.candles(market, 1, start, end, end))


def test_dry_run_changes_nothing_and_predicts_exactly(store_dir: Path, tmp_path: Path) -> None:
    (
        store_dir / "candles" / "timeframe=1m" / "market=KRW-BTC" / ".part-0.parquet.x.tmp"
    ).write_bytes(b"x")
    before = files(store_dir)
    dry = run_prune(store_dir, Policy(keep_by_tf={"1m": 20 * DAY}), dry_run=True)
    assert files(store_dir) == before
    assert dry.changes and dry.temp_files
    real = run_prune(store_dir, Policy(keep_by_tf={"1m": 20 * DAY}))
    assert dry.after == real.after  # bytes too: the dry run encodes the files in memory
    assert [(c.action, c.market, len(c.removed)) for c in dry.changes] == [
        (c.action, c.market, len(c.removed)) for c in real.changes
    ]


def test_leftovers_of_killed_runs_are_removed(store_dir: Path) -> None:
    partition = next((store_dir / "candles" / "timeframe=1m" / "market=KRW-ETH").iterdir())
    orphan = partition / ".part-0.parquet.dead.tmp"
    orphan.write_bytes(b"half")
    record_tmp = store_dir / "fetched" / "1m" / ".KRW-ETH.json.dead.tmp"
    record_tmp.write_bytes(b"{")
    screens = store_dir / "screens"
    screens.mkdir()
    (screens / ".young.csv.y.tmp").write_bytes(b"b")  # maybe a screen-prep writing right now
    (screens / ".old.csv.x.tmp").write_bytes(b"a")
    age(screens / ".old.csv.x.tmp", 2 * HOUR)
    report = run_prune(store_dir)
    assert not orphan.exists() and not record_tmp.exists()
    assert not (screens / ".old.csv.x.tmp").exists() and (screens / ".young.csv.y.tmp").exists()
    assert len(report.temp_files) == 3


def test_kept_screens_unused_for_a_week_are_removed(store_dir: Path) -> None:
    screens = store_dir / "screens"
    screens.mkdir()
    for name, days in [("stale", 8), ("fresh", 6)]:
        (screens / f"{name}.csv").write_bytes(b"time,market\n")
        (screens / f"{name}.json").write_bytes(b"{}")
        age(screens / f"{name}.json", days * DAY)  # the record says when it was last used
    report = run_prune(store_dir)
    assert sorted(p.name for p in screens.iterdir()) == ["fresh.csv", "fresh.json"]
    assert sorted(Path(f.path).name for f in report.screens) == ["stale.csv", "stale.json"]


def age(path: Path, ms: int) -> None:
    """Make `path` `ms` older than a file written now, on the filesystem's own clock.

    The reference is a file's time, not time.time(): under a shifted clock (faketime),
    file times still come from the kernel.
    """
    reference = path.with_name(".reference")
    reference.write_bytes(b"")
    then = reference.stat().st_mtime_ns - ms * 1_000_000
    reference.unlink()
    os.utime(path, ns=(then, then))


@pytest.mark.slow
def test_sigkill_during_compaction_then_a_clean_rerun(tmp_path: Path, procs: Procs) -> None:
    store = CandleStore(tmp_path)
    for market in ["KRW-BTC", "KRW-ETH", "KRW-XRP"]:
        seed(store, HISTORY, market, "1m", "2026-08-01", NOW)
    want = {m: CandleStore(tmp_path).load(m, M1) for m in ["KRW-BTC", "KRW-ETH", "KRW-XRP"]}
    command = [
        sys.executable,
        "-m",
        "upbit_cache",
        "prune",
        "--as-of",
        NOW,
        "--data-dir",
        str(tmp_path),
    ]
    for delay in (0.6, 0.9, 1.2, 1.6):
        proc = procs.popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Not a wait: the kill lands wherever the run is by then (any moment must be safe).
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=DEADLINE)
        for market, frame in want.items():  # readers never see a half-compacted state
            pd.testing.assert_frame_equal(CandleStore(tmp_path).load(market, M1), frame)
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for market, frame in want.items():
        pd.testing.assert_frame_equal(CandleStore(tmp_path).load(market, M1), frame)
    plain = dataset_rows(tmp_path, "1m")
    assert len(plain) == sum(len(f) for f in want.values())
    assert not plain.duplicated(["market", "time"]).any()
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.slow
def test_readers_during_compaction_see_every_row_once(tmp_path: Path, procs: Procs) -> None:
    store = CandleStore(tmp_path)
    for market in ["KRW-BTC", "KRW-ETH"]:
        seed(store, HISTORY, market, "1m", "2026-08-01", NOW)
    want = {m: CandleStore(tmp_path).load(m, M1) for m in ["KRW-BTC", "KRW-ETH"]}
    command = [
        sys.executable,
        "-m",
        "upbit_cache",
        "prune",
        "--as-of",
        NOW,
        "--data-dir",
        str(tmp_path),
    ]
    proc = procs.popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    reads, deadline = 0, time.monotonic() + DEADLINE
    while proc.poll() is None or reads == 0:
        assert time.monotonic() < deadline, f"prune still running after {DEADLINE:g} s"
        for market, frame in want.items():
            pd.testing.assert_frame_equal(CandleStore(tmp_path).load(market, M1), frame)
            reads += 1
    _, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0, err
    assert reads > 2 and CandleStore(tmp_path).partition_files(M1, "KRW-BTC", "cold")


@pytest.mark.slow
def test_prune_while_fetch_runs(sim: SimulatorServer, tmp_path: Path, procs: Procs) -> None:
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "1m", days=20)
    fetch = [sys.executable, "-m", "upbit_cache", "fetch", "KRW-BTC", "KRW-ETH", "KRW-XRP"]
    fetch += ["-t", "1m", "--days", "25", "--api-url", sim.url, "--data-dir", str(tmp_path)]
    fetch += ["--rate", "200"]
    fetcher = procs.popen(fetch, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    pruner = subprocess.run(
        [
            sys.executable,
            "-m",
            "upbit_cache",
            "prune",
            "--compact-after",
            "3d",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    _, err = fetcher.communicate(timeout=180)
    assert fetcher.returncode == 0 and pruner.returncode == 0, err + pruner.stderr
    run_prune(tmp_path, Policy(compact_after_ms=3 * DAY))
    start = to_ms(NOW) - 25 * DAY
    for market in ["KRW-BTC", "KRW-ETH", "KRW-XRP"]:
        got = CandleStore(tmp_path).load(market, M1, TimeRange(start, to_ms(NOW)))
        pd.testing.assert_frame_equal(got, truth(sim, market, "1m", start, NOW))
    assert not dataset_rows(tmp_path, "1m").duplicated(["market", "time"]).any()


def test_pruned_ranges_are_fetched_again_only_when_asked(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "1h", days=30)
    run_prune(tmp_path, Policy(keep_ms=10 * DAY))
    sim.reset_stats()
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "1h", days=10)
    assert candle_requests(sim) == 0
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "1h", days=30)
    assert candle_requests(sim) == 3  # the 20 pruned days (480 hours): three pages
    start = to_ms(NOW) - 30 * DAY
    got = CandleStore(tmp_path).load("KRW-BTC", H1, TimeRange(start, to_ms(NOW)))
    pd.testing.assert_frame_equal(got, truth(sim, "KRW-BTC", "1h", start, NOW))
    assert not CandleStore(tmp_path).record(H1, "KRW-BTC").pruned.clip(TimeRange(start, to_ms(NOW)))


def test_cli_prune_summary_and_bad_input(store_dir: Path) -> None:
    runner = CliRunner()
    as_of = ["--as-of", NOW, "--data-dir", str(store_dir)]
    done = runner.invoke(app, ["prune", "--dry-run", *as_of])
    assert done.exit_code == 0, done.output
    # As of NOW: 33 of the 40 days of 1m ended more than 7 days before, into Oct and Nov files.
    assert "compact   1m: 2 markets, 66 files -> 4," in done.output
    assert "compact   1h: 2 markets, 2 files -> 2," in done.output
    assert "hot  tier: 84 files, 7.5 MB -> 16 files" in done.output
    assert "dry run: nothing changed" in done.output
    done = runner.invoke(app, ["prune", "-t", "1h", "-v", *as_of])
    assert "compact   1h KRW-BTC:" in done.output and " 1m" not in done.output
    for bad, message in [
        (["--keep", "10x"], "--keep: cannot read '10x'"),
        (["--keep-1m", "d"], "--keep-1m: cannot read 'd'"),
        (["-t", "7m"], "unsupported timeframe"),
        (["--as-of", "last week"], "cannot read time 'last week'"),
    ]:
        done = runner.invoke(app, ["prune", *bad, "--data-dir", str(store_dir)])
        assert done.exit_code == 2 and message in done.output, done.output


def test_retention_that_empties_a_series_is_refused_without_yes(store_dir: Path) -> None:
    from upbit_cache import RefusedError, UpbitCache

    runner, before = CliRunner(), files(store_dir)
    args = ["prune", "--keep", "0d", "--as-of", NOW, "--data-dir", str(store_dir)]
    done = runner.invoke(app, args)
    assert done.exit_code == 2, done.output
    assert files(store_dir) == before  # nothing changed
    # What it would remove, as --dry-run says it, on stdout; why not, one line on stderr.
    assert "retain    1m: 2 markets, " in done.stdout and "dry run: nothing changed" in done.stdout
    emptied = "(1h KRW-BTC, 1h KRW-ETH, 1m KRW-BTC, 1m KRW-ETH): a real run needs --yes"
    assert f"would leave no row in 4 series {emptied}" in done.stdout
    err = done.stderr.splitlines()
    assert len(err) == 1 and err[0].endswith(
        "upbit-cache: error: prune would delete every row of 1h KRW-BTC, 1h KRW-ETH, 1m KRW-BTC, "
        "1m KRW-ETH: nothing changed; what it would remove is above (as --dry-run says); "
        "give --yes to do it"
    )
    done = runner.invoke(app, [*args, "--dry-run"])
    assert done.exit_code == 0 and "a real run needs --yes" in done.stdout
    with pytest.raises(RefusedError) as refused:
        UpbitCache(store_dir).prune(Policy(keep_ms=0), now=NOW)
    assert isinstance(refused.value.report, PruneReport) and refused.value.report.dry_run
    # A retention that leaves rows needs no confirming; one that does not, with --yes, runs.
    assert runner.invoke(app, ["prune", "--keep", "30d", *args[3:]]).exit_code == 0
    done = runner.invoke(app, [*args, "--yes"])
    assert done.exit_code == 0, done.output
    assert "left no row in 4 series" in done.stdout
    assert not list((store_dir / "candles").rglob("*.parquet"))
