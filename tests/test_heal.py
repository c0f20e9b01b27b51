"""`fetch` heals its window: each kind of damage inside it is quarantined, forgotten and
fetched again in the same run (a warning line each), and the store ends exact against the
simulator with `verify` clean; damage outside the window is reported (what a listing shows)
and left as it is. A damaged record fails only its series in the readers (export, resample,
screen-prep: the rest is written, exit 1), and is healed by a fetch, also one under export
or screen-prep, while the other market is fetched.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import FAST_RATE, NOW, S3Server, data_file, plain, reset, run_fetch, truth
from typer.testing import CliRunner

from upbit_cache.cli import app
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.simulator import SimulatorServer
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.store.files import StoredFile
from upbit_cache.store.records import read_record
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

M1 = Timeframe.parse("1m")
M5 = Timeframe.parse("5m")
MARKETS = ["KRW-BTC", "KRW-ETH"]  # KRW-BTC is damaged, KRW-ETH stays healthy
BAD = "KRW-BTC"
DAY_MS = 86_400_000
FIRST = to_ms(NOW) - 4 * DAY_MS  # the store holds 2026-11-16 to -19, a day file each
WINDOW = ["--days", "3"]  # a fetch of 2026-11-17 to -19: 2026-11-16 lies outside it
INSIDE, BEFORE = "2026-11-19", "2026-11-18"  # the day damaged inside, the day copied over it
OUTSIDE, AFTER = "2026-11-16", "2026-11-17"
runner = CliRunner()


def day_file(root: Path, day: str, market: str = BAD, tf: str = "1m") -> Path:
    return data_file(root, day, market, tf)


def record_file(root: Path, market: str = BAD, tf: str = "1m") -> Path:
    return root / "fetched" / tf / f"{market}.json"


def rewrite(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    pq.write_table(change(pq.read_table(path)), path)


def repeat_times(table: pa.Table) -> pa.Table:
    return pa.concat_tables([table, table.slice(0, 5)]).sort_by("time")


def close_minus_five(table: pa.Table) -> pa.Table:
    index = table.schema.get_field_index("close")
    return table.set_column(index, "close", pa.array([-5.0] * table.num_rows))


def foreign(path: Path) -> None:
    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), path)


# kind -> (how to damage one data file, given it and the file of the day before or after it
# (what `a day copied over another` copies), what verify calls it)
FILE_DAMAGE: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "deleted listed file": (lambda path, other: path.unlink(), "missing"),
    "truncated file": (lambda path, _: path.write_bytes(path.read_bytes()[:500]), "unreadable"),
    "zero-byte file": (lambda path, _: path.write_bytes(b""), "unreadable"),
    "foreign schema": (lambda path, _: foreign(path), "wrong schema"),
    "repeated times": (lambda path, _: rewrite(path, repeat_times), "duplicate times"),
    "impossible values": (lambda path, _: rewrite(path, close_minus_five), "impossible values"),
    "a day copied over another": (
        lambda path, other: shutil.copyfile(other, path),
        "wrong partition",
    ),
}


def claim_the_future(path: Path) -> None:
    data = json.loads(path.read_text())
    data["fetched"][-1][1] = to_ms("2100-01-01")
    path.write_text(json.dumps(data))


RECORD_DAMAGE: dict[str, Callable[[Path], None]] = {
    "empty record": lambda path: path.write_bytes(b""),
    "garbage record": lambda path: path.write_text("{not json"),
    "record claiming the future": claim_the_future,
}


@pytest.fixture(scope="module")
def healthy(simulator: SimulatorServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four days of 1m for two markets, fetched for the module (copied per case), then
    fetched again as a cron job would: that run checked every file, and remembers them."""
    root = tmp_path_factory.mktemp("healthy")
    for _ in range(2):
        report = run_fetch(reset(simulator).url, root, MARKETS, "1m", days=4)
        assert report.failed == [] and report.healed == 0
    assert (root / "checked" / "1m" / f"{BAD}.json").exists()
    return root


def copy(healthy: Path, tmp_path: Path) -> Path:
    root = tmp_path / "store"
    shutil.copytree(healthy, root)
    return root


