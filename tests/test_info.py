"""`info` on real stores in temp dirs: counts, quiet periods vs holes, tiers, text and JSON."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import plain
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from upbit_cache.cli import app
from upbit_cache.manager.info import SeriesInfo, inventory, to_json
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.store import layout
from upbit_cache.store.candle_store import CandleStore, TierUsage
from upbit_cache.store.edits import SeriesEdit
from upbit_cache.store.parts import name_for
from upbit_cache.store.records import Record
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

HOUR = 3_600_000
H1 = Timeframe.parse("1h")
M15 = Timeframe.parse("15m")
D1 = Timeframe.parse("1d")
MONTH = Timeframe.parse("1M")
runner = CliRunner()


def candles(times_ms: list[int] | np.ndarray) -> pd.DataFrame:
    """Candles starting at the given times (epoch ms), with made-up prices."""
    times = np.asarray(times_ms, dtype=np.int64)
    close = 100.0 + np.arange(len(times), dtype=np.float64)
    stamp = pd.to_datetime(times, unit="ms", utc=True).astype("datetime64[ms, UTC]")
    return pd.DataFrame(
        {
            "time": stamp,
            "open": close,
            "high": close + 1,
            "low": close - 1,
            "close": close,
            "volume": np.ones(len(times)),
            "value": close,
            "timestamp": stamp,
        }
    )


def hours(start: str, n: int, skip: tuple[int, ...] = ()) -> list[int]:
    """`n` hourly period starts from `start`, leaving out the ones at the indices in `skip`."""
    t0 = to_ms(start)
    return [t0 + i * HOUR for i in range(n) if i not in skip]


def span(start: str, end: str) -> Ranges:
    return Ranges.of([(to_ms(start), to_ms(end))])


def disk_bytes(root: Path, name: str) -> tuple[int, int]:
    found = list(root.rglob(name))
    return len(found), sum(p.stat().st_size for p in found)


def only(infos: list[SeriesInfo]) -> SeriesInfo:
    assert len(infos) == 1, infos
    return infos[0]


@pytest.fixture
def gappy(tmp_path: Path) -> CandleStore:
    """KRW-BTC 1h: two fetched days with quiet hours, a never-fetched hole, then one day more.

    Day 1 (2026-01-01): no trade at 05:00, nor at 10:00-12:59 (a run of three).
    Day 2 (2026-01-02): no trade in its last two hours (a run that ends at the range end).
    2026-01-03 and -04: never fetched. 2026-01-05: fetched, every hour traded.
    """
    store = CandleStore(tmp_path)
    first = hours("2026-01-01", 48, skip=(5, 10, 11, 12, 46, 47))
    store.write("KRW-BTC", H1, candles(first), span("2026-01-01", "2026-01-03"))
    store.write("KRW-BTC", H1, candles(hours("2026-01-05", 24)), span("2026-01-05", "2026-01-06"))
    return store


def test_quiet_periods_are_told_apart_from_never_fetched_holes(gappy: CandleStore) -> None:
    info = only(inventory(gappy))
    assert (info.timeframe, info.market) == (H1, "KRW-BTC")
    assert info.candles == 42 + 24
    assert info.first == to_ms("2026-01-01T00:00")
    assert info.last == to_ms("2026-01-05T23:00")
    assert info.fetched == Ranges.of(
        [
            (to_ms("2026-01-01"), to_ms("2026-01-03")),
            (to_ms("2026-01-05"), to_ms("2026-01-06")),
        ]
    )
    assert info.quiet_periods == 6
    assert info.quiet_runs == Ranges.of(
        [
            (to_ms("2026-01-01T05:00"), to_ms("2026-01-01T06:00")),
            (to_ms("2026-01-01T10:00"), to_ms("2026-01-01T13:00")),
            (to_ms("2026-01-02T22:00"), to_ms("2026-01-03T00:00")),
        ]
    )
    assert info.longest_quiet == 3
    assert info.never_fetched == span("2026-01-03", "2026-01-05")
    assert info.pruned == Ranges()
    assert [(r.start, r.end, r.base) for r in info.bases] == [
        (*interval, "native") for interval in info.fetched
    ]


def test_tier_files_and_bytes_match_the_disk(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    old = hours("2025-12-30", 48)
    store.write("KRW-BTC", H1, candles(old), span("2025-12-30", "2026-01-01"))
    # Compact 2025 by hand, as prune does: the cold file, the record, then the hot one goes.
    record = store.record(H1, "KRW-BTC")
    edit = SeriesEdit(store, H1, "KRW-BTC", record)
    edit.merge(set(edit.parts), tier="cold")
    edit.commit(replace(record, files=edit.files))
    # 2026 stays hot; its first hours are also in a cold file (a compaction under way: the
    # new file is there, the record does not list it yet).
    new = hours("2026-01-01", 24)
    store.write("KRW-BTC", H1, candles(new), span("2026-01-01", "2026-01-02"))
    first = store.load_table(
        "KRW-BTC", H1, TimeRange(to_ms("2026-01-01"), to_ms("2026-01-01T06:00"))
    )
    part = name_for(H1, first, "cold")
    store.create_file(layout.series_path(store.root, H1, "KRW-BTC", part.name), first)
    info = only(inventory(store))
    assert info.tiers["hot"] == TierUsage(*disk_bytes(tmp_path, "part-*.parquet"))
    assert info.tiers["cold"] == TierUsage(*disk_bytes(tmp_path, "cold-*.parquet"))
    assert info.tiers["hot"].files == 1 and info.tiers["cold"].files == 2
    assert info.files == 3 and info.bytes == info.tiers["hot"].bytes + info.tiers["cold"].bytes
    assert info.candles == 72  # the rows in both tiers are counted once
    assert info.quiet_periods == 0 and not info.never_fetched
    doc = to_json([info])
    assert doc["totals"]["tiers"] == {
        "hot": {"files": 1, "bytes": info.tiers["hot"].bytes},
        "cold": {"files": 2, "bytes": info.tiers["cold"].bytes},
    }
    assert doc["totals"]["bytes"] == info.bytes and doc["totals"]["files"] == 3


def test_months_are_calendar_months(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    months = [to_ms(d) for d in ("2025-01-01", "2025-05-01", "2025-07-01")]
    store.write("KRW-BTC", MONTH, candles(months), span("2025-01-01", "2025-09-01"))
    info = only(inventory(store))
    assert info.candles == 3
    # Feb, Mar, Apr (28, 31 and 30 days), then Jun, then Aug.
    assert info.quiet_periods == 5
    assert info.quiet_runs == Ranges.of(
        [
            (to_ms("2025-02-01"), to_ms("2025-05-01")),
            (to_ms("2025-06-01"), to_ms("2025-07-01")),
            (to_ms("2025-08-01"), to_ms("2025-09-01")),
        ]
    )
    assert info.longest_quiet == 3
    runs = to_json([info])["series"][0]["quiet"]["runs"]
    assert [r["periods"] for r in runs] == [3, 1, 1]


def test_partly_fetched_periods_count_neither_way(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    store.write(
        "KRW-BTC",
        H1,
        candles(hours("2026-01-01T01:00", 3, skip=(1,))),  # 01:00 and 03:00
        Ranges.of([(to_ms("2026-01-01T00:30"), to_ms("2026-01-01T05:30"))]),
    )
    info = only(inventory(store))
    # Whole hours inside: 01, 02, 03, 04; no candle at 02 and 04.
    assert info.quiet_periods == 2
    assert info.quiet_runs == Ranges.of(
        [
            (to_ms("2026-01-01T02:00"), to_ms("2026-01-01T03:00")),
            (to_ms("2026-01-01T04:00"), to_ms("2026-01-01T05:00")),
        ]
    )


def test_pruned_ranges_are_not_holes_and_refetching_clears_them(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    store.write("KRW-BTC", H1, candles(hours("2026-01-05", 24)), span("2026-01-05", "2026-01-06"))
    store.write("KRW-BTC", H1, candles(hours("2026-01-01", 24)), span("2026-01-01", "2026-01-02"))
    # Retention deleted 01-02 .. 01-04 (after a fetch of it), and 2025-12: recorded as pruned.
    record = store.record(H1, "KRW-BTC")
    pruned = Ranges.of(
        [
            (to_ms("2025-12-01"), to_ms("2026-01-01")),
            (to_ms("2026-01-02"), to_ms("2026-01-04")),
        ]
    )
    store.set_record(H1, "KRW-BTC", Record(record.fetched, None, {}, pruned))
    info = only(inventory(store))
    assert info.pruned == pruned
    assert info.never_fetched == span("2026-01-04", "2026-01-05")  # pruned is not a hole
    # Fetched again: no longer pruned, whatever the record says.
    store.set_record(
        H1,
        "KRW-BTC",
        Record(record.fetched.union(span("2025-12-01", "2025-12-15")), None, {}, pruned),
    )
    assert only(inventory(store)).pruned == Ranges.of(
        [
            (to_ms("2025-12-15"), to_ms("2026-01-01")),
            (to_ms("2026-01-02"), to_ms("2026-01-04")),
        ]
    )


def test_series_without_a_record_or_without_candles(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    store.write("KRW-ETH", H1, candles(hours("2026-01-01", 3)), Ranges())  # data, no record
    store.write("KRW-XRP", H1, candles([]), span("2026-01-01", "2026-01-02"))  # record only
    eth, xrp = inventory(store)
    assert (eth.market, eth.candles, eth.fetched, eth.quiet_periods) == ("KRW-ETH", 3, Ranges(), 0)
    assert not eth.never_fetched and eth.tiers["hot"].files == 1
    assert (xrp.market, xrp.candles, xrp.first, xrp.last) == ("KRW-XRP", 0, None, None)
    assert xrp.quiet_periods == 24 and xrp.longest_quiet == 24
    assert xrp.tiers == {"hot": TierUsage(), "cold": TierUsage()}


def test_filters_and_order(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    for market in ("KRW-ETH", "KRW-BTC"):
        for tf in (D1, H1, M15):
            store.write(market, tf, candles([to_ms("2026-01-01")]), Ranges())
    listed = [(i.timeframe.name, i.market) for i in inventory(store)]
    assert listed == [
        (tf, m) for tf in ("15m", "1h", "1d") for m in ("KRW-BTC", "KRW-ETH")
    ]  # finest timeframe first, then by market
    picked = inventory(store, [D1, H1], ["KRW-ETH"])
    assert [(i.timeframe.name, i.market) for i in picked] == [("1h", "KRW-ETH"), ("1d", "KRW-ETH")]
    assert inventory(store, [MONTH]) == []
    assert inventory(CandleStore(tmp_path / "nothing-here")) == []


def test_derived_timeframes_name_their_base(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    store.write(
        "KRW-BTC",
        D1,
        candles([to_ms("2026-01-01")]),
        span("2026-01-01", "2026-01-02"),
        derived_from=H1,
    )
    info = only(inventory(store))
    assert [r.base for r in info.bases] == ["1h"]
    assert [r["base"] for r in to_json([info])["series"][0]["bases"]] == ["1h"]


def test_the_table_lists_at_most_four_runs_of_bases(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    for day in range(6):  # native, derived from 15m, native, ... one day each
        start = f"2026-01-0{day + 1}"
        rows, covered = candles(hours(start, 24)), span(start, f"2026-01-0{day + 2}")
        store.write("KRW-BTC", H1, rows, covered, derived_from=M15 if day % 2 else None)
    code, out, err = invoke("--data-dir", str(tmp_path))
    assert code == 0, err
    assert out.splitlines()[1].endswith(
        "  native 2026-01-01T00:00:00Z→2026-01-02T00:00:00Z, "
        "from 15m 2026-01-02T00:00:00Z→2026-01-03T00:00:00Z, "
        "native 2026-01-03T00:00:00Z→2026-01-04T00:00:00Z, "
        "from 15m 2026-01-04T00:00:00Z→2026-01-05T00:00:00Z, 2 more (see -v or --json)"
    )
    assert (
        len(json.loads(invoke("--json", "--data-dir", str(tmp_path))[1])["series"][0]["bases"]) == 6
    )
    code, out, _ = invoke("-v", "--data-dir", str(tmp_path))  # every run
    assert code == 0 and out.splitlines()[1].endswith(
        ", from 15m 2026-01-06T00:00:00Z→2026-01-07T00:00:00Z"
    )
    assert out.splitlines()[1].count("→") == 7  # COVERED and six runs


@settings(max_examples=25, deadline=None)
@given(
    tf_name=st.sampled_from(["1m", "15m", "1d", "1w", "1M"]),
    kept=st.lists(st.booleans(), min_size=1, max_size=400),
)
def test_vectorised_quiet_runs_match_a_plain_walk(
    tmp_path_factory: pytest.TempPathFactory, tf_name: str, kept: list[bool]
) -> None:
    tf = Timeframe.parse(tf_name)
    start = tf.ceil_one(to_ms("2024-01-01"))
    grid = [start]
    for _ in kept:
        grid.append(tf.shift_one(grid[-1], 1))
    store = CandleStore(tmp_path_factory.mktemp("store"))
    present = [t for t, keep in zip(grid, kept, strict=False) if keep]
    store.write("KRW-BTC", tf, candles(present), Ranges.of([(grid[0], grid[-1])]))
    info = only(inventory(store))
    runs, run = [], None
    for t, keep in zip(grid, kept, strict=False):  # the plain walk, one period at a time
        if keep:
            run = None
        elif run is None:
            run = [t, tf.shift_one(t, 1)]
            runs.append(run)
        else:
            run[1] = tf.shift_one(t, 1)
    assert info.candles == len(present)
    assert info.quiet_periods == kept.count(False)
    assert info.quiet_runs == Ranges.of((a, b) for a, b in runs)
    longest = max((tf.count_periods(a, b) for a, b in runs), default=0)
    assert info.longest_quiet == longest


def test_json_document(gappy: CandleStore) -> None:
    doc = json.loads(json.dumps(to_json(inventory(gappy))))  # plain JSON all the way
    assert doc["version"] == 2
    [series] = doc["series"]
    assert series["timeframe"] == "1h" and series["market"] == "KRW-BTC"
    assert series["first"] == "2026-01-01T00:00:00Z"
    assert series["first_ms"] == to_ms("2026-01-01")
    assert series["last"] == "2026-01-05T23:00:00Z"
    assert series["candles"] == 66
    assert series["fetched"][1] == {
        "start": "2026-01-05T00:00:00Z",
        "end": "2026-01-06T00:00:00Z",
        "start_ms": to_ms("2026-01-05"),
        "end_ms": to_ms("2026-01-06"),
    }
    assert series["quiet"]["periods"] == 6 and series["quiet"]["longest"] == 3
    assert [(r["start"], r["periods"]) for r in series["quiet"]["runs"]] == [
        ("2026-01-01T05:00:00Z", 1),
        ("2026-01-01T10:00:00Z", 3),
        ("2026-01-02T22:00:00Z", 2),
    ]
    assert [(r["start"], r["end"]) for r in series["never_fetched"]] == [
        ("2026-01-03T00:00:00Z", "2026-01-05T00:00:00Z")
    ]
    assert series["pruned"] == []
    assert series["tiers"]["cold"] == {"files": 0, "bytes": 0}
    assert doc["totals"]["series"] == 1 and doc["totals"]["candles"] == 66


# The command line.


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["info", *args])
    return result.exit_code, result.stdout, plain(result.stderr)


def test_cli_text(gappy: CandleStore, tmp_path: Path) -> None:
    store = gappy
    store.write("KRW-ETH", D1, candles([to_ms("2026-01-01")]), span("2026-01-01", "2026-01-02"))
    code, out, err = invoke("--data-dir", str(tmp_path))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == [
        "TF",
        "MARKET",
        "COVERED",
        "CANDLES",
        "QUIET",
        "HOLES",
        "HOT",
        "COLD",
        "BASE",
    ]
    btc = lines[1]
    assert btc.startswith("1h  KRW-BTC  2026-01-01T00:00:00Z→2026-01-06T00:00:00Z in 2 ranges")
    assert " 66  6 (longest 3)" in btc
    assert btc.split("(longest 3)")[1].split()[0] == "1"  # one hole
    hot_bytes = only(inventory(store, [H1])).tiers["hot"].bytes
    # 2026's hours are in one yearly partition, a file for each of the two writes.
    assert f"2 files, {hot_bytes / 1000:.1f} kB" in btc and btc.endswith("0 files, 0 B  native")
    assert lines[2].startswith("1d  KRW-ETH  2026-01-01T00:00:00Z→2026-01-02T00:00:00Z ")
    assert lines[3] == "2 series, 67 candles"
    assert lines[4].startswith("hot tier: 3 files, ")
    assert lines[5] == "cold tier: 0 files, 0 B"
    assert len(lines) == 6

    code, out, _ = invoke("krw-eth", "-t", "1d,1h", "--data-dir", str(tmp_path))
    assert code == 0
    assert [line.split()[:2] for line in out.splitlines()[1:2]] == [["1d", "KRW-ETH"]]
    assert out.splitlines()[2] == "1 series, 1 candle"


def test_cli_json_is_the_document_and_nothing_else(gappy: CandleStore, tmp_path: Path) -> None:
    code, out, err = invoke("KRW-BTC", "--json", "--data-dir", str(tmp_path))
    assert code == 0, err
    assert json.loads(out) == json.loads(json.dumps(to_json(inventory(gappy))))
    (tmp_path / "empty").mkdir()
    code, out, _ = invoke("--json", "--data-dir", str(tmp_path / "empty"))
    assert code == 0
    assert json.loads(out)["series"] == [] and json.loads(out)["totals"]["bytes"] == 0


def test_cli_empty_store_and_no_match(gappy: CandleStore, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, out, _ = invoke("--data-dir", str(tmp_path / "empty"))
    assert code == 0
    assert out.strip().splitlines() == [
        f"the store at {tmp_path / 'empty'} is empty: nothing fetched yet"
    ]
    code, out, _ = invoke("KRW-XRP", "--data-dir", str(tmp_path))
    assert code == 0
    assert out.startswith("nothing stored for the given markets/timeframes in ")
    assert len(out.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-t", "5x"], "unsupported timeframe '5x'"),
        (["-t", ","], "no timeframe given"),
        (["KRW/../BTC"], "invalid market code 'KRW/../BTC'"),
        (["EUR-BTC", "-t", "1h"], "invalid market code 'EUR-BTC'"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    gappy: CandleStore, tmp_path: Path, args: list[str], message: str
) -> None:
    code, out, err = invoke(*args, "--data-dir", str(tmp_path))
    assert code == 2
    assert out == ""
    assert err.startswith("upbit-cache: error: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_cli_a_file_as_data_dir_is_a_storage_error(tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("not a store")
    code, out, err = invoke("--data-dir", str(target))
    assert code == 2 and out == ""
    assert err.strip() == f"upbit-cache: error: data dir {target} is a file, not a directory"
