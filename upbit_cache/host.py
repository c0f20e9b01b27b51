"""Facts about this host that the OS keeps in files (Linux `/proc`); None or "" elsewhere."""

from __future__ import annotations

from functools import cache


@cache
def boot_id() -> str:
    """This boot of this host: with the host name, what tells a process of ours apart."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as source:
            return source.read().strip()
    except OSError:
        return ""


def process_start(pid: int) -> str:
    """When process `pid` started (clock ticks since boot): a reused pid is another process."""
    try:
        with open(f"/proc/{pid}/stat") as source:
            return source.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return ""


def memory() -> tuple[int, int] | None:
    """(available, total) bytes of this host's memory, as the kernel estimates them."""
    try:
        with open("/proc/meminfo") as source:
            fields = dict(line.split(":", 1) for line in source)
        available = int(fields["MemAvailable"].split()[0]) * 1024
        return available, int(fields["MemTotal"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
