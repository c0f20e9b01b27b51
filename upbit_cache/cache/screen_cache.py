"""Rendered screen-prep tables, kept so that a run with nothing new rebuilds nothing.

A table is kept under `<data-dir>/screens/<key>.<format>` with a record of what it was built
from: the window and the size and modification time of every fetched-range record and data
file inside it. A later run with the same arguments asks Upbit only for its clock and the
market list; if the window and every file are unchanged, the kept table is the answer.
This module imports neither pyarrow nor pandas, so such a run starts and ends fast.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from upbit_cache.cache import paths
from upbit_cache.cache.datadir import default_data_dir
from upbit_cache.cache.formats import Format
from upbit_cache.collector.client import UpbitClient
from upbit_cache.collector.config import ClientConfig
from upbit_cache.errors import StorageError
from upbit_cache.markets import validate_markets, validate_quote
from upbit_cache.timeframes import Timeframe
from upbit_cache.timeframes.timeframe import DAY_MS

if TYPE_CHECKING:
    from upbit_cache.cache.memory import MemoryStats
    from upbit_cache.cache.screen import ScreenResult
    from upbit_cache.cache.store import CandleStore
    from upbit_cache.cache.sync import Progress


@dataclass
class Kept:
    """A kept table and the facts its summary line needs."""

    fingerprint: str
    markets: int
    rows: int
    short: dict[str, float] = field(default_factory=dict)
    filtered_out: int = 0


def window(tf: Timeframe, now: int, days: float) -> tuple[int, int]:
    """The closed periods of the last `days` before `now`: [start, end)."""
    return tf.floor_one(now - int(days * DAY_MS)), tf.floor_one(now)


def key(args: dict[str, object]) -> str:
    """A name for one combination of screen-prep arguments."""
    return hashlib.sha1(
        json.dumps(args, sort_keys=True).encode(), usedforsecurity=False
    ).hexdigest()


def stamp(root: str, tf: Timeframe, market: str, start: int, end: int) -> list[object]:
    """What one market's part of a table of [start, end) depends on: its files' versions."""
    files = [paths.fetched_file(root, tf, market)]
    files += paths.data_files_between(root, tf, market, start, end)
    return [market, *(_stat(f) for f in files)]


def fingerprint(tf: Timeframe, start: int, end: int, stamps: Sequence[list[object]]) -> str:
    """One string for a table of [start, end) built from files with these `stamp`s."""
    parts: list[object] = [tf.name, start, end, *sorted(stamps, key=lambda s: str(s[0]))]
    return hashlib.sha1(json.dumps(parts).encode(), usedforsecurity=False).hexdigest()


def find(root: str, name: str, fmt: str, current: str) -> tuple[str, Kept] | None:
    """The kept table `name` if it was built from exactly `current`."""
    try:
        with open(f"{root}/{paths.SCREENS}/{name}.json") as source:
            kept = Kept(**json.load(source))
    except (OSError, ValueError, TypeError):
        return None
    table = f"{root}/{paths.SCREENS}/{name}.{fmt}"
    if kept.fingerprint != current or not os.path.exists(table):
        return None
    return table, kept


def keep_path(root: str, name: str, fmt: str) -> str:
    """Where the table `name` is to be written (by the caller, atomically)."""
    os.makedirs(f"{root}/{paths.SCREENS}", exist_ok=True)
    return f"{root}/{paths.SCREENS}/{name}.{fmt}"


def remember(root: str, name: str, kept: Kept) -> None:
    """Record what the table `name` was built from (after the table itself is written)."""
    _atomic_write(f"{root}/{paths.SCREENS}/{name}.json", json.dumps(asdict(kept)).encode())


async def lookup(
    root: str,
    client: UpbitClient,
    markets: Sequence[str],
    quote: str | None,
    tf: Timeframe,
    days: float,
    name: str,
    fmt: str,
) -> tuple[str, Kept] | None:
    """The kept table for these arguments, if nothing it depends on has changed.

    Costs one request (the market list, which also gives Upbit's clock) and no candle request.
    """
    listed = {m.market for m in await client.markets()}
    now = client.now_ms()
    wanted = validate_markets(markets)
    if not wanted:
        prefix = validate_quote(quote or "KRW") + "-"
        wanted = [m for m in listed if m.startswith(prefix)]
    if not wanted or not listed.issuperset(wanted):
        return None  # the full run gives the error, or the empty answer
    start, end = window(tf, now, days)
    stamps = [stamp(root, tf, m, start, end) for m in wanted]
    return find(root, name, fmt, fingerprint(tf, start, end, stamps))


def copy_out(table: str, out: str) -> None:
    """Send a kept table to `out` ("-" is stdout); a file appears whole or not at all."""
    try:
        with open(table, "rb") as source:
            if out == "-":
                shutil.copyfileobj(source, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            else:
                _atomic_write(out, source.read())
    except OSError as exc:
        raise StorageError(f"cannot write {out}: {exc.strerror or exc}") from exc


def _stat(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_size, info.st_mtime_ns


def _atomic_write(path: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    handle, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as sink:
            sink.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@dataclass
class Produced:
    """What `produce` did: answered from a kept table, or built one."""

    kept: Kept | None = None  # the kept table's facts, when nothing had changed
    result: ScreenResult | None = None  # the full run, otherwise
    memory: MemoryStats | None = None


def produce(
    data_dir: str | os.PathLike[str] | None,
    config: ClientConfig,
    markets: Sequence[str],
    *,
    quote: str | None,
    timeframe: Timeframe,
    days: float,
    refresh: bool,
    include_open: bool,
    min_value: float | None,
    top: int | None,
    out: str,
    fmt: Format,
    progress: Progress | None = None,
) -> Produced:
    """screen-prep end to end: the kept table if nothing changed, else refresh, build, write."""
    root = os.fspath(data_dir) if data_dir is not None else default_data_dir()
    keepable = refresh and not include_open and "://" not in root
    if keepable:
        root = os.path.abspath(os.path.expanduser(root))
    args = {"markets": sorted(validate_markets(markets)), "quote": quote, "days": days}
    args |= {"tf": timeframe.name, "fmt": fmt, "top": top, "min_value": min_value}
    name = key(args)

    async def run() -> tuple[str, Kept] | tuple[ScreenResult, CandleStore]:
        async with UpbitClient(config) as client:  # one session for the whole run
            if keepable:
                found = await lookup(root, client, markets, quote, timeframe, days, name, fmt)
                if found is not None:
                    return found
            # Something changed (or cannot be kept): the full run, with pyarrow and pandas.
            from upbit_cache.cache.screen import screen_prep
            from upbit_cache.cache.store import CandleStore

            store = CandleStore.open(root)
            result = await screen_prep(
                store,
                config,
                markets,
                quote=quote,
                timeframe=timeframe,
                days=days,
                refresh=refresh,
                include_open=include_open,
                min_value=min_value,
                top=top,
                progress=progress,
                client=client,
            )
            return result, store

    first, second = asyncio.run(run())
    if isinstance(first, str):
        assert isinstance(second, Kept)
        copy_out(first, out)
        return Produced(kept=second)
    result, store = first, second
    import pyarrow.compute as pc

    from upbit_cache.cache.export import write_output

    failed = result.sync is not None and result.sync.failed
    if keepable and result.fingerprint is not None and not failed:
        table = keep_path(root, name, fmt)
        write_output(result.table, table, fmt)
        copy_out(table, out)
        shown = pc.count_distinct(result.table["market"]).as_py() if result.table.num_rows else 0
        facts = Kept(result.fingerprint, shown, result.table.num_rows, result.short)
        facts.filtered_out = len(result.filtered_out)
        remember(root, name, facts)
    else:
        write_output(result.table, out, fmt)
    return Produced(result=result, memory=store.memory.stats)
