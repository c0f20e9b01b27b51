"""Data files written once: names, superseding writes, roll-ups, kills at each step, plain
Hive readers, legacy files, live's bytes per close (store/parts.py, store/edits.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from conftest import S3Server

from upbit_cache.candles import CANDLE_SCHEMA
from upbit_cache.errors import WriteConflict
from upbit_cache.ranges import Ranges, TimeRange
from upbit_cache.store import layout
from upbit_cache.store.audit import audit_series, quarantine_stamp, repair_series
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.store.files import DataDir
from upbit_cache.store.parts import ROLL_UP, Part, level, name_for
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

M1 = Timeframe.parse("1m")
MINUTE = 60_000
DAY = 86_400_000
DAY0 = to_ms("2026-11-18")
MARKET = "KRW-BTC"


def candles(start: int, n: int, price: float = 100.0, step: int = MINUTE) -> pa.Table:
    """`n` possible 1m candles from `start`, closes from `price` up."""
    times = start + step * np.arange(n, dtype=np.int64)
    close = price + np.arange(n, dtype=np.float64)
    kind = CANDLE_SCHEMA.field("time").type
    columns = [pa.array(times).cast(kind)]
    columns += [pa.array(a) for a in (close - 0.5, close + 1, close - 1, close)]
    columns += [pa.array(np.ones(n)), pa.array(close * 2), pa.array(times + step - 1).cast(kind)]
    return pa.Table.from_arrays(columns, schema=CANDLE_SCHEMA)


def span(start: int, n: int) -> Ranges:
    return Ranges.of([(start, start + n * MINUTE)])


def names(store: CandleStore) -> list[str]:
    """The data files on disk of the series, by name in its folder."""
    found = store.data_files(M1, MARKET)
    return [layout.in_series(store.root, M1, MARKET, f.path) for f in found]


def listed(store: CandleStore) -> list[str]:
    return sorted(store.record(M1, MARKET).files)


def hive_rows(root: Path) -> pa.Table:
    """The dataset as plain pyarrow reads it (no help from us)."""
    return ds.dataset(root / "candles", format="parquet", partitioning="hive").to_table()


def duck_duplicates(root: Path) -> int:
    """Rows DuckDB's plain Hive read sees more than once (by timeframe, market, time)."""
    glob = str(root / "candles" / "**" / "*.parquet")
    found = duckdb.sql(
        "SELECT count(*) - count(DISTINCT (timeframe, market, time)) FROM "
        f"read_parquet('{glob}', hive_partitioning = true)"
    ).fetchone()
    assert found is not None
    return int(found[0])


def no_duplicates(root: Path) -> None:
    rows = hive_rows(root).to_pandas()
    assert not rows.duplicated(["timeframe", "market", "time"]).any()
    assert duck_duplicates(root) == 0


def closes(table: pa.Table) -> list[float]:
    return [float(c) for c in table["close"].to_pylist()]


