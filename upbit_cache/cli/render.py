"""How the CLI shows a run: a rich progress bar on a terminal, plain log lines otherwise;
and the summaries, tables and reports the commands print (counts through `plural`, times
through `iso` in the zone asked for)."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from upbit_cache.cli.log import say
from upbit_cache.times import iso
from upbit_cache.words import plural

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rich.console import Console

    from upbit_cache.manager.cache import Produced
    from upbit_cache.manager.derive import DeriveOutcome
    from upbit_cache.manager.export import ExportReport
    from upbit_cache.manager.fetch import MarketOutcome, SyncReport
    from upbit_cache.manager.info import SeriesInfo
    from upbit_cache.manager.layers import LayerReport
    from upbit_cache.manager.memory import MemoryStats
    from upbit_cache.manager.prune import Change, PruneReport
    from upbit_cache.manager.recheck import RecheckReport
    from upbit_cache.manager.verify import VerifyReport
    from upbit_cache.store.audit import Problem
    from upbit_cache.store.candle_store import TierUsage
    from upbit_cache.store.heal import Heal
    from upbit_cache.timeframes import Timeframe


class PlainProgress:
    """One log line per finished (market, timeframe): fit for cron mail and pipes. Failures
    are always said; the others only with `lines`."""

    def __init__(self, stream: TextIO, lines: bool = True) -> None:
        self.stream = stream
        self.lines = lines

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
        if outcome.error is not None or self.lines:
            say(done_line(outcome), self.stream)


class Finished:
    """What a run finished, kept to be said afterwards (no bar, no lines meanwhile)."""

    def __init__(self) -> None:
        self.outcomes: list[MarketOutcome] = []

    def on_start(self, jobs: int) -> None:
        pass

    def on_page(self, candles: int) -> None:
        pass

    def on_done(self, outcome: MarketOutcome) -> None:
        self.outcomes.append(outcome)


def done_line(outcome: MarketOutcome) -> str:
    """`KRW-BTC 1h: 720 candles, 4 requests`, or what failed."""
    if outcome.error is not None:
        return f"{outcome.market} {outcome.timeframe}: FAILED: {outcome.error}"
    return (
        f"{outcome.market} {outcome.timeframe}: {plural(outcome.candles, 'candle')}, "
        f"{plural(outcome.requests, 'request')}"
    )


class BarProgress:
    """A live bar: jobs done, candles received, requests per second."""

    def __init__(self, console: Console, lines: bool = False) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._lines = lines
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
        if outcome.error is not None or self._lines:
            self._bar.console.print(done_line(outcome), markup=False, highlight=False)


def progress_for(
    stream: TextIO | None = None, quiet: bool = False, verbose: bool = False
) -> BarProgress | PlainProgress:
    """A bar when `stream` (default stderr) is a terminal, plain lines when it is not (cron,
    pipes). Quiet: failures only. Verbose: a line per market on a terminal too."""
    stream = stream if stream is not None else sys.stderr
    if not quiet and stream.isatty():
        # rich is imported only for a terminal: cron and pipes start faster without it.
        from rich.console import Console

        return BarProgress(Console(file=stream), lines=verbose)
    return PlainProgress(stream, lines=not quiet)


def summary(report: SyncReport) -> str:
    """The one line that ends a run; a sharded run starts with its shard:
    `shard 2/4: 50 of 200 markets, ...`."""
    markets = plural(report.markets, "market")
    if report.shard is not None:
        total = plural(report.total_markets, "market")
        markets = f"shard {report.shard}: {report.markets:,} of {total}"
    line = (
        f"{markets}, {plural(report.candles, 'candle')} written, "
        f"{plural(report.candle_requests, 'request')}, {plural(report.rate_limited, '429')}, "
        f"{report.seconds:.1f} s"
    )
    plan = report.plan
    if plan is not None and plan.derived:
        derived = sum(d.candles for d in report.derived)
        line += (
            f"; plan: base {plan.base} ({plural(plan.planned_requests, 'request')} planned), "
            f"derived {', '.join(t.name for t in plan.derived)} ({plural(derived, 'candle')})"
        )
    if report.healed:
        line += f"; {plural(report.healed, 'damaged file')} healed"
    failed = [f"{o.market} {o.timeframe}" for o in report.failed]
    failed += [f"{d.market} {d.target}" for d in report.failed_derived]
    if failed:
        line += f"; {len(failed)} failed: " + ", ".join(failed)
    return line


def worker_lines(report: SyncReport) -> list[str]:
    """`fetch --dask`: a line per worker, after the summary:
    `worker 1: 9 tasks, 1,234 requests, 120.5 s busy, 0.8 s idle`."""
    return [
        f"worker {w.name}: {plural(w.tasks, 'task')}, {plural(w.requests, 'request')}, "
        f"{w.busy:.1f} s busy, {w.idle:.1f} s idle"
        for w in report.workers
    ]


def series_error(tf: Timeframe, market: str, error: Exception) -> str:
    """`1m KRW-BTC: <the error>`: the series named once (a hole's message names it already)."""
    head, text = f"{tf} {market}: ", str(error)
    return text if text.startswith(head) else head + text


def damage_lines(report: SyncReport, root: str, tz: str = "UTC") -> list[str]:
    """A fetch's warnings about damage: a line per file healed in its window, per damaged
    file seen outside it (left for verify --repair), then a line per derived series that
    failed (a fetched one's failure is its progress line)."""
    lines = []
    for outcome in report.outcomes:
        lines += _heal_lines(outcome.heal, root, tz, "asked of Upbit again")
    for derived in report.derived:
        lines += _heal_lines(derived.heal, root, tz, f"derived again from {derived.base}")
    lines += [f"{d.market} {d.target}: FAILED: {d.error}" for d in report.failed_derived]
    return lines


def _heal_lines(heal: Heal, root: str, tz: str, again: str) -> list[str]:
    lines = []
    for healed in heal.healed:
        p, span = healed.problem, healed.again
        head = f"warning: {p.timeframe} {p.market}: {_inside(p.path, root)} was damaged"
        head += f" ({p.kind}: {p.detail})"
        if span is None:
            lines.append(
                f"{head}: quarantined; its data files are kept as provisional and the whole "
                f"window is {again}"
            )
        else:
            what = "quarantined" if healed.moved is not None else "forgotten"
            lines.append(f"{head}: {what}, {iso(span.start, tz)}→{iso(span.end, tz)} {again}")
    lines += [
        f"warning: {p.timeframe} {p.market}: {_inside(p.path, root)} is damaged "
        f"({p.kind}: {p.detail}), outside this run's window: left as it is; "
        "run `upbit-cache verify --repair`"
        for p in heal.outside
    ]
    return lines


def horizon_warning(report: SyncReport) -> str | None:
    """What of the window lay past Upbit's horizon (1s) and was not fetched, if anything."""
    plan, beyond = report.plan, report.beyond
    if plan is None or plan.horizon is None or not beyond:
        return None
    from upbit_cache.ranges import Ranges
    from upbit_cache.times import iso

    hull = Ranges.of(part for ranges in beyond.values() for part in ranges).hull
    assert hull is not None
    edge, markets = max(plan.horizon, hull.end), plural(len(beyond), "market")
    return (
        f"warning: Upbit keeps {plan.base} candles for about three months only: "
        f"{iso(hull.start)}→{iso(hull.end)} was not fetched ({markets}) nor recorded as "
        f"fetched; {iso(edge)}→{iso(plan.span.end)} was"
    )


def derive_summary(outcomes: list[DeriveOutcome], seconds: float) -> str:
    """The one line that ends a resample run."""
    recomputed = sum(o.recomputed for o in outcomes)
    unchanged = sum(o.unchanged for o in outcomes)
    bases = sorted({f"{o.target} from {o.base}" for o in outcomes})
    return (
        f"{plural(len({o.market for o in outcomes}), 'market')}, {', '.join(bases)}: "
        f"{plural(sum(o.candles for o in outcomes), 'candle')} written, "
        f"{plural(recomputed, 'base partition')} recomputed, {unchanged:,} unchanged, "
        f"{seconds:.1f} s"
    )


def derive_lines(outcomes: list[DeriveOutcome]) -> str:
    """`resample -v`: a line per (market, timeframe)."""
    return "\n".join(
        f"{o.market} {o.target} from {o.base}: {plural(o.candles, 'candle')} written, "
        f"{plural(o.recomputed, 'base partition')} recomputed, {o.unchanged:,} unchanged"
        for o in outcomes
    )


def screen_summary(done: Produced, seconds: float) -> str:
    """The line that ends a screen-prep run (on stderr: stdout may carry the table)."""
    result, kept = done.result, done.kept
    if kept is not None:
        line = (
            f"{plural(kept.markets, 'market')}, {plural(kept.rows, 'row')}, "
            "0 requests (nothing new: kept table)"
        )
        short, left_out, failed = kept.short, kept.filtered_out, []
    else:
        assert result is not None
        table = result.table
        markets = len(table.column("market").unique()) if table.num_rows else 0
        line = f"{plural(markets, 'market')}, {plural(table.num_rows, 'row')}"
        if result.sync is not None:
            requests, limited = result.sync.candle_requests, result.sync.rate_limited
            line += f", {plural(requests, 'request')}, {plural(limited, '429')}"
        if result.open_requests:
            line += f", {plural(result.open_requests, 'request')} for open candles"
        short, left_out = result.short, len(result.filtered_out)
        failed = result.sync.failed if result.sync is not None else []
    line += f", {seconds:.1f} s"
    if short:
        shown = ", ".join(f"{m} ({plural(d, 'day')})" for m, d in sorted(short.items())[:10])
        more = len(short) - 10
        line += f"; less history than asked: {shown}" + (f" and {more} more" if more > 0 else "")
    if left_out:
        line += f"; {plural(left_out, 'market')} left out by --top/--min-value"
    if failed:
        line += f"; {len(failed)} failed: " + ", ".join(f"{o.market} ({o.error})" for o in failed)
    return line


def export_summary(report: ExportReport) -> str:
    """The line that ends an export (on stderr: stdout may carry the rows), written only
    once every byte went out."""
    timeframes = ",".join(tf.name for tf in report.timeframes)
    where = "stdout" if report.out == "-" else report.out
    if report.files or report.fmt == "freqtrade":
        where = f"{plural(len(report.files), 'freqtrade file')} in {report.out}"
    line = (
        f"{plural(len(report.markets), 'market')} × {timeframes}, "
        f"{plural(report.rows, 'row')}, {human_bytes(report.bytes)} to {where}, "
        f"{report.seconds:.1f} s"
    )
    sync = report.sync
    if sync is not None:
        line += (
            f"; fetched {plural(sync.candles, 'candle')}, "
            f"{plural(sync.candle_requests, 'request')}, {plural(sync.rate_limited, '429')}"
        )
        if sync.healed:
            line += f"; {plural(sync.healed, 'damaged file')} healed"
        if sync.failed:
            line += f"; {len(sync.failed)} failed: " + ", ".join(o.market for o in sync.failed)
    if report.damaged:
        line += f"; {plural(len(report.damaged), 'series', 'series')} left out (damaged)"
    return line


def memory_summary(stats: MemoryStats, layers: LayerReport | None = None) -> str:
    """The memory layer's counters, then (with `layers`) a line per layer."""
    lines = [
        f"memory: {plural(stats.hits, 'hit')}, {plural(stats.misses, 'miss', 'misses')} "
        f"({stats.hit_rate:.0%} hit rate), {plural(stats.evictions, 'eviction')}, "
        f"{stats.bytes / 2**20:.1f} of {stats.budget / 2**20:.0f} MiB held "
        f"({stats.protected_bytes / 2**20:.1f} MiB protected)"
    ]
    if layers is not None:
        for name, layer in layers.layers.items():
            p50, p99 = layer.percentile(0.5), layer.percentile(0.99)
            timing = f", p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms" if p50 and p99 else ""
            served = "page" if name == "upbit" else "table"
            lines.append(
                f"  {name:<6} {plural(layer.requests, 'request'):>14}{timing}; "
                f"{plural(layer.reads, served)}, {plural(layer.rows, 'candle')}"
            )
        lines.append(
            f"  hit rate: memory {layers.memory_hit_rate:.0%} of table reads, "
            f"{layers.hit_rate:.1%} of candles served without asking Upbit"
        )
    return "\n".join(lines)


def human_bytes(size: float) -> str:
    """`1.2 MB` (powers of 1000, like `ls --si` and most file managers)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def prune_summary(report: PruneReport, verbose: bool = False) -> str:
    """What prune did (or, dry, would do): per step and timeframe, then per tier."""
    lines = []
    steps: dict[tuple[str, str], list[Change]] = {}
    for change in report.changes:
        removed, added = change.removed, change.added
        line = (
            f"{plural(len(removed), 'file')} -> {len(added):,}, "
            f"{plural(sum(f.rows for f in removed), 'row')} -> {sum(f.rows for f in added):,}, "
            f"{human_bytes(sum(f.bytes for f in removed))} -> "
            f"{human_bytes(sum(f.bytes for f in added))}"
        )
        if verbose:
            lines.append(f"{change.action:<8} {change.tf.name:>3} {change.market}: {line}")
        steps.setdefault((change.action, change.tf.name), []).append(change)
    for (action, tf), changes in steps.items():
        removed = [f for c in changes for f in c.removed]
        added = [f for c in changes for f in c.added]
        lines.append(
            f"{action:<8} {tf:>3}: {plural(len({c.market for c in changes}), 'market')}, "
            f"{plural(len(removed), 'file')} -> "
            f"{len(added):,}, {plural(sum(f.rows for f in removed), 'row')} -> "
            f"{sum(f.rows for f in added):,}, {human_bytes(sum(f.bytes for f in removed))} -> "
            f"{human_bytes(sum(f.bytes for f in added))}"
        )
    if report.temp_files or report.screens:
        lines.append(
            f"leftovers: {plural(len(report.temp_files), 'temp file')} of killed runs "
            f"({human_bytes(sum(f.bytes for f in report.temp_files))}), "
            f"{plural(len(report.screens), 'stale kept screen file')} "
            f"({human_bytes(sum(f.bytes for f in report.screens))})"
        )
    if not lines:
        lines.append("nothing to compact, retain or clear")
    if report.emptied:
        series = plural(len(report.emptied), "series", "series")
        shown = ", ".join(report.emptied[:5]) + (", ..." if len(report.emptied) > 5 else "")
        if report.dry_run:
            lines.append(f"would leave no row in {series} ({shown}): a real run needs --yes")
        else:
            lines.append(f"left no row in {series} ({shown}), as --yes confirmed")
    for tier in ("hot", "cold"):
        was, now = report.before[tier], report.after[tier]
        lines.append(
            f"{tier:<4} tier: {plural(was.files, 'file')}, {human_bytes(was.bytes)} -> "
            f"{plural(now.files, 'file')}, {human_bytes(now.bytes)}"
        )
    done = "dry run: nothing changed" if report.dry_run else "done"
    lines.append(f"{done}, {report.seconds:.1f} s")
    return "\n".join(lines)


def _files_and_bytes(usage: TierUsage) -> str:
    return f"{plural(usage.files, 'file')}, {human_bytes(usage.bytes)}"


def info_table(infos: Sequence[SeriesInfo], tz: str = "UTC", verbose: bool = False) -> str:
    """`info`: one aligned line per (timeframe, market), then one total line per tier.

    COVERED is the fetched ranges, end exclusive; QUIET counts fetched periods without a
    candle (no trades) and the longest run of them; HOLES counts never-fetched gaps between
    fetched ranges; BASE says who made the candles (last, as it may be long: see
    `_bases_cell`; every range when `verbose`). Times are shown in `tz`.
    """
    from upbit_cache.manager.info import totals

    header = ("TF", "MARKET", "COVERED", "CANDLES", "QUIET", "HOLES", "HOT", "COLD", "BASE")
    rows = [header]
    for info in infos:
        fetched = info.fetched.intervals
        if not fetched:
            covered = "none recorded"
        else:
            covered = f"{iso(fetched[0][0], tz)}→{iso(fetched[-1][1], tz)}"
            if len(fetched) > 1:
                covered += f" in {plural(len(fetched), 'range')}"
        held = info.provisional.hull
        if held is not None and fetched and held.start >= fetched[-1][1]:
            covered += f", provisional to {iso(held.end, tz)}"  # not settled when fetched
        elif held is not None:  # kept from a damaged record (a fetch healed it)
            covered += f", provisional {iso(held.start, tz)}→{iso(held.end, tz)}"
        quiet = str(info.quiet_periods)
        if info.quiet_periods:
            quiet += f" (longest {info.longest_quiet})"
        rows.append(
            (
                info.timeframe.name,
                info.market,
                covered,
                f"{info.candles:,}",
                quiet,
                str(len(info.never_fetched)),
                _files_and_bytes(info.tiers["hot"]),
                _files_and_bytes(info.tiers["cold"]),
                _bases_cell(info, tz, None if verbose else 4),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    right = {3, 5}  # numbers
    lines = [
        "  ".join(
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]
    summed = totals(infos)
    candles = sum(i.candles for i in infos)
    lines.append(f"{plural(len(infos), 'series', 'series')}, {plural(candles, 'candle')}")
    lines += [f"{tier} tier: {_files_and_bytes(usage)}" for tier, usage in summed.items()]
    return "\n".join(lines)


def _bases_cell(info: SeriesInfo, tz: str = "UTC", most: int | None = 4) -> str:
    """`native` or `from 15m` for a series made one way; otherwise each run of ranges made
    one way, in time order, with its span (the first `most`, then how many more)."""
    from upbit_cache.store.records import NATIVE

    runs: list[tuple[str, int, int]] = []  # neighbouring ranges of one base are one run
    for r in info.bases:
        if runs and runs[-1][0] == r.base:
            runs[-1] = (r.base, runs[-1][1], r.end)
        else:
            runs.append((r.base, r.start, r.end))
    labels = [(base if base == NATIVE else f"from {base}", lo, hi) for base, lo, hi in runs]
    if len(labels) == 1:
        return labels[0][0]
    shown = [f"{label} {iso(lo, tz)}→{iso(hi, tz)}" for label, lo, hi in labels[:most]]
    if most is not None and len(labels) > most:
        shown.append(f"{len(labels) - most} more (see -v or --json)")
    return ", ".join(shown)


def verify_lines(report: VerifyReport, root: str, tz: str = "UTC", verbose: bool = False) -> str:
    """One line per problem (paths inside the data dir, and the span a bad file holds, in
    `tz`), then what was checked and done; `verbose`: first a line per series checked."""
    lines = []
    if verbose:
        lines += [
            f"{a.timeframe.name:>3} {a.market}: {plural(a.files, 'file')}, "
            f"{plural(a.rows, 'row')}, {plural(len(a.problems), 'problem')}"
            for a in report.audits
        ]
    lines += [_problem_line(p, root, tz) for p in report.problems]
    checked = (
        f"{plural(len(report.audits), 'series', 'series')}, {plural(report.files, 'file')}, "
        f"{plural(report.rows, 'row')} checked in {report.seconds:.1f} s"
    )
    if not report.problems:
        lines.append(f"{'healthy' if report.healthy else 'files healthy'}: {checked}")
    else:
        lines.append(f"{plural(len(report.problems), 'problem')}: {checked}")
        if report.repaired:
            lines += _repaired_lines(report, root, tz)
        else:
            lines.append("run `upbit-cache verify --repair` to quarantine them and fetch again")
    if report.adopted:
        lines.append(
            f"{plural(report.adopted, 'file')} the records did not list yet "
            f"{'is' if report.adopted == 1 else 'are'} listed now"
        )
    if report.upbit is not None:
        lines += _upbit_lines(report.upbit, tz)
    return "\n".join(lines)


def _problem_line(p: Problem, root: str, tz: str) -> str:
    span = p.span
    spans = f", holding {iso(span.start, tz)}→{iso(span.end, tz)}" if span else ""
    where = _inside(p.path, root)
    return f"{p.timeframe.name:>3} {p.market}: {p.kind}: {where} ({p.detail}){spans}"


def _repaired_lines(report: VerifyReport, root: str, tz: str) -> list[str]:
    """What `--repair` did, and what checking the repaired series again still found."""
    done = [f"{plural(len(report.moved), 'file')} moved to {root}/quarantine/"]
    missing = sum(p.kind == "missing" for p in report.problems)
    if missing:
        done.append(f"the spans of {plural(missing, 'missing file')} forgotten")
    done_text = ", ".join(done)
    if not report.remaining:
        return [
            f"repaired all {plural(len(report.problems), 'problem')}: {done_text}; the next "
            "fetch of a window that includes them asks for them again"
        ]
    lines = [f"repair tried: {done_text}; checked again, still found:"]
    lines += ["  " + _problem_line(p, root, tz) for p in report.remaining]
    lines.append(f"{plural(len(report.remaining), 'problem')} not repaired")
    return lines


def _upbit_lines(upbit: RecheckReport, tz: str) -> list[str]:
    """What asking Upbit again found: a line per contradiction, then what was asked."""
    lines = [
        f"{c.timeframe.name:>3} {c.market}: Upbit contradicts the "
        f"{'newest candles' if c.kind == 'newest' else 'quiet stretch'} "
        f"{iso(c.span.start, tz)}→{iso(c.span.end, tz)}: {c.detail}"
        for c in upbit.contradictions
    ]
    spent = " (budget spent)" if upbit.spent else ""
    asked = (
        f"Upbit asked again: {plural(upbit.series, 'series', 'series')}, "
        f"{plural(upbit.newest, 'newest page')}, "
        f"{plural(upbit.quiet, 'quiet stretch', 'quiet stretches')}, "
        f"{plural(upbit.unsure, 'unsettled answer')}, {plural(upbit.requests, 'request')} "
        f"of {upbit.budget:,}{spent}"
    )
    found = len(upbit.contradictions)
    lines.append(f"{asked}: {plural(found, 'contradiction')}" if found else f"{asked}: agreed")
    if found:
        lines.append(
            "forgotten: the next fetch of a window that includes them asks for them again"
            if upbit.forgotten
            else "run `upbit-cache verify --upbit --repair` to forget them and fetch again"
        )
    return lines


def _upbit_json(upbit: RecheckReport) -> dict[str, object]:
    return {
        "series": upbit.series,
        "newest": upbit.newest,
        "quiet": upbit.quiet,
        "unsure": upbit.unsure,
        "requests": upbit.requests,
        "budget": upbit.budget,
        "contradictions": [
            {
                "timeframe": c.timeframe.name,
                "market": c.market,
                "kind": c.kind,
                "start": iso(c.span.start),
                "end": iso(c.span.end),
                "detail": c.detail,
            }
            for c in upbit.contradictions
        ],
        "forgotten": upbit.forgotten,
    }


def verify_json(report: VerifyReport, root: str) -> dict[str, object]:
    """`verify --json`: version, healthy, counts, problems (paths inside the data dir)."""
    return {
        "version": 1,
        "healthy": report.healthy,
        "series": len(report.audits),
        "files": report.files,
        "rows": report.rows,
        "problems": [_problem_json(p, root) for p in report.problems],
        "repaired": report.repaired and bool(report.problems),
        "moved": [_inside(path, root) for path in report.moved],
        "remaining": [_problem_json(p, root) for p in report.remaining],
        **({"upbit": _upbit_json(report.upbit)} if report.upbit is not None else {}),
    }


def _problem_json(p: Problem, root: str) -> dict[str, str]:
    return {
        "timeframe": p.timeframe.name,
        "market": p.market,
        "kind": p.kind,
        "path": _inside(p.path, root),
        "detail": p.detail,
    }


def _inside(path: str, root: str) -> str:
    return path.removeprefix(root.rstrip("/") + "/")


# `--json`: one document per command, the same facts as its summary line (docs/python-shapes.md
# lists the keys). Every document has "version" (bumped when a key changes meaning) and
# "command"; times are ISO 8601 UTC text; counts are ints, durations float seconds.


def _outcome_json(o: MarketOutcome) -> dict[str, object]:
    return {
        "market": o.market,
        "timeframe": o.timeframe.name,
        "candles": o.candles,
        "requests": o.requests,
        "error": str(o.error) if o.error is not None else None,
    }


def _derived_json(o: DeriveOutcome) -> dict[str, object]:
    return {
        "market": o.market,
        "timeframe": o.target.name,
        "base": o.base.name,
        "candles": o.candles,
        "recomputed": o.recomputed,
        "unchanged": o.unchanged,
        "error": str(o.error) if o.error is not None else None,
    }


def sync_json(report: SyncReport) -> dict[str, object]:
    """A fetch's facts (also inside export's and screen-prep's documents as "fetch")."""
    return {
        "markets": report.markets,
        "candles": report.candles,
        "requests": report.candle_requests,
        "rate_limited": report.rate_limited,
        "seconds": round(report.seconds, 3),
        "upbit_now": iso(report.now) if report.now else None,
        "healed": report.healed,
        "blocked": report.blocked,
        "failed": len(report.failed) + len(report.failed_derived),
        "series": [_outcome_json(o) for o in report.outcomes],
        "derived": [_derived_json(o) for o in report.derived],
    }


def fetch_json(report: SyncReport) -> dict[str, object]:
    """`fetch --json`."""
    document: dict[str, object] = {"version": 1, "command": "fetch", **sync_json(report)}
    if report.workers:  # fetch --dask
        document["workers"] = [
            {
                "name": w.name,
                "tasks": w.tasks,
                "requests": w.requests,
                "busy": round(w.busy, 3),
                "idle": round(w.idle, 3),
            }
            for w in report.workers
        ]
    return document


def export_json(report: ExportReport) -> dict[str, object]:
    """`export --json` (only with --out: stdout is then free for it)."""
    return {
        "version": 1,
        "command": "export",
        "format": report.fmt,
        "out": report.out,
        "files": report.files,
        "markets": report.markets,
        "timeframes": [tf.name for tf in report.timeframes],
        "start": iso(report.span.start),
        "end": iso(report.span.end),
        "rows": report.rows,
        "bytes": report.bytes,
        "seconds": round(report.seconds, 3),
        "damaged": [{"market": m, "timeframe": tf.name} for m, tf, _ in report.damaged],
        "fetch": sync_json(report.sync) if report.sync is not None else None,
    }


def resample_json(outcomes: list[DeriveOutcome], seconds: float) -> dict[str, object]:
    """`resample --json`."""
    return {
        "version": 1,
        "command": "resample",
        "series": [_derived_json(o) for o in outcomes],
        "candles": sum(o.candles for o in outcomes if o.error is None),
        "failed": sum(o.error is not None for o in outcomes),
        "seconds": round(seconds, 3),
    }


def screen_json(done: Produced, out: str, seconds: float) -> dict[str, object]:
    """`screen-prep --json` (only with --out)."""
    result, kept = done.result, done.kept
    if kept is not None:
        markets, rows, short, left_out = kept.markets, kept.rows, kept.short, kept.filtered_out
        sync: dict[str, object] | None = None
        opened = 0
    else:
        assert result is not None
        table = result.table
        markets = len(table.column("market").unique()) if table.num_rows else 0
        rows, short, left_out = table.num_rows, result.short, len(result.filtered_out)
        sync = sync_json(result.sync) if result.sync is not None else None
        opened = result.open_requests
    return {
        "version": 1,
        "command": "screen-prep",
        "out": out,
        "kept": kept is not None,
        "markets": markets,
        "rows": rows,
        "short": dict(sorted(short.items())),
        "filtered_out": left_out,
        "open_requests": opened,
        "seconds": round(seconds, 3),
        "fetch": sync,
    }


def prune_json(report: PruneReport) -> dict[str, object]:
    """`prune --json`."""

    def tiers(usage: dict[Any, TierUsage]) -> dict[str, dict[str, int]]:
        return {t: {"files": u.files, "bytes": u.bytes} for t, u in sorted(usage.items())}

    return {
        "version": 1,
        "command": "prune",
        "dry_run": report.dry_run,
        "before": tiers(report.before),
        "after": tiers(report.after),
        "changes": [
            {
                "action": c.action,
                "timeframe": c.tf.name,
                "market": c.market,
                "removed": {"files": len(c.removed), "bytes": sum(f.bytes for f in c.removed)},
                "added": {"files": len(c.added), "bytes": sum(f.bytes for f in c.added)},
            }
            for c in report.changes
        ],
        "temp_files": len(report.temp_files),
        "screens": len(report.screens),
        "skipped": report.skipped,
        "emptied": report.emptied,
        "seconds": round(report.seconds, 3),
    }