def cli(root: Path | str, *args: str) -> tuple[int, str, str]:
    done = runner.invoke(app, [*args, "--data-dir", str(root)])
    assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
    return done.exit_code, done.stdout, plain(done.stderr)


def fetch(sim: SimulatorServer, root: Path | str, *args: str) -> tuple[int, str, str]:
    """`fetch KRW-BTC KRW-ETH -t 1m ARGS -q` against the simulator."""
    api = ["--api-url", sim.url, "--rate", str(FAST_RATE), "-q"]
    return cli(root, "fetch", *MARKETS, "-t", "1m", *args, *api)


def warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("upbit-cache: warning: ")]


def exact(sim: SimulatorServer, root: Path | str, start: int = FIRST) -> None:
    """Every market's stored 1m candles are the simulator's, from `start` to NOW."""
    store = CandleStore(root)
    for market in MARKETS:
        pd.testing.assert_frame_equal(store.load(market, M1), truth(sim, market, "1m", start, NOW))


def forget_last_hour(root: Path | str, market: str) -> None:
    """So that a fetch has something of `market` to ask (the last hour of the window)."""
    CandleStore(root).forget(M1, market, Ranges.of([(to_ms(NOW) - 3_600_000, to_ms(NOW))]))


@pytest.mark.parametrize("kind", list(FILE_DAMAGE))
def test_a_fetch_heals_each_kind_of_damaged_file_in_its_window(
    sim: SimulatorServer, healthy: Path, tmp_path: Path, kind: str
) -> None:
    root = copy(healthy, tmp_path)
    damage, verify_kind = FILE_DAMAGE[kind]
    inside = day_file(root, INSIDE)
    named = str(inside.relative_to(root))
    damage(inside, day_file(root, BEFORE))
    forget_last_hour(root, "KRW-ETH")
    code, out, err = fetch(sim, root, *WINDOW)
    assert code == 0, (out, err)
    [line] = warnings(err)  # one line per healed file, even with -q
    assert line.startswith(f"upbit-cache: warning: 1m {BAD}: {named} was damaged ({verify_kind}: ")
    assert line.endswith(f"{INSIDE}T00:00:00Z→2026-11-20T00:00:00Z asked of Upbit again"), line
    assert "1 damaged file healed" in out and "1,500 candles written" in out  # a day + an hour
    quarantined = list((root / "quarantine").rglob(f"market={BAD}/date={INSIDE}/{inside.name}"))
    assert len(quarantined) == (0 if verify_kind == "missing" else 1)  # kept for a look
    exact(sim, root)
    assert cli(root, "verify")[0] == 0
    assert fetch(sim, root, *WINDOW)[1].startswith("2 markets, 0 candles written, 0 requests")


def test_a_healed_file_is_fetched_whole_also_where_it_reaches_past_the_window(
    sim: SimulatorServer, healthy: Path, tmp_path: Path
) -> None:
    root = copy(healthy, tmp_path)
    path = day_file(root, INSIDE)
    path.write_bytes(path.read_bytes()[:500])
    code, out, err = fetch(sim, root, "--since", f"{INSIDE}T18:00:00Z")  # the day's last 6 hours
    assert code == 0 and "1,440 candles written" in out, (out, err)
    assert warnings(err)[0].endswith(
        f"{INSIDE}T00:00:00Z→2026-11-20T00:00:00Z asked of Upbit again"
    )
    exact(sim, root)
    assert cli(root, "verify")[0] == 0


def test_what_retention_deleted_is_not_fetched_again_with_a_healed_file(
    sim: SimulatorServer, healthy: Path, tmp_path: Path
) -> None:
    root = copy(healthy, tmp_path)
    kept = to_ms(NOW) - 84 * 3_600_000  # 2026-11-16T12:00: half of the first day is deleted
    assert cli(root, "prune", "--keep-1m", "84h", "--as-of", NOW)[0] == 0
    path = day_file(root, OUTSIDE)
    path.write_bytes(path.read_bytes()[:500])
    code, out, err = fetch(sim, root, "--since", f"{OUTSIDE}T18:00:00Z")
    assert code == 0 and "720 candles written" in out, (out, err)  # from 12:00, not from 00:00
    exact(sim, root, kept)
    assert cli(root, "verify")[0] == 0


