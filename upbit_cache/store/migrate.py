"""Data dirs made before the `timeframe=` key, moved into today's layout on first use.

Before: `candles/<tf>/market=.../date=.../part-0.parquet`; now the timeframe is a Hive key
too, `candles/timeframe=<tf>/...`, so one dataset holds every timeframe with a column to
tell them apart. Each file is put in its new place unless one is there already, then
removed from the old one: a killed migration leaves every file in one place or both
(never none), and the next store open (in any process, several at once) finishes it.
Records (`fetched/<tf>/`) name files relative to their series' folder and stay as they are.
"""

from __future__ import annotations

from upbit_cache.errors import UpbitCacheError
from upbit_cache.store import layout
from upbit_cache.store.files import DataDir
from upbit_cache.timeframes import Timeframe


def old_timeframes(files: DataDir) -> list[Timeframe]:
    """Timeframes still stored in the old layout."""
    found = []
    for name in files.list_dirs(layout.candles_dir(files.root)):
        try:
            found.append(Timeframe.parse(name))
        except UpbitCacheError:
            continue  # `timeframe=...` or not ours
    return found


def migrate(files: DataDir) -> int:
    """Move every old-layout data file; how many were moved. Leftover temps are dropped."""
    moved = 0
    for tf in old_timeframes(files):
        old = layout.old_candles_root(files.root, tf.name)
        new = layout.candles_root(files.root, tf)
        for found in files.list_files(old, recursive=True):
            if found.is_temp:  # a killed writer's: never a file of the dataset
                files.delete(found.path)
                continue
            files.move(found.path, new + found.path.removeprefix(old))
            moved += 1
        _remove_empty_dirs(files, old)
    return moved


def _remove_empty_dirs(files: DataDir, top: str) -> None:
    """Remove `top` and the folders under it, deepest first, where nothing is left."""
    for name in files.list_dirs(top):
        _remove_empty_dirs(files, f"{top}/{name}")
    files.delete_dir_if_empty(top)
