"""What the commands share: the cache of a run, and the warnings every fetching command says."""

from __future__ import annotations

from typing import TYPE_CHECKING

from upbit_cache.cli import options as opt
from upbit_cache.cli.log import PROG, Log, say
from upbit_cache.cli.render import damage_lines, horizon_warning

if TYPE_CHECKING:
    from upbit_cache.manager.cache import UpbitCache
    from upbit_cache.manager.fetch import SyncReport


def cache_for(log: Log) -> UpbitCache:
    """The run's `UpbitCache`, as the command's shared options say (`options.shared`: the
    data dir, Upbit's URLs, the rate, the lock timeout, the config file); a wait for another
    run's lock is said once (-q: not)."""
    from upbit_cache.manager.cache import UpbitCache

    def waiting(series: str) -> None:
        log.info(
            f"upbit-cache: waiting for another run writing {series} (and maybe more); "
            "--lock-timeout SECONDS bounds the wait"
        )

    return UpbitCache(
        opt.given("data_dir"),
        api_url=opt.given("api_url"),
        ws_url=opt.given("ws_url"),
        rate=opt.given("rate"),
        lock_timeout=opt.given("lock_timeout"),
        on_lock_wait=waiting,
        config=opt.given("config"),
    )


def print_json(document: dict[str, object]) -> None:
    """A command's `--json` document: one object on stdout, in place of its summary (progress
    and errors still go to stderr)."""
    import json

    import typer

    typer.echo(json.dumps(document, indent=2))


def json_out(as_json: bool, out: str) -> None:
    """Refuse `--json` where stdout carries the rows."""
    if as_json and out == "-":
        from upbit_cache.errors import UsageError

        raise UsageError("--json prints its document on stdout: give --out FILE for the rows")


def warn_horizon(report: SyncReport | None) -> None:
    """Say on stderr what of a 1s window lay past Upbit's horizon, if anything (even with
    -q: like an error, it is about data the run did not get)."""
    warning = horizon_warning(report) if report is not None else None
    if warning is not None:
        say(f"{PROG}: {warning}")


def warn_damage(report: SyncReport | None, root: str) -> bool:
    """Say on stderr (even with -q: it is about the data) what damage a fetch healed or
    saw outside its window, and which derived series failed; whether any of those failed."""
    if report is None:
        return False
    for line in damage_lines(report, root):
        say(f"{PROG}: {line}" if line.startswith("warning: ") else line)
    return bool(report.failed or report.failed_derived)