@pytest.mark.parametrize("kind", list(FILE_DAMAGE))
def test_a_damaged_file_outside_the_window_is_left_and_reported_where_a_listing_shows_it(
    sim: SimulatorServer, healthy: Path, tmp_path: Path, kind: str
) -> None:
    root = copy(healthy, tmp_path)
    damage, verify_kind = FILE_DAMAGE[kind]
    outside = day_file(root, OUTSIDE)
    damage(outside, day_file(root, AFTER))
    before = outside.read_bytes() if outside.exists() else None
    for market in MARKETS:
        forget_last_hour(root, market)
    code, out, err = fetch(sim, root, *WINDOW)
    assert code == 0 and "2 markets, 120 candles written" in out, (out, err)  # the rest fetched
    assert (outside.read_bytes() if outside.exists() else None) == before  # not touched
    assert not (root / "quarantine").exists()
    named = str(outside.relative_to(root))
    if kind in ("deleted listed file", "zero-byte file"):  # what a listing shows; nothing is read
        [line] = warnings(err)
        assert line.startswith(f"upbit-cache: warning: 1m {BAD}: {named} is damaged ({verify_kind}")
        assert line.endswith(
            "outside this run's window: left as it is; run `upbit-cache verify --repair`"
        )
    else:
        assert warnings(err) == []
    code, report, _ = cli(root, "verify")
    assert code == 1 and f"1m {BAD}: {verify_kind}: {named}" in report
    window = TimeRange(FIRST + DAY_MS, to_ms(NOW))  # the window itself is whole
    got = CandleStore(root).load(BAD, M1, window)
    pd.testing.assert_frame_equal(got, truth(sim, BAD, "1m", window.start, window.end))


@pytest.mark.parametrize("kind", list(RECORD_DAMAGE))
def test_a_fetch_heals_a_damaged_record_and_fetches_the_other_market(
    sim: SimulatorServer, healthy: Path, tmp_path: Path, kind: str
) -> None:
    root = copy(healthy, tmp_path)
    RECORD_DAMAGE[kind](record_file(root))
    forget_last_hour(root, "KRW-ETH")
    code, out, err = fetch(sim, root, *WINDOW)
    assert code == 0, (out, err)
    [line] = warnings(err)
    assert line.startswith(
        f"upbit-cache: warning: 1m {BAD}: fetched/1m/{BAD}.json was damaged (damaged record: "
    )
    kept = "quarantined; its data files are kept as provisional and the whole window is asked"
    assert line.endswith(f"{kept} of Upbit again"), line
    # The whole window of KRW-BTC again (three days), and KRW-ETH's last hour.
    assert "1 damaged file healed" in out and f"{3 * 1440 + 60:,} candles written" in out, out
    assert len(list((root / "quarantine").rglob(f"fetched/1m/{BAD}.json"))) == 1
    exact(sim, root)  # the day outside the window is kept too
    record = read_record(CandleStore(root).files, str(record_file(root)))
    assert record.fetched == Ranges.of([(FIRST + DAY_MS, to_ms(NOW))])
    assert record.provisional == Ranges.of([(FIRST, FIRST + DAY_MS)])  # held, vouched by none
    assert cli(root, "verify")[0] == 0
    code, table, _ = cli(root, "info", BAD)
    held = "2026-11-17T00:00:00Z→2026-11-20T00:00:00Z, provisional 2026-11-16T00:00:00Z→"
    assert code == 0 and held in table, table
    # A fetch whose window holds the provisional day asks for it again, and settles it.
    code, out, _ = fetch(sim, root, "--days", "4")
    assert code == 0 and "1,440 candles written" in out, out
    record = read_record(CandleStore(root).files, str(record_file(root)))
    assert record.fetched == Ranges.of([(FIRST, to_ms(NOW))]) and not record.provisional
    exact(sim, root)


