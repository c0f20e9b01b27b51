"""Write each command's `--help` into its page of the docs, between markers.

`python scripts/gen_cli_docs.py` rewrites the generated block of docs/commands/<command>.md
for every command (and of docs/commands/index.md for `upbit-cache --help`), as a terminal of
80 columns shows it with no colour. A command without a page gets one to fill in, and a
reminder to add its line to mkdocs.yml's nav. `--check` changes nothing: it lists what is
out of date (a block that differs from today's --help, a command with no page or no block,
a page missing from the nav) and exits 1 if anything is; tests/test_cli_docs.py runs it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from typer.main import get_command
from typer.testing import CliRunner

from upbit_cache.cli import app

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ROOT / "docs" / "commands"
NAV = ROOT / "mkdocs.yml"
# A fixed width and no colour: the same text on every machine.
HELP_ENV = {"COLUMNS": "80", "NO_COLOR": "1", "TERM": "dumb"}
BLOCK = re.compile(
    r"<!-- BEGIN generated: (?P<what>[^\n]*?) --help .*?-->\n.*?<!-- END generated -->",
    re.DOTALL,
)


def commands() -> list[str]:
    """The CLI's commands, in the order its help lists them."""
    group = get_command(app)
    return list(group.commands)  # type: ignore[attr-defined]


def help_text(command: str | None) -> str:
    """`upbit-cache [command] --help` as printed on a plain 80-column terminal."""
    args = [command, "--help"] if command else ["--help"]
    done = CliRunner().invoke(app, args, prog_name="upbit-cache", env=HELP_ENV)
    if done.exit_code != 0:
        raise RuntimeError(f"upbit-cache {' '.join(args)} exited {done.exit_code}: {done.output}")
    return "\n".join(line.rstrip() for line in done.stdout.rstrip().splitlines())


def block(command: str | None) -> str:
    """The marked block for `command`'s help (None: the tool's own)."""
    what = f"upbit-cache {command}" if command else "upbit-cache"
    return (
        f"<!-- BEGIN generated: {what} --help (scripts/gen_cli_docs.py; do not edit) -->\n"
        f"```text\n{help_text(command)}\n```\n<!-- END generated -->"
    )


def page(command: str | None) -> Path:
    return COMMANDS / f"{command or 'index'}.md"


def stub(command: str) -> str:
    """A new command's page: a title and its reference, the rest to be written."""
    summary = help_text(command).split("\n\n")[1].strip()
    return f"# {command}\n\n{' '.join(summary.split())}\n\n## Reference\n\n{block(command)}\n"


def problems() -> list[str]:
    """What is out of date, one line each (empty: nothing)."""
    found = []
    nav = NAV.read_text()
    for command in [None, *commands()]:
        path = page(command)
        name = path.relative_to(ROOT)
        if not path.exists():
            found.append(f"{command}: no page {name} (run scripts/gen_cli_docs.py)")
            continue
        there = BLOCK.search(path.read_text())
        if there is None:
            found.append(f"{name}: no generated --help block")
        elif there[0] != block(command):
            found.append(f"{name}: the --help block differs (run scripts/gen_cli_docs.py)")
        if path.relative_to(ROOT / "docs").as_posix() not in nav:
            found.append(f"{name}: not in mkdocs.yml's nav")
    return found


def write() -> list[str]:
    """Rewrite every block, create missing pages; what was changed."""
    changed = []
    for command in [None, *commands()]:
        path = page(command)
        if not path.exists():
            assert command is not None
            path.write_text(stub(command))
            changed.append(f"created {path.relative_to(ROOT)}: write it, add it to mkdocs.yml")
            continue
        text, fresh = path.read_text(), block(command)
        there = BLOCK.search(text)
        if there is None:
            new = text.rstrip("\n") + f"\n\n## Reference\n\n{fresh}\n"
        else:
            new = text[: there.start()] + fresh + text[there.end() :]
        if new != text:
            path.write_text(new)
            changed.append(f"updated {path.relative_to(ROOT)}")
    return changed


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        found = problems()
        print("\n".join(found) or "every command's page is up to date")
        return 1 if found else 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    print("\n".join(write()) or "nothing to change")
    left = [p for p in problems() if "nav" in p]
    print("\n".join(left))
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
