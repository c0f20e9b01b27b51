"""Damage meets every reader: each kind of bad file or record, each reading command.

None exits 0 with bad rows, none prints a traceback: each names the damage in one line that
points to `verify --repair` and exits 1. A series whose damage is known before anything is
written is left out and the rest is written (`info`; `export` for a damaged record;
`screen-prep` for any damage); a damaged data file met while `export` writes stops it there.
`prune` leaves a damaged series exactly as it is, so `verify` still reports it; `verify
--repair` and a fetch then make the store exact again against the simulator. (A fetch heals
the damage of its own window: tests/test_heal.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import NOW, data_file, plain, reset, run_fetch, truth
from typer.testing import CliRunner

import upbit_cache
from upbit_cache.cli import app
from upbit_cache.errors import DamageError
from upbit_cache.simulator import SimulatorServer
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import now_ms, to_ms

M1 = Timeframe.parse("1m")
MARKETS = ["KRW-BTC", "KRW-ETH"]  # KRW-BTC is damaged, KRW-ETH stays healthy
DAYS = 3  # 2026-11-17, -18 and -19: a day file each
START = to_ms(NOW) - DAYS * 86_400_000
BAD = "KRW-BTC"
RECORD = f"fetched/1m/{BAD}.json"
DAY = "2026-11-19"  # the damaged day: the last, so that a fetch of its last hour merges into it
NAMED = f"date={DAY}/part-{DAY.replace('-', '')}T"  # the day's one file, whatever its hash
runner = CliRunner()


def day_file(root: Path, day: str, market: str = BAD) -> Path:
    return data_file(root, day, market)


def rewrite(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    pq.write_table(change(pq.read_table(path)), path)


def truncate(root: Path) -> None:
    path = day_file(root, DAY)
    path.write_bytes(path.read_bytes()[:500])


def repeat_times(table: pa.Table) -> pa.Table:
    return pa.concat_tables([table, table.slice(0, 5)]).sort_by("time")


def close_minus_five(table: pa.Table) -> pa.Table:
    index = table.schema.get_field_index("close")
    return table.set_column(index, "close", pa.array([-5.0] * table.num_rows))


def claim_the_future(root: Path) -> None:
    path = root / RECORD
    data = json.loads(path.read_text())
    data["fetched"][-1][1] = to_ms("2100-01-01")
    path.write_text(json.dumps(data))


# kind -> (how to damage a store, the file its error names, what verify calls it)
DAMAGE: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "truncated file": (truncate, NAMED, "unreadable"),
    "zero-byte file": (
        lambda root: day_file(root, DAY).write_bytes(b""),
        NAMED,
        "unreadable",
    ),
    "deleted listed file": (
        lambda root: day_file(root, DAY).unlink(),
        NAMED,
        "missing",
    ),
    "foreign schema": (
        lambda root: pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), day_file(root, DAY)),
        NAMED,
        "wrong schema",
    ),
    "repeated times": (
        lambda root: rewrite(day_file(root, DAY), repeat_times),
        NAMED,
        "duplicate times",
    ),
    "impossible values": (
        lambda root: rewrite(day_file(root, DAY), close_minus_five),
        NAMED,
        "impossible values",
    ),
    "a day copied over the next": (
        lambda root: shutil.copyfile(day_file(root, "2026-11-18"), day_file(root, DAY)),
        NAMED,
        "wrong partition",
    ),
    "empty record": (lambda root: (root / RECORD).write_bytes(b""), RECORD, "damaged record"),
    "garbage record": (
        lambda root: (root / RECORD).write_text("{not json"),
        RECORD,
        "damaged record",
    ),
    "record claiming the future": (claim_the_future, RECORD, "damaged record"),
}
KINDS = list(DAMAGE)

# The reading commands, without the network: each reads KRW-BTC's damaged series.
READERS: dict[str, list[str]] = {
    "export": [
        "export",
        *MARKETS,
        "-t",
        "1m",
        "--since",
        "2026-11-17",
        "--until",
        NOW,
        "--no-refresh",
    ],
    "export (derived)": ["export", BAD, "-t", "15m", "--since", "2026-11-17", "--no-refresh"],
    "screen-prep": ["screen-prep", *MARKETS, "-t", "1m", "--days", "3", "--no-refresh"],
    "resample": ["resample", BAD, "-t", "5m"],
}
PRUNE = ["prune", "--compact-after", "1d", "--as-of", "2026-11-22"]  # compacts every day


@pytest.fixture(scope="module")
def healthy(simulator: SimulatorServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three days of 1m for two markets, fetched once for the module (copied per case)."""
    root = tmp_path_factory.mktemp("healthy")
    report = run_fetch(reset(simulator).url, root, MARKETS, "1m", days=DAYS)
    assert report.failed == []
    return root


