"""`upbit-cache config`: the settings in effect, and where each came from."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from upbit_cache.cli import options as opt
from upbit_cache.cli.log import Log, print_report
from upbit_cache.settings import ENV_CONFIG

PathOnly = Annotated[
    bool,
    typer.Option("--path", help="Print only where the config file is looked for, and exit."),
]
# The shared options `config` takes, by the key they set.
_FLAGS = {"data_dir": "--data-dir", "api_url": "--api-url", "ws_url": "--ws-url", "rate": "--rate"}


@opt.shared("api_url", "ws_url", "rate")
def config_command(
    ctx: typer.Context,
    path: PathOnly = False,
    as_json: opt.AsJson = False,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
) -> None:
    """Print the settings in effect and where each came from: a flag, the environment, the
    config file or the default (flags win over the environment, which wins over the file).
    A bad config file is one line naming the file, the key and why (exit 2). -v adds the
    settings only the environment sets (the settle time, Upbit's 1s horizon).

    Example: upbit-cache config --json | jq -r .settings.data_dir.value
    """
    from upbit_cache import configfile

    Log(quiet, verbose)  # -q and -v together are refused; nothing goes to stderr anyway
    given = opt.given("config")
    where = configfile.locate(given, by=_source_of(ctx, "config", "--config") or "--config")
    if path:
        typer.echo(where.path)
        return
    settings = configfile.load(given, by="--config")
    flags = {key: opt.given(key) for key in _FLAGS if _source_of(ctx, key, _FLAGS[key])}
    rows = configfile.effective(settings, flags, environment_only=verbose)
    found = settings.file is not None
    named = where.named_by
    if as_json:
        document = {
            "config_file": {
                "path": where.path,
                "found": found,
                "source": "default" if named is None else _kind(named),
                "origin": named,
            },
            "settings": {
                r.key: {"value": r.value, "source": r.source, "origin": r.origin} for r in rows
            },
        }
        typer.echo(json.dumps(document, indent=2))
        return
    named_as = "the default place" if named is None else _kind(named) + " " + named
    state = "read" if found else "not there"
    lines = [f"config file: {where.path} ({named_as}; {state})"]
    width = max(len(r.key) for r in rows)
    values = [_text(r.value) for r in rows]
    value_width = max(len(v) for v in values)
    for row, value in zip(rows, values, strict=True):
        # The file is named once, above; a flag or variable by its name.
        source = "config file" if row.source == "config" else row.source
        source += f" {row.origin}" if row.origin and row.source != "config" else ""
        lines.append(f"{row.key:<{width}}  {value:<{value_width}}  {source}")
    print_report("\n".join(lines))


def _source_of(ctx: typer.Context, name: str, flag: str) -> str | None:
    """`flag` if the option `name` was given on the command line (here, or before the
    command for --data-dir and --config), `ENV_CONFIG` if --config came from it, else None."""
    if _on_command_line(ctx, name):
        return flag
    parent = ctx.parent
    parent_name = {"config": "config_file"}.get(name, name)
    in_parent = parent is not None and parent_name in parent.params
    if in_parent and parent is not None and _on_command_line(parent, parent_name):
        return flag
    if name == "config" and opt.given("config") is not None:
        return ENV_CONFIG
    return None


def _on_command_line(ctx: Any, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _kind(named_by: str) -> str:
    return "environment" if named_by == ENV_CONFIG else "flag"


def _text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
