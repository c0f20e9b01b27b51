"""Every console example of the README and the docs runs as written, against the simulator.

Each ```console block is a list of `$ command` lines, each followed by the output it shows.
A page's blocks run in order, every command in its own `bash -c`, in a fresh temp folder,
with a data dir of the page's own (UPBIT_CACHE_DIR) and UPBIT_API_URL pointing at one
`upbit-cache simulator` (its clock frozen within the hour, so a second run of a command
finds nothing new, and at Upbit's 10 requests a second). A command must exit 0, or
the status its comment names (`# ... exit 2`), and print what the example shows in shape:
the same lines, each with its numbers and times read as placeholders (`0` stays `0`: "0
requests" is a claim; any other number, `720` or `1,440` or `0.7`, is one kind, so a number
style is not a shape; "1 file" is "2 files"), without the UTC stamps of lines off a
terminal, spaces collapsed, in any order; a `...` line stands for any lines. An example of
`upbit-cache simulator` is started in the background instead (on a free port), read, and
stopped with SIGTERM (143, its normal end).

Markers on the line before a fence: `<!-- not run: why -->` leaves a block out, `<!-- needs:
jq -->` runs it only where those commands exist, `<!-- file: sma.py -->` writes the block
(any language) to that file in the page's folder, for the examples after it. The sample
figures must be possible too: no summary claims more requests in its seconds than the rate
allows.

`python tests/test_readme.py [PAGE...]` runs the examples and prints what each printed, for
writing them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
DATA_DIR = "/tmp/upbit-offline"  # the reader's, in the pages; each page runs in its own
RATE = 10  # Upbit's, the simulator's and the client's default
DEADLINE = 300.0
STAMP = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z ", re.MULTILINE)
# On the line before a fence: `<!-- not run: why -->`, `<!-- needs: jq -->`, `<!-- file: x.py -->`.
MARKER = re.compile(r"<!--\s*(not run|needs|file):(.*?)-->")
EXIT = re.compile(r"\s#.*\bexit (\d+)\b[^#]*$")
TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?)?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})?"
)
# A number: thousands separated by commas (1,440) or not, a fraction, an exponent.
NUMBER = re.compile(
    r"(?<![\w.])-?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?(?![\w.])"
)
# A data file's name (written once: its span and a hash of its content): the same shape.
DATA_FILE = re.compile(r"\b(part|cold)-[0-9]{8}T[0-9]{6}-[0-9]{8}T[0-9]{6}-[0-9a-f]{6,16}\.parquet")
PLURAL = re.compile(r"(<n> (?:[a-z]+ )?[a-z]+?)s\b")  # "<n> base partitions" too
SUMMARY = re.compile(r"([0-9][0-9,]*) requests?\b.*?\b([0-9]+(?:\.[0-9]+)?) s\b")


@dataclass
class Example:
    """One `$ command` and what the page shows it prints; or a file the page writes for the
    examples after it (`file`, its text in `shown`)."""

    page: str
    line: int
    command: str
    shown: list[str] = field(default_factory=list)
    file: str | None = None

    @property
    def exit_code(self) -> int:
        found = EXIT.search(self.command)
        return int(found[1]) if found else 0


def examples(page: Path) -> list[Example]:
    """The examples of `page`'s console blocks, and the files it writes, in order; blocks
    marked not run, or needing a command this host lacks, are left out."""
    found: list[Example] = []
    lines = page.read_text().splitlines()
    fence: str | None = None  # the open fence's indentation and kind: "console", "file", "skip"
    kind = ""
    name = str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)
    continuing = False
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if fence is None and text.startswith("```"):
            fence = line[: len(line) - len(line.lstrip())]
            marker = next((p.strip() for p in reversed(lines[: number - 1]) if p.strip()), "")
            kind = _kind(text, marker)
            if kind.startswith("file:"):
                found.append(Example(name, number, "", file=kind.removeprefix("file:")))
            continuing = False
        elif fence is not None and text.startswith("```"):
            fence = None
        elif fence is not None and kind.startswith("file:"):
            found[-1].shown.append(line.removeprefix(fence))
        elif fence is not None and kind == "console":
            if continuing:
                found[-1].command += "\n" + text
            elif text.startswith("$ "):
                found.append(Example(name, number, text[2:]))
            elif found and text:
                found[-1].shown.append(text)
            continuing = text.endswith(("\\", "|")) and bool(found)
    return found


def _kind(fence: str, marker: str) -> str:
    """What to do with a block: "console" (run it), "file:NAME" (write it), or "skip"."""
    wanted = MARKER.fullmatch(marker)
    if wanted is not None and wanted[1] == "not run":
        return "skip"
    needs = wanted[2].split() if wanted is not None and wanted[1] == "needs" else []
    if any(shutil.which(tool) is None for tool in needs):
        return "skip"
    if wanted is not None and wanted[1] == "file":
        return f"file:{wanted[2].strip()}"
    return "console" if fence.removeprefix("```").strip() == "console" else "skip"


def shape(line: str) -> str:
    """A line with its numbers and times as placeholders, spaces collapsed."""
    line = DATA_FILE.sub(r"\1-<span>.parquet", line)
    line = TIME.sub("<time>", line)
    line = NUMBER.sub(lambda m: "0" if m[0] == "0" else "<n>", line)
    line = PLURAL.sub(r"\1", line)  # "1 file" or "2 files": the count is not the shape
    return " ".join(line.split())


def differences(shown: list[str], printed: list[str]) -> list[str]:
    """What of `shown` does not match `printed` in shape (empty: they match)."""
    want = Counter(shape(STAMP.sub("", s)) for s in shown if s != "...")
    got = Counter(shape(STAMP.sub("", p)) for p in printed if p.strip())
    missing = [f"shown, not printed: {s}" for s in (want - got).elements()]
    if "..." in shown:
        return missing
    return missing + [f"printed, not shown: {p}" for p in (got - want).elements()]


def impossible_figures(example: Example) -> list[str]:
    """Shown summaries claiming more requests in their seconds than the rate allows."""
    wrong = []
    for line in example.shown:
        for found in SUMMARY.finditer(line):
            requests, seconds = int(found[1].replace(",", "")), float(found[2])
            if requests > RATE * seconds + 1:
                wrong.append(f"{requests} requests in {seconds} s: more than {RATE}/s ({line})")
    return wrong


def frozen_at() -> str:
    """Where the simulator's clock stands still: this hour at 29:30.5, in the middle of every
    period from a second to an hour (a run at a boundary would see one more candle closed
    than the one before it), and within half an hour of this host's clock (which `prune` and
    `--no-refresh` use)."""
    hour = int(time.time()) // 3600 * 3600
    return datetime.fromtimestamp(hour + 29 * 60 + 30.5, UTC).isoformat()


class Simulator:
    """`upbit-cache simulator --port 0 --frozen --clock ...` in the background."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["upbit-cache", "simulator", "--port", "0", "--frozen", "--clock", frozen_at()],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(),
        )
        assert self.proc.stdout is not None
        lines = [self.proc.stdout.readline() for _ in range(3)]
        if not lines[2].startswith("export UPBIT_API_URL="):
            self.stop()
            raise RuntimeError(f"the simulator did not start: {lines}")
        self.url = lines[2].partition("=")[2].strip()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.communicate(timeout=DEADLINE)
        return self.proc.returncode


