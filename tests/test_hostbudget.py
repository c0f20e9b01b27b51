"""One host, one budget: processes sharing Upbit's 10 requests/s through the host's cell, a
send put off past its slot, and a simulator that counts each request from its arrival."""

from __future__ import annotations

import socket
import sys
import time

import pytest

from upbit_cache.simulator import RateLimiter as SimLimiter
from upbit_cache.simulator.stamps import StampedSocket, listening


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


@pytest.mark.skipif(sys.platform != "linux", reason="kernel receive stamps: Linux")
def test_a_connection_knows_when_its_bytes_arrived_however_late_they_are_read() -> None:
    server = listening("127.0.0.1", 0)
    server.setblocking(True)
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
