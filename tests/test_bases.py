"""Who made each stored range (native, or derived from which base), through real fetches,
`live`, `resample` and `info` against the simulator; and records written before ranges had
their own base."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import DEADLINE, NOW, Procs, read_until, run_fetch, seed, truth, wait_for
from typer.testing import CliRunner

from upbit_cache.cli import app
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.simulator import SimulatorServer
from upbit_cache.store import layout
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.store.files import DataDir
from upbit_cache.store.records import read_record, write_record
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

H1 = Timeframe.parse("1h")
runner = CliRunner()


def cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.stderr
    return result.stdout


def info_json(data_dir: Path, market: str, tf: str) -> dict[str, Any]:
    doc = json.loads(cli("info", market, "-t", tf, "--json", "--data-dir", str(data_dir)))
    [series] = doc["series"]
    assert isinstance(series, dict)
    return series


def bases(series: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(r["base"], r["start"], r["end"]) for r in series["bases"]]


def info_line(data_dir: Path, market: str, tf: str) -> str:
    return cli("info", market, "-t", tf, "--data-dir", str(data_dir)).splitlines()[1]


def stored(data_dir: Path, market: str, tf: str) -> pd.DataFrame:
    return CandleStore(data_dir).load(market, Timeframe.parse(tf))


def test_a_planned_fetch_derives_only_what_was_not_fetched_natively(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "1h", days=20)  # native 10-31 -> 11-20
    report = run_fetch(sim.url, tmp_path, ["KRW-BTC"], "15m,1h,4h", days=22)
    assert report.plan is not None and report.plan.base.name == "15m"
    h1 = next(d for d in report.derived if d.target == H1)
    assert h1.candles == 2 * 24  # the two days before the native ones, nothing rewritten
    series = info_json(tmp_path, "KRW-BTC", "1h")
    assert bases(series) == [
        ("15m", "2026-10-29T00:00:00Z", "2026-10-31T00:00:00Z"),
        ("native", "2026-10-31T00:00:00Z", "2026-11-20T00:00:00Z"),
    ]
    assert series["bases"][0]["start_ms"] == to_ms("2026-10-29")
    assert series["bases"][1]["end_ms"] == to_ms(NOW)
    assert set(series["bases"][0]) == {"start", "end", "start_ms", "end_ms", "base"}
    assert info_line(tmp_path, "KRW-BTC", "1h").endswith(
        "from 15m 2026-10-29T00:00:00Z→2026-10-31T00:00:00Z, "
        "native 2026-10-31T00:00:00Z→2026-11-20T00:00:00Z"
    )
    assert bases(info_json(tmp_path, "KRW-BTC", "4h")) == [
        ("15m", "2026-10-29T00:00:00Z", "2026-11-20T00:00:00Z")
    ]
    assert info_line(tmp_path, "KRW-BTC", "4h").endswith("  from 15m")
    got = stored(tmp_path, "KRW-BTC", "1h")
    want = truth(sim, "KRW-BTC", "1h", "2026-10-29", NOW)
    pd.testing.assert_frame_equal(got, want, rtol=1e-9)


def live_1m(
    procs: Procs, sim: SimulatorServer, data_dir: Path, market: str, settled: TimeRange
) -> None:
    """`upbit-cache live MARKET -t 1m` (storing) until two 1m candles closed and `settled`
    is settled through REST, then SIGTERM."""
    command = [sys.executable, "-m", "upbit_cache", "live", market, "-t", "1m", "--jsonl"]
    command += ["--api-url", sim.url, "--ws-url", sim.ws_url, "--data-dir", str(data_dir)]
    proc = procs.popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first, *rest = read_until(proc, lambda lines: len(lines) >= 1, "the first line")
    assert json.loads(first)["event"] == "snapshot"  # backfilled
    sim.clock.advance(150)

    def closes(lines: list[str]) -> int:
        return sum(json.loads(line)["event"] == "close" for line in rest + lines)

    read_until(proc, lambda lines: closes(lines) >= 2, "two closes")
    m1 = Timeframe.parse("1m")
    wait_for(
        lambda: CandleStore(data_dir).fetched(m1, market).covers(settled),
        "the closes settled through REST",
        running=[proc],
    )
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 143, err  # stopped in order by SIGTERM


@pytest.mark.slow
def test_resample_after_live_relabels_only_the_hour_it_derived(
    sim: SimulatorServer, tmp_path: Path, procs: Procs
) -> None:
    data = ["--data-dir", str(tmp_path)]
    cli("fetch", "KRW-SOL", "-t", "1h", "--days", "10", "--api-url", sim.url, *data)
    sim.clock.set("2026-11-20T01:30:00Z")
    # 200 minutes of 1m backfilled, then two closes, settled through REST
    settled = TimeRange(to_ms("2026-11-19T22:10"), to_ms("2026-11-20T01:32"))
    live_1m(procs, sim, tmp_path, "KRW-SOL", settled)
    m1 = CandleStore(tmp_path).record(Timeframe.parse("1m"), "KRW-SOL")
    assert list(m1.bases()) == ["native"]

    out = cli("resample", "KRW-SOL", *data)  # -t 1h from the finest stored base: 1m
    assert out.startswith("1 market, 1h from 1m: 1 candle written")
    # 23:00-00:00 was fetched natively and stays so; 00:00-01:00 is new, derived from 1m.
    assert bases(info_json(tmp_path, "KRW-SOL", "1h")) == [
        ("native", "2026-11-10T00:00:00Z", "2026-11-20T00:00:00Z"),
        ("1m", "2026-11-20T00:00:00Z", "2026-11-20T01:00:00Z"),
    ]
    assert info_line(tmp_path, "KRW-SOL", "1h").endswith(
        "native 2026-11-10T00:00:00Z→2026-11-20T00:00:00Z, "
        "from 1m 2026-11-20T00:00:00Z→2026-11-20T01:00:00Z"
    )
    want = truth(sim, "KRW-SOL", "1h", "2026-11-10", "2026-11-20T01:00")
    pd.testing.assert_frame_equal(stored(tmp_path, "KRW-SOL", "1h"), want, rtol=1e-9)
    again = cli("resample", "KRW-SOL", *data)
    assert ": 0 candles written, 0 base partitions recomputed" in again


def test_a_range_recovered_takes_its_new_base_for_that_span_only(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    data = ["--data-dir", str(tmp_path)]
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "15m", days=3)
    assert "1h from 15m" in cli("resample", "KRW-BTC", "-t", "1h", *data)
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "1m", days=1)
    assert "1h from 1m" in cli("resample", "KRW-BTC", "-t", "1h", *data)  # the finest
    labelled = [
        ("15m", "2026-11-17T00:00:00Z", "2026-11-19T00:00:00Z"),
        ("1m", "2026-11-19T00:00:00Z", "2026-11-20T00:00:00Z"),
    ]
    assert bases(info_json(tmp_path, "KRW-BTC", "1h")) == labelled
    # Nothing of 15m changed since it was derived from: nothing recomputed, nothing relabelled.
    out = cli("resample", "KRW-BTC", "-t", "1h", "--from", "15m", *data)
    assert ": 0 candles written, 0 base partitions recomputed" in out
    assert bases(info_json(tmp_path, "KRW-BTC", "1h")) == labelled
    # Candles written as fetched from Upbit over a derived span make that span native.
    store = CandleStore(tmp_path)
    seed(store, sim.history, "KRW-BTC", "1h", "2026-11-18", "2026-11-19T06:00")
    assert bases(info_json(tmp_path, "KRW-BTC", "1h")) == [
        ("15m", "2026-11-17T00:00:00Z", "2026-11-18T00:00:00Z"),
        ("native", "2026-11-18T00:00:00Z", "2026-11-19T06:00:00Z"),
        ("1m", "2026-11-19T06:00:00Z", "2026-11-20T00:00:00Z"),
    ]
    want = truth(sim, "KRW-BTC", "1h", "2026-11-17", NOW)
    pd.testing.assert_frame_equal(stored(tmp_path, "KRW-BTC", "1h"), want, rtol=1e-9)


def as_version_1(data_dir: Path, tf: Timeframe, market: str) -> None:
    """Rewrite a record as versions before per-range bases wrote it: one `derived_from` for
    the series and a flat `sources` (none at all for a native series)."""
    path = Path(layout.fetched_file(str(data_dir), tf, market))
    new = json.loads(path.read_text())
    old = {"version": 1, "fetched": new["fetched"], "files": new["files"]}
    for base, marks in new.get("sources", {}).items():  # one base at most, here
        old |= {"derived_from": base, "sources": marks}
    path.write_text(json.dumps(old))


def test_records_of_the_old_format_still_read_and_resample_incrementally(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    data = ["--data-dir", str(tmp_path)]
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "15m", days=40)  # two 15m partitions
    cli("resample", "KRW-BTC", "-t", "1h", *data)
    as_version_1(tmp_path, H1, "KRW-BTC")
    as_version_1(tmp_path, Timeframe.parse("15m"), "KRW-BTC")
    assert bases(info_json(tmp_path, "KRW-BTC", "1h")) == [
        ("15m", "2026-10-11T00:00:00Z", "2026-11-20T00:00:00Z")
    ]
    assert bases(info_json(tmp_path, "KRW-BTC", "15m"))[0][0] == "native"
    # The old fingerprints still vouch for what they covered.
    out = cli("resample", "KRW-BTC", "-t", "1h", *data)
    assert ": 0 candles written, 0 base partitions recomputed, 2 unchanged" in out
    sim.clock.advance(2 * 3600)
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "15m", days=40)
    out = cli("resample", "KRW-BTC", "-t", "1h", *data)
    assert "1 base partition recomputed, 1 unchanged" in out  # November's only
    record = read_record(DataDir.open(tmp_path), layout.fetched_file(str(tmp_path), H1, "KRW-BTC"))
    assert record.bases() == {"15m": Ranges.of([(to_ms("2026-10-11"), to_ms("2026-11-20T02:00"))])}
    assert sorted(record.sources["15m"]) == [str(to_ms("2026-10-01")), str(to_ms("2026-11-01"))]
    on_disk = json.loads(Path(layout.fetched_file(str(tmp_path), H1, "KRW-BTC")).read_text())
    assert on_disk["version"] == 3 and "derived_from" not in on_disk
    assert on_disk["derived"] == {"15m": record.fetched.to_json()}


def test_a_record_of_each_version_reads_as_documented(tmp_path: Path) -> None:
    files = DataDir.open(tmp_path)
    old_path, native_path, new_path = (f"{files.root}/{n}.json" for n in ("old", "nat", "new"))
    day, hour = 86_400_000, 3_600_000
    v1 = {"version": 1, "fetched": [[0, day], [2 * day, 3 * day]], "derived_from": "1h"}
    v1["sources"] = {"0": "12:34:abcd"}
    files.write_bytes(old_path, json.dumps(v1).encode())
    old = read_record(files, old_path)
    assert old.bases() == {"1h": Ranges.of([(0, day), (2 * day, 3 * day)])}
    assert old.sources == {"1h": {"0": "12:34:abcd"}}
    files.write_bytes(native_path, json.dumps({"version": 1, "fetched": [[0, day]]}).encode())
    assert read_record(files, native_path).bases() == {"native": Ranges.of([(0, day)])}
    # One span recomputed from 1m, then Upbit's own candles over part of the old base.
    new = old.covering(Ranges.of([(hour, 2 * hour)]), "1m", {"0": "x"})
    new = new.covering(Ranges.of([(2 * day, 2 * day + hour)]))
    assert new.bases() == {
        "native": Ranges.of([(2 * day, 2 * day + hour)]),
        "1h": Ranges.of([(0, hour), (2 * hour, day), (2 * day + hour, 3 * day)]),
        "1m": Ranges.of([(hour, 2 * hour)]),
    }
    assert new.sources == {"1h": {"0": "12:34:abcd"}, "1m": {"0": "x"}}
    write_record(files, new_path, new)
    assert read_record(files, new_path) == new
    assert json.loads(files.read_bytes(new_path) or b"") == {
        "version": 2,
        "fetched": [[0, day], [2 * day, 3 * day]],
        "derived": {
            "1h": [[0, hour], [2 * hour, day], [2 * day + hour, 3 * day]],
            "1m": [[hour, 2 * hour]],
        },
        "sources": {"1h": {"0": "12:34:abcd"}, "1m": {"0": "x"}},
    }
