"""`markets`: a table on a terminal, tab-separated rows in a pipe, JSON lines with --json.

The rows in a pipe have no header, so that `cut -f1` gives market codes: market, Korean
name, English name, warnings, stored. Warnings are `-` (none), `?` (Upbit's list said
nothing of them), `unlisted` (stored here, no longer listed), else `warning` and the
caution flags set, comma-separated. Stored is `TF=START/END` per timeframe, comma-separated
(ISO 8601 intervals, end exclusive), or `-`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from upbit_cache.times import iso
from upbit_cache.words import plural

if TYPE_CHECKING:
    from rich.console import Console

    from upbit_cache.manager.listings import Held, Listing


def warnings_of(item: Listing) -> list[str]:
    """`warning` and the caution flags set; `unlisted` or `?` when nothing is known."""
    if not item.listed:
        return ["unlisted"]
    if item.warning is None:
        return ["?"]
    return (["warning"] if item.warning else []) + list(item.cautions)


def tsv(items: Sequence[Listing], tz: str = "UTC") -> str:
    """One tab-separated line per market (see the module's docstring), each ending in a newline."""
    lines = []
    for item in items:
        stored = ",".join(
            f"{h.timeframe.name}={iso(h.start, tz)}/{iso(h.end, tz)}" for h in item.stored
        )
        cells = [
            item.market,
            item.korean_name,
            item.english_name,
            ",".join(warnings_of(item)) or "-",
            stored or "-",
        ]
        lines.append("\t".join(" ".join(c.split()) for c in cells) + "\n")  # no tab inside
    return "".join(lines)


def json_lines(items: Sequence[Listing], tz: str = "UTC") -> str:
    """One JSON object per market and line: names, `listed`, `warning` (null: unknown),
    `cautions`, and `stored`, a range per timeframe (ISO and epoch ms, end exclusive) with
    how many fetched ranges it spans."""
    return "".join(
        json.dumps(_json(item, tz), ensure_ascii=False, separators=(",", ":")) + "\n"
        for item in items
    )


def _json(item: Listing, tz: str) -> dict[str, Any]:
    return {
        "market": item.market,
        "korean_name": item.korean_name,
        "english_name": item.english_name,
        "listed": item.listed,
        "warning": item.warning,
        "cautions": list(item.cautions),
        "stored": [_held_json(h, tz) for h in item.stored],
    }


def _held_json(held: Held, tz: str) -> dict[str, Any]:
    return {
        "timeframe": held.timeframe.name,
        "start": iso(held.start, tz),
        "end": iso(held.end, tz),
        "start_ms": held.start,
        "end_ms": held.end,
        "ranges": len(held.fetched.intervals),
    }


def table(
    items: Sequence[Listing],
    console: Console,
    tz: str = "UTC",
    *,
    counted: bool = True,
    every_range: bool = False,
) -> None:
    """The terminal's view: a rich table, a line per stored timeframe (`every_range`: a
    line per fetched range), and a count line (unless not `counted`)."""
    from rich.table import Table

    grid = Table()
    # Names and flags (in words: they wrap) give way; codes and times read whole.
    grid.add_column("market", no_wrap=True)
    grid.add_column("korean")
    grid.add_column("english")
    grid.add_column("warnings")
    grid.add_column(f"stored ({tz})", no_wrap=True)
    for item in items:
        warned = [w.replace("_", " ").lower() for w in warnings_of(item)]
        grid.add_row(
            item.market,
            item.korean_name,
            item.english_name,
            "\n".join(warned) if warned else "-",
            "\n".join(_held_cell(h, tz, every_range) for h in item.stored) or "-",
            style="bold" if item.warning else None,
        )
    console.print(grid)
    if not counted:
        return
    warned_count = sum(1 for i in items if i.warning)
    stored_count = sum(1 for i in items if i.stored)
    listed = sum(1 for i in items if i.listed)
    console.print(
        f"{plural(listed, 'market')} listed, {warned_count} with a warning, "
        f"{stored_count} with candles stored",
        highlight=False,
    )


def _held_cell(held: Held, tz: str, every_range: bool = False) -> str:
    from upbit_cache.cli.show_view import short_time

    name, spans = held.timeframe.name, held.fetched.intervals
    if every_range:
        return "\n".join(f"{name} {short_time(a, tz)} → {short_time(b, tz)}" for a, b in spans)
    text = f"{name} {short_time(held.start, tz)} → {short_time(held.end, tz)}"
    return text + (f" in {len(spans)} ranges" if len(spans) > 1 else "")
