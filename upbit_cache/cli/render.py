"""How the CLI shows a run: a rich progress bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console

    from upbit_cache.cache.derive import DeriveOutcome
    from upbit_cache.cache.memory import MemoryStats
    from upbit_cache.cache.screen_cache import Produced
    from upbit_cache.cache.sync import MarketOutcome, SyncReport


class PlainProgress:
    """One log line per finished (market, timeframe): fit for cron mail and pipes."""

    def __init__(self, stream: TextIO, verbose: bool = True) -> None:
        self.stream = stream
        self.verbose = verbose

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass

    def on_start(self, jobs: int) -> None:
        pass

    def on_page(self, candles: int) -> None:
        pass

    def on_done(self, outcome: MarketOutcome) -> None:
        if outcome.error is not None:
            print(
                f"{outcome.market} {outcome.timeframe}: FAILED: {outcome.error}", file=self.stream
            )
        elif self.verbose:
            print(
                f"{outcome.market} {outcome.timeframe}: {outcome.candles} candles, "
                f"{outcome.requests} requests",
                file=self.stream,
            )


class BarProgress:
    """A live bar: jobs done, candles received, requests per second."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._began = time.monotonic()
        self._pages = 0
        self._candles = 0
        self._bar = Progress(
            TextColumn("[bold]fetch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task = self._bar.add_task("fetch", total=None, detail="")

    def __enter__(self) -> BarProgress:
        self._bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bar.stop()

    def on_start(self, jobs: int) -> None:
        self._bar.update(self._task, total=jobs)

    def on_page(self, candles: int) -> None:
        self._pages += 1
        self._candles += candles
        rate = self._pages / max(time.monotonic() - self._began, 1e-3)
        detail = f"{self._candles:,} candles  {rate:.1f} req/s"
        self._bar.update(self._task, detail=detail)

    def on_done(self, outcome: MarketOutcome) -> None:
        self._bar.advance(self._task)
        if outcome.error is not None:
            self._bar.console.print(
                f"{outcome.market} {outcome.timeframe}: FAILED: {outcome.error}"
            )


def progress_for(stream: TextIO = sys.stderr, quiet: bool = False) -> BarProgress | PlainProgress:
    """A bar when `stream` is a terminal, plain lines when it is not (cron, pipes)."""
    if not quiet and stream.isatty():
        # rich is imported only for a terminal: cron and pipes start faster without it.
        from rich.console import Console

        return BarProgress(Console(file=stream))
    return PlainProgress(stream, verbose=not quiet)


def summary(report: SyncReport) -> str:
    """The one line that ends a run."""
    line = (
        f"{report.markets} markets, {report.candles:,} candles written, "
        f"{report.candle_requests:,} requests, {report.rate_limited} 429s, "
        f"{report.seconds:.1f} s"
    )
    plan = report.plan
    if plan is not None and plan.derived:
        derived = sum(d.candles for d in report.derived)
        line += (
            f"; plan: base {plan.base} ({plan.planned_requests:,} requests planned), "
            f"derived {', '.join(t.name for t in plan.derived)} ({derived:,} candles)"
        )
    if report.failed:
        line += f"; {len(report.failed)} failed: " + ", ".join(
            f"{o.market} {o.timeframe}" for o in report.failed
        )
    return line


def derive_summary(outcomes: list[DeriveOutcome], seconds: float) -> str:
    """The one line that ends a resample run."""
    recomputed = sum(o.recomputed for o in outcomes)
    unchanged = sum(o.unchanged for o in outcomes)
    bases = sorted({f"{o.target} from {o.base}" for o in outcomes})
    return (
        f"{len({o.market for o in outcomes})} markets, {', '.join(bases)}: "
        f"{sum(o.candles for o in outcomes):,} candles written, {recomputed} base partitions "
        f"recomputed, {unchanged} unchanged, {seconds:.1f} s"
    )


def screen_summary(done: Produced, seconds: float) -> str:
    """The line that ends a screen-prep run (on stderr: stdout may carry the table)."""
    result, kept = done.result, done.kept
    if kept is not None:
        line = f"{kept.markets} markets, {kept.rows:,} rows, 0 requests (nothing new: kept table)"
        short, left_out, failed = kept.short, kept.filtered_out, []
    else:
        assert result is not None
        table = result.table
        markets = len(set(table.column("market").to_pylist())) if table.num_rows else 0
        line = f"{markets} markets, {table.num_rows:,} rows"
        if result.sync is not None:
            line += f", {result.sync.candle_requests:,} requests, {result.sync.rate_limited} 429s"
        if result.open_requests:
            line += f", {result.open_requests} requests for open candles"
        short, left_out = result.short, len(result.filtered_out)
        failed = result.sync.failed if result.sync is not None else []
    line += f", {seconds:.1f} s"
    if short:
        shown = ", ".join(f"{m} ({d:g} days)" for m, d in sorted(short.items())[:10])
        more = len(short) - 10
        line += f"; less history than asked: {shown}" + (f" and {more} more" if more > 0 else "")
    if left_out:
        line += f"; {left_out} markets left out by --top/--min-value"
    if failed:
        line += f"; {len(failed)} failed: " + ", ".join(f"{o.market} ({o.error})" for o in failed)
    return line


def memory_summary(stats: MemoryStats) -> str:
    return (
        f"memory: {stats.hits} hits, {stats.misses} misses ({stats.hit_rate:.0%} hit rate), "
        f"{stats.evictions} evictions, {stats.bytes / 2**20:.1f} MiB held"
    )
