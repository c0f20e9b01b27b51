"""Real Upbit bodies (../shared/upbit-samples, as vcrpy cassettes) through the real client."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
import vcr
import yaml

from upbit_cache.candles import from_table, to_table
from upbit_cache.collector.checks import check_page
from upbit_cache.collector.client import UpbitClient
from upbit_cache.collector.config import ClientConfig
from upbit_cache.errors import ResponseFormatError
from upbit_cache.ranges import TimeRange
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

CASSETTES = Path(__file__).parent / "cassettes"
replay = vcr.VCR(cassette_library_dir=str(CASSETTES), record_mode="none")


def candles(cassette: str, market: str, tf: str, pages: list[tuple[str, int]]) -> pd.DataFrame:
    async def go() -> list[pa.Table]:
        async with UpbitClient(ClientConfig()) as client:
            return [
                await client.candles(market, Timeframe.parse(tf), to_ms(to), count)
                for to, count in pages
            ]

    with replay.use_cassette(f"{cassette}.yaml") as tape:
        frames = asyncio.run(go())
        assert tape.all_played
    return from_table(pa.concat_tables(frames))


def sample(name: str) -> list[dict[str, Any]]:
    # The cassettes were written from these bodies; read them back from the cassette itself.
    text = (CASSETTES / f"{name}.yaml").read_text()
    return [
        json.loads(i["response"]["body"]["string"]) for i in yaml.safe_load(text)["interactions"]
    ]


def test_1m_pages_parse_to_a_sorted_typed_frame() -> None:
    frame = candles(
        "krw_btc_1m_2020-02-20",
        "KRW-BTC",
        "1m",
        [("2020-02-20T11:20:00Z", 200), ("2020-02-20T12:00:00Z", 40)],
    )
    assert len(frame) == 240
    assert str(frame["time"].dtype) == "datetime64[ms, UTC]"
    assert frame["time"].is_monotonic_increasing
    assert frame["time"].iloc[0] == pd.Timestamp("2020-02-20T08:00:00Z")
    assert frame["time"].iloc[-1] == pd.Timestamp("2020-02-20T11:59:00Z")
    # Values come through untouched: the oldest candle of the first page (last on the wire).
    wire = sample("krw_btc_1m_2020-02-20")[0][-1]
    first = frame.iloc[0]
    assert (first.open, first.high, first.low, first.close) == (
        wire["opening_price"],
        wire["high_price"],
        wire["low_price"],
        wire["trade_price"],
    )
    assert first.volume == wire["candle_acc_trade_volume"]
    assert first.value == wire["candle_acc_trade_price"]
    assert first.timestamp == pd.Timestamp(wire["timestamp"], unit="ms", tz="UTC")


def test_raw_wire_numbers_with_eight_decimals() -> None:
    frame = candles("krw_btc_1m_raw_wire", "KRW-BTC", "1m", [("2020-02-25T06:42:00Z", 1)])
    row = frame.iloc[0]
    assert row.time == pd.Timestamp("2020-02-25T06:41:00Z")
    assert (row.open, row.high, row.low, row.close) == (
        11436000.0,
        11443000.0,
        11428000.0,
        11443000.0,
    )
    assert row.value == pytest.approx(17001839.06758)
    assert row.timestamp == pd.Timestamp(1582612901489, unit="ms", tz="UTC")


def test_3m_pages_with_gaps_between_them() -> None:
    frame = candles(
        "krw_btc_3m_2020-02-20",
        "KRW-BTC",
        "3m",
        [("2020-02-20T01:00:00Z", 200), ("2020-02-20T03:00:00Z", 40), ("2020-02-20T11:00:00Z", 60)],
    )
    assert len(frame) == 300
    assert frame["time"].is_unique
    step = frame["time"].diff().dropna().dt.total_seconds()
    assert set(step.unique()) == {180.0, 5 * 3600.0 + 180.0}  # 03:00 -> 08:00 is not in the pages


def test_a_real_seconds_page_parses_and_passes_the_checks() -> None:
    # /v1/candles/seconds: no `unit` field, numbers as JSON integers where they are whole.
    frame = candles("krw_btc_1s_2025-06-30", "KRW-BTC", "1s", [("2025-07-01T00:00:00Z", 1)])
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row.time == pd.Timestamp("2025-06-30T23:59:59Z")
    assert (row.open, row.high, row.low, row.close) == (145794000, 145794000, 145759000, 145759000)
    assert (row.volume, row.value) == (0.0013, 185042.0)
    assert row.timestamp == pd.Timestamp(1751327999833, unit="ms", tz="UTC")
    assert str(frame["open"].dtype) == "float64"
    page = TimeRange(to_ms("2025-06-30T23:56:40Z"), to_ms("2025-07-01T00:00:00Z"))
    check_page(to_table(frame), Timeframe.parse("1s"), page, 200)  # its last trade is inside


def test_market_list_with_market_event() -> None:
    async def go() -> list[Any]:
        async with UpbitClient(ClientConfig()) as client:
            return await client.markets()

    with replay.use_cassette("market_all.yaml"):
        markets = asyncio.run(go())
    assert [(m.market, m.english_name, m.warning) for m in markets] == [
        ("KRW-BTC", "Bitcoin", False),
        ("KRW-ETH", "Ethereum", True),
    ]


def test_numbers_sent_as_strings_are_a_clear_error() -> None:
    with pytest.raises(
        ResponseFormatError, match=r"USDT-BTC 1h: field opening_price holds non-numbers"
    ):
        candles("usdt_btc_1h_numbers_as_strings", "USDT-BTC", "1h", [("2024-03-13T12:00:00Z", 1)])