def damaged(healthy: Path, tmp_path: Path, kind: str) -> Path:
    """A copy of the healthy store with one kind of damage in KRW-BTC's 1m series."""
    root = tmp_path / "store"
    shutil.copytree(healthy, root)
    DAMAGE[kind][0](root)
    return root


def cli(root: Path, *args: str) -> tuple[int, str, str]:
    done = runner.invoke(app, [*args, "--data-dir", str(root)])
    # An exception other than the exit the command chose is what a terminal shows as a
    # traceback.
    assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
    return done.exit_code, done.stdout, plain(done.stderr)


def one_error(err: str, names: str) -> None:
    """stderr is one line: the error, naming the damaged file and the repair."""
    assert err.count("\n") == 1 and err.startswith("upbit-cache: error: "), err
    assert names in err and "run `upbit-cache verify --repair`" in err, err
    assert "Traceback" not in err


def one_error_line(err: str, names: str) -> None:
    """Of stderr's lines (a summary may come first) one is an error, naming the damaged file
    and the repair."""
    errors = [line for line in err.splitlines() if line.startswith("upbit-cache: error: ")]
    assert len(errors) == 1, err
    assert names in errors[0] and "run `upbit-cache verify --repair`" in errors[0], err
    assert "Traceback" not in err


def series_files(root: Path, market: str = BAD) -> dict[str, bytes]:
    """Every file of one series (data and record), as bytes."""
    found = {
        str(p.relative_to(root)): p.read_bytes()
        for p in (root / "candles" / "timeframe=1m" / f"market={market}").rglob("*")
        if p.is_file()
    }
    record = root / "fetched" / "1m" / f"{market}.json"
    if record.exists():
        found[str(record.relative_to(root))] = record.read_bytes()
    return found


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", list(READERS))
def test_every_reader_names_the_damage_and_exits_1(
    healthy: Path, tmp_path: Path, kind: str, command: str
) -> None:
    root = damaged(healthy, tmp_path, kind)
    names = DAMAGE[kind][1]
    out_file = tmp_path / "out.csv"
    args = READERS[command] + (["--out", str(out_file)] if command.startswith("export") else [])
    code, out, err = cli(root, *args)
    assert code == 1, (out, err)
    record = DAMAGE[kind][2] == "damaged record"
    written = out_file.read_text() if out_file.exists() else out
    assert BAD not in written  # no row of the damaged series goes out
    if command == "screen-prep" or (command.startswith("export") and record):
        one_error_line(err, names)  # after the summary: the series was left out
    else:
        one_error(err, names)
    if command == "screen-prep" or (command == "export" and record):
        assert "KRW-ETH" in written  # the rest is written
    if not record:  # a damaged data file stops an export; resample writes nothing of it
        assert command == "screen-prep" or (out == "" and not out_file.exists())


@pytest.mark.parametrize("kind", KINDS)
def test_info_lists_the_rest_and_names_the_damaged_series(
    healthy: Path, tmp_path: Path, kind: str
) -> None:
    root = damaged(healthy, tmp_path, kind)
    names = DAMAGE[kind][1]
    code, out, err = cli(root, "info")
    assert code == 1
    assert "KRW-ETH" in out and BAD not in out
    assert err.startswith(f"upbit-cache: error: 1m {BAD}: ") and err.count("\n") == 1, err
    assert names in err and "verify --repair" in err


@pytest.mark.parametrize("kind", KINDS)
def test_load_raises_the_damage(healthy: Path, tmp_path: Path, kind: str) -> None:
    root = damaged(healthy, tmp_path, kind)
    names = DAMAGE[kind][1]
    for timeframe in ("1m", "15m"):  # stored, and derived from it on the fly
        with pytest.raises(DamageError, match="verify --repair") as raised:
            upbit_cache.load(BAD, timeframe, data_dir=root)
        assert names in str(raised.value)
    cache = upbit_cache.UpbitCache(root, api_url="http://127.0.0.1:9")  # nothing may be asked
    with pytest.raises(DamageError, match="verify --repair"):
        cache.get(BAD, "1m", "2026-11-17", NOW)
    assert len(upbit_cache.load("KRW-ETH", "1m", data_dir=root)) > 0  # the rest reads


