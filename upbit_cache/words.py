"""How counts read in messages: `1 market`, `2 markets`, `1,440 candles`."""

from __future__ import annotations


def plural(count: float, noun: str, many: str | None = None) -> str:
    """`count` and `noun`, plural unless the count is one (`many` for an irregular plural:
    `plural(3, "series", "series")`). Integers get thousands separators, fractions `:g`."""
    number = f"{count:,}" if isinstance(count, int) else f"{count:,g}"
    return f"{number} {noun if count == 1 else (many or noun + 's')}"
