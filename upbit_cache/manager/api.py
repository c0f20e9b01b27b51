"""The one check of what Python callers pass to the public API (`@checked`).

Every public function and method takes its arguments under a few names that mean the same
everywhere (`market`, `markets`, `timeframe`, `start`, `out`, ...). Before the body runs,
each argument is checked by its name's rule here, so a list where one market goes, a str
where a list goes, or a number where a timeframe goes is a `UsageError` that says which
argument and how to call it, never an AttributeError from deep inside. Values are checked
where they are used (markets.py, Timeframe, times.py); the rules here delegate to them for
the hints. A path-like `out` is turned into its str.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from numbers import Real
from typing import Any, ParamSpec, TypeVar

from upbit_cache.errors import InvalidMarketError, InvalidRangeError, UsageError
from upbit_cache.markets import check_market_type, check_markets_type
from upbit_cache.timeframes.timeframe import Timeframe

P = ParamSpec("P")
R = TypeVar("R")
Check = Callable[[str, Any], Any]  # (where, value) -> the value to use; raises UsageError


def checked(func: Callable[P, R], overrides: dict[str, Check] | None = None) -> Callable[P, R]:
    """`func`, its arguments checked by name first (see `RULES`; `overrides`: other rules
    for some names in this function)."""
    signature = inspect.signature(func)
    where = func.__qualname__.removesuffix(".__init__")
    table = {**RULES, **(overrides or {})}
    rules = {name: table[name] for name in signature.parameters if name in table}

    def check(args: Any, kwargs: Any) -> tuple[Any, Any]:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:  # a missing or unknown argument: Python's words, our tree
            raise UsageError(f"{where}: {exc}") from None
        for name, rule in rules.items():
            if name in bound.arguments:
                bound.arguments[name] = rule(f"{where}: {name}", bound.arguments[name])
        return bound.args, bound.kwargs

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
            args2, kwargs2 = check(args, kwargs)
            return await func(*args2, **kwargs2)

        return run_async  # type: ignore[return-value]

    @functools.wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        args2, kwargs2 = check(args, kwargs)
        return func(*args2, **kwargs2)

    return run


def checked_many(func: Callable[P, R]) -> Callable[P, R]:
    """`checked`, where `market` may also be a list of markets (`get`, `load`)."""
    return checked(func, {"market": _market_or_markets})


def _market_or_markets(where: str, value: Any) -> Any:
    if isinstance(value, list | tuple):
        check_markets_type(value, where)
        return value
    return _market(where, value)


def _kind(value: object) -> str:
    return type(value).__name__


def _optional(rule: Check) -> Check:
    return lambda where, value: None if value is None else rule(where, value)


def _market(where: str, value: Any) -> Any:
    check_market_type(value, where)
    return value


def _markets(where: str, value: Any) -> Any:
    check_markets_type(value, where)
    return value


def _timeframe(where: str, value: Any) -> Any:
    Timeframe.check_type(value, where)
    return value


def _timeframes(where: str, value: Any) -> Any:
    if isinstance(value, str | Timeframe):
        return value
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            Timeframe.check_type(item, f"{where}[{i}]")
        return value
    raise UsageError(
        f"{where} takes timeframes as '1h,4h', a Timeframe or a list of them, "
        f"not {_kind(value)} {value!r}"
    )


def _time(where: str, value: Any) -> Any:
    from datetime import datetime

    if isinstance(value, bool) or not isinstance(value, str | int | datetime):
        raise InvalidRangeError(
            f"{where} takes a time: '2026-11-01', '2026-11-01T09:00+09:00', '-7d', epoch ms "
            f"(int) or a datetime, not {_kind(value)} {value!r}"
        )
    return value


def _instance(kind: str, module: str, example: str) -> Check:
    def rule(where: str, value: Any) -> Any:
        import importlib

        expected = getattr(importlib.import_module(module), kind)
        if not isinstance(value, expected):
            raise UsageError(f"{where} takes a {kind}, e.g. {example}, not {_kind(value)}")
        return value

    return rule


def _of(types: tuple[type, ...], text: str) -> Check:
    def rule(where: str, value: Any) -> Any:
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise UsageError(f"{where} takes {text}, not {_kind(value)} {value!r}")
        return value

    return rule


def _path(where: str, value: Any) -> Any:
    if not isinstance(value, str | os.PathLike):
        raise UsageError(f"{where} takes a path or URI (str or Path), not {_kind(value)}")
    return os.fspath(value)


def _quote(where: str, value: Any) -> Any:
    if not isinstance(value, str):
        raise InvalidMarketError(f"{where} takes one quote currency such as 'KRW', not {value!r}")
    return value


_flag = _of((bool,), "True or False")
_number = _of((Real,), "a number")

RULES: dict[str, Check] = {
    "market": _market,
    "markets": _markets,
    "timeframe": _timeframe,
    "base": _optional(_timeframe),
    "timeframes": _optional(_timeframes),
    "start": _optional(_time),
    "end": _optional(_time),
    "now": _optional(_time),
    "quote": _optional(_quote),
    "window": _optional(_instance("Window", "upbit_cache.manager.scope", "Window(days=30)")),
    "request": _instance("ScreenRequest", "upbit_cache.manager.scope", "ScreenRequest()"),
    "policy": _instance("Policy", "upbit_cache.manager.prune", "Policy(keep_ms=...)"),
    "out": _path,
    "data_dir": _optional(_path),
    "fmt": _optional(_of((str,), "'csv', 'jsonl' or 'parquet'")),
    "tz": _of((str,), "a time zone name such as 'Asia/Seoul'"),
    "api_url": _optional(_of((str,), "a URL")),
    "ws_url": _optional(_of((str,), "a URL")),
    "rate": _optional(_number),
    "lock_timeout": _optional(_number),
    "memory_bytes": _optional(_of((int,), "a number of bytes (int)")),
    "budget": _optional(_of((int,), "a number of requests (int)")),
    "fill": _flag,
    "refresh": _flag,
    "dry_run": _flag,
    "repair": _flag,
    "upbit": _flag,
    "store": _flag,
    "yes": _flag,
}
