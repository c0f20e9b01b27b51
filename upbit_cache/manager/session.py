"""The client every command talks to Upbit with: one per run, paced with the host's others.

Upbit counts candle requests per IP, so every process on this host shares one send
schedule (a `HostCell`, collector/hostcell.py): four fetches and a screen-prep at once stay inside
the budget together instead of each taking all of it.
"""

from __future__ import annotations

from upbit_cache.collector.client import UpbitClient
from upbit_cache.collector.config import ClientConfig
from upbit_cache.collector.hostcell import HostCell
from upbit_cache.collector.ratelimit import SharedSchedule


def new_client(config: ClientConfig) -> UpbitClient:
    """A client (use with `async with`) whose candle requests share the host's budget; a
    runtime dir that cannot hold that budget's file fails here, before any request."""
    cell = HostCell.for_api(config.api_url, config.runtime_dir)
    cell.check()
    return UpbitClient(config, schedule=SharedSchedule(cell))
