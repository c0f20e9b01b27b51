"""When each request reached the simulator: the kernel's receive time, not our handler's.

Upbit counts a request when it gets it. The simulator's handler runs later than that by as
long as its process waits for a CPU: on a loaded 2-core machine (seven fetches starting
and four busy loops) measured at 60-300 ms, which made it count two requests a quarter of a
second apart as one moment and answer 429s that Upbit would not (and could miss some it
would). The kernel stamps every segment as it arrives (`SO_TIMESTAMPNS`); an accepted
socket reads through `recvmsg` to keep the stamp of what it read last, and the rate limit
counts from that. Where the option does not exist, the handler's clock is used.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
import time
from typing import Any

# Linux's number (asm-generic; Python does not name it); its messages carry the same one.
_SO_TIMESTAMPNS = 35 if sys.platform == "linux" else None
_STAMP = struct.Struct("@qq")  # struct timespec
_ANCILLARY = socket.CMSG_SPACE(_STAMP.size)


class StampedSocket(socket.socket):
    """A listening socket whose connections know when their last bytes arrived (`received`,
    monotonic seconds; None before any or without kernel stamps)."""

    __slots__ = ("_stamps", "received")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received: float | None = None
        self._stamps = False

    def accept(self) -> tuple[socket.socket, Any]:
        fd, address = self._accept()  # type: ignore[attr-defined]
        conn = StampedSocket(self.family, self.type, self.proto, fileno=fd)
        if _SO_TIMESTAMPNS is not None:
            try:
                conn.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                conn._stamps = True
            except OSError:
                pass
        return conn, address

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if not self._stamps:
            return super().recv(bufsize, flags)
        data, ancillary, _, _ = self.recvmsg(bufsize, _ANCILLARY, flags)
        if data:
            self._stamp(ancillary)
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        if not self._stamps:
            return super().recv_into(buffer, nbytes, flags)
        view = memoryview(buffer).cast("B")
        count, ancillary, _, _ = self.recvmsg_into(
            [view[:nbytes] if nbytes else view], _ANCILLARY, flags
        )
        if count:
            self._stamp(ancillary)
        return count

    def _stamp(self, ancillary: list[tuple[int, int, bytes]]) -> None:
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                seconds, nanos = _STAMP.unpack(data[: _STAMP.size])
                # The stamp is the kernel's wall clock; the limiter keeps monotonic seconds.
                wall = seconds + nanos / 1e9 + _wall_offset()
                self.received = wall - time.time() + time.monotonic()
                return


_offset: float | None = None


def _wall_offset() -> float:
    """This process's wall clock less the kernel's: 0 but under a shifted clock (faketime
    shifts what Python reads, never the kernel's stamps), measured once on a loopback
    datagram."""
    global _offset
    if _offset is None:
        _offset = 0.0
        try:
            with (
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as inbox,
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as outbox,
            ):
                inbox.bind(("127.0.0.1", 0))
                inbox.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS or 0, 1)
                outbox.sendto(b"t", inbox.getsockname())
                _, ancillary, _, _ = inbox.recvmsg(1, _ANCILLARY)
                after = time.time()
                for level, kind, data in ancillary:
                    if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                        seconds, nanos = _STAMP.unpack(data[: _STAMP.size])
                        gap = after - (seconds + nanos / 1e9)
                        # Microseconds of delivery are no shift: keep the stamps as they are.
                        _offset = gap if abs(gap) > 0.5 else 0.0
        except OSError:
            pass
    return _offset


def listening(host: str, port: int) -> StampedSocket:
    """A bound, listening TCP socket on host:port (0: any free port)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = StampedSocket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    if _SO_TIMESTAMPNS is not None:
        # Linux stamps arriving packets only while some socket asks for it, and turns that
        # on a moment after the first asks: asked here, the first request is stamped too.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    return sock


def received_at(transport: Any) -> float | None:
    """When the bytes last read on `transport`'s connection arrived (monotonic seconds)."""
    if transport is None:
        return None
    wrapped = transport.get_extra_info("socket")
    sock = getattr(wrapped, "_sock", wrapped)  # asyncio hands out a TransportSocket
    return sock.received if isinstance(sock, StampedSocket) else None