def environment(**settings: str) -> dict[str, str]:
    """This environment without our settings, the venv first on PATH, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPBIT_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["UPBIT_SETTLE_SECONDS"] = "0"  # the simulator has no store lag (tests/conftest.py)
    return env | settings


@dataclass
class Ran:
    code: int
    printed: list[str]
    seconds: float


def run(example: Example, folder: Path, url: str) -> Ran:
    """Run one example in `folder` against the simulator at `url`."""
    # The config file's default place: a folder of the page's, empty unless a page writes it
    # (run directly, without conftest, the reader's own config must not count either).
    env = environment(
        UPBIT_API_URL=url,
        UPBIT_CACHE_DIR=str(folder / "data"),
        XDG_CONFIG_HOME=str(folder / "config-home"),
    )
    began = time.monotonic()
    if example.file is not None:
        (folder / example.file).write_text("\n".join(example.shown) + "\n")
        return Ran(0, example.shown, 0.0)
    if example.command.startswith("upbit-cache simulator"):
        return _run_simulator(example, folder, env, began)
    done = subprocess.run(
        ["bash", "-c", example.command],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=DEADLINE,
    )
    # The data dir as the reader's: the one getting-started.md exports.
    printed = done.stdout.replace(env["UPBIT_CACHE_DIR"], DATA_DIR).splitlines()
    return Ran(done.returncode, printed, time.monotonic() - began)


def _run_simulator(example: Example, folder: Path, env: dict[str, str], began: float) -> Ran:
    """The long-running example: started on a free port, read, stopped with SIGTERM."""
    command = [*example.command.split("#")[0].split(), "--port", "0"]
    proc = subprocess.Popen(
        command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    printed = [proc.stdout.readline().rstrip("\n") for _ in example.shown]
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=DEADLINE)  # stderr: "simulator stopped (SIGTERM)"
    code = 0 if proc.returncode == 143 else proc.returncode  # its normal end
    return Ran(code, printed + rest.splitlines(), time.monotonic() - began)


def check(example: Example, ran: Ran) -> list[str]:
    """What is wrong with `ran` as a run of `example`."""
    where = f"{example.page}:{example.line}: $ {example.command}"
    if example.file is not None:
        return []
    problems = []
    if ran.code != example.exit_code:
        problems.append(f"exit {ran.code}, not {example.exit_code}")
    problems += differences(example.shown, ran.printed)
    problems += impossible_figures(example)
    if not problems:
        return []
    return [where, *problems, "printed:", *ran.printed]


def pages_with_examples() -> list[Path]:
    return [page for page in PAGES if examples(page)]


@pytest.fixture(scope="module")
def offline_upbit() -> Iterator[Simulator]:
    server = Simulator()
    try:
        yield server
    finally:
        assert server.stop() == 143


@pytest.mark.slow
@pytest.mark.parametrize("page", pages_with_examples(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_console_example_runs_as_shown(
    page: Path, offline_upbit: Simulator, tmp_path: Path
) -> None:
    wrong: list[str] = []
    for example in examples(page):
        wrong += check(example, run(example, tmp_path, offline_upbit.url))
    assert not wrong, "\n".join(wrong)


def test_the_readme_has_examples_and_each_block_is_read() -> None:
    readme = examples(ROOT / "README.md")
    assert len(readme) >= 8
    assert any(e.command.startswith("upbit-cache simulator") for e in readme)


def test_shapes_read_numbers_and_times_as_placeholders() -> None:
    assert shape("2 markets, 1,440 candles written, 8 requests, 0 429s, 0.9 s") == (
        "<n> market, <n> candle written, <n> request, 0 429s, <n> s"
    )
    assert shape("1h  KRW-BTC  2026-11-01T00:00:00Z→2026-11-20T00:00:00Z") == (
        "1h KRW-BTC <time>→<time>"
    )
    assert shape('"KRW-BTC","1h",192729000,1.3229899,2.5e+08') == '"KRW-BTC","1h",<n>,<n>,<n>'
    assert shape("1 file, 2 files, 0 files") == "<n> file, <n> file, 0 files"
    assert differences(["a 1", "...", "b 0"], ["b 0", "x", "a 7"]) == []
    assert differences(["a 1"], ["a 0"]) == ["shown, not printed: a <n>", "printed, not shown: a 0"]
    claim = Example("p", 1, "upbit-cache fetch", ["216 requests, 0 429s, 2.9 s"])
    assert impossible_figures(claim) and not impossible_figures(
        Example("p", 1, "x", ["8 requests, 0.9 s"])
    )


def main(names: list[str]) -> None:
    """Run the examples of the pages named (default: all) and print what each printed."""
    chosen = [p for p in PAGES if not names or any(str(p).endswith(n) for n in names)]
    chosen += [
        Path(n).resolve() for n in names if Path(n).is_file() and Path(n).resolve() not in PAGES
    ]
    server = Simulator()
    try:
        for page in chosen:
            with tempfile.TemporaryDirectory() as folder:
                for example in examples(page):
                    ran = run(example, Path(folder), server.url)
                    print(f"--- {example.page}:{example.line} exit {ran.code}, {ran.seconds:.1f} s")
                    print(f"$ {example.command}")
                    print("\n".join(STAMP.sub("", line) for line in ran.printed))
                    for problem in check(example, ran)[1:]:
                        if problem == "printed:":
                            break
                        print(f"!!! {problem}")
    finally:
        server.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
