"""`UpbitCache`: the one object the CLI and Python callers use: memory, then disk, then Upbit.

Every command is one method here. The modules that need pyarrow's Parquet or pandas load on
first use inside the methods (always downward: this module imports them, never the
reverse), so that constructing the object and answering a screen-prep from its kept table
stays fast.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from upbit_cache import configfile
from upbit_cache.collector.config import ClientConfig
from upbit_cache.errors import UnknownMarketError, UsageError
from upbit_cache.manager.api import checked, checked_many
from upbit_cache.manager.layers import LayerReport, Layers
from upbit_cache.manager.memory import MemoryCache, MemoryStats
from upbit_cache.manager.runner import Runner
from upbit_cache.manager.scope import ScreenRequest, Shard, Window, parse_span
from upbit_cache.manager.screen_keep import Kept, key, lookup, remember
from upbit_cache.manager.session import new_client
from upbit_cache.manager.shapes import codes_of, market_of_symbol, ohlcv_lists, shaped
from upbit_cache.markets import validate_market, validate_markets, validate_quote
from upbit_cache.output.formats import (
    Format,
    Layout,
    check_output,
    export_format,
    guess_format,
)
from upbit_cache.output.send import send
from upbit_cache.ranges import EARLIEST, LATEST, TimeRange
from upbit_cache.settings import DEFAULT_BUDGET, DEFAULT_TAIL, DEFAULT_TIMEFRAME, Settings
from upbit_cache.store.base import Coverage, Store
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import TimeLike, check_timezone, now_ms, to_ms

if TYPE_CHECKING:
    import pandas as pd

    from upbit_cache.manager.derive import DeriveOutcome
    from upbit_cache.manager.export import ExportReport
    from upbit_cache.manager.fetch import Progress, SyncReport
    from upbit_cache.manager.info import SeriesInfo
    from upbit_cache.manager.listings import Held, Listing
    from upbit_cache.manager.live import LiveEvent
    from upbit_cache.manager.prune import Policy, PruneReport
    from upbit_cache.manager.screen import ScreenResult
    from upbit_cache.manager.verify import VerifyReport
    from upbit_cache.store.candle_store import CandleStore

Timeframes = str | Timeframe | Sequence[str | Timeframe]
T = TypeVar("T")


@dataclass
class Produced:
    """What `screen_prep` did: answered from a kept table, or built one."""

    kept: Kept | None = None  # the kept table's facts, when nothing had changed
    result: ScreenResult | None = None  # the full run, otherwise
    memory: MemoryStats | None = None
    layers: LayerReport | None = None


class UpbitCache:
    """A local, always-fresh copy of Upbit candles.

        cache = UpbitCache()                      # default data dir, api.upbit.com
        frame = cache.get("KRW-BTC", "1h", "2026-11-01", "2026-11-08")

    `get` answers from memory when it can, else from disk, and asks Upbit only for the
    ranges neither holds (storing them, so the next call is local). The other methods are
    the commands of `upbit-cache`, one each.

    Every method that does I/O has an async twin, named with an `a` (`afetch`, `aget`,
    `aexport`, ...), for code that runs an event loop; the sync ones work there too (a
    Jupyter cell, an async app): they run the twin on a loop of this cache's own, in a
    helper thread (manager/runner.py), and wait for it. `close()` (or `with UpbitCache()
    as cache:`) stops that thread; dropping the cache does too.
    """

    @checked
    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        api_url: str | None = None,
        ws_url: str | None = None,
        rate: float | None = None,
        memory_bytes: int | None = None,
        lock_timeout: float | None = None,
        on_lock_wait: Callable[[str], None] | None = None,
        config: str | os.PathLike[str] | Literal[False] | None = None,
    ) -> None:
        """What is not given comes from the environment, then the config file, then the
        defaults (docs/settings.md). `config`: the config file to read (it must exist);
        None: UPBIT_CACHE_CONFIG, else the default place if there; False: none.

        `memory_bytes`: the memory layer's budget (None: `UPBIT_CACHE_MEMORY`, else the config
        file's `memory`, else it follows the machine, see manager/memory.py; 0: no memory
        layer). `lock_timeout`: seconds a writer waits for another run's lock on a series
        (None: as long as it takes); `on_lock_wait(series)` is told once when a writer must
        wait."""
        # The environment and the config file, read once for this cache.
        settings = configfile.load(config)
        self.settings: Settings = settings  # e.g. `serve`'s defaults: settings.serve_port()
        # The data dir as series, without Parquet: enough for a kept screen-prep table.
        self.dir = Store(
            data_dir if data_dir is not None else settings.default_data_dir(),
            lock_timeout=lock_timeout,
            on_lock_wait=on_lock_wait,
        )
        self.config = ClientConfig.from_env(api_url, rate, ws_url, settings)
        self.layers = Layers()
        budget = memory_bytes if memory_bytes is not None else settings.memory_bytes()
        self.memory = MemoryCache(budget, layers=self.layers)
        self.lock_timeout, self.on_lock_wait = lock_timeout, on_lock_wait
        self._store: CandleStore | None = None
        self._runner = Runner()

    def close(self) -> None:
        """Stop the helper thread the sync methods use inside a running event loop, if any
        (a later call starts another). Nothing else is held open between calls."""
        self._runner.close()

    def __enter__(self) -> UpbitCache:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """A sync method's body: its async twin, run to the end wherever we are."""
        return self._runner.run(coro)

    @property
    def store(self) -> CandleStore:
        """The Parquet store of the data dir, read through the memory layer."""
        if self._store is None:
            self._store = self._new_store(self.memory)
        return self._store

    @property
    def files(self) -> Store:
        """The data dir (`files.root` is where it is)."""
        return self.dir

    def _new_store(self, cache: MemoryCache | None = None) -> CandleStore:
        from upbit_cache.store.candle_store import CandleStore  # Parquet: on first use

        return CandleStore.on(self.dir, cache)

    @property
    def stats(self) -> MemoryStats:
        """Hits, misses, evictions and bytes of the memory layer."""
        return self.memory.stats

    def layer_stats(self) -> LayerReport:
        """Per layer (memory, hot files, cold files, Upbit): the requests it answered with
        their latencies, the tables or pages it served, and the hit rates."""
        return self.layers.report()

    # Reading

    @overload
    def get(
        self,
        market: str | Sequence[str],
        timeframe: str | Timeframe,
        start: TimeLike,
        end: TimeLike | None = None,
        *,
        as_dict: Literal[False] = False,
        index: bool = False,
    ) -> pd.DataFrame: ...
    @overload
    def get(
        self,
        market: Sequence[str],
        timeframe: str | Timeframe,
        start: TimeLike,
        end: TimeLike | None = None,
        *,
        as_dict: Literal[True],
        index: bool = False,
    ) -> dict[str, pd.DataFrame]: ...
    @checked_many
    def get(
        self,
        market: str | Sequence[str],
        timeframe: str | Timeframe,
        start: TimeLike,
        end: TimeLike | None = None,
        *,
        as_dict: bool = False,
        index: bool = False,
    ) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """Candles with start <= time < end (end: now), closed ones only, oldest first.

        `market` may be a list: then one long frame with a `market` column (in the order
        given, each oldest first), or with `as_dict=True` a frame per market; what is
        missing of every market is fetched in one run. `index=True`: the times as a UTC
        DatetimeIndex named `time` instead of a column.
        """
        return self._run(self._aget(market, timeframe, start, end, as_dict, index))

    @overload
    async def aget(
        self,
        market: str | Sequence[str],
        timeframe: str | Timeframe,
        start: TimeLike,
        end: TimeLike | None = None,
        *,
        as_dict: Literal[False] = False,
        index: bool = False,
    ) -> pd.DataFrame: ...
    @overload
    async def aget(
        self,
        market: Sequence[str],
        timeframe: str | Timeframe,
        start: TimeLike,
        end: TimeLike | None = None,
        *,
        as_dict: Literal[True],
        index: bool = False,
    ) -> dict[str, pd.DataFrame]: ...
    @checked_many
    async def aget(
        self,
        market: str | Sequence[str],
        timeframe: str | Timeframe,
        start: TimeLike,
        end: TimeLike | None = None,
        *,
        as_dict: bool = False,
        index: bool = False,
    ) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """`get`, awaited."""
        return await self._aget(market, timeframe, start, end, as_dict, index)

    async def _aget(
        self,
        market: str | Sequence[str],
        timeframe: str | Timeframe,
        start: TimeLike,
        end: TimeLike | None,
        as_dict: bool,
        index: bool,
    ) -> pd.DataFrame | dict[str, pd.DataFrame]:
        from upbit_cache.manager.derive import load_any
        from upbit_cache.manager.fetch import fetch

        codes = codes_of(market)
        tf = _timeframe(timeframe)
        lo, hi = parse_span(start, end)
        assert lo is not None
        # By our clock; if Upbit's is a little behind, the fetch finds nothing to do.
        closed = tf.floor_one(now_ms())
        top = min(tf.ceil_one(hi), closed) if hi is not None else closed
        wanted = TimeRange(tf.floor_one(lo), max(tf.floor_one(lo), top))
        with self.layers.request():
            # One coverage for the call: the records the check, the fetch and the read need.
            known = self.store.coverage((s, c) for c in codes for s in (tf, *tf.divisors()))
            missing = [c for c in codes if not self._settled(known, c, tf, wanted)]
            if missing:
                window = Window(lo, hi)
                report = await fetch(self.store, self.config, missing, [tf], window, coverage=known)
                self._asked(report)
                errors = [o.error for o in report.failed] + [d.error for d in report.failed_derived]
                if errors:
                    assert errors[0] is not None
                    raise errors[0]
            span = TimeRange(lo, hi if hi is not None else LATEST)

            def read() -> dict[str, pd.DataFrame]:
                return {c: load_any(self.store, c, tf, span, known) for c in codes}

            frames = await asyncio.to_thread(read)
        return shaped(frames, market, as_dict, index)

    def _asked(self, report: SyncReport) -> None:
        if report.candle_requests:
            self.layers.served("upbit", report.candles, report.candle_requests)

    def _settled(self, known: Coverage, market: str, tf: Timeframe, span: TimeRange) -> bool:
        """Whether the store can answer `span` for tf, natively or from a base."""
        from upbit_cache.manager.derive import settled_periods

        for source in (tf, *tf.divisors()):
            have = known.fetched(source, market)
            if source != tf:
                have = settled_periods(have, tf)
            if have.covers(span):
                return True
        return False

    @overload
    def load(
        self,
        market: str | Sequence[str],
        timeframe: str | Timeframe,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        fill: bool = False,
        as_dict: Literal[False] = False,
        index: bool = False,
    ) -> pd.DataFrame: ...
    @overload
    def load(
        self,
        market: Sequence[str],
        timeframe: str | Timeframe,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        fill: bool = False,
        as_dict: Literal[True],
        index: bool = False,
    ) -> dict[str, pd.DataFrame]: ...
    @checked_many
    def load(
        self,
        market: str | Sequence[str],
        timeframe: str | Timeframe,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        fill: bool = False,
        as_dict: bool = False,
        index: bool = False,
    ) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """Stored candles with start <= time < end, oldest first (no network).

        A timeframe that was not materialised is derived on the fly from a stored finer
        one. Periods without trades have no row, as on Upbit; `fill=True` gives a regular
        grid instead, made-up rows (previous close, zero volume) marked in a `filled` column.
        `market` may be a list (a long frame with a `market` column, or `as_dict=True`: a
        frame per market); `index=True`: the times as a UTC DatetimeIndex named `time`.
        """
        tf = _timeframe(timeframe)
        lo, hi = parse_span(start, end)
        codes = codes_of(market)
        self.dir.require()  # a misspelt data dir is not an empty frame (looked at once)
        frames = {c: self._load_one(c, tf, lo, hi, fill) for c in codes}
        return shaped(frames, market, as_dict, index)

    def _load_one(
        self, code: str, tf: Timeframe, lo: int | None, hi: int | None, fill: bool
    ) -> pd.DataFrame:
        from upbit_cache.manager.derive import load_any
        from upbit_cache.timeframes.convert import fill_gaps

        span = TimeRange(EARLIEST if lo is None else lo, LATEST if hi is None else hi)
        with self.layers.request():
            frame = load_any(self.store, code, tf, span)
        if not fill or frame.empty:
            return frame
        first = int(frame["time"].iloc[0].value // 1_000_000) if lo is None else lo
        last = tf.shift_one(int(frame["time"].iloc[-1].value // 1_000_000), 1) if hi is None else hi
        return fill_gaps(frame, tf, TimeRange(first, last))

    @overload
    async def aload(
        self,
        market: str | Sequence[str],
        timeframe: str | Timeframe,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        fill: bool = False,
        as_dict: Literal[False] = False,
        index: bool = False,
    ) -> pd.DataFrame: ...
    @overload
    async def aload(
        self,
        market: Sequence[str],
        timeframe: str | Timeframe,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        fill: bool = False,
        as_dict: Literal[True],
        index: bool = False,
    ) -> dict[str, pd.DataFrame]: ...
    @checked_many
    async def aload(
        self,
        market: str | Sequence[str],
        timeframe: str | Timeframe,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        fill: bool = False,
        as_dict: bool = False,
        index: bool = False,
    ) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """`load`, awaited: the files are read in a worker thread, not on the loop."""

        def read() -> pd.DataFrame | dict[str, pd.DataFrame]:
            tf, (lo, hi), codes = _timeframe(timeframe), parse_span(start, end), codes_of(market)
            self.dir.require()
            frames = {c: self._load_one(c, tf, lo, hi, fill) for c in codes}
            return shaped(frames, market, as_dict, index)

        return await asyncio.to_thread(read)

    @checked
    def fetch_ohlcv(
        self,
        symbol: str,
        timeframe: str | Timeframe = "1m",
        since: int | None = None,
        limit: int | None = None,
    ) -> list[list[float]]:
        """Candles as ccxt's `fetch_ohlcv` gives them: `[[ms, open, high, low, close, volume],
        ...]`, oldest first, for a ccxt symbol (`BTC/KRW`); closed candles only, fetched
        first where the store lacks them.

        `since` (epoch ms, inclusive): the candles from there, at most `limit` (the `limit`
        periods from `since`, as ccxt's upbit asks Upbit for; None: up to now). No `since`:
        the newest `limit` (None: 200, ccxt's upbit default).
        """
        code = market_of_symbol(symbol)
        tf = _timeframe(timeframe)
        for name, value in (("since", since), ("limit", limit)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise UsageError(f"fetch_ohlcv: {name} takes an int, not {value!r}")
        if limit is not None and limit < 1:
            raise UsageError(f"fetch_ohlcv: limit must be 1 or more, not {limit}")
        if since is None:
            frame = self.tail(code, tf, limit or 200)
        else:
            first = tf.ceil_one(since)
            end = tf.shift_one(first, limit) if limit is not None else None
            frame = self.get(code, tf, first, end)
            if limit is not None:
                frame = frame.iloc[:limit]
        return ohlcv_lists(frame)

    # Commands

    @checked
    def fetch(
        self,
        markets: Sequence[str] = (),
        *,
        quote: str | None = None,
        timeframes: Timeframes = DEFAULT_TIMEFRAME,
        window: Window | None = None,
        progress: Progress | None = None,
        shard: Shard | str | None = None,
        dask: str | None = None,
    ) -> SyncReport:
        """Fetch what the store lacks of `window` (default: the last 30 days) and store it.

        `shard="2/4"` (or `Shard(2, 4)`) takes only the second of four disjoint parts of the
        (market, fetched timeframe) jobs, of about equal estimated requests, so that four
        hosts split a backfill; each must be given the same markets (or quote), timeframes
        and window. `shard="auto/4"`: the part is JOB_COMPLETION_INDEX + 1.

        `dask="tcp://host:8786"` (or `"local:4"`) runs the jobs as tasks of that Dask cluster
        (manager/distributed.py; needs `distributed`): every worker writes this data dir.
        """
        return self._run(
            self.afetch(
                markets,
                quote=quote,
                timeframes=timeframes,
                window=window,
                progress=progress,
                shard=shard,
                dask=dask,
            )
        )

    @checked
    async def afetch(
        self,
        markets: Sequence[str] = (),
        *,
        quote: str | None = None,
        timeframes: Timeframes = DEFAULT_TIMEFRAME,
        window: Window | None = None,
        progress: Progress | None = None,
        shard: Shard | str | None = None,
        dask: str | None = None,
    ) -> SyncReport:
        """`fetch`, awaited."""
        from upbit_cache.manager.fetch import fetch

        part = Shard.parse(shard) if shard is not None else None
        tfs = _timeframes(timeframes)
        if dask is not None:
            if part is not None:
                raise UsageError("--dask and --shard do not mix: Dask spreads the jobs itself")
            from upbit_cache.manager.distributed import fetch_on_dask  # dask: only here

            report = await fetch_on_dask(
                self.store,
                self.config,
                dask,
                markets,
                tfs,
                window or Window(),
                quote=quote,
                progress=progress,
            )
            self._asked(report)
            return report
        report = await fetch(
            self.store,
            self.config,
            markets,
            tfs,
            window or Window(),
            quote=quote,
            progress=progress,
            shard=part,
        )
        self._asked(report)
        return report

    @checked
    def resample(
        self,
        markets: Sequence[str] = (),
        timeframes: Timeframes = DEFAULT_TIMEFRAME,
        base: str | Timeframe | None = None,
    ) -> list[DeriveOutcome]:
        """Derive `timeframes` from stored finer candles and store them (incremental)."""
        return self._run(self.aresample(markets, timeframes, base))

    @checked
    async def aresample(
        self,
        markets: Sequence[str] = (),
        timeframes: Timeframes = DEFAULT_TIMEFRAME,
        base: str | Timeframe | None = None,
    ) -> list[DeriveOutcome]:
        """`resample`, awaited."""
        from upbit_cache.manager.derive import resample_store

        source = _timeframe(base) if base is not None else None
        tfs = _timeframes(timeframes)
        self.dir.require()
        return await resample_store(self.store, markets, tfs, source)

    @checked
    def screen_prep(
        self,
        request: ScreenRequest,
        *,
        out: str = "-",
        fmt: Format | None = None,
        tz: str = "UTC",
        progress: Progress | None = None,
    ) -> Produced:
        """Bring the request's window up to date and write one long table to `out` (the
        times of CSV and JSON lines as text in `tz`; Parquet keeps UTC timestamps).

        A run whose table was built before from exactly the same files copies the kept table
        (one request for Upbit's clock, no Parquet read).
        """
        job = self._screen_job(request, out, fmt, tz)
        done = self._run(self._screen_run(job, progress))
        # Written here, not on a loop: Ctrl-C stops a long write at once (an interrupted
        # loop would wait for a worker thread to finish it).
        return self._screen_write(job, done)

    @checked
    async def ascreen_prep(
        self,
        request: ScreenRequest,
        *,
        out: str = "-",
        fmt: Format | None = None,
        tz: str = "UTC",
        progress: Progress | None = None,
    ) -> Produced:
        """`screen_prep`, awaited: the table is written in a worker thread, not on the loop."""
        job = self._screen_job(request, out, fmt, tz)
        done = await self._screen_run(job, progress)
        return await asyncio.to_thread(self._screen_write, job, done)

    def _screen_job(
        self, request: ScreenRequest, out: str, fmt: Format | None, tz: str
    ) -> _ScreenJob:
        zone = check_timezone(tz)
        fmt = guess_format(out, fmt)
        check_output(out, fmt)  # before anything is fetched or copied out
        if not request.refresh:
            self.dir.require()
        keepable = request.refresh and not request.include_open
        return _ScreenJob(request, out, fmt, zone, key(request, fmt, zone), keepable)

    async def _screen_run(
        self, job: _ScreenJob, progress: Progress | None
    ) -> tuple[str, Kept] | ScreenResult:
        async with new_client(self.config) as client:  # one session for the whole run
            if job.keepable:
                found = await lookup(self.dir, client, job.request, job.name, job.fmt)
                if found is not None:
                    return found
            # Something changed (or cannot be kept): the full run, with Parquet and pandas.
            from upbit_cache.manager.screen import screen_prep

            return await screen_prep(self.store, client, job.request, progress, self.layers)

    def _screen_write(self, job: _ScreenJob, done: tuple[str, Kept] | ScreenResult) -> Produced:
        if isinstance(done, tuple):
            send(self.dir.kept_table(done[0]), job.out)
            return Produced(kept=done[1])
        if done.sync is not None:
            self._asked(done.sync)
        self._write_screen(done, job.out, job.fmt, job.tz, job.name if job.keepable else None)
        return Produced(result=done, memory=self.memory.stats, layers=self.layers.report())

    def _write_screen(
        self, result: ScreenResult, out: str, fmt: Format, tz: str, name: str | None
    ) -> None:
        import pyarrow.compute as pc

        from upbit_cache.output.tables import write_output, write_table

        failed = bool(result.sync is not None and result.sync.failed) or bool(result.damaged)
        if name is None or result.fingerprint is None or failed:
            write_output(result.table, out, fmt, tz)
            return
        table = self.dir.keep_screen(name, fmt, lambda s: write_table(result.table, s, fmt, tz))
        send(self.dir.kept_table(table), out)
        shown = pc.count_distinct(result.table["market"]).as_py() if result.table.num_rows else 0
        facts = Kept(result.fingerprint, shown, result.table.num_rows, result.short)
        facts.filtered_out = len(result.filtered_out)
        remember(self.dir, name, facts)

    @checked
    def export(
        self,
        markets: Sequence[str] = (),
        *,
        quote: str | None = None,
        timeframes: Timeframes = DEFAULT_TIMEFRAME,
        window: Window | None = None,
        out: str = "-",
        fmt: Format | Layout | None = None,
        tz: str = "UTC",
        refresh: bool = True,
        fill: bool = False,
        progress: Progress | None = None,
    ) -> ExportReport:
        """Write the candles of `window` (default: the last 30 days) to `out` ("-" is stdout),
        market after market, each ascending by time, with memory bounded whatever the range.

        `refresh` first fetches what the store lacks (as `fetch` does); without it only the
        store is read, and "now" is this host's clock. Text times are written in `tz`
        (Parquet keeps UTC). `fill` adds a candle for every period without trades between a
        series' first and last candle: the previous close, zero volume.
        """
        job = self._export_job(markets, quote, timeframes, window, out, fmt, tz, refresh, fill)
        sync = self._run(self._export_refresh(job, progress)) if refresh else None
        return self._export_write(job, sync)  # off any loop, as for screen_prep

    @checked
    async def aexport(
        self,
        markets: Sequence[str] = (),
        *,
        quote: str | None = None,
        timeframes: Timeframes = DEFAULT_TIMEFRAME,
        window: Window | None = None,
        out: str = "-",
        fmt: Format | Layout | None = None,
        tz: str = "UTC",
        refresh: bool = True,
        fill: bool = False,
        progress: Progress | None = None,
    ) -> ExportReport:
        """`export`, awaited: the rows are written in a worker thread, not on the loop."""
        job = self._export_job(markets, quote, timeframes, window, out, fmt, tz, refresh, fill)
        sync = await self._export_refresh(job, progress) if refresh else None
        return await asyncio.to_thread(self._export_write, job, sync)

    def _export_job(
        self,
        markets: Sequence[str],
        quote: str | None,
        timeframes: Timeframes,
        window: Window | None,
        out: str,
        fmt: Format | Layout | None,
        tz: str,
        refresh: bool,
        fill: bool,
    ) -> _ExportJob:
        tfs = _timeframes(timeframes)
        zone = check_timezone(tz)
        fmt = export_format(out, fmt)  # before anything is fetched
        if fmt != "freqtrade":
            check_output(out, fmt)
        if not refresh:
            self.dir.require()
        return _ExportJob(
            markets=markets,
            quote=quote,
            timeframes=tfs,
            window=window or Window(),
            out=out,
            fmt=fmt,
            tz=zone,
            fill=fill,
            store=(store := self._new_store()),  # every file is read once: memory would only cost
            known=store.coverage(),  # the refresh's records are the export's
            began=time.monotonic(),
        )

    async def _export_refresh(self, job: _ExportJob, progress: Progress | None) -> SyncReport:
        from upbit_cache.manager.fetch import fetch

        sync = await fetch(
            job.store,
            self.config,
            job.markets,
            job.timeframes,
            job.window,
            quote=job.quote,
            progress=progress,
            coverage=job.known,
        )
        self._asked(sync)
        return sync

    def _export_write(self, job: _ExportJob, sync: SyncReport | None) -> ExportReport:
        from upbit_cache.manager.export import export, stored_markets

        if sync is not None:
            names = list(dict.fromkeys(o.market for o in sync.outcomes))
            span = job.window.span_at(sync.now)
        else:
            span = job.window.span_at(now_ms())
            names = stored_markets(job.store, job.timeframes, job.markets, job.quote)
        report = export(
            job.store,
            names,
            job.timeframes,
            span,
            job.out,
            job.fmt,
            job.tz,
            fill=job.fill,
            coverage=job.known,
        )
        report.sync = sync
        report.seconds = time.monotonic() - job.began
        return report

    @checked
    def prune(
        self,
        policy: Policy,
        *,
        now: TimeLike | None = None,
        dry_run: bool = False,
        yes: bool = False,
    ) -> PruneReport:
        """Compact old hot partitions, apply retention, clear leftovers (`now`: for that time).

        Retention that would delete every row of a series is refused (RefusedError, its
        `report` the dry run's, nothing changed) unless `yes`."""
        return self._run(self.aprune(policy, now=now, dry_run=dry_run, yes=yes))

    @checked
    async def aprune(
        self,
        policy: Policy,
        *,
        now: TimeLike | None = None,
        dry_run: bool = False,
        yes: bool = False,
    ) -> PruneReport:
        """`prune`, awaited."""
        from upbit_cache.manager.prune import prune

        self.dir.require()
        store = self._new_store()  # every file is read once: memory would only cost
        at = to_ms(now) if now is not None else None
        return await prune(store, policy, now=at, dry_run=dry_run, yes=yes)

    @checked
    def info(
        self,
        markets: Sequence[str] = (),
        timeframes: Timeframes | None = None,
        unreadable: list[str] | None = None,
    ) -> list[SeriesInfo]:
        """What the store holds, per (timeframe, market); none given: everything stored.

        With an `unreadable` list, series with a damaged file are left out and named there.
        """
        from upbit_cache.manager.info import inventory

        wanted = validate_markets(markets) or None
        chosen = _timeframes(timeframes) if timeframes is not None else None
        self.dir.require()
        return inventory(self._new_store(), chosen, wanted, unreadable)

    @checked
    async def ainfo(
        self,
        markets: Sequence[str] = (),
        timeframes: Timeframes | None = None,
        unreadable: list[str] | None = None,
    ) -> list[SeriesInfo]:
        """`info`, awaited: the store is read in a worker thread, not on the loop."""
        return await asyncio.to_thread(self.info, markets, timeframes, unreadable)

    @checked
    def verify(
        self,
        markets: Sequence[str] = (),
        timeframes: Timeframes | None = None,
        *,
        repair: bool = False,
        upbit: bool = False,
        budget: int | None = None,
    ) -> VerifyReport:
        """Check the store against its records; with `repair`, quarantine what is bad and
        forget its spans, so the next fetch asks for exactly those again.

        With `upbit`, then ask Upbit again about each series' newest candles and its
        recorded quiet stretches (longest first), at most `budget` candle requests (default
        300), and report (with `repair`, forget) what Upbit contradicts.
        """
        return self._run(
            self.averify(markets, timeframes, repair=repair, upbit=upbit, budget=budget)
        )

    @checked
    async def averify(
        self,
        markets: Sequence[str] = (),
        timeframes: Timeframes | None = None,
        *,
        repair: bool = False,
        upbit: bool = False,
        budget: int | None = None,
    ) -> VerifyReport:
        """`verify`, awaited."""
        from upbit_cache.manager.verify import verify

        store = self._new_store()  # from disk: memory could hide a damaged file
        chosen = _timeframes(timeframes) if timeframes is not None else []
        wanted = validate_markets(markets)
        spend = DEFAULT_BUDGET if budget is None else budget
        if spend < 1:
            raise UsageError(f"the request budget must be at least 1, not {spend}")
        self.dir.require()
        if not upbit:
            return await verify(store, chosen, wanted, repair=repair)
        async with new_client(self.config) as client:
            return await verify(store, chosen, wanted, repair=repair, client=client, budget=spend)

    @checked
    def markets(self, quote: str | None = None) -> list[Listing]:
        """The markets Upbit lists (of `quote`, else every quote), with their names and
        warnings, and what the store holds of each, from its records; a stored market Upbit
        no longer lists is included (`listed` False). One request; no data file is read."""
        return self._run(self.amarkets(quote))

    @checked
    async def amarkets(self, quote: str | None = None) -> list[Listing]:
        """`markets`, awaited: the records are read in a worker thread."""
        from upbit_cache.manager.listings import listings

        prefix = validate_quote(quote) if quote is not None else None
        async with new_client(self.config) as client:
            listed = await client.markets()
        return listings(listed, await asyncio.to_thread(self._held), prefix)

    def _held(self) -> dict[str, list[Held]]:
        """What the records hold, per market; nothing where no data dir is (yet)."""
        from upbit_cache.manager.listings import held_series

        return held_series(self._new_store()) if self.dir.exists() else {}

    @checked
    def tail(
        self,
        market: str,
        timeframe: str | Timeframe,
        count: int = DEFAULT_TAIL,
        *,
        refresh: bool = True,
        progress: Progress | None = None,
    ) -> pd.DataFrame:
        """The newest `count` closed candles stored of one market, oldest first.

        `refresh` first fetches what the store lacks of the last `count` periods (by Upbit's
        clock, as `fetch --since -Nh` does), telling `progress` as `fetch` does; without it
        only the store is read. Periods without trades have no candle, so older stored
        candles fill up to `count`.
        """
        return self._run(self.atail(market, timeframe, count, refresh=refresh, progress=progress))

    @checked
    async def atail(
        self,
        market: str,
        timeframe: str | Timeframe,
        count: int = DEFAULT_TAIL,
        *,
        refresh: bool = True,
        progress: Progress | None = None,
    ) -> pd.DataFrame:
        """`tail`, awaited: the store is read in a worker thread."""
        code, tf = validate_market(market), _timeframe(timeframe)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise UsageError(
                f"the number of candles must be a whole number of 1 or more: {count!r}"
            )
        if refresh:
            window = Window(start_ago=count * tf.approx_ms)
            report = await self.afetch([code], timeframes=[tf], window=window, progress=progress)
            if report.failed:
                error = report.failed[0].error
                assert error is not None
                raise error
        else:
            self.dir.require()
        return await asyncio.to_thread(self._newest, code, tf, count, refresh)

    def _newest(self, market: str, tf: Timeframe, count: int, refreshed: bool) -> pd.DataFrame:
        """The newest `count` stored candles: the last `count` periods of what is recorded
        first, then spans four times as long, back to the first recorded."""
        from upbit_cache.candles import empty_candles
        from upbit_cache.manager.derive import load_any

        view = self.store.coverage((b, market) for b in (tf, *tf.divisors()))
        hulls = [view.fetched(b, market).hull for b in (tf, *tf.divisors())]
        known = [h for h in hulls if h is not None]
        if not known and not refreshed:
            raise UnknownMarketError(
                f"nothing stored for {market} ({tf.name}); run without --no-refresh"
            )
        if not known:
            return empty_candles()  # listed, fetched, and no trade in the periods asked
        first = min(h.start for h in known)
        top = tf.floor_one(max(h.end for h in known))
        periods = count
        with self.layers.request():
            while True:
                lo = max(first, tf.shift_one(top, -periods))
                frame = load_any(self.store, market, tf, TimeRange(lo, LATEST), view)
                if len(frame) >= count or lo <= first:
                    return frame.iloc[-count:].reset_index(drop=True)
                periods *= 4

    @checked
    def live(
        self,
        markets: Sequence[str],
        timeframes: Timeframes,
        *,
        store: bool = True,
    ) -> AsyncGenerator[LiveEvent, None]:
        """Live candle events (snapshot, update, close) from Upbit's trade stream, forever.

            async for item in cache.live(["KRW-BTC"], "1m,15m,1h"):
                print(item.event.kind, item.event.candle)

        Closed candles go to the store unless `store=False`.
        """
        from upbit_cache.manager.live import check_timeframes, live_candles

        tfs = _timeframes(timeframes)
        check_timeframes(tfs)
        target = self.store if store else None
        return live_candles(markets, tfs, config=self.config, store=target)


@dataclass(frozen=True)
class _ScreenJob:
    """A screen-prep's arguments, checked: what its run and its write share."""

    request: ScreenRequest
    out: str
    fmt: Format
    tz: str
    name: str  # the kept table's key
    keepable: bool


@dataclass(frozen=True)
class _ExportJob:
    """An export's arguments, checked, with the store it reads: what its refresh and its
    write share."""

    markets: Sequence[str]
    quote: str | None
    timeframes: list[Timeframe]
    window: Window
    out: str
    fmt: Format | Layout
    tz: str
    fill: bool
    store: CandleStore
    known: Coverage
    began: float


def _timeframe(value: str | Timeframe) -> Timeframe:
    return Timeframe.parse(value)


def _timeframes(value: Timeframes) -> list[Timeframe]:
    if isinstance(value, Timeframe):
        return [value]
    if isinstance(value, str):
        return Timeframe.parse_list(value)
    if not value:
        raise UsageError("give at least one timeframe")
    return list(dict.fromkeys(Timeframe.parse(v) for v in value))
