"""`fetch --dask SCHEDULER`: a backfill's jobs as Dask tasks, spread over many hosts (IPs).

The client plans as a local fetch does (one market list, the records read once), then hands
Dask one task per (market, base timeframe), largest first (by the requests its record says it
lacks): Dask runs each on whichever worker is free and steals work from busy ones. A task is a
plain function (`fetch_task`) that builds its own `UpbitCache` on the worker from a `JobSpec`
(the data dir and the settings the client was given) and runs one job exactly as a local
fetch runs it: its host's rate budget (the host cell, shared by every worker process of that
host), its writer lock, its per-page writes. A worker that dies takes its task with it; Dask
runs the task again on another worker, and what the first one wrote stays, so the retry asks
only what is still missing. A market's derived timeframes are one more task, run by Dask once
its base task is done (`derive_task`). The data dir is the one shared truth: the client keeps
nothing.

Only `fetch --dask` imports this module (and, through it, dask and distributed).
"""

from __future__ import annotations

import asyncio
import os
import pickle
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from upbit_cache.collector.client import UpbitClient
from upbit_cache.collector.config import ClientConfig
from upbit_cache.errors import IPBlockedError, UpbitCacheError, UsageError
from upbit_cache.manager.fetch import (
    MarketOutcome,
    Progress,
    SyncReport,
    WorkerShare,
    _Silent,
    plan_run,
)
from upbit_cache.manager.planner import requests_for
from upbit_cache.manager.scope import Window
from upbit_cache.manager.session import new_client
from upbit_cache.ranges import TimeRange
from upbit_cache.store.audit import quarantine_stamp
from upbit_cache.timeframes import Timeframe

if TYPE_CHECKING:
    from upbit_cache.manager.derive import DeriveOutcome
    from upbit_cache.store.base import Store
    from upbit_cache.store.candle_store import CandleStore

T = TypeVar("T")
INSTALL = "fetch --dask needs dask and distributed: pip install 'distributed>=2024.1'"
RETRIES = 3  # a task that raised is run again this often (a lost worker: Dask's allowed-failures)
LOCAL_THREADS = 4  # tasks at once in each process of `local:N` (one client between them)


class _Engine:
    """One event loop per worker process, on a thread of its own, and one client per client
    configuration on it, shared by every task the process runs at once (a worker's threads).

    A task's jobs are one market's pages; alone, a job waits on its own writes between pages.
    Several at once keep the budget busy, as the markets of a local fetch do, and they must
    share one client: the host cell tells processes apart by pid, so two clients of one
    process would each pace as its only sender and overrun the budget together.
    """

    _made: _Engine | None = None
    _making = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.clients: dict[ClientConfig, UpbitClient] = {}
        self.exits = AsyncExitStack()
        self.guard = asyncio.Lock()  # bound to the loop at its first use, there
        thread = threading.Thread(target=self.loop.run_forever, name="upbit-cache", daemon=True)
        thread.start()

    @classmethod
    def here(cls) -> _Engine:
        with cls._making:
            if cls._made is None:
                cls._made = cls()
            return cls._made

    def run(self, job: Callable[[UpbitClient], Coroutine[Any, Any, T]], config: ClientConfig) -> T:
        """Run `job(client)` on the loop, with this process's client of `config`."""

        async def call() -> T:
            return await job(await self._client(config))

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result()

    async def _client(self, config: ClientConfig) -> UpbitClient:
        async with self.guard:  # two tasks' first calls: one client
            if config not in self.clients:
                self.clients[config] = await self.exits.enter_async_context(new_client(config))
            return self.clients[config]


@dataclass(frozen=True)
class JobSpec:
    """What a worker needs to build its own cache: the data dir and the client's settings.
    A worker whose own environment or config file names an API URL (UPBIT_API_URL: a proxy
    of its host's, a simulator of its own) asks that one; the others ask the client's."""

    data_dir: str
    api_url: str
    rate: float
    settle: float  # the client's: every worker settles periods alike
    lock_timeout: float | None = None


@dataclass
class TaskOutcome:
    """What one task sends back: small, picklable."""

    worker: str
    began: float  # the worker's wall clock, seconds
    ended: float
    # The 429s its process's client had met when the task began and ended: the tasks of a
    # process share one client (_Engine), so a 429 is the process's, not one task's.
    limited: tuple[int, int] = (0, 0)
    process: int = 0  # the worker process's pid (a nanny may start another)
    fetched: MarketOutcome | None = None
    derived: list[DeriveOutcome] = field(default_factory=list)


