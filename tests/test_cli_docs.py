"""The command reference in docs/commands/ is today's `--help` (scripts/gen_cli_docs.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def gen_cli_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_cli_docs", ROOT / "scripts" / "gen_cli_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_cli_docs", module)
    spec.loader.exec_module(module)
    return module


def test_every_command_has_a_page_in_the_nav_with_its_current_help() -> None:
    docs = gen_cli_docs()
    assert docs.problems() == [], "run scripts/gen_cli_docs.py (and add new pages to mkdocs.yml)"
    assert "simulator" in docs.commands() and "fetch" in docs.commands()


def test_the_help_is_plain_and_fixed_width() -> None:
    text = gen_cli_docs().help_text("export")
    assert "\x1b[" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    assert text.startswith("Usage: upbit-cache export [OPTIONS] [MARKET...]")


def test_a_stale_block_or_a_missing_page_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = gen_cli_docs()
    pages = tmp_path / "docs" / "commands"
    pages.mkdir(parents=True)
    for command in [None, *docs.commands()]:
        source = docs.page(command)
        (pages / source.name).write_text(source.read_text())
    monkeypatch.setattr(docs, "COMMANDS", pages)
    monkeypatch.setattr(docs, "ROOT", tmp_path)
    assert docs.problems() == []
    info = pages / "info.md"
    info.write_text(
        info.read_text().replace("Example: upbit-cache info", "Example: upbit-cache inf")
    )
    (pages / "verify.md").unlink()
    found = docs.problems()
    assert any("info.md: the --help block differs" in p for p in found), found
    assert any(p.startswith("verify: no page") for p in found), found
    assert docs.write() and docs.problems() == []
