"""The one market-code validator."""

from __future__ import annotations

import re
from collections.abc import Iterable

from upbit_cache.errors import InvalidMarketError

QUOTES = ("KRW", "BTC", "USDT")
_MARKET_RE = re.compile(r"^(KRW|BTC|USDT)-[A-Z0-9]{1,15}$")
# Money no market trades as its base: never a guess (`EUR-BTC` is not BTC-EUR turned round).
_FIAT = ("KRW", "USD", "EUR", "JPY", "SGD", "IDR", "THB")


def check_market_type(code: object, where: str = "a market") -> None:
    """Refuse anything but a str where one market code goes (a list is the usual slip)."""
    if isinstance(code, str):
        return
    if isinstance(code, list | tuple | set):
        raise InvalidMarketError(
            f"{where} takes one market code such as 'KRW-BTC', not a {type(code).__name__} "
            "of them: call it once per market, or UpbitCache.get/load with the list (export or "
            "fetch for many)"
        )
    raise InvalidMarketError(
        f"{where} takes a market code such as 'KRW-BTC' (a str), not {type(code).__name__}"
    )


def check_markets_type(codes: object, where: str = "markets") -> None:
    """Refuse anything but a list (or other iterable) of str where market codes go."""
    if isinstance(codes, str):
        raise InvalidMarketError(
            f"{where} takes a list of market codes, not the str {codes!r}: pass [{codes!r}]"
        )
    if isinstance(codes, dict) or not isinstance(codes, Iterable):
        raise InvalidMarketError(
            f"{where} takes a list of market codes such as ['KRW-BTC'], not {type(codes).__name__}"
        )


def validate_market(code: str) -> str:
    """Return `code` upper-cased if it is a market code like KRW-BTC, else raise.

    Lower case is accepted and normalised; anything else (path characters, spaces, an
    unknown quote currency) is refused before it can reach a URL or a file path.
    """
    check_market_type(code)
    candidate = code.strip().upper()
    if not _MARKET_RE.fullmatch(candidate) or candidate.endswith("-KRW"):
        meant = _meant(candidate)
        raise InvalidMarketError(
            f"invalid market code {code!r}: "
            + (
                meant
                if meant is not None
                else f"expected QUOTE-BASE with QUOTE in {', '.join(QUOTES)} and BASE "
                "letters/digits, e.g. KRW-BTC"
            )
        )
    return candidate


def _meant(candidate: str) -> str | None:
    """What a code that is not one most likely meant, as a hint: several markets in one
    argument, or a pair written the other way round (`BTC-KRW`; ccxt's `BTC/KRW`, which is
    BASE/QUOTE; `BTC_KRW`; `BTCKRW`). None: no good guess."""
    several = [part for part in re.split(r"[,\s]+", candidate) if part]
    if len(several) > 1 and all(_MARKET_RE.fullmatch(part) for part in several):
        return f"give one market per argument: {' '.join(several)}"
    for separator in "/-_:":
        if candidate.count(separator) == 1:
            first, second = candidate.split(separator)
            # Upbit writes QUOTE-BASE; most other places BASE/QUOTE: the turned round first.
            for quote, base in ((second, first), (first, second)):
                guess = f"{quote}-{base}"
                if guess != candidate and _MARKET_RE.fullmatch(guess) and base not in _FIAT:
                    return f"did you mean {guess}? (Upbit writes QUOTE-BASE)"
            return None
    for quote in QUOTES:  # BTCKRW, KRWBTC
        for base in (candidate.removesuffix(quote), candidate.removeprefix(quote)):
            if base not in (candidate, "", *_FIAT) and _MARKET_RE.fullmatch(f"{quote}-{base}"):
                return f"did you mean {quote}-{base}? (Upbit writes QUOTE-BASE)"
    return None


def unknown_hint(code: str, listed: Iterable[str]) -> str:
    """` (did you mean USDT-BTC?)` for a well-formed code Upbit does not list whose turned
    round form it does list; else nothing."""
    quote, _, base = code.partition("-")
    turned = f"{base}-{quote}"
    return f" (did you mean {turned}?)" if turned in set(listed) else ""


def validate_markets(codes: Iterable[str]) -> list[str]:
    """Validate many codes, dropping repeats but keeping the order given."""
    check_markets_type(codes)
    return list(dict.fromkeys(validate_market(c) for c in codes))


def validate_quote(quote: str) -> str:
    """Return the quote currency upper-cased if Upbit has it, else raise."""
    candidate = quote.strip().upper()
    if candidate not in QUOTES:
        raise InvalidMarketError(
            f"invalid quote currency {quote!r}: expected one of {', '.join(QUOTES)}"
        )
    return candidate


def read_market_list(text: str | bytes, source: str = "the markets file") -> list[str]:
    """The markets of a list such as `--markets-file` gives: one a line (commas and spaces
    also separate them); blank lines and `#` comments are skipped. Each is validated.

    Bytes are read as UTF-8, a byte-order mark at the start skipped (as some editors on
    Windows write it); anything else (another encoding, a binary file) is refused with a
    line saying where, named by `source`.
    """
    if isinstance(text, bytes):
        if b"\0" in text:
            raise InvalidMarketError(f"{source} is not text (it holds NUL bytes): give a list")
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            bad = text[exc.start]
            raise InvalidMarketError(
                f"{source} is not UTF-8 text (byte 0x{bad:02x} at offset {exc.start})"
            ) from None
    found = []
    for line in text.removeprefix("\ufeff").splitlines():
        found += line.partition("#")[0].replace(",", " ").split()
    if not found:
        raise InvalidMarketError(f"{source} names no market")
    return validate_markets(found)