class PageEvents:
    """A task's progress for the client's bar: each page's candles as a Dask event under the
    run's topic, as the page lands (outside a worker: nothing)."""

    def __init__(self, topic: str | None, market: str) -> None:
        self.topic, self.market = topic, market

    def on_start(self, jobs: int) -> None:
        pass

    def on_page(self, candles: int) -> None:
        if self.topic is None or candles == 0:
            return
        try:
            from distributed import get_worker

            worker = get_worker()
        except ValueError:  # not on a worker (called directly)
            return
        worker.log_event(self.topic, [self.market, candles])

    def on_done(self, outcome: MarketOutcome) -> None:
        pass


def fetch_task(
    spec: JobSpec, market: str, base: str, span: TimeRange, stamp: str, topic: str | None = None
) -> TaskOutcome:
    """Run the (market, base) job of a fetch on this worker (a Dask task); its pages are
    told as they land under `topic`."""
    began = time.time()
    store, config = _store_for(spec)
    tf = Timeframe.parse(base)

    limited = [0, 0]

    async def run(client: UpbitClient) -> SyncReport:
        from upbit_cache.manager.fetch import sync_markets

        pages = PageEvents(topic, market)
        limited[0] = client.stats.rate_limited
        try:
            return await sync_markets(store, client, [market], [tf], span, pages, stamp=stamp)
        finally:
            limited[1] = client.stats.rate_limited

    report = _Engine.here().run(run, config)
    outcome = report.outcomes[0]
    outcome.error = _portable(outcome.error)
    return TaskOutcome(
        _worker_name(), began, time.time(), (limited[0], limited[1]), os.getpid(), outcome
    )


def weigh_task(spec: JobSpec, market: str, base: str, span: TimeRange, workers: int) -> int:
    """The estimated requests of `market`'s whole job in the fixed window `span`, from its
    first candle (a Dask task; one request at most, none where the data dir keeps the
    answer: manager/balance.py)."""
    from upbit_cache.manager.balance import job_weights

    store, config = _store_for(spec)

    async def run(client: UpbitClient) -> dict[str, int]:
        # Weighed as a shard of `workers` would weigh it: where the probes would cost more
        # than a tenth of a worker's share, it asks nothing (every job weighs the same).
        tf = Timeframe.parse(base)
        return await job_weights(client, [market], tf, span, workers, fixed=True, store=store)

    return _Engine.here().run(run, config)[market]


def derive_task(
    spec: JobSpec,
    market: str,
    targets: Sequence[str],
    base: str,
    span: TimeRange,
    stamp: str,
    after: object = None,
) -> TaskOutcome:
    """Materialise `targets` of `market` from its `base` (a Dask task; `after` is the base
    task's result, there only so that Dask runs this one once the base is complete)."""
    from upbit_cache.manager.derive import materialise_many

    began = time.time()
    store, _ = _store_for(spec)
    tf = Timeframe.parse(base)
    jobs = [(market, Timeframe.parse(t), tf) for t in targets]
    done = asyncio.run(materialise_many(store, jobs, heal=(span, stamp)))
    for outcome in done:
        outcome.error = _portable(outcome.error)
    return TaskOutcome(_worker_name(), began, time.time(), derived=done)


def _store_for(spec: JobSpec) -> tuple[CandleStore, ClientConfig]:
    """The data dir and the client settings, as `UpbitCache` makes them on this host. The
    data dir's filesystem is opened once per process (an S3 client costs a good part of a
    second of CPU), shared as a local fetch shares it between its markets; the store over it
    is each task's own, with no memory layer (other workers write the same series)."""
    from upbit_cache import configfile
    from upbit_cache.store.candle_store import CandleStore

    settings = configfile.load(None)  # this host's environment and config file
    own = settings.api()  # this host's own API, if it names one
    config = ClientConfig.from_env(spec.api_url if own is None else None, spec.rate, None, settings)
    return CandleStore.on(_opened_store(spec)), replace(config, settle=spec.settle)


_opened: dict[tuple[str, float | None], Store] = {}
_opening = threading.Lock()


def _opened_store(spec: JobSpec) -> Store:
    from upbit_cache.store.base import Store

    with _opening:
        key = (spec.data_dir, spec.lock_timeout)
        if key not in _opened:
            _opened[key] = Store(spec.data_dir, lock_timeout=spec.lock_timeout)
        return _opened[key]


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except ValueError:  # not on a worker (called directly)
        return f"pid {os.getpid()}"


def _portable(error: UpbitCacheError | None) -> UpbitCacheError | None:
    """The error itself if it survives pickling (back to the client), else its text as the
    nearest kind that does."""
    if error is None:
        return None
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # any pickling failure: the message is what matters
        return UpbitCacheError(f"{type(error).__name__}: {error}")


