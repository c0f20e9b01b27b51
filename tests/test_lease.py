"""The writer lock of an S3 data dir: a lease object in the bucket, held across hosts."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import time

import pytest
from conftest import DEADLINE, Procs, S3Server, read_until, wait_for

from upbit_cache.errors import StorageError, WriteConflict
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.store.files import DataDir
from upbit_cache.store.lease import LEASE_SECONDS, Holder, ObjectLease
from upbit_cache.timeframes import Timeframe

H1 = Timeframe.parse("1h")


def lease_key(data: str) -> str:
    return data.removeprefix("s3://") + "/locks/1h/KRW-BTC.lock"


def test_one_holder_at_a_time_across_stores(s3: S3Server) -> None:
    data = s3.new_dir()
    first, second = CandleStore(data).lock(H1, "KRW-BTC"), CandleStore(data).lock(H1, "KRW-BTC")
    assert isinstance(first, ObjectLease)
    assert first.try_acquire()
    assert not second.try_acquire()
    assert CandleStore(data).lock(H1, "KRW-ETH").try_acquire()  # another series: free
    first.release()
    assert second.try_acquire()
    second.release()
    assert not any(k.endswith("KRW-BTC.lock") for k in s3.keys(data))  # released: deleted


@pytest.mark.slow
def test_a_waiter_takes_over_once_the_lease_stops_changing(s3: S3Server) -> None:
    data = s3.new_dir()
    files = DataDir.open(data)
    # A holder on another host that stopped renewing (killed, or its host is gone).
    elsewhere = dataclasses.replace(Holder.me(1.0), host="elsewhere", boot="other-boot")
    files.objects.put(lease_key(data), elsewhere.encode(), None)
    waiter = ObjectLease(files.objects, lease_key(data), what="1h KRW-BTC")
    began = time.monotonic()
    assert not waiter.try_acquire()  # alive as far as anyone can tell, for its 1 s
    wait_for(waiter.try_acquire, "the take-over", interval=0.1)
    assert time.monotonic() - began >= 1.0  # never before its time-to-live
    waiter.release()


@pytest.mark.slow
def test_a_renewed_lease_is_never_taken_over(s3: S3Server) -> None:
    data = s3.new_dir()
    objects = DataDir.open(data).objects
    # Renewed every ttl/3: a renewal may come over a second late on a busy machine, and is
    # still in time.
    holder = ObjectLease(objects, lease_key(data), what="1h KRW-BTC", ttl=2.0)
    waiter = ObjectLease(objects, lease_key(data), what="1h KRW-BTC", timeout=6.0)

    async def both() -> None:
        async with holder:
            with pytest.raises(StorageError, match="still holds its lock after 6 s"):
                async with waiter:
                    pass
        async with waiter:  # released: at once
            pass

    asyncio.run(both())
    assert not holder.lost


@pytest.mark.slow
def test_a_killed_holder_on_this_host_is_taken_over_at_once(s3: S3Server, procs: Procs) -> None:
    data = s3.new_dir()
    held = (
        "import sys, time\n"
        "from upbit_cache.store.candle_store import CandleStore\n"
        "from upbit_cache.timeframes import Timeframe\n"
        "assert CandleStore(sys.argv[1]).lock(Timeframe.parse('1h'), 'KRW-BTC').try_acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(3600)\n"  # until killed
    )
    lock = CandleStore(data).lock(H1, "KRW-BTC")
    child = procs.popen([sys.executable, "-c", held, data], stdout=subprocess.PIPE)
    assert read_until(child, lambda lines: len(lines) >= 1, "held") == ["held\n"]
    assert not lock.try_acquire()
    seen = time.monotonic()  # the lease as it was then: its time-to-live counts from here
    child.kill()
    child.wait(timeout=DEADLINE)
    assert lock.try_acquire()  # its process is gone: no time-to-live to wait out
    assert time.monotonic() - seen < LEASE_SECONDS
    lock.release()


def test_a_write_over_a_version_not_read_is_refused(s3: S3Server) -> None:
    """What holds even when a lease was lost: every write is over the version read."""
    data = s3.new_dir()
    one, other = DataDir.open(data), DataDir.open(data)
    path = data.removeprefix("s3://") + "/fetched/x.json"
    assert one.read_for_update(path) is None and other.read_for_update(path) is None
    one.write_bytes(path, b"first")
    with pytest.raises(WriteConflict):
        other.write_bytes(path, b"second")  # created meanwhile: not replaced blind
    assert other.read_for_update(path) == b"first"
    one.read_for_update(path)
    other.write_bytes(path, b"second")
    with pytest.raises(WriteConflict):
        one.delete(path)  # changed since `one` read it
    assert other.read_bytes(path) == b"second"
