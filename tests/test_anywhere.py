"""The library wherever Python runs: every sync method inside a running event loop (as in a
Jupyter cell or an async app), the async twins awaited directly, and the runner's promises
(results and exceptions as they are, Ctrl-C honoured, its thread stopped)."""

from __future__ import annotations

import asyncio
import gc
import signal
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import DEADLINE, FAST_RATE, truth, wait_for

import upbit_cache
from upbit_cache import UpbitCache, Window
from upbit_cache.errors import InvalidMarketError, UnknownMarketError, UsageError
from upbit_cache.manager.prune import Policy
from upbit_cache.manager.runner import Runner
from upbit_cache.manager.scope import ScreenRequest
from upbit_cache.simulator import SimulatorServer
from upbit_cache.times import to_ms

START, END = "2026-11-17T00:00:00Z", "2026-11-19T00:00:00Z"
WINDOW = Window(to_ms(START), to_ms(END))


def helpers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "upbit-cache loop"]


def in_a_loop(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run `coro` on a loop of its own that installs no signal handler (`asyncio.run` takes
    over Ctrl-C), as a Jupyter kernel's loop runs a cell."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def test_every_sync_method_works_inside_a_running_loop(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    out = tmp_path / "out.csv"

    async def app() -> None:
        asyncio.get_running_loop()  # what makes asyncio.run refuse
        cache = UpbitCache(tmp_path / "data", api_url=sim.url, rate=FAST_RATE)
        report = cache.fetch(["KRW-BTC"], timeframes="1h", window=WINDOW)
        assert report.failed == [] and report.candles == 48
        expected = truth(sim, "KRW-BTC", "1h", START, END)
        pd.testing.assert_frame_equal(cache.get("KRW-BTC", "1h", START, END), expected)
        pd.testing.assert_frame_equal(cache.load("KRW-BTC", "1h", START, END), expected)
        pd.testing.assert_frame_equal(
            upbit_cache.load("KRW-BTC", "1h", data_dir=cache.files.root), expected
        )
        assert [d.target.name for d in cache.resample(["KRW-BTC"], "4h")] == ["4h"]
        exported = cache.export(["KRW-BTC"], timeframes="1h", window=WINDOW, out=str(out))
        assert exported.rows == 48 and len(out.read_text().splitlines()) == 49
        request = ScreenRequest(markets=("KRW-BTC",), days=1, refresh=False)
        screen = tmp_path / "screen.csv"
        assert cache.screen_prep(request, out=str(screen)).result is not None
        assert {(i.timeframe.name, i.market) for i in cache.info()} == {
            ("1h", "KRW-BTC"),
            ("4h", "KRW-BTC"),
        }
        assert cache.verify().healthy
        assert cache.prune(Policy(), dry_run=True) is not None
        assert len(helpers()) == 1  # one helper thread, reused by every call
        cache.close()

    asyncio.run(app())
    assert helpers() == []


def test_the_async_twins_awaited(sim: SimulatorServer, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"

    async def app() -> None:
        cache = UpbitCache(tmp_path / "data", api_url=sim.url, rate=FAST_RATE)
        report = await cache.afetch(["KRW-BTC", "KRW-ETH"], timeframes="1h", window=WINDOW)
        assert report.failed == [] and report.candles == 96
        expected = truth(sim, "KRW-ETH", "1h", START, END)
        got = await cache.aget("KRW-ETH", "1h", START, END)
        pd.testing.assert_frame_equal(got, expected)
        pd.testing.assert_frame_equal(await cache.aload("KRW-ETH", "1h", START, END), expected)
        loaded = await upbit_cache.aload("KRW-ETH", "1h", START, END, data_dir=cache.files.root)
        pd.testing.assert_frame_equal(loaded, expected)
        derived = await cache.aresample(["KRW-ETH"], "2h")
        assert [d.market for d in derived] == ["KRW-ETH"]
        exported = await cache.aexport(
            ["KRW-ETH"], timeframes="1h", window=WINDOW, out=str(out), fmt="jsonl", refresh=False
        )
        assert exported.rows == 48 and len(out.read_text().splitlines()) == 48
        request = ScreenRequest(markets=("KRW-BTC",), days=1, refresh=False)
        produced = await cache.ascreen_prep(request, out=str(tmp_path / "s.parquet"), fmt="parquet")
        assert produced.result is not None and produced.result.table.num_rows > 0
        infos = await cache.ainfo(["KRW-ETH"])
        assert {i.timeframe.name for i in infos} == {"1h", "2h"}
        assert (await cache.averify()).healthy
        assert (await cache.aprune(Policy(), dry_run=True)) is not None
        assert helpers() == []  # awaited on the caller's loop: no thread of ours

    asyncio.run(app())


def test_a_failure_inside_a_loop_is_the_error_itself(sim: SimulatorServer, tmp_path: Path) -> None:
    async def app() -> None:
        with UpbitCache(tmp_path, api_url=sim.url, rate=FAST_RATE) as cache:
            with pytest.raises(UnknownMarketError, match="KRW-NOPE"):
                cache.get("KRW-NOPE", "1h", START, END)
            with pytest.raises(InvalidMarketError):
                cache.fetch(["not a market"], window=WINDOW)
            with pytest.raises(UnknownMarketError):
                await cache.aget("KRW-NOPE", "1h", START, END)

    asyncio.run(app())


def test_the_runner_returns_and_raises_what_the_coroutine_did() -> None:
    runner = Runner()
    failure = ValueError("this one")

    async def fails() -> None:
        raise failure

    async def answers() -> int:
        await asyncio.sleep(0)
        return 42

    async def app() -> None:
        assert runner.run(answers()) == 42
        with pytest.raises(ValueError) as caught:
            runner.run(fails())
        assert caught.value is failure  # not a copy, not wrapped

    asyncio.run(app())
    assert runner.run(answers()) == 42  # no loop running: asyncio.run
    runner.close()
    assert helpers() == []


def test_a_sync_call_from_the_runners_own_loop_is_refused_not_a_deadlock() -> None:
    runner = Runner()

    async def inner() -> int:
        return 1

    async def outer() -> int:
        return runner.run(inner())  # a callback on the helper loop calling a sync method

    async def app() -> None:
        with pytest.raises(UsageError, match="async twin"):
            runner.run(outer())

    asyncio.run(app())  # and no "coroutine was never awaited" warning (warnings are errors)
    runner.close()


def test_ctrl_c_cancels_the_coroutine_waits_for_its_cleanup_and_raises() -> None:
    runner = Runner()
    started, cleaned = threading.Event(), threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.sleep(DEADLINE)
        finally:
            await asyncio.sleep(0.05)  # cleanup that itself awaits, as a page write does
            cleaned.set()

    def interrupt() -> None:
        started.wait(DEADLINE)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    async def cell() -> None:
        threading.Thread(target=interrupt, daemon=True).start()
        runner.run(forever())

    with pytest.raises(KeyboardInterrupt):
        in_a_loop(cell())
    assert cleaned.is_set()  # the task was cancelled and had finished before the raise
    runner.close()


def test_a_dropped_cache_stops_its_thread(tmp_path: Path) -> None:
    async def app() -> None:
        cache = UpbitCache(tmp_path)
        assert cache.verify().healthy  # an empty store
        assert len(helpers()) == 1

    asyncio.run(app())
    gc.collect()
    wait_for(lambda: helpers() == [], "the helper thread to stop")