def test_a_fetch_heals_a_derived_series_in_its_window(
    sim: SimulatorServer, healthy: Path, tmp_path: Path
) -> None:
    root = copy(healthy, tmp_path)
    assert fetch(sim, root, "-t", "5m", *WINDOW)[0] == 0
    path = day_file(root, "2026-11-01", tf="5m")
    month = str(path.relative_to(root))
    path.write_bytes(path.read_bytes()[:300])
    code, out, err = fetch(sim, root, "-t", "5m", *WINDOW)
    assert code == 0 and "1 damaged file healed" in out, (out, err)
    [line] = warnings(err)  # a month file (5m): derived again from the 1m base
    assert line.startswith(f"upbit-cache: warning: 5m {BAD}: {month} was damaged (unreadable: ")
    # The span its name says: the rows it held, derived again from the 1m base.
    assert line.endswith("2026-11-16T00:00:00Z→2026-11-20T00:00:00Z derived again from 1m"), line
    store = CandleStore(root)
    for market in MARKETS:
        got = store.load(market, M5)
        native = truth(sim, market, "5m", FIRST, NOW)  # derived from all the base holds
        exact_columns = ["time", "open", "high", "low", "close", "timestamp"]
        pd.testing.assert_frame_equal(got[exact_columns], native[exact_columns])
        pd.testing.assert_frame_equal(
            got[["volume", "value"]], native[["volume", "value"]], rtol=1e-9
        )
    assert cli(root, "verify")[0] == 0


def test_healing_waits_for_the_series_writer_lock(
    sim: SimulatorServer, healthy: Path, tmp_path: Path
) -> None:
    root = copy(healthy, tmp_path)
    path = day_file(root, INSIDE)
    path.write_bytes(b"")
    forget_last_hour(root, "KRW-ETH")

    async def holding() -> tuple[int, str, str]:
        async with CandleStore(root).lock(M1, BAD):  # another run writing KRW-BTC 1m
            return await asyncio.to_thread(fetch, sim, root, *WINDOW, "--lock-timeout", "0.3")

    code, out, err = asyncio.run(holding())
    assert code == 1 and f"1 failed: {BAD} 1m" in out and "still holds its lock" in err
    assert path.exists() and path.read_bytes() == b"" and not (root / "quarantine").exists()
    assert "60 candles written" in out  # the other market went on
    code, out, _ = fetch(sim, root, *WINDOW)  # the lock free: healed
    assert code == 0 and "1 damaged file healed" in out
    exact(sim, root)


