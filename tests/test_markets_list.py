"""`upbit-cache markets`: Upbit's list (names, warnings, caution flags) beside what the
store's records hold; JSON lines, tab-separated rows in a pipe, a table on a terminal."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

from conftest import FAST_RATE, NOW, plain, run_fetch, truth
from rich.console import Console
from typer.testing import CliRunner

from upbit_cache import UpbitCache
from upbit_cache.cli import app
from upbit_cache.cli import markets_view as view
from upbit_cache.collector.listing import parse_markets
from upbit_cache.ranges import Ranges
from upbit_cache.simulator import SimulatorConfig, SimulatorServer
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

runner = CliRunner()
H1 = Timeframe.parse("1h")
DAY = 86_400_000


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["markets", *args])
    return result.exit_code, result.stdout, plain(result.stderr)


def listed(sim: SimulatorServer, quote: str | None = None) -> dict[str, Any]:
    now = sim.clock.now_ms()
    return {
        m.market: m
        for m in sim.history.listed_markets(now)
        if quote is None or m.market.startswith(quote + "-")
    }


def test_json_lines_name_every_market_its_warnings_and_what_is_stored(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "1h", days=3)
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "1d", days=10)
    code, out, err = invoke(
        "--quote", "KRW", "--json", "--api-url", sim.url, "--data-dir", str(tmp_path)
    )
    assert code == 0, err
    rows = {r["market"]: r for r in map(json.loads, out.splitlines())}
    truth_ = listed(sim, "KRW")
    assert list(rows) == sorted(truth_)
    for market, info in truth_.items():
        row = rows[market]
        assert (row["korean_name"], row["english_name"]) == (info.korean_name, info.english_name)
        assert row["listed"] is True and row["warning"] is info.warning
        assert row["cautions"] == [k for k, on in info.caution.items() if on]
    assert any(r["warning"] for r in rows.values()) and any(r["cautions"] for r in rows.values())
    now = to_ms(NOW)
    hourly, daily = rows["KRW-BTC"]["stored"]  # finest first
    assert (hourly["timeframe"], hourly["start_ms"], hourly["end_ms"]) == ("1h", now - 3 * DAY, now)
    assert hourly["start"] == "2026-11-17T00:00:00Z" and hourly["ranges"] == 1
    assert (daily["timeframe"], daily["end_ms"]) == ("1d", now)
    assert all(not r["stored"] for m, r in rows.items() if m != "KRW-BTC")


def test_in_a_pipe_one_tab_separated_line_per_market_no_header(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    run_fetch(sim.url, tmp_path, ["KRW-ETH"], "1h", days=2)
    code, out, err = invoke("--api-url", sim.url, "--data-dir", str(tmp_path))
    assert code == 0, err
    lines = [line.split("\t") for line in out.splitlines()]
    assert all(len(cells) == 5 for cells in lines)
    by_market = {cells[0]: cells for cells in lines}
    assert list(by_market) == sorted(listed(sim))  # every quote: BTC-, KRW-, USDT-
    assert {m.split("-")[0] for m in by_market} == {"BTC", "KRW", "USDT"}
    assert by_market["KRW-ETH"][4] == "1h=2026-11-18T00:00:00Z/2026-11-20T00:00:00Z"
    assert by_market["KRW-BTC"][4] == "-"
    warned = next(m for m, info in listed(sim).items() if info.warning)
    assert "warning" in by_market[warned][3].split(",")
    quiet = next(
        m for m, info in listed(sim).items() if not info.warning and not any(info.caution.values())
    )
    assert by_market[quiet][3] == "-"
    assert "\x1b[" not in out


def test_an_upbit_that_says_nothing_of_warnings_reads_unknown_not_clean(tmp_path: Path) -> None:
    config = SimulatorConfig(rate=FAST_RATE, clock_start=NOW, frozen=True, details="ignored")
    with SimulatorServer(config) as server:
        code, out, _ = invoke(
            "--quote", "BTC", "--api-url", server.url, "--data-dir", str(tmp_path)
        )
        assert code == 0
        assert {line.split("\t")[3] for line in out.splitlines()} == {"?"}
        code, out, _ = invoke("--quote", "BTC", "--json", "--api-url", server.url)
        assert {json.loads(line)["warning"] for line in out.splitlines()} == {None}


def test_a_stored_market_upbit_no_longer_lists_is_shown_unlisted(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    frame = truth(sim, "KRW-BTC", "1h", "2026-11-19T00:00:00Z", NOW)
    span = Ranges.of([(to_ms("2026-11-19T00:00:00Z"), to_ms(NOW))])
    CandleStore(tmp_path).write("KRW-GONE", H1, frame, span)
    items = UpbitCache(tmp_path, api_url=sim.url).markets("KRW")
    [gone] = [i for i in items if i.market == "KRW-GONE"]
    assert not gone.listed and gone.warning is None and gone.stored[0].timeframe == H1
    assert view.tsv([gone]).split("\t")[3] == "unlisted"


def test_no_data_dir_lists_the_markets_and_creates_nothing(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    missing = tmp_path / "none"
    code, out, err = invoke("--quote", "USDT", "--api-url", sim.url, "--data-dir", str(missing))
    assert code == 0, err
    assert len(out.splitlines()) == len(listed(sim, "USDT")) and not missing.exists()


def test_a_bad_quote_is_one_line_and_exit_2(sim: SimulatorServer) -> None:
    code, out, err = invoke("--quote", "EUR", "--api-url", sim.url)
    assert code == 2 and out == ""
    assert (
        err == "upbit-cache: error: invalid quote currency 'EUR': expected one of KRW, BTC, USDT\n"
    )


def test_the_terminal_table(sim: SimulatorServer, tmp_path: Path) -> None:
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "1h", days=2)
    items = UpbitCache(tmp_path, api_url=sim.url).markets("KRW")
    screen = io.StringIO()
    view.table(items, Console(file=screen, force_terminal=True, width=160), "UTC")
    shown = screen.getvalue()
    assert "\x1b[" in shown  # a terminal's table
    text = plain_text(shown)
    assert "KRW-BTC" in text and "비트코인" in text
    assert "1h 2026-11-18 00:00 → 2026-11-20 00:00" in text
    assert f"{len(items)} markets listed" in text and "1 with candles stored" in text


def plain_text(rendered: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", rendered)


def test_the_library_call_gives_the_same(sim: SimulatorServer, tmp_path: Path) -> None:
    items = UpbitCache(tmp_path, api_url=sim.url).markets()
    assert [i.market for i in items] == sorted(listed(sim))
    assert all(i.listed and not i.stored for i in items)


def test_the_list_is_read_in_each_of_its_forms() -> None:
    body = [
        {"market": "KRW-A", "market_event": {"warning": True, "caution": {"X": True, "Y": False}}},
        {"market": "KRW-B", "market_event": {"warning": "false", "caution": {"X": "true"}}},
        {"market": "KRW-C", "market_warning": "CAUTION"},
        {"market": "KRW-D", "market_warning": "NONE"},
        {"market": "KRW-E"},
    ]
    read = {m.market: (m.warning, m.cautions, m.detailed) for m in parse_markets(body)}
    assert read == {
        "KRW-A": (True, ("X",), True),
        "KRW-B": (False, ("X",), True),  # flags sent as text: "false" is not set
        "KRW-C": (True, (), True),
        "KRW-D": (False, (), True),
        "KRW-E": (False, (), False),  # nothing said: unknown, shown as ?
    }
