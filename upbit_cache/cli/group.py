"""The app: the `upbit-cache` group, its commands registered, and what every command shares
around its work: one-line usage errors, a closed pipe's quiet 141, the signals (cli/stop.py)
and the one error boundary, where the library's errors become `upbit-cache: error: ...` and
their exit code. Every line on stderr goes through `cli.log` (timestamped off a terminal).
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from upbit_cache.cli import options as opt
from upbit_cache.cli import simulate, stop
from upbit_cache.cli.commands import (
    config,
    export,
    fetch,
    info,
    live,
    markets,
    prune,
    resample,
    screen_prep,
    serve,
    show,
    simulator,
    verify,
)
from upbit_cache.cli.log import error, say
from upbit_cache.errors import UpbitCacheError

# typer raises click's exceptions (vendored in newer typer): found through a public class.
_CLICK_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


CLOSED_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader left


def closed_pipe() -> int:
    """The reader of our output left (`| head`): end quietly with status 141, as a program
    killed by SIGPIPE does, with no message and no summary.

    Python ignores SIGPIPE, so a write raises BrokenPipeError instead, and the default action
    must not come back: a peer closing an aiohttp socket would kill the process. stdout is
    pointed at /dev/null, so that flushing what is still buffered cannot raise again (the
    recipe of Python's `signal` documentation).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return CLOSED_PIPE


@contextmanager
def _ends_quietly_on_closed_pipe() -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        raise typer.Exit(closed_pipe()) from None


class _OneLineErrors(TyperGroup):
    """Bad usage (an unknown option, a number out of range) is one line and exit 2, like
    every other error of the tool, not click's usage block. A closed pipe, anywhere (help
    included), is status 141 and nothing else."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: Any = None,
        **extra: Any,
    ) -> Any:
        with _ends_quietly_on_closed_pipe():  # the group's --help and --version
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with _ends_quietly_on_closed_pipe():  # every command, its --help too
            return super().invoke(ctx)

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except _CLICK_ERROR as exc:
            message = getattr(exc, "format_message", exc.__str__)()
            error(f"{message} (see --help)")
            sys.exit(getattr(exc, "exit_code", 2))
        except typer.Abort:
            error("aborted")
            sys.exit(1)
        except UpbitCacheError as exc:  # a bad config file, read for a default while parsing
            error(str(exc))
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


class _Bounded(TyperCommand):
    """A command whose work (its callback, after its arguments are parsed) runs inside the
    one error boundary: the library's errors become one line and their exit code; Ctrl-C
    (130) and SIGTERM (143, see cli/stop.py) stop it, and it says so."""

    def invoke(self, ctx: Any) -> Any:
        with stop.working():
            try:
                return super().invoke(ctx)
            except UpbitCacheError as exc:
                error(str(exc))
                raise typer.Exit(exc.exit_code) from None
            except KeyboardInterrupt:
                sigterm = stop.terminated()
                say(stop.STOPPED if sigterm else stop.INTERRUPTED)  # even with -q
                stop.reported()
                raise typer.Exit(stop.SIGTERM_EXIT if sigterm else stop.INTERRUPTED_EXIT) from None


class _Command(_Bounded):
    """A command whose arguments read by their placeholder in its help (`[MARKET...]`),
    not by typer's Python type (`markets... <list[str]>`)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name != "argument":
                pieces += param.get_usage_pieces(ctx)
            else:
                pieces.append(_placeholder(param) if param.required else f"[{_placeholder(param)}]")
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        args, opts = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                args.append((_placeholder(param), record[1]))
            else:
                opts.append(record)
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _placeholder(param: Any) -> str:
    name = param.metavar or (param.name or "").upper()
    return f"{name}..." if param.nargs != 1 else name


app = typer.Typer(
    cls=_OneLineErrors,
    name="upbit-cache",
    help="Keep a local, always-fresh copy of Upbit candles as Hive-partitioned Parquet.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"upbit-cache {version('upbit-cache')}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
        ),
    ] = False,
    data_dir: opt.DataDir = None,
    config_file: opt.ConfigFile = None,
) -> None:
    """Keep a local, always-fresh copy of Upbit candles as Hive-partitioned Parquet."""
    ctx.obj = opt.Before(data_dir, config_file)


_COMMANDS: list[tuple[str, Callable[..., None]]] = [
    ("fetch", fetch.fetch_command),
    ("resample", resample.resample_command),
    ("live", live.live_command),
    ("prune", prune.prune_command),
    ("screen-prep", screen_prep.screen_prep_command),
    ("export", export.export_command),
    ("info", info.info_command),
    ("verify", verify.verify_command),
    ("markets", markets.markets_command),
    ("show", show.show_command),
    ("config", config.config_command),
    ("serve", serve.serve_command),
]
for name, command in _COMMANDS:
    app.command(name, cls=_Command)(command)

# Every argument goes to the simulator's own parser, `--help` too (cli/simulate.py).
app.command(
    "simulator",
    cls=_Bounded,
    help=f"{simulate.SUMMARY}\n\n{simulate.EPILOG}",
    add_help_option=False,
    context_settings={
        "allow_extra_args": True,
        "ignore_unknown_options": True,
        "help_option_names": [],
    },
)(simulator.simulator_command)