@pytest.mark.parametrize("kind", KINDS)
def test_prune_leaves_the_damage_for_verify_and_repair_with_a_fetch_makes_it_exact(
    sim: SimulatorServer, healthy: Path, tmp_path: Path, kind: str
) -> None:
    root = damaged(healthy, tmp_path, kind)
    _, names, verify_kind = DAMAGE[kind]
    before = series_files(root)
    code, out, err = cli(root, *PRUNE)
    assert code == 1 and "compact   1m: 1 market" in out, (out, err)
    assert err.startswith(f"upbit-cache: error: 1m {BAD}: left as it is: "), err
    assert err.count("\n") == 1 and names in err
    assert series_files(root) == before  # not compacted around, not retained, nothing dropped

    code, out, _ = cli(root, "verify", "--json")
    found = json.loads(out)
    assert code == 1
    assert {(p["market"], p["kind"]) for p in found["problems"]} >= {(BAD, verify_kind)}
    assert {p["market"] for p in found["problems"]} == {BAD}
    if kind == "record claiming the future":
        assert any("a recorded range after now" in p["detail"] for p in found["problems"])

    assert cli(root, "verify", "--repair")[0] == 0  # all repaired
    assert cli(root, "verify")[0] == 0
    report = run_fetch(sim.url, root, MARKETS, "1m", days=DAYS)
    assert report.failed == []
    for market in MARKETS:
        got = CandleStore(root).load(market, M1)
        pd.testing.assert_frame_equal(got, truth(sim, market, "1m", START, NOW))
    assert cli(root, "verify")[0] == 0


def test_a_record_ahead_of_this_hosts_clock_is_damaged_only_past_its_own_time(
    healthy: Path, tmp_path: Path
) -> None:
    # A claim three days ahead of this host's clock: damaged when the record was written now,
    # fine when it was written after the end it claims (this host's clock is then behind).
    root = tmp_path / "store"
    shutil.copytree(healthy, root)
    path = root / RECORD
    data = json.loads(path.read_text())
    ahead = max(now_ms(), to_ms(NOW)) + 3 * 86_400_000
    data["fetched"][-1][1] = ahead
    path.write_text(json.dumps(data))
    written = now_ms() * 1_000_000  # by this host's clock (faked or not), not the kernel's
    os.utime(path, ns=(written, written))
    code, out, _ = cli(root, "verify")
    assert code == 1 and "a recorded range after now" in out
    os.utime(path, ns=((ahead + 3_600_000) * 1_000_000,) * 2)
    assert cli(root, "verify")[0] == 0
    assert len(upbit_cache.load(BAD, "1m", data_dir=root)) > 0


def test_retention_reads_before_it_edits(healthy: Path, tmp_path: Path) -> None:
    # Repeated times in the day that retention would cut in two: nothing of the series
    # changes, neither the day wholly before the cutoff nor the record.
    root = tmp_path / "store"
    shutil.copytree(healthy, root)
    rewrite(day_file(root, "2026-11-18"), repeat_times)
    before = series_files(root)
    code, out, err = cli(root, "prune", "--keep-1m", "36h", "--as-of", NOW)
    assert code == 1 and "retain    1m: 1 market" in out, (out, err)
    assert "duplicate times" in err and "left as it is" in err
    assert series_files(root) == before
    assert not day_file(root, "2026-11-17", "KRW-ETH").exists()  # the rest was pruned


@pytest.mark.slow
def test_the_console_prints_no_traceback_on_a_foreign_file(healthy: Path, tmp_path: Path) -> None:
    root = damaged(healthy, tmp_path, "foreign schema")
    for args in (["info"], READERS["export"], READERS["resample"], PRUNE):
        done = subprocess.run(
            [sys.executable, "-m", "upbit_cache", *args, "--data-dir", str(root)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr and "wrong schema" in done.stderr
        assert len(done.stderr.splitlines()) == 1, done.stderr
