"""One host, one budget: processes sharing Upbit's 10 requests/s through the host's cell, a
send put off past its slot, and a simulator that counts each request from its arrival."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import DEADLINE, NOW, Procs, read_until, truth

from upbit_cache.collector.hostcell import HostCell
from upbit_cache.collector.ratelimit import HOLD, RETAKE, RateLimiter, SharedSchedule
from upbit_cache.simulator import RateLimiter as SimLimiter
from upbit_cache.simulator import SimulatorConfig, SimulatorServer
from upbit_cache.simulator.stamps import StampedSocket, listening
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

M1 = Timeframe.parse("1m")
DAY_MS = 86_400_000
FOREIGN = float(os.getpid() + 1)  # another process's pid, as the cell keeps it


def cell_with(path: Path, sends: list[tuple[float, float]]) -> HostCell:
    """A host cell holding `sends` (time, tag: a pid, negated until written)."""
    cell = HostCell(str(path))
    cell.update(lambda _: (0.0, [0.0, *(x for send in sends for x in send)]))
    return cell


def test_the_simulator_counts_each_request_from_when_it_arrived() -> None:
    limiter = SimLimiter(10)
    base = time.monotonic() - 2.5
    for i in range(10):
        assert limiter.check("ip", "candles", base + 0.5 + i / 10).status == 200
    # Handled after them, arrived before them: the window ending at the tenth holds eleven.
    assert limiter.check("ip", "candles", base + 0.45).status == 429
    # A second before the first: every window holding it has room.
    assert limiter.check("ip", "candles", base - 0.6).status == 200
    assert limiter.check("ip", "candles", base + 1.45).status == 429  # (0.45, 1.45]: ten
    assert limiter.check("ip", "candles", base + 1.55).status == 200


def wait_for_stamping(deadline: float = 2.0) -> None:
    """Until the kernel stamps arriving packets: it turns that on a moment after the first
    socket asks (the listener did), so probe with datagrams to a socket that asks too."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as inbox,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as outbox,
    ):
        inbox.bind(("127.0.0.1", 0))
        inbox.setsockopt(socket.SOL_SOCKET, 35, 1)  # SO_TIMESTAMPNS
        inbox.settimeout(deadline)
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            outbox.sendto(b"p", inbox.getsockname())
            _, ancillary, _, _ = inbox.recvmsg(1, socket.CMSG_SPACE(16))
            if ancillary:
                return
        raise AssertionError("the kernel never stamped a packet")


@pytest.mark.skipif(sys.platform != "linux", reason="kernel receive stamps: Linux")
def test_a_connection_knows_when_its_bytes_arrived_however_late_they_are_read() -> None:
    server = listening("127.0.0.1", 0)
    server.setblocking(True)
    wait_for_stamping()
    client = socket.create_connection(server.getsockname()[:2])
    conn, _ = server.accept()
    try:
        assert isinstance(conn, StampedSocket)
        client.sendall(b"GET / HTTP/1.1\r\n\r\n")
        sent = time.monotonic()
        time.sleep(0.2)  # the simulator waiting for a CPU
        assert conn.recv(100).startswith(b"GET")
        assert conn.received is not None and abs(conn.received - sent) < 0.05
    finally:
        for sock in (client, conn, server):
            sock.close()


def test_sends_of_another_process_count_as_now_until_written(tmp_path: Path) -> None:
    written = [(100.0 + i / 10, FOREIGN) for i in range(10)]
    schedule = SharedSchedule(cell_with(tmp_path / "written", written))
    assert schedule.commit(101.06, 1.0, 10) == 0  # the first left the window (1.05 s, shared)
    waiting = [(100.0 + i / 10, -FOREIGN) for i in range(10)]
    schedule = SharedSchedule(cell_with(tmp_path / "waiting", waiting))
    # Not written yet: each may be going out now, for up to HOLD.
    assert schedule.commit(101.06, 1.0, 10) > 0
    assert schedule.commit(100.0 + HOLD + 1.06, 1.0, 10) == 0


def test_a_write_puts_a_send_at_its_wire_time_in_the_cell(tmp_path: Path) -> None:
    schedule = SharedSchedule(HostCell(str(tmp_path / "pace")))
    for i in range(10):
        assert schedule.commit(100.0 + i / 10, 1.0, 10) == 0
    assert schedule.commit(101.05, 1.0, 10) > 0  # none written: all may go out now
    for i in range(10):
        schedule.amend(100.0 + i / 10, 100.0 + i / 10)
    schedule.amend(100.0, 100.2)  # answered late: it may have reached Upbit then
    assert schedule.commit(101.05, 1.0, 10) > 0
    assert schedule.commit(101.21, 1.0, 10) == 0


