"""The layout keeps its shape: imports run one way, no cycles, only the store touches files
(and, for what is not the data dir, the output room and two modules named below).

Every import counts, including those inside functions and under TYPE_CHECKING: a deferred
import is still a dependency. `python tests/test_house.py` prints the import graph's cycles
and the rooms' arrows.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "upbit_cache"

# Who may import whom, room by room (a room is a subpackage, or a top-level module).
BASE = {"errors", "markets", "times", "ranges", "candles", "words", "settings"}
ALLOWED = {
    # `upbit-cache simulator` runs the stand-in; nothing else of the CLI touches it.
    "cli": {
        "manager",
        "output",
        "store",
        "timeframes",
        "collector",
        "simulator",
        "configfile",
        "server",
    }
    | BASE,
    "manager": {"collector", "timeframes", "output", "store", "host", "configfile"} | BASE,
    # What the user gets (`--out`, stdout): above the store, whose atomic write it reuses.
    "output": {"store"} | BASE,
    "store": {"timeframes", "host", "retry"} | BASE,
    "collector": {"timeframes", "retry"} | BASE,
    "timeframes": BASE,
    # `serve`: REST answers from the cache manager; its WebSocket relay shares the stream
    # client's one upstream connection (collector/stream_hub.py), below the manager.
    "server": {"manager", "collector", "timeframes"} | BASE,
    "simulator": set(),  # a stand-in for Upbit: nothing of ours, so it cannot agree by accident
    "__init__": {"manager", "store", "timeframes"} | BASE,
    # pyupbit's shapes over the cache, for callers (as `__init__`'s UpbitCache is).
    "compat": {"manager", "timeframes"} | BASE,
    "__main__": {"cli"},
    "errors": set(),
    "words": set(),
    "settings": {"errors"},
    # The config file: read and checked through the one validator of each kind.
    "configfile": {"collector", "timeframes"} | BASE,
    "host": set(),
    "retry": {"errors"},
    "markets": {"errors"},
    "times": {"errors"},
    "ranges": {"errors", "times"},
    "candles": {"ranges", "errors"},
}
# Who besides the store makes file calls, and why:
# - output: the user's `--out` file, a path outside the data dir (its folder never created,
#   a pipe or device written in place, the temp file flocked until its rename);
# - the simulator: a stand-in with files of its own;
# - host: what the kernel says of this host in /proc (memory, boot id, process starts);
# - collector.hostcell: the host's shared send schedule in the runtime dir, not a data dir;
# - configfile: the user's config file (TOML), not a data dir.
FILE_ROOMS = {"store", "output", "simulator"}
FILE_MODULES = {"upbit_cache.host", "upbit_cache.collector.hostcell", "upbit_cache.configfile"}
# The store's modules the cache manager must not import: it speaks of series and spans
# (CandleStore, Store), never of paths (layout) or files (files, backends).
FILE_LEVEL_MODULES = {
    "upbit_cache.store.layout",
    "upbit_cache.store.files",
    "upbit_cache.store.backends",
}
# CandleStore's file-level methods, for the store's own modules (upkeep, audit, heal).
FILE_LEVEL_CALLS = {
    "data_files",
    "partition_files",
    "read_file",
    "check_file",
    "put_file",
    "remove_file",
    "missing_files",
    "written_ms",
    "series_files",
    "take_written",
}
# Calls that open, list, rename or delete files; only the store makes them.
FILE_CALLS = {
    "open",
    "os.replace",
    "os.rename",
    "os.remove",
    "os.unlink",
    "os.makedirs",
    "os.mkdir",
    "os.stat",
    "os.listdir",
    "os.scandir",
    "shutil.copyfileobj",
    "shutil.rmtree",
    "tempfile.mkstemp",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """Every module of ours that `path` imports, anywhere in the file.

    `from package import module` depends on that module (the package's `__init__` runs
    first, as for any submodule, and is not counted).
    """
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            submodules = {f"{target}.{a.name}" for a in node.names} & modules
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(target)
    return {m for m in found if m in modules}


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports(path, set(files)) - {name} for name, path in files.items()}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):  # the import graph is shallow: recursion is fine
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_deferred_imports_included() -> None:
    edges = graph()
    found = cycles(edges)
    ties = {m: sorted(edges[m] & set(c)) for c in found for m in c}
    assert found == [], ties


def test_imports_run_one_way() -> None:
    wrong = []
    for module, targets in graph().items():
        here = room(module)
        for target in targets:
            there = room(target)
            if there != here and there not in ALLOWED[here]:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_the_manager_touches_storage_only_through_the_store_at_series_level() -> None:
    """No `store.layout`/`store.files` import, no file-level call on a store."""
    wrong = []
    for module, targets in graph().items():
        if room(module) == "manager":
            wrong += [f"{module} imports {t}" for t in sorted(targets & FILE_LEVEL_MODULES)]
    for path in (PACKAGE / "manager").rglob("*.py"):
        wrong += [f"{module_name(path)}:{n.lineno} {ast.unparse(n)}" for n in file_level(path)]
    assert wrong == []


def file_level(path: Path) -> list[ast.AST]:
    """A store's file-level calls in `path`, and its DataDir (`store.files`) reached for."""
    found: list[ast.AST] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            found += [node.func] if node.func.attr in FILE_LEVEL_CALLS else []
        elif isinstance(node, ast.Attribute) and node.attr == "files":
            found += [node] if ast.unparse(node.value).endswith(("store", "dir")) else []
    return found


def test_only_the_store_touches_files() -> None:
    touching = []
    for path in PACKAGE.rglob("*.py"):
        if room(module_name(path)) in FILE_ROOMS or module_name(path) in FILE_MODULES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                called = ast.unparse(node.func)
                if called in FILE_CALLS or called.startswith(("pafs.", "pq.write", "pq.read")):
                    touching.append(f"{module_name(path)}:{node.lineno} {called}")
    assert touching == []


def test_the_house_test_sees_a_cycle_and_a_wrong_arrow() -> None:
    # The checks above must be able to fail.
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert "collector" not in ALLOWED["store"] and "manager" not in ALLOWED["store"]
    assert "output" not in ALLOWED["store"]  # the output room is above the store, not below
    modules = set(graph())
    assert modules >= FILE_LEVEL_MODULES  # a rename would make the seam's check pass silently
    probe = PACKAGE / "store" / "upkeep.py"  # a store module: layout, store.files, data_files
    assert imports(probe, modules) & FILE_LEVEL_MODULES
    assert {ast.unparse(n) for n in file_level(probe)} >= {"store.files", "store.data_files"}


if __name__ == "__main__":
    edges = graph()
    print(f"{len(edges)} modules, {sum(len(t) for t in edges.values())} imports")
    print(f"import cycles: {len(cycles(edges))} {cycles(edges) or ''}")
    arrows: dict[str, set[str]] = defaultdict(set)
    for module, targets in edges.items():
        arrows[room(module)].update(room(t) for t in targets if room(t) != room(module))
    for name in sorted(arrows):
        print(f"  {name:<11} -> {', '.join(sorted(arrows[name])) or '-'}")