def test_a_file_is_named_by_its_span_and_content(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    store.write(MARKET, M1, candles(DAY0 + 10 * MINUTE, 5), span(DAY0 + 10 * MINUTE, 5))
    [name] = names(store)
    assert name.startswith("date=2026-11-18/part-20261118T001000-20261118T001500-")
    assert layout.file_span(M1, name) == TimeRange(DAY0 + 10 * MINUTE, DAY0 + 15 * MINUTE)
    assert listed(store) == [name]
    again = CandleStore(tmp_path / "other")
    again.write(MARKET, M1, candles(DAY0 + 10 * MINUTE, 5), span(DAY0 + 10 * MINUTE, 5))
    assert names(again) == [name]  # the same rows, the same name
    other = CandleStore(tmp_path / "third")
    other.write(MARKET, M1, candles(DAY0 + 10 * MINUTE, 5, price=7.0), Ranges())
    assert names(other) != [name]


def test_create_is_create_only_if_absent(tmp_path: Path) -> None:
    files = DataDir.open(tmp_path)
    path = f"{files.root}/a/b.bin"
    made = files.create(path, lambda sink: sink.write(b"first"))
    assert made is not None and made.bytes == 5
    assert files.create(path, lambda sink: sink.write(b"second")) is None
    assert Path(path).read_bytes() == b"first"
    assert not [p for p in Path(path).parent.iterdir() if p.name != "b.bin"]  # no temp left


@pytest.mark.slow
def test_create_is_create_only_if_absent_on_s3(s3: S3Server) -> None:
    files = DataDir.open(s3.new_dir())
    path = f"{files.root}/a/b.bin"
    assert files.create(path, lambda sink: sink.write(b"first")) is not None
    assert files.create(path, lambda sink: sink.write(b"second")) is None
    assert files.read_bytes(path) == b"first"


@pytest.mark.parametrize("where", ["local", pytest.param("s3", marks=pytest.mark.slow)])
def test_two_writers_of_one_settled_page_make_one_file(
    tmp_path: Path, where: str, request: pytest.FixtureRequest
) -> None:
    location = str(tmp_path) if where == "local" else request.getfixturevalue("s3").new_dir()
    page, covered = candles(DAY0, 200), span(DAY0, 200)
    first = CandleStore(location)
    first.write(MARKET, M1, page, covered)
    [made] = first.data_files(M1, MARKET)
    second = CandleStore(location)  # another process or host: no memory of the first
    second.write(MARKET, M1, page, covered)
    assert [f.path for f in second.data_files(M1, MARKET)] == [made.path]
    assert second.data_files(M1, MARKET)[0].mtime_ns == made.mtime_ns  # found, not rewritten
    assert len(second.load(MARKET, M1)) == 200


def test_an_overlapping_write_supersedes_the_files_it_touches(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    for at in (0, 100, 200):  # three pages of 100 minutes: three files
        store.write(MARKET, M1, candles(DAY0 + at * MINUTE, 100), span(DAY0 + at * MINUTE, 100))
    assert len(names(store)) == 3
    # Rows re-asked across the first two pages' files (the new rows win): one new file in
    # their place; the third is left alone.
    store.write(MARKET, M1, candles(DAY0 + 90 * MINUTE, 20, price=500.0), Ranges())
    found = names(store)
    assert len(found) == 2 and found == listed(store)
    assert layout.file_span(M1, found[0]) == TimeRange(DAY0, DAY0 + 200 * MINUTE)
    got = CandleStore(tmp_path).load_table(MARKET, M1)
    assert got.num_rows == 300
    assert closes(got)[88:112] == [188.0, 189.0, *(500.0 + np.arange(20)), 110.0, 111.0]
    no_duplicates(tmp_path)


def test_small_files_roll_up_by_level(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    # Closes one minute at a time, as `live` writes them: each is a file of level 0.
    for i in range(ROLL_UP - 1):
        store.write(MARKET, M1, candles(DAY0 + i * MINUTE, 1), Ranges())
    assert len(names(store)) == ROLL_UP - 1
    store.write(MARKET, M1, candles(DAY0 + (ROLL_UP - 1) * MINUTE, 1), Ranges())
    [rolled] = names(store)  # K of level 0 became one of level 1
    assert level(M1, layout.file_span(M1, rolled)) == 1
    for i in range(ROLL_UP, ROLL_UP**2):
        store.write(MARKET, M1, candles(DAY0 + i * MINUTE, 1), Ranges())
    [big] = names(store)  # K of level 1 became one of level 2
    assert level(M1, layout.file_span(M1, big)) == 2
    assert CandleStore(tmp_path).load_table(MARKET, M1).num_rows == ROLL_UP**2
    no_duplicates(tmp_path)


def test_a_settled_partition_is_one_file(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    for at in range(0, 1440, 200):  # a day of backfill, page by page
        n = min(200, 1440 - at)
        store.write(MARKET, M1, candles(DAY0 + at * MINUTE, n), span(DAY0 + at * MINUTE, n))
        if at + n < 1440:  # a file a page, rolled up by level
            assert 1 <= len(names(store)) <= 2 * (ROLL_UP - 1)
    [day] = names(store)  # the page that settled the day made it one file
    assert layout.file_span(M1, day) == TimeRange(DAY0, DAY0 + DAY)
    assert CandleStore(tmp_path).load_table(MARKET, M1).num_rows == 1440


def test_a_reader_meets_superseded_files_and_reads_again(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    store.write(MARKET, M1, candles(DAY0, 300), span(DAY0, 300))
    failures: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                got = CandleStore(tmp_path).load_table(MARKET, M1)  # no memory: every file read
                assert got.num_rows == 300 and len(set(got["time"].to_pylist())) == 300
            except BaseException as exc:
                failures.append(exc)
                return

    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        for i in range(60):  # each write supersedes the file holding its minute
            store.write(
                MARKET, M1, candles(DAY0 + (i % 300) * MINUTE, 1, price=1000.0 + i), Ranges()
            )
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    assert failures == []


# A write in a process of its own, SIGKILLed right after one real step of it: the data
# file created, the record written, or the first superseded file deleted.
CHILD = """
import os, signal, sys
import pyarrow.parquet as pq
from upbit_cache.ranges import Ranges
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.store.files import DataDir
from upbit_cache.timeframes import Timeframe

root, rows, step = sys.argv[1:4]
method = {"create": "create", "record": "write_bytes", "delete": "delete"}[step]
real = getattr(DataDir, method)

def then_die(self, path, *args, **kwargs):
    done = real(self, path, *args, **kwargs)
    if step != "record" or "/fetched/" in path:
        os.kill(os.getpid(), signal.SIGKILL)
    return done

setattr(DataDir, method, then_die)
table = pq.read_table(rows)
times = table["time"].cast("int64").to_pylist()
covered = Ranges.of([(times[0], times[-1] + 60_000)])
CandleStore(root).write("KRW-BTC", Timeframe.parse("1m"), table, covered)
raise SystemExit("the write took no such step")
"""


def killed_write(root: Path, rows: pa.Table, step: str) -> None:
    source = root.parent / "rows.parquet"
    pq.write_table(rows, source)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), str(source), step],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr


def three_pages(root: Path) -> CandleStore:
    store = CandleStore(root)
    for at in (0, 100, 200):
        store.write(MARKET, M1, candles(DAY0 + at * MINUTE, 100), span(DAY0 + at * MINUTE, 100))
    return store


@pytest.mark.parametrize("step", ["create", "record", "delete"])
@pytest.mark.parametrize("what", ["supersede", "roll up"])
def test_a_write_killed_at_each_step_leaves_every_reader_whole(
    tmp_path: Path, step: str, what: str
) -> None:
    root = tmp_path / "store"
    if what == "supersede":
        store = three_pages(root)
        rows = candles(DAY0 + 90 * MINUTE, 20, price=500.0)  # touches two files
        want_new = [*range(100, 190), *(500 + np.arange(20)), *range(110, 200), *range(100, 200)]
        total = 300
    else:
        store = CandleStore(root)
        for i in range(ROLL_UP - 1):
            at = DAY0 + i * MINUTE
            store.write(MARKET, M1, candles(at, 1, price=100.0 + i), span(at, 1))
        rows = candles(DAY0 + (ROLL_UP - 1) * MINUTE, 1, price=100.0 + ROLL_UP - 1)
        want_new = list(range(100, 100 + ROLL_UP))
        total = ROLL_UP
    before = closes(CandleStore(root).load_table(MARKET, M1))
    killed_write(root, rows, step)
    got = CandleStore(root).load_table(MARKET, M1)  # the tool's readers: never a duplicate
    assert len(set(got["time"].to_pylist())) == got.num_rows
    assert closes(got) == ([float(c) for c in want_new] if step != "create" else before)
    if step == "create":
        assert got.num_rows == total - (1 if what == "roll up" else 0)
    unlisted = set(names(store)) - set(listed(store))
    assert unlisted  # what the kill left: the new file, or the superseded ones
    # verify names them; the next writer of the series (or prune) deletes them.
    audit = audit_series(CandleStore(root), M1, MARKET)
    assert {p.kind for p in audit.problems} == {"orphan"}
    later = DAY0 + 1000 * MINUTE
    CandleStore(root).write("KRW-BTC", M1, candles(later, 1), span(later, 1))
    assert set(names(store)) == set(listed(store))
    no_duplicates(root)
    assert audit_series(CandleStore(root), M1, MARKET).problems == []


def test_verify_repair_quarantines_orphans(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = three_pages(root)
    killed_write(root, candles(DAY0 + 90 * MINUTE, 20, price=500.0), "create")
    audit = audit_series(store, M1, MARKET)
    [orphan] = audit.problems
    assert orphan.kind == "orphan" and duck_duplicates(root) > 0  # a plain reader sees it
    moved = repair_series(store, audit, quarantine_stamp())
    assert len(moved) == 1 and "/quarantine/" in moved[0]
    no_duplicates(root)
    assert store.fetched(M1, MARKET) == span(DAY0, 300)  # an orphan's span is not forgotten
    assert audit_series(store, M1, MARKET).problems == []


def legacy_store(root: Path) -> None:
    """A data dir as versions before files were written once left it: one `part-0.parquet`
    per day, a `cold-0.parquet` of the month sharing the first day's times (a compaction
    killed half way), a version 2 record listing the hot files."""
    folder = root / "candles" / "timeframe=1m" / f"market={MARKET}"
    first, second = DAY0, DAY0 + DAY
    for day in (first, second):
        path = folder / layout.partition_folder(day) / "part-0.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(candles(day, 1440), path)
    cold = folder / layout.partition_folder(to_ms("2026-11-01")) / "cold-0.parquet"
    cold.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(candles(first, 1440, price=10.0), cold)
    record = root / "fetched" / "1m" / f"{MARKET}.json"
    record.parent.mkdir(parents=True)
    files = [f"{layout.partition_folder(d)}/part-0.parquet" for d in (first, second)]
    fetched = [[first, second + DAY]]
    record.write_text(json.dumps({"version": 2, "fetched": fetched, "files": files}))


def test_legacy_files_are_read_adopted_and_replaced_by_the_first_write(tmp_path: Path) -> None:
    legacy_store(tmp_path)
    store = CandleStore(tmp_path)
    got = store.load_table(MARKET, M1)
    assert got.num_rows == 2880 and closes(got)[:2] == [100.0, 101.0]  # the hot row wins
    audit = audit_series(store, M1, MARKET)
    assert [p.kind for p in audit.problems] == ["overlapping files"]
    # A write into the first day merges what it touches: both legacy files holding that day.
    store.write(MARKET, M1, candles(DAY0 + 10 * MINUTE, 1, price=900.0), Ranges())
    assert json.loads((tmp_path / "fetched" / "1m" / f"{MARKET}.json").read_text())["version"] == 3
    on_disk = names(store)
    assert f"{layout.partition_folder(DAY0 + DAY)}/part-0.parquet" in on_disk  # untouched
    assert not [n for n in on_disk if n.endswith("cold-0.parquet")]
    assert on_disk == listed(store)
    got = CandleStore(tmp_path).load_table(MARKET, M1)
    assert got.num_rows == 2880 and closes(got)[10] == 900.0 and closes(got)[11] == 111.0
    no_duplicates(tmp_path)
    assert audit_series(store, M1, MARKET).problems == []


def test_verify_repair_merges_legacy_files_that_share_times(tmp_path: Path) -> None:
    legacy_store(tmp_path)
    store = CandleStore(tmp_path)
    audit = audit_series(store, M1, MARKET)
    repair_series(store, audit, quarantine_stamp())
    assert audit_series(store, M1, MARKET).problems == []
    no_duplicates(tmp_path)
    got = CandleStore(tmp_path).load_table(MARKET, M1)
    assert got.num_rows == 2880 and closes(got)[:2] == [100.0, 101.0]


def test_a_plain_hive_reader_never_sees_a_row_twice_between_writes(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    rng = np.random.default_rng(3)
    for i in range(40):  # pages, re-asked spans and single closes, in any order
        at = int(rng.integers(0, 2 * 1440))
        n = int(rng.choice([1, 1, 5, 200]))
        store.write(MARKET, M1, candles(DAY0 + at * MINUTE, n, price=100.0 + i), Ranges())
        no_duplicates(tmp_path) if i % 8 == 7 else None
        rows = hive_rows(tmp_path)
        assert rows.num_rows == CandleStore(tmp_path).load_table(MARKET, M1).num_rows
    no_duplicates(tmp_path)


def test_live_closes_write_bytes_of_new_candles_not_a_day_file(tmp_path: Path) -> None:
    """Six hours of 1m closes as `live` writes them (each close provisional, then settled
    through REST): bytes written per close stay far below rewriting the day so far."""
    store = CandleStore(tmp_path)
    record = tmp_path / "fetched" / "1m" / f"{MARKET}.json"
    seen: set[str] = set()
    data_bytes, most_files = 0, 0
    minutes = 360
    for i in range(minutes):
        close = candles(DAY0 + i * MINUTE, 1, price=100.0 + i)
        store.write(MARKET, M1, close, Ranges(), provisional=span(DAY0 + i * MINUTE, 1))
        store.write(MARKET, M1, close, span(DAY0 + i * MINUTE, 1))  # settled through REST
        for found in store.data_files(M1, MARKET):
            if found.path not in seen:
                seen.add(found.path)
                data_bytes += found.bytes
        most_files = max(most_files, len(store.data_files(M1, MARKET)))
    day_so_far = tmp_path / "day.parquet"
    pq.write_table(candles(DAY0, minutes // 2), day_so_far, compression="snappy")
    rewrite = day_so_far.stat().st_size  # what a close cost when it rewrote the day file
    per_close = data_bytes / minutes
    assert per_close < rewrite / 2, (per_close, rewrite)
    levels = level(M1, TimeRange(DAY0, DAY0 + minutes * MINUTE)) + 1
    assert most_files <= levels * (ROLL_UP - 1)  # at most K - 1 files of each level
    assert record.stat().st_size < 2_000  # the record lists those few files
    assert CandleStore(tmp_path).load_table(MARKET, M1).num_rows == minutes
    no_duplicates(tmp_path)


def test_part_of_a_legacy_name_spans_its_partition() -> None:
    part = Part.of(M1, "date=2026-11-18/part-0.parquet")
    assert part.span == TimeRange(DAY0, DAY0 + DAY) and part.tier == "hot" and part.legacy
    cold = Part.of(M1, "date=2026-11-01/cold-0.parquet")
    assert cold.span == TimeRange(to_ms("2026-11-01"), to_ms("2026-12-01")) and cold.tier == "cold"


@pytest.mark.slow
def test_on_s3_a_writer_that_lost_its_lease_cannot_list_a_file_swept_meanwhile(
    s3: S3Server,
) -> None:
    location = s3.new_dir()
    CandleStore(location).write(MARKET, M1, candles(DAY0, 100), span(DAY0, 100))
    # A writer reads the record and creates its file, then stalls past its lease...
    stalled = CandleStore(location)
    old = stalled.record(M1, MARKET, for_update=True)
    rows = candles(DAY0 + 100 * MINUTE, 100)
    part = name_for(M1, rows, "hot")
    stalled.create_file(layout.series_path(stalled.root, M1, MARKET, part.name), rows)
    # ...and the writer that took the lease over deletes that unlisted file, so it writes
    # the record again (a new version) though it has nothing else to write.
    other = CandleStore(location)
    other.write(MARKET, M1, CANDLE_SCHEMA.empty_table(), Ranges())
    assert part.name not in names(other)
    with pytest.raises(WriteConflict):  # the stalled writer's record write loses
        stalled.set_record(M1, MARKET, replace(old, files=old.files | {part.name}))
    assert other.load_table(MARKET, M1).num_rows == 100