class Shifted:
    """The monotonic clock, moved on by the test: a process the OS put aside."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


def test_a_send_put_off_past_its_slot_takes_a_new_one_before_it_goes(tmp_path: Path) -> None:
    clock = Shifted()
    cell = HostCell(str(tmp_path / "pace"))

    async def scenario() -> tuple[float, list[float], float]:
        late = RateLimiter(10, schedule=SharedSchedule(cell), clock=clock)
        send = await late.acquire()
        clock.offset += RETAKE + 0.7  # its slot is 1.2 s old when its write comes
        # Meanwhile the host filled the last second (sent and answered).
        now = clock()
        fill = [now - 0.95 + i / 10 for i in range(10)]
        cell.update(lambda v: (0.0, [*v, *(x for t in fill for x in (t, FOREIGN))]))
        await late.sending(send)
        await asyncio.sleep(0)  # the write, then the loop's next turn reads the wire time
        assert send.wire is not None
        return send.wire, fill, late.window

    wire, fill, window = asyncio.run(scenario())
    # Not into the full window: once the first of them left it (shared: 5% wider).
    assert wire >= fill[0] + window * 1.05 - 0.002


def test_an_on_time_send_goes_at_once_and_its_wire_time_follows_the_write() -> None:
    async def scenario() -> tuple[bool, float | None, float | None, float]:
        limiter = RateLimiter(10)
        send = await limiter.acquire()
        await limiter.sending(send)
        before = send.wire  # the write comes after the hook
        await asyncio.sleep(0)
        return send.writing, before, send.wire, send.released

    writing, before, wire, released = asyncio.run(scenario())
    assert writing and before is None and wire is not None and wire - released < RETAKE


def test_a_send_that_never_went_out_gives_its_slot_back(tmp_path: Path) -> None:
    cell = HostCell(str(tmp_path / "pace"))

    async def scenario() -> None:
        limiter = RateLimiter(10, schedule=SharedSchedule(cell))
        send = await limiter.acquire()
        limiter.answered(send, failed=True)  # its connection failed before the write

    asyncio.run(scenario())
    assert cell.update(lambda v: (len(v), v)) == 1  # the due time alone


# ---------------------------------------------------------------------------------------
# Processes on one host against one simulator


class SimProcess:
    """The simulator at Upbit's 10 requests/s in a process of its own."""

    def __init__(self, procs: Procs) -> None:
        command = [sys.executable, "-m", "upbit_cache.simulator", "--port", "0"]
        command += ["--rate", "10", "--clock", NOW, "--frozen"]
        self.proc = procs.popen(command, stdout=subprocess.PIPE, text=True)
        line = read_until(self.proc, lambda lines: len(lines) >= 1, "the URL line")[0]
        self.url = line.rsplit(" ", 1)[1].strip()

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_sim/stats", timeout=10) as answer:
            return dict(json.loads(answer.read()))


@pytest.fixture
def upbit(procs: Procs) -> Iterator[SimProcess]:
    sim = SimProcess(procs)
    yield sim
    sim.proc.terminate()
    sim.proc.wait(timeout=DEADLINE)


def seven_fetches(procs: Procs, sim: SimProcess, tmp_path: Path, days: int = 2) -> float:
    """Seven `upbit-cache fetch` processes at once, a market each, on one data dir and one
    runtime dir; asserts each exits 0 with no 429 and that the store holds what Upbit has.
    Returns the seconds from the first process's start to the last one's end."""
    reference = SimulatorServer(SimulatorConfig(clock_start=NOW, frozen=True))  # not started
    markets = [m.market for m in reference.history.markets if m.market.startswith("KRW-")][:7]
    env = {**os.environ, "UPBIT_CACHE_RUNTIME_DIR": str(tmp_path / "runtime")}
    started = []
    began = time.monotonic()
    for market in markets:
        command = [sys.executable, "-m", "upbit_cache", "fetch", market, "-t", "1m"]
        command += ["--days", str(days), "--api-url", sim.url, "--data-dir", str(tmp_path)]
        started.append(
            procs.popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        )
    for proc in started:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
        assert b" 0 429s" in out + err, (out + err).decode()
    wall = time.monotonic() - began
    stats = sim.stats()
    assert stats["rate_limited"] == 0, stats["by_status"]
    store = CandleStore(tmp_path)
    for market in markets:
        expected = truth(reference, market, "1m", to_ms(NOW) - days * DAY_MS, NOW)
        pd.testing.assert_frame_equal(store.load(market, M1), expected)
    return wall


@pytest.mark.slow
def test_seven_fetches_on_one_host_share_the_budget_with_no_429(
    procs: Procs, upbit: SimProcess, tmp_path: Path
) -> None:
    wall = seven_fetches(procs, upbit, tmp_path)
    requests = upbit.stats()["candle_requests"]
    assert requests >= 7 * 14
    # Busy: the budget is not starved. Seven start-ups (a second or more each on two
    # loaded CPUs) and the last pages count in the wall, so well under 10 a second; a
    # pacing that left the budget idle (a second a request, one process at a time) is far
    # below this.
    assert requests / wall > 3


@pytest.mark.slow
def test_seven_fetches_with_the_cpus_saturated_earn_no_429(
    procs: Procs, upbit: SimProcess, tmp_path: Path
) -> None:
    # Four busy loops on two CPUs: the fetches (and the simulator) wait for a CPU often,
    # between taking a slot and writing its request, too.
    loops = [procs.popen([sys.executable, "-c", "while True: pass"]) for _ in range(4)]
    try:
        seven_fetches(procs, upbit, tmp_path)
    finally:
        for loop in loops:
            loop.kill()
        for loop in loops:
            loop.wait(timeout=DEADLINE)
