"""The manager's one seam to storage: records read once per run, backends behind one protocol.

A no-op fetch (nothing missing) reads each record at most once and takes no lock: counted on
a local disk by the interpreter's own audit events (every `open`), on S3 by moto's request
log; after a run whose files rolled up it writes nothing either, and one that finds a file
no record lists (a killed write's) takes the lock and sweeps it. A run's own writes are what
its coverage keeps, with no read. `DataDir.create` makes a
file only where there is none, on every backend. A filesystem that is neither a local disk
nor S3 takes one writer at a time: a second writing process is refused with a clear error.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import NOW, S3Server, elsewhere, run_fetch, truth

from upbit_cache.errors import StorageError
from upbit_cache.manager.cache import UpbitCache
from upbit_cache.manager.scope import Window
from upbit_cache.ranges import Ranges
from upbit_cache.simulator import SimulatorServer
from upbit_cache.store.backends import LocalBackend, OtherBackend, S3Backend
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.store.files import DataDir
from upbit_cache.store.lease import Holder
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

H1 = Timeframe.parse("1h")
MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL", "KRW-DOGE"]

# Every file this process opens while `_opened` is a Counter (the hook cannot be removed).
_opened: Counter[str] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _opened is not None and isinstance(args[0], str | bytes):
        _opened[os.fsdecode(args[0])] += 1


sys.addaudithook(_audit)


class opened:  # a context manager read as a phrase: `with opened() as seen`
    """Counts the files opened inside the block, by path."""

    def __enter__(self) -> Counter[str]:
        global _opened
        _opened = Counter()
        return _opened

    def __exit__(self, *exc: object) -> None:
        global _opened
        _opened = None


@pytest.mark.parametrize("timeframes", ["1h", "15m,1h"])
def test_a_no_op_fetch_reads_each_record_once_and_locks_nothing(
    sim: SimulatorServer, tmp_path: Path, timeframes: str
) -> None:
    assert run_fetch(sim.url, tmp_path, MARKETS, timeframes, days=2).failed == []
    with opened() as seen:
        report = run_fetch(sim.url, tmp_path, MARKETS, timeframes, days=2)
    assert report.failed == [] and report.candles == 0 and report.candle_requests == 0
    records = {p: n for p, n in seen.items() if p.startswith(f"{tmp_path}/fetched/")}
    assert records and max(records.values()) == 1, records
    stored = {str(p) for p in (tmp_path / "fetched").rglob("*.json")}
    assert stored <= set(records)  # every stored record was read, each once
    assert not [p for p in seen if p.startswith(f"{tmp_path}/locks/")]  # no lock was taken
    assert not [p for p in seen if "/candles/" in p]  # no data file read: all checked before


def test_a_no_op_fetch_on_s3_gets_each_record_once_and_takes_no_lease(
    sim: SimulatorServer, s3: S3Server
) -> None:
    data = s3.new_dir()
    assert run_fetch(sim.url, data, MARKETS, "1h", days=2).failed == []
    for _ in range(2):
        since = s3.mark()
        report = run_fetch(sim.url, data, MARKETS, "1h", days=2)
        assert report.failed == [] and report.candle_requests == 0
        asked = s3.requests(since, data)
        gets = Counter(k for method, k in asked if method == "GET" and k.startswith("fetched/"))
        assert gets == Counter({f"fetched/1h/{m}.json": 1 for m in MARKETS}), asked
        assert not [k for method, k in asked if method == "HEAD" and "fetched/" in k], asked
        assert not [k for _, k in asked if k.startswith("locks/")], asked  # no lease
        written = {k for method, k in asked if method in ("PUT", "DELETE")}
        assert {k for k in written if ".write-probe." not in k} == set(), asked
        read = [k for method, k in asked if method == "GET" and k.startswith("candles/")]
        assert read == [], asked  # the fetch that wrote them knew them sound (`checked/`)
    # A listing of the records of each finer base the plan could weigh (1s to 30m: none
    # there, none read), one of the 1h records and one of every 1h data file (a job each
    # for more than 4 markets: listed once, not per market), two of the data dir (layout);
    # a GET of each record and of each series' `checked/` versions.
    listings = sorted(k for method, k in asked if method == "LIST")
    finer = [f"fetched/{tf}/" for tf in ("10m", "15m", "1m", "1s", "30m", "3m", "5m")]
    assert listings == sorted(["", "candles/", *finer, "fetched/1h/", "candles/timeframe=1h/"])
    assert Counter(method for method, _ in asked) == Counter(
        {"GET": 2 * len(MARKETS), "LIST": len(listings), "PUT": 1, "DELETE": 1}
    ), asked


def _files_on_disk(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_a_no_op_fetch_after_roll_ups_writes_nothing(sim: SimulatorServer, tmp_path: Path) -> None:
    # Two days of 1m are many pages: files written once, rolled up and sealed as they land,
    # so most files a write created were superseded within the same run.
    assert run_fetch(sim.url, tmp_path, MARKETS[:2], "1m", days=2).failed == []
    store = CandleStore(tmp_path)
    m1 = Timeframe.parse("1m")
    for market in MARKETS[:2]:
        checked = json.loads((tmp_path / "checked" / "1m" / f"{market}.json").read_text())
        assert set(checked) == set(store.record(m1, market).files)  # none it superseded
    before = _files_on_disk(tmp_path)
    report = run_fetch(sim.url, tmp_path, MARKETS[:2], "1m", days=2)
    assert report.failed == [] and report.candles == 0
    after = _files_on_disk(tmp_path)
    assert after == before  # nothing written, nothing deleted (no lock file made either)


def test_a_no_op_fetch_still_sweeps_what_a_killed_write_left(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    assert run_fetch(sim.url, tmp_path, ["KRW-BTC"], "1h", days=2).failed == []
    listed = sorted((tmp_path / "candles").rglob("part-*.parquet"))
    assert listed
    # A kill between create and record leaves a data file no record lists (an orphan).
    orphan = listed[0].with_name(listed[0].name.rsplit("-", 1)[0] + "-000000000000.parquet")
    orphan.write_bytes(listed[0].read_bytes())
    report = run_fetch(sim.url, tmp_path, ["KRW-BTC"], "1h", days=2)
    assert report.failed == [] and report.candles == 0
    assert not orphan.exists()  # the look found it unlisted: the job took its lock and swept
    assert sorted((tmp_path / "candles").rglob("part-*.parquet")) == listed


def test_what_a_run_writes_is_what_its_coverage_keeps(tmp_path: Path) -> None:
    store = CandleStore(tmp_path)
    known = store.coverage((H1, m) for m in MARKETS)
    assert known.reads == len(MARKETS)  # a local disk: each absent record probed, once
    assert known.fetched(H1, "KRW-BTC") == Ranges() and known.reads == len(MARKETS)
    start = to_ms("2026-11-19T00:00:00Z")
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime([start], unit="ms", utc=True),
            **{c: [1.0] for c in ("open", "high", "low", "close", "volume", "value")},
            "timestamp": pd.to_datetime([start], unit="ms", utc=True),
        }
    ).astype({"time": "datetime64[ms, UTC]", "timestamp": "datetime64[ms, UTC]"})
    covered = Ranges.of([(start, start + 3_600_000)])
    store.write("KRW-BTC", H1, frame, covered)
    assert known.fetched(H1, "KRW-BTC") == covered and known.reads == len(MARKETS)  # kept
    other = CandleStore(tmp_path)  # another process's write is not seen...
    other.forget(H1, "KRW-BTC", covered)
    assert known.fetched(H1, "KRW-BTC") == covered
    store.record(H1, "KRW-BTC", for_update=True)  # ...until a writer reads it under the lock
    assert known.fetched(H1, "KRW-BTC") == Ranges()


# DataDir.create: only where nothing is


@pytest.fixture(params=["local", "s3", "elsewhere"])
def any_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DataDir]:
    if request.param == "local":
        yield DataDir.open(tmp_path)
    elif request.param == "s3":
        yield DataDir.open(request.getfixturevalue("s3").new_dir())
    else:
        yield elsewhere(tmp_path)


def test_create_makes_a_file_only_where_there_is_none(any_dir: DataDir) -> None:
    path = f"{any_dir.root}/screens/a.json"
    made = any_dir.create(path, lambda sink: sink.write(b"first"))
    assert made is not None and made.bytes == 5
    assert any_dir.create(path, lambda sink: sink.write(b"second")) is None
    assert any_dir.read_bytes(path) == b"first"
    names = [f.name for f in any_dir.list_files(f"{any_dir.root}/screens")]
    assert names == ["a.json"]  # no temp file left either way


def test_create_on_a_local_disk_has_one_winner_among_racers(tmp_path: Path) -> None:
    files = DataDir.open(tmp_path)
    path = f"{tmp_path}/once.json"
    start = threading.Barrier(8)
    won: list[bytes] = []

    def race(i: int) -> None:
        start.wait()
        if files.create(path, lambda sink: sink.write(str(i).encode())) is not None:
            won.append(str(i).encode())

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and (tmp_path / "once.json").read_bytes() == won[0]
    assert os.listdir(tmp_path) == ["once.json"]


# Backends


def test_each_kind_of_storage_has_its_backend(tmp_path: Path, s3: S3Server) -> None:
    assert isinstance(DataDir.open(tmp_path).backend, LocalBackend)
    assert isinstance(DataDir.open(f"file://{tmp_path}").backend, LocalBackend)
    assert isinstance(DataDir.open(s3.new_dir()).backend, S3Backend)
    assert isinstance(DataDir.open("mock:///data").backend, OtherBackend)
    assert isinstance(elsewhere(tmp_path).backend, OtherBackend)


def test_another_filesystem_takes_one_writer_and_refuses_a_second(tmp_path: Path) -> None:
    first, second = CandleStore(elsewhere(tmp_path)), CandleStore(elsewhere(tmp_path))

    async def both() -> None:
        async with first.lock(H1, "KRW-BTC"):
            async with first.lock(H1, "KRW-ETH"):  # this process: as many series as it likes
                assert (tmp_path / "locks" / "writer.json").exists()
            # Another process (a store of its own: its own claim), on any series.
            with pytest.raises(StorageError) as refused:
                async with second.lock(H1, "KRW-XRP"):
                    pass
            message = str(refused.value)
            assert message.startswith("cannot lock 1h KRW-XRP on elsewhere://: another ")
            assert f"pid {os.getpid()}" in message and "one writer at a time" in message
            assert "only a local disk (flock) or s3://" in message
            with pytest.raises(StorageError, match=r"^cannot write on elsewhere://: another "):
                second.ensure_writable()  # what a fetch does first: refused before any request
        assert not (tmp_path / "locks" / "writer.json").exists()  # the last lock released it
        async with second.lock(H1, "KRW-XRP"):  # the first is done: the second may write
            pass

    asyncio.run(both())


def test_one_process_waits_for_its_own_job_on_a_series(tmp_path: Path) -> None:
    store = CandleStore(elsewhere(tmp_path))
    one, two = store.lock(H1, "KRW-BTC"), store.lock(H1, "KRW-BTC")
    assert one.try_acquire() and not two.try_acquire()
    one.release()
    assert two.try_acquire()
    two.release()


def test_a_claim_left_by_a_host_that_died_lapses(tmp_path: Path) -> None:
    files = elsewhere(tmp_path)
    gone = Holder("elsewhere", "other-boot", 1, "0", "dead-token", 1.0)
    claim = tmp_path / "locks" / "writer.json"
    claim.parent.mkdir(parents=True)
    claim.write_bytes(gone.encode())
    store = CandleStore(files)
    with pytest.raises(StorageError, match="pid 1 on elsewhere"):
        asyncio.run(_hold(store))
    # Not rewritten for longer than its time-to-live, by this disk's clock (file times come
    # from the kernel, not from a shifted clock under faketime).
    then = files.clock_ms() * 1_000_000 - 5_000_000_000
    os.utime(claim, ns=(then, then))
    asyncio.run(_hold(store))


async def _hold(store: CandleStore) -> None:
    async with store.lock(H1, "KRW-BTC"):
        pass


def test_a_fetch_works_on_another_filesystem(sim: SimulatorServer) -> None:
    cache = UpbitCache("mock:///data", api_url=sim.url, rate=200)
    report = cache.fetch(["KRW-BTC"], timeframes="1h", window=Window(days=2))
    assert report.failed == [] and report.candles == 48
    got = cache.load("KRW-BTC", "1h")
    pd.testing.assert_frame_equal(
        got, truth(sim, "KRW-BTC", "1h", to_ms(NOW) - 2 * 86_400_000, NOW)
    )
