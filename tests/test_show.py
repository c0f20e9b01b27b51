"""`upbit-cache show`: the newest candles, as export's CSV in a pipe and as a table (with a
sparkline of closes where it fits) on a terminal; `UpbitCache.tail` behind it."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import FAST_RATE, NOW, candle_requests, plain, run_fetch, truth
from rich.console import Console
from typer.testing import CliRunner

from upbit_cache import UpbitCache
from upbit_cache.cli import app
from upbit_cache.cli import show_view as view
from upbit_cache.manager.export import EXPORT_SCHEMA
from upbit_cache.simulator import SimulatorServer
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

runner = CliRunner()
HOUR = 3_600_000


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["show", *args])
    return result.exit_code, result.stdout, plain(result.stderr)


def sim_args(sim: SimulatorServer, data: Path) -> list[str]:
    return ["--api-url", sim.url, "--data-dir", str(data), "--rate", str(FAST_RATE)]


def newest(sim: SimulatorServer, market: str, tf: str, count: int, days: int = 3) -> pd.DataFrame:
    expected = truth(sim, market, tf, to_ms(NOW) - days * 86_400_000, NOW)
    return expected.iloc[-count:].reset_index(drop=True)


def test_in_a_pipe_the_newest_20_as_exports_csv(sim: SimulatorServer, tmp_path: Path) -> None:
    code, out, err = invoke("KRW-BTC", "-t", "1h", *sim_args(sim, tmp_path))
    assert code == 0, err
    assert out.splitlines()[0] == ",".join(EXPORT_SCHEMA.names)
    rows = pd.read_csv(io.StringIO(out))
    assert (
        len(rows) == 20 and set(rows["market"]) == {"KRW-BTC"} and set(rows["timeframe"]) == {"1h"}
    )
    expected = newest(sim, "KRW-BTC", "1h", 20)
    assert list(pd.to_datetime(rows["time"], utc=True)) == list(expected["time"])
    assert rows["close"].tolist() == expected["close"].tolist()
    assert rows["time"].iloc[-1] == "2026-11-19T23:00:00.000Z"  # the last closed hour


def test_tail_counts_and_no_refresh_reads_only_the_store(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    code, out, _ = invoke("KRW-ETH", "-t", "15m", "--tail", "5", *sim_args(sim, tmp_path))
    assert code == 0 and len(out.splitlines()) == 1 + 5
    asked = candle_requests(sim)
    code, out, _ = invoke(
        "KRW-ETH", "-t", "15m", "-n", "3", "--no-refresh", *sim_args(sim, tmp_path)
    )
    assert code == 0 and len(out.splitlines()) == 1 + 3 and candle_requests(sim) == asked
    rows = pd.read_csv(io.StringIO(out))
    assert rows["close"].tolist() == newest(sim, "KRW-ETH", "15m", 3)["close"].tolist()


def test_older_stored_candles_fill_up_to_n(sim: SimulatorServer, tmp_path: Path) -> None:
    # A sparse market at 1m: the last 200 minutes hold fewer than 200 candles; the rest come
    # from what an earlier fetch stored before them.
    market = next(m.market for m in sim.history.markets if m.sparse and m.market.startswith("KRW-"))
    run_fetch(sim.url, tmp_path, [market], "1m", days=2)
    cache = UpbitCache(tmp_path, api_url=sim.url, rate=FAST_RATE)
    recent = truth(sim, market, "1m", to_ms(NOW) - 200 * 60_000, NOW)
    assert len(recent) < 200
    got = cache.tail(market, "1m", 200)
    pd.testing.assert_frame_equal(got, newest(sim, market, "1m", 200, days=2))
    no_fetch = cache.tail(market, "1m", 200, refresh=False)
    pd.testing.assert_frame_equal(no_fetch, got)


def test_a_derived_timeframe_is_shown_from_its_base(sim: SimulatorServer, tmp_path: Path) -> None:
    run_fetch(sim.url, tmp_path, ["KRW-BTC"], "1h", days=2)
    got = UpbitCache(tmp_path).tail("KRW-BTC", "2h", 4, refresh=False)
    assert len(got) == 4 and got["time"].iloc[-1] == pd.Timestamp("2026-11-19T22:00:00Z")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["KRW-NOPE", "-t", "1h"], "Upbit does not list KRW-NOPE"),
        (["BTC", "-t", "1h"], "invalid market code 'BTC'"),
        (["KRW-BTC", "-t", "7m"], "unsupported timeframe '7m'"),
        (["KRW-BTC", "-t", "1m,1h"], "show takes one timeframe (-t), not 1m, 1h"),
        (["KRW-BTC", "--tail", "0"], "--tail"),
        (["KRW-BTC", "--no-refresh"], "nothing stored for KRW-BTC (1h)"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    sim: SimulatorServer, tmp_path: Path, args: list[str], message: str
) -> None:
    code, out, err = invoke(*args, *sim_args(sim, tmp_path))
    assert code == 2 and out == ""
    assert err.startswith("upbit-cache: error: ") and err.count("\n") == 1, err
    assert message in err


def rendered(frame: pd.DataFrame, width: int, tz: str = "UTC") -> str:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=width)
    view.table(frame, "KRW-BTC", Timeframe.parse("1h"), console, tz)
    text = screen.getvalue()
    assert "\x1b[" in text  # styled, as on a terminal
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_the_terminal_table_with_a_sparkline_where_it_fits(sim: SimulatorServer) -> None:
    frame = newest(sim, "KRW-BTC", "1h", 20)
    wide = rendered(frame, 120)
    closes = frame["close"].tolist()
    assert (
        f"close {view.sparkline(closes)}  low {min(closes):,.0f}  high {max(closes):,.0f}" in wide
    )
    assert "KRW-BTC 1h, newest 20" in wide
    assert "2026-11-19 23:00" in wide and f"{closes[-1]:,.0f}" in wide
    assert "volume" in wide and f"{frame['volume'].iloc[-1]:.8f}".rstrip("0") in wide
    narrow = rendered(frame, 60)
    assert "▁" not in narrow and "█" not in narrow  # no room for the sparkline
    assert "volume" not in narrow  # the first column given up
    assert all(len(line) <= 60 for line in narrow.splitlines())
    seoul = rendered(frame, 120, "Asia/Seoul")
    assert "time (Asia/Seoul)" in seoul and "2026-11-20 08:00" in seoul


def test_sparkline_and_columns() -> None:
    assert view.sparkline([1, 2, 3]) == "▁▅█"
    assert view.sparkline([5, 5]) == "▄▄" and view.sparkline([]) == ""
    assert view.column([184_903_000.0, 185_000_000.0]) == ["184,903,000", "185,000,000"]
    assert view.column([0.03456789, 0.5]) == ["0.03456789", "0.50000000"]
    assert view.column([98_765.43, 98_000.0]) == ["98,765.43", "98,000.00"]
    assert (
        view.short_time(to_ms("2026-11-20T00:00:00Z"), "UTC", Timeframe.parse("1d")) == "2026-11-20"
    )
    assert view.short_time(to_ms("2026-11-20T00:00:05Z"), "UTC", Timeframe.parse("1s")) == (
        "2026-11-20 00:00:05"
    )
