"""The one market-code validator."""

from __future__ import annotations

import pytest

from upbit_cache.errors import InvalidMarketError
from upbit_cache.markets import validate_market, validate_markets, validate_quote


@pytest.mark.parametrize(
    "code", ["KRW-BTC", "krw-btc", " KRW-ETH ", "BTC-XRP", "USDT-BTC", "KRW-1INCH"]
)
def test_accepts_and_normalises(code: str) -> None:
    assert validate_market(code) == code.strip().upper()


@pytest.mark.parametrize(
    "code",
    [
        "KRWBTC",
        "KRW_BTC",
        "KRW-",
        "-BTC",
        "EUR-BTC",
        "KRW-BTC/../x",
        "../KRW-BTC",
        "KRW-B TC",
        "KRW-BTC-ETH",
        "",
        "KRW\tBTC",
        "KRW-%2e%2e",
    ],
)
def test_rejects_malformed_codes(code: str) -> None:
    # The form, or the code meant when it is clear (`KRWBTC`, `KRW_BTC`: KRW-BTC).
    with pytest.raises(InvalidMarketError, match=r"e\.g\. KRW-BTC|: did you mean KRW-BTC\?"):
        validate_market(code)


def test_many_keeps_order_without_repeats() -> None:
    assert validate_markets(["krw-eth", "KRW-BTC", "KRW-ETH"]) == ["KRW-ETH", "KRW-BTC"]


def test_quote() -> None:
    assert validate_quote("krw") == "KRW"
    with pytest.raises(InvalidMarketError):
        validate_quote("EUR")