async def fetch_on_dask(
    store: CandleStore,
    config: ClientConfig,
    scheduler: str,
    markets: Sequence[str],
    timeframes: Sequence[Timeframe],
    window: Window,
    *,
    quote: str | None = None,
    progress: Progress | None = None,
) -> SyncReport:
    """`fetch`, its jobs run as tasks of the Dask cluster at `scheduler` (`tcp://host:port`,
    or `local:N`: a LocalCluster of N worker processes on this host, for trying it), each
    worker writing the data dir of `store` (with its lock timeout)."""
    connect = _connector(scheduler)  # a bad address, or no dask: refused before any request
    began = time.monotonic()
    async with new_client(config) as client:
        wanted, now, known, plan = await plan_run(
            client, store, markets, timeframes, window, quote=quote
        )
    await asyncio.to_thread(known.read, [(plan.base, m) for m in wanted])
    costs = {m: requests_for(known, [m], plan.base, plan.span, plan.horizon) for m in wanted}
    plan = replace(plan, planned_requests=sum(costs.values()), costed=True)
    spec = JobSpec(
        store.where,  # as a user names it (s3://bucket/prefix): the same everywhere
        api_url=config.api_url,
        rate=config.rate,
        settle=config.settle,
        lock_timeout=store.lock_timeout,
    )
    # Largest first: by what the records lack; in a fixed window also by each market's first
    # candle (weighed on the workers before the fetch tasks go), so that the jobs of markets
    # listed late fill the end instead of a long job starting last.
    fixed = window.start is not None and window.end is not None
    report = await asyncio.to_thread(
        _run_tasks,
        connect,
        spec,
        costs,
        plan.base,
        plan.derived,
        plan.span,
        progress or _Silent(),
        fixed,
    )
    report.plan, report.now, report.total_markets = plan, now, len(wanted)
    report.seconds = time.monotonic() - began
    return report


def _connector(scheduler: str) -> Callable[[], Any]:
    """A context manager factory yielding a connected `distributed.Client`."""
    try:
        import distributed
    except ImportError:
        raise UsageError(INSTALL) from None
    if scheduler.startswith("local:"):
        count = scheduler.partition(":")[2]
        if not count.isdigit() or int(count) < 1:
            raise UsageError(f"--dask local:N needs N ≥ 1 worker processes, not {scheduler!r}")

        @contextmanager
        def local() -> Iterator[Any]:
            with (
                distributed.LocalCluster(  # type: ignore[no-untyped-call]
                    n_workers=int(count),
                    threads_per_worker=LOCAL_THREADS,  # one client between them (_Engine)
                    processes=True,
                    dashboard_address=None,
                    # Its HTTP server (health, metrics) on a free loopback port: the default
                    # 8787 may be another cluster's, and a warning would say so.
                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                ) as cluster,
                distributed.Client(cluster) as client,  # type: ignore[no-untyped-call]
            ):
                yield client

        return local
    if not scheduler.startswith(("tcp://", "tls://", "ucx://", "inproc://")):
        raise UsageError(
            f"--dask wants a scheduler address (tcp://host:8786) or local:N, not {scheduler!r}"
        )

    @contextmanager
    def remote() -> Iterator[Any]:
        try:
            client = distributed.Client(scheduler, timeout=30)  # type: ignore[no-untyped-call]
        except OSError as exc:
            raise UsageError(f"--dask {scheduler}: no scheduler answers there ({exc})") from None
        with client:
            yield client

    return remote