def test_a_fetch_reads_again_only_the_files_that_changed_since_they_passed(
    sim: SimulatorServer, healthy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = copy(healthy, tmp_path)  # copied with their times: as they passed
    read: list[str] = []
    real = CandleStore.read_file

    def counted(self: CandleStore, found: StoredFile | str) -> pa.Table:
        read.append(found if isinstance(found, str) else found.path)
        return real(self, found)

    monkeypatch.setattr(CandleStore, "read_file", counted)
    assert fetch(sim, root, *WINDOW)[0] == 0 and read == []  # nothing changed: nothing read
    path = day_file(root, BEFORE)
    rewrite(path, lambda table: table)  # the same rows, written again: another version
    code, out, err = fetch(sim, root, *WINDOW)
    assert code == 0 and warnings(err) == [] and read == [str(path)], (out, err, read)
    read.clear()
    (root / "checked" / "1m" / f"{BAD}.json").write_text("{not json")  # a cache: read it all
    assert fetch(sim, root, *WINDOW)[0] == 0
    assert sorted(read) == [str(day_file(root, d)) for d in (AFTER, BEFORE, INSIDE)]
    read.clear()
    rewrite(day_file(root, AFTER), close_minus_five)  # damage to a file that passed before
    code, out, err = fetch(sim, root, *WINDOW)
    assert code == 0 and "1 damaged file healed" in out and read == [str(day_file(root, AFTER))]
    exact(sim, root)


# Readers report a damaged record; the series is left out, the rest is written.


def test_readers_leave_out_a_series_whose_record_is_damaged(healthy: Path, tmp_path: Path) -> None:
    root = copy(healthy, tmp_path)
    record_file(root).write_text("{not json")
    assert cli(root, "resample", "KRW-ETH", "-t", "5m")[0] == 0  # KRW-ETH's 5m, stored
    named = f"fetched/1m/{BAD}.json is damaged"
    out_file = tmp_path / "out.csv"
    span = ["--since", "2026-11-16", "--until", NOW]
    readers = {
        "1m": ["export", *MARKETS, "-t", "1m", *span],
        "5m": ["export", *MARKETS, "-t", "5m", *span],  # KRW-BTC's would be derived
        "screen 1m": ["screen-prep", *MARKETS, "-t", "1m", "--days", "3"],
    }
    for name, reader in readers.items():
        args, prefix = [*reader, "--no-refresh", "-o", str(out_file)], name.split()[-1]
        out_file.unlink(missing_ok=True)
        code, out, err = cli(root, *args)
        assert code == 1, (args, out, err)
        errors = [line for line in err.splitlines() if "error" in line]
        assert errors == [
            line for line in errors if line.startswith(f"upbit-cache: error: {prefix} {BAD}: ")
        ]
        assert len(errors) == 1 and named in errors[0] and "verify --repair" in errors[0], err
        rows = pd.read_csv(out_file)
        assert set(rows["market"]) == {"KRW-ETH"} and len(rows) > 0, args  # the rest is there
    code, out, err = cli(root, "resample", *MARKETS, "-t", "15m")
    assert code == 1 and out.startswith("1 market, 15m from 1m: 384 candles written"), (out, err)
    assert err.startswith(f"upbit-cache: error: 15m {BAD}: fetched-range record ") and named in err
    assert err.count("\n") == 1
    assert len(CandleStore(root).load("KRW-ETH", Timeframe.parse("15m"))) == 4 * 96


@pytest.mark.parametrize("command", ["export", "screen-prep"])
def test_a_reader_that_refreshes_heals_through_its_fetch(
    sim: SimulatorServer, healthy: Path, tmp_path: Path, command: str
) -> None:
    root = copy(healthy, tmp_path)
    record_file(root).write_bytes(b"")
    out_file = tmp_path / "out.csv"
    span = ["--since", "2026-11-17", "--until", NOW] if command == "export" else ["--days", "3"]
    args = [command, *MARKETS, "-t", "1m", *span, "-o", str(out_file)]
    code, _, err = cli(root, *args, "--api-url", sim.url, "--rate", str(FAST_RATE))
    assert code == 0, err
    [line] = warnings(err)
    assert f"fetched/1m/{BAD}.json was damaged (damaged record: " in line
    rows = pd.read_csv(out_file)
    assert rows.groupby("market").size().to_dict() == {m: 3 * 1440 for m in MARKETS}
    assert cli(root, "verify")[0] == 0


@pytest.mark.slow
def test_a_fetch_heals_on_s3(sim: SimulatorServer, s3: S3Server) -> None:
    uri = s3.new_dir()
    assert run_fetch(sim.url, uri, MARKETS, "1m", days=4).failed == []
    bucket, prefix = s3.BUCKET, uri.removeprefix(f"s3://{s3.BUCKET}/")
    client = s3.client()
    day = f"{prefix}/candles/timeframe=1m/market={BAD}/date={INSIDE}/"
    [key] = [k for k in s3.keys(uri) if k.startswith(day) and "/part-" in k]
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=key, Body=body[:500])  # truncated
    client.put_object(Bucket=bucket, Key=f"{prefix}/fetched/1m/KRW-ETH.json", Body=b"{not json")
    code, out, err = fetch(sim, uri, *WINDOW)
    assert code == 0 and "2 damaged files healed" in out, (out, err)
    assert len(warnings(err)) == 2
    moved = [k for k in s3.keys(uri) if "/quarantine/" in k]
    assert len(moved) == 2 and any(k.endswith(key.rpartition("/")[2]) for k in moved)
    assert any(k.endswith("fetched/1m/KRW-ETH.json") for k in moved)
    exact(sim, uri)
    assert cli(uri, "verify")[0] == 0
