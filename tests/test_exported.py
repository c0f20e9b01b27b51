"""The public names: exported, resolvable, and visible to type checkers (not `Any`)."""

from __future__ import annotations

import ast
from pathlib import Path

import upbit_cache

PUBLIC = [
    "CANDLE_COLUMNS",
    "CandleStore",
    "DamageError",
    "ExchangeError",
    "IPBlockedError",
    "InvalidMarketError",
    "InvalidRangeError",
    "InvalidTimeframeError",
    "RateLimitedError",
    "RefusedError",
    "ResponseFormatError",
    "ScreenRequest",
    "ServerError",
    "Shard",
    "StorageError",
    "Timeframe",
    "UnknownMarketError",
    "UpbitCache",
    "UpbitCacheError",
    "UsageError",
    "Window",
    "aload",
    "load",
    "validate_market",
]


def test_public_names_are_exported_and_resolve() -> None:
    assert sorted(upbit_cache.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(upbit_cache, name) is not None, name


def test_every_lazy_name_is_imported_for_type_checkers() -> None:
    # A name served by the module's __getattr__ alone reaches mypy as Any.
    source = Path(upbit_cache.__file__).read_text()
    typed = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom):
                    typed.update(a.asname or a.name for a in stmt.names)
    lazy = set(upbit_cache._LAZY)
    assert lazy <= typed, lazy - typed
    assert (Path(upbit_cache.__file__).parent / "py.typed").exists()