def _run_tasks(
    connect: Callable[[], Any],
    spec: JobSpec,
    costs: dict[str, int],
    base: Timeframe,
    derived: Sequence[Timeframe],
    span: TimeRange,
    progress: Progress,
    fixed: bool = False,
) -> SyncReport:
    """Submit every task, largest first (`costs`: what each market's record lacks; `fixed`:
    the window is fixed, so each market is weighed from its first candle too), gather their
    outcomes as they finish (the bar follows), and sum them up as one run's report."""
    from distributed import as_completed

    stamp = quarantine_stamp()
    token = uuid.uuid4().hex[:8]  # this run's task keys: a retry of a task keeps its key
    report = SyncReport()
    spans: dict[str, list[tuple[float, float]]] = {}
    requests: dict[str, int] = {}
    limits: dict[tuple[str, int], tuple[int, int]] = {}  # each process's 429s, first to last
    with connect() as client:
        from upbit_cache.manager.dask_plugin import NAME, NoProfiler

        client.register_plugin(NoProfiler(), name=NAME)  # every worker, also ones started later
        bar = _Bar(progress)
        topic = f"upbit-cache-pages-{token}"
        client.subscribe_topic(topic, bar.on_event)
        sizes = dict(costs)
        workers = len(client.scheduler_info().get("workers", {}))
        if fixed and len(costs) > 1 and workers > 1:  # one worker: the order changes nothing
            weighed = client.map(
                weigh_task,
                [spec] * len(costs),
                list(costs),
                [base.name] * len(costs),
                [span] * len(costs),
                [workers] * len(costs),
                key=[f"weigh-{base}-{m}-{token}" for m in costs],
                retries=RETRIES,
                pure=False,
            )
            try:
                found = client.gather(weighed)
            except Exception:  # an order is all it gives: the fetch tasks meet the error
                found = list(costs.values())
            # What it lacks, at most what it has had since its first candle.
            sizes = {m: min(costs[m], w) for m, w in zip(costs, found, strict=True)}
        markets = sorted(costs, key=lambda m: -sizes[m])
        progress.on_start(len(markets))
        kind: dict[str, tuple[str, str]] = {}
        futures = []
        for rank, market in enumerate(markets):
            fetched = client.submit(
                fetch_task,
                spec,
                market,
                base.name,
                span,
                stamp,
                topic,
                key=f"fetch-{base}-{market}-{token}",
                priority=len(markets) - rank,  # largest first
                retries=RETRIES,
                pure=False,
            )
            kind[fetched.key] = ("fetch", market)
            futures.append(fetched)
            if derived:
                later = client.submit(
                    derive_task,
                    spec,
                    market,
                    [t.name for t in derived],
                    base.name,
                    span,
                    stamp,
                    fetched,
                    key=f"derive-{market}-{token}",
                    priority=len(markets) + 1,  # as soon as its base is done
                    retries=RETRIES,
                    pure=False,
                )
                kind[later.key] = ("derive", market)
                futures.append(later)
        for future in as_completed(futures):  # type: ignore[no-untyped-call]
            what, market = kind[future.key]
            try:
                done: TaskOutcome = future.result()
            except Exception as exc:  # the task failed for good (e.g. its workers kept dying)
                error = UpbitCacheError(f"{what} of {market} failed on the cluster: {exc}")
                if what == "fetch":
                    lost = MarketOutcome(market, base, error=error)
                    report.outcomes.append(lost)
                    bar.done(lost)
                else:
                    from upbit_cache.manager.derive import DeriveOutcome

                    report.derived += [DeriveOutcome(market, t, base, error=error) for t in derived]
                continue
            spans.setdefault(done.worker, []).append((done.began, done.ended))
            if done.fetched is not None:
                outcome = done.fetched
                report.outcomes.append(outcome)
                report.candle_requests += outcome.requests
                low, high = limits.get((done.worker, done.process), done.limited)
                limits[done.worker, done.process] = (
                    min(low, done.limited[0]),
                    max(high, done.limited[1]),
                )
                requests[done.worker] = requests.get(done.worker, 0) + outcome.requests
                bar.done(outcome)
            report.derived += done.derived
        client.unsubscribe_topic(topic)
    report.rate_limited = sum(high - low for low, high in limits.values())
    wall = max((e for s in spans.values() for _, e in s), default=0.0) - min(
        (b for s in spans.values() for b, _ in s), default=0.0
    )
    report.workers = [
        WorkerShare(name, len(s), requests.get(name, 0), _busy(s), max(0.0, wall - _busy(s)))
        for name, s in sorted(spans.items())
    ]
    report.outcomes.sort(key=lambda o: markets.index(o.market))
    blocked = [o.error for o in report.outcomes if isinstance(o.error, IPBlockedError)]
    report.blocked = str(blocked[0]) if blocked else None
    return report


class _Bar:
    """The client's bar, fed from two threads: page events (Dask's loop) and finished tasks.
    A task's candles count once: what its events did not bring comes with its outcome, and
    events of a task already done (late, or of a try its lost worker began) are dropped."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.seen: dict[str, int] = {}
        self.ended: set[str] = set()
        self.lock = threading.Lock()

    def on_event(self, event: tuple[float, list[Any]]) -> None:
        market, candles = event[1]
        with self.lock:
            if market in self.ended:
                return
            self.seen[market] = self.seen.get(market, 0) + candles
            self.progress.on_page(candles)

    def done(self, outcome: MarketOutcome) -> None:
        with self.lock:
            self.ended.add(outcome.market)
            rest = outcome.candles - self.seen.get(outcome.market, 0)
            if rest > 0:
                self.progress.on_page(rest)
            self.progress.on_done(outcome)


def _busy(spans: list[tuple[float, float]]) -> float:
    """Seconds a worker ran at least one task: the union of its tasks' spans."""
    total, reach = 0.0, float("-inf")
    for lo, hi in sorted(spans):
        if hi > reach:
            total += hi - max(lo, reach)
            reach = hi
    return total
