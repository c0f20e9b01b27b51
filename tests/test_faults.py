"""Rate limits, bans, server faults and malformed answers, against the simulator."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from aiohttp import web
from conftest import DEADLINE, NOW, Procs, read_until, request, run_fetch, truth

from upbit_cache.collector.client import UpbitClient
from upbit_cache.collector.config import ClientConfig
from upbit_cache.collector.hostcell import HostCell
from upbit_cache.collector.listing import block_seconds, blocked_message
from upbit_cache.collector.ratelimit import (
    MAX_LATE,
    MAX_MARGIN,
    STRIKE_MEMORY,
    RateLimiter,
    Send,
    SharedSchedule,
)
from upbit_cache.errors import IPBlockedError
from upbit_cache.ranges import TimeRange
from upbit_cache.simulator import SimulatorConfig, SimulatorServer
from upbit_cache.store.candle_store import CandleStore
from upbit_cache.timeframes import Timeframe
from upbit_cache.times import to_ms

H1 = Timeframe.parse("1h")
MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP"]


class SimProcess:
    """The simulator in a process of its own: its timing is not at the mercy of this
    process's GIL (an in-process server would see our sends bunched by our own work)."""

    def __init__(self, procs: Procs, *args: str) -> None:
        command = [sys.executable, "-m", "upbit_cache.simulator", "--port", "0", *args]
        self.proc = procs.popen(command, stdout=subprocess.PIPE, text=True)
        line = read_until(self.proc, lambda lines: len(lines) >= 1, "the URL line")[0]
        self.url = line.rsplit(" ", 1)[1].strip()

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_sim/stats", timeout=10) as answer:
            return dict(json.loads(answer.read()))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=DEADLINE)


@pytest.fixture
def strict(procs: Procs) -> Iterator[SimProcess]:
    """A simulator enforcing Upbit's real 10 requests/s, in its own process."""
    sim = SimProcess(procs, "--rate", "10", "--clock", NOW, "--frozen")
    yield sim
    sim.stop()


@pytest.fixture
def readme_sim(procs: Procs) -> Iterator[SimProcess]:
    """The simulator as the README runs it (`--latency 0.03 --rate 10`), clock set."""
    sim = SimProcess(procs, "--latency", "0.03", "--rate", "10", "--clock", NOW, "--frozen")
    yield sim
    sim.stop()


@pytest.mark.slow
def test_the_limiter_keeps_under_10_per_second_with_zero_429s(
    strict: SimProcess, tmp_path: Path
) -> None:
    report = run_fetch(strict.url, tmp_path, MARKETS, "1h", days=60, rate=10)  # 8 pages each
    assert report.failed == []
    stats = strict.stats()
    assert stats["rate_limited"] == 0 and report.rate_limited == 0, stats["by_status"]
    assert report.candle_requests == 24, stats["by_path"]
    # 24 requests at 10/s: the first 10 go at once, the rest one window later each.
    assert report.seconds >= 1.9


def test_a_send_counts_from_when_it_went_out_and_from_a_late_answer() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock)
    send = Send(released=clock.now)
    clock.now += 0.05
    assert limiter.counted(send, clock.now) == clock.now  # not out yet: at least now
    limiter.sent(send)
    wire = clock.now
    clock.now += 0.03
    assert limiter.counted(send, clock.now) == wire
    limiter.answered(send)  # the first answer sets the quickest round trip: 30 ms
    assert limiter.counted(send, clock.now + 5) == wire
    late = Send(released=clock.now)
    limiter.sent(late)
    clock.now += 0.08  # 50 ms slower than the quickest: Upbit may have counted it that late
    limiter.answered(late)
    assert limiter.counted(late, clock.now) == pytest.approx(late.wire + 0.05 - limiter.margin)
    hung = Send(released=clock.now)
    limiter.sent(hung)
    clock.now += 3.0  # no answer yet, or a very slow one: at most MAX_LATE after it went out
    assert limiter.counted(hung, clock.now) == pytest.approx(hung.wire + MAX_LATE - limiter.margin)


def test_the_eleventh_send_waits_for_the_first_to_have_reached_upbit_a_second_before() -> None:
    async def eleven() -> tuple[Send, float, Send]:
        limiter = RateLimiter(10)
        first = await limiter.acquire()
        await asyncio.sleep(0.15)  # a new connection's set-up, or a busy loop
        limiter.sent(first)
        limiter.answered(first)
        for _ in range(9):
            send = await limiter.acquire()
            limiter.sent(send)
            limiter.answered(send)
        return first, limiter.window, await limiter.acquire()

    first, window, eleventh = asyncio.run(eleven())
    assert first.wire is not None and first.wire >= first.released + 0.15
    assert eleventh.released >= first.wire + window  # a second after it went out


def test_processes_of_a_host_see_a_send_move_to_when_upbit_may_have_counted_it(
    tmp_path: Path,
) -> None:
    schedule = SharedSchedule(HostCell(str(tmp_path / "pace")))
    for i in range(10):
        assert schedule.commit(100.0 + i / 10, 1.0, 10) == 0
        schedule.amend(100.0 + i / 10, 100.0 + i / 10)  # written
    assert schedule.commit(101.05, 1.0, 10) == 0  # the first left the window at 101.0
    schedule = SharedSchedule(HostCell(str(tmp_path / "pace-2")))
    for i in range(10):
        schedule.commit(100.0 + i / 10, 1.0, 10)
        schedule.amend(100.0 + i / 10, 100.0 + i / 10)
    schedule.amend(100.0, 100.2)  # answered late: it may have reached Upbit at 100.2
    assert schedule.commit(101.05, 1.0, 10) > 0  # ten of the last second, with it


@pytest.mark.slow
def test_cli_fetches_in_a_row_and_a_four_market_fetch_earn_no_429(
    readme_sim: SimProcess, tmp_path: Path
) -> None:
    # What a new user saw 429s in: runs one after the other (each a new process, whose
    # first requests open new connections, pacing with the last run's sends through the
    # host's schedule), then four markets of 1m at 10 a second for nine seconds.
    env = {**os.environ, "UPBIT_CACHE_RUNTIME_DIR": str(tmp_path / "runtime")}
    runs = [(MARKETS, "1h", "60")] * 3 + [([*MARKETS, "KRW-SOL"], "1m", "3")]
    for i, (markets, tf, days) in enumerate(runs):
        command = [sys.executable, "-m", "upbit_cache", "fetch", *markets, "-t", tf]
        command += ["--days", days, "--api-url", readme_sim.url]
        command += ["--data-dir", str(tmp_path / f"data-{i}")]
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
    stats = readme_sim.stats()
    assert stats["candle_requests"] == 3 * 24 + 4 * 22, stats["by_path"]
    assert stats["rate_limited"] == 0, stats["by_status"]


def test_the_margin_starts_tight_and_widens_with_each_429() -> None:
    limiter = RateLimiter(10)
    assert limiter.spacing == pytest.approx(0.1005)
    limiter.on_429()
    assert limiter.window == pytest.approx(1.015)
    for _ in range(6):
        limiter.on_429()
    assert limiter.margin == MAX_MARGIN


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_429s_escalate_whatever_their_headers_and_strikes_fade_after_quiet_seconds() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock)
    limiter.on_429(sent_at=clock.now - 0.05)
    assert limiter._strikes == 1
    assert limiter._paused_until - clock.now == pytest.approx(limiter.window)
    # Answers in between carry `Remaining-Req` (429s do too): no reason to forget the strike.
    clock.now += 1.5
    limiter.observe(9, Send(clock.now - 0.03, wire=clock.now - 0.03, answered=clock.now))
    limiter.on_429(sent_at=clock.now - 0.02)
    assert limiter._strikes == 2
    assert limiter._paused_until - clock.now == pytest.approx(2 * limiter.window)
    # Requests in flight when the pause began come back 429 too: the same overrun.
    limiter.on_429(sent_at=clock.now - 0.01)
    assert limiter._strikes == 2
    # One strike is forgiven per STRIKE_MEMORY seconds without a 429.
    clock.now += STRIKE_MEMORY + 0.5
    limiter.on_429(sent_at=clock.now - 0.02)
    assert limiter._strikes == 2
    clock.now += 3 * STRIKE_MEMORY
    limiter.on_429(sent_at=clock.now - 0.02)
    assert limiter._strikes == 1
    assert limiter._paused_until - clock.now == pytest.approx(limiter.window)


@pytest.mark.slow
def test_429s_with_remaining_req_from_the_simulator_escalate_the_pause() -> None:
    # One request a second, answered after 0.3 s: the second and third requests go before
    # the first answer says the second is full, and earn 429s (which, like Upbit's, carry
    # `Remaining-Req`); after the pause, the third is sent again too soon: a second strike.
    config = SimulatorConfig(rate=1, latency=0.3, clock_start=NOW, frozen=True, ban_after_429s=1000)

    async def three_pages(url: str) -> tuple[int, int]:
        async with UpbitClient(ClientConfig(api_url=url, rate=10)) as client:
            pages = [client.candles("KRW-BTC", H1, None, 1) for _ in range(3)]
            await asyncio.gather(*pages)
            return client.limiter._strikes, client.stats.rate_limited

    with SimulatorServer(config) as server:
        strikes, rate_limited = asyncio.run(three_pages(server.url))
        assert rate_limited == server.stats()["rate_limited"] >= 2
        # Within a second of the last page: a 429, and it carries the header.
        reply = request(server.url, "/v1/candles/days", {"market": "KRW-BTC"})
        assert reply.status == 429 and "Remaining-Req" in reply.headers
    assert strikes == 2


@pytest.mark.slow
def test_429s_slow_the_client_down_and_every_candle_arrives(tmp_path: Path) -> None:
    # Latency keeps `Remaining-Req` from arriving before the next sends: 429s happen.
    config = SimulatorConfig(
        rate=2, latency=0.25, clock_start=NOW, frozen=True, ban_after_429s=1000
    )
    with SimulatorServer(config) as server:
        report = run_fetch(server.url, tmp_path, MARKETS, "1h", days=30, rate=10)
        assert report.failed == []
        assert report.rate_limited > 0
        assert server.stats()["rate_limited"] == report.rate_limited
        for market in MARKETS:
            got = CandleStore(tmp_path).load(market, H1)
            pd.testing.assert_frame_equal(
                got, truth(server, market, "1h", to_ms(NOW) - 30 * 86_400_000, NOW)
            )


def test_418_stops_the_run_and_keeps_what_was_fetched(tmp_path: Path) -> None:
    config = SimulatorConfig(
        rate=3, latency=0.2, clock_start=NOW, frozen=True, ban_after_429s=2, ban_seconds=60
    )
    with SimulatorServer(config) as server:
        markets = [m.market for m in server.history.markets if m.market.startswith("KRW-")][:12]
        report = run_fetch(server.url, tmp_path, markets, "1h", days=60, rate=50)
        assert report.blocked is not None and "418" in report.blocked
        # Whichever way the simulator words its 418: the time it names, else "a few minutes".
        [error, *_] = [o.error for o in report.failed if isinstance(o.error, IPBlockedError)]
        if error.retry_after is None:
            assert "Wait a few minutes" in report.blocked
        else:
            assert 0 < error.retry_after <= 60 and " UTC; stopped, data kept." in report.blocked
        assert all(isinstance(o.error, IPBlockedError) for o in report.failed)
        store = CandleStore(tmp_path)
        for market in markets:
            # Whatever a record claims is on disk, exactly.
            for start, end in store.fetched(H1, market):
                got = store.load(market, H1, TimeRange(start, end))
                pd.testing.assert_frame_equal(got, truth(server, market, "1h", start, end))


BLOCKS = [  # (Retry-After, body, seconds): Upbit's wording is unverified, so several shapes
    (None, {"error": {"name": 418, "message": "Your IP is blocked for 30 seconds."}}, 30.0),
    (None, {"error": {"name": "418", "message": "IP banned for 5 minutes"}}, 300.0),
    (
        None,
        {"error": {"name": 418, "message": "요청 수 제한을 초과하여 30초 동안 차단됩니다"}},
        30.0,
    ),
    (None, {"error": {"name": 418, "message": "1분 30초 후 다시 시도하세요"}}, 90.0),
    (None, {"error": {"name": 418, "message": "banned for 2h"}}, 7200.0),
    ("45", {"error": {"name": 418, "message": "blocked for 30 seconds"}}, 45.0),
    ("Fri, 20 Nov 2026 00:02:00 GMT", None, 120.0),
    (None, "Blocked for 10 sec.", 10.0),
    # Today's simulator, and an answer that names no time (numbers without units are not):
    (None, {"error": {"name": 418, "message": "Your IP is banned for abusing the API"}}, None),
    (None, {"error": {"name": 418, "message": "over 10 requests/s, 600 per 1 000 ms"}}, None),
]


@pytest.mark.parametrize(("retry_after", "body", "seconds"), BLOCKS)
def test_a_418_says_how_long_the_block_lasts_and_until_when(
    retry_after: str | None, body: Any, seconds: float | None
) -> None:
    raw = (body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)).encode()
    parsed = None if isinstance(body, str) else body
    assert block_seconds(parsed, raw, retry_after, to_ms(NOW)) == seconds

    async def blocked() -> tuple[IPBlockedError, IPBlockedError]:
        # A stand-in for Upbit that answers every request with this 418.
        async def answer(request: web.Request) -> web.Response:
            headers = {"Retry-After": retry_after} if retry_after else {}
            headers["Date"] = "Fri, 20 Nov 2026 00:00:00 GMT"
            if isinstance(body, str):
                return web.Response(status=418, text=body, headers=headers)
            text = json.dumps(body, ensure_ascii=False)
            return web.Response(
                status=418, text=text, headers=headers, content_type="application/json"
            )

        app = web.Application()
        app.router.add_get("/v1/candles/minutes/60", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with UpbitClient(ClientConfig(api_url=f"http://127.0.0.1:{port}")) as client:
                with pytest.raises(IPBlockedError) as first:
                    await client.candles("KRW-BTC", H1, None, 1)
                with pytest.raises(IPBlockedError) as later:  # the run stops: nothing is sent
                    await client.candles("KRW-ETH", H1, None, 1)
            return first.value, later.value
        finally:
            await runner.cleanup()

    first, later = asyncio.run(blocked())
    assert later.retry_after == first.retry_after and str(later) == str(first)
    if seconds is None:
        assert first.retry_after is None and str(first) == blocked_message(None, 0)
    else:
        # The stand-in's Date says NOW; the client's view of it moves on by a few ms.
        assert first.retry_after == pytest.approx(seconds, abs=0.1)
        assert str(first) == blocked_message(first.retry_after, to_ms(NOW))


def test_the_418_message_names_the_span_and_its_end_in_utc() -> None:
    now = to_ms("2026-11-20T16:05:01Z")
    assert blocked_message(30, now) == (
        "Upbit blocked this IP (HTTP 418) for 30 s, until 16:05:31 UTC; stopped, data kept. "
        "Run again after that."
    )
    assert "for 5 min 30 s, until 16:10:31 UTC" in blocked_message(330, now)
    assert "for 8 h, until 2026-11-21 00:05:01 UTC" in blocked_message(8 * 3600, now)
    assert blocked_message(None, now).startswith(
        "Upbit blocked this IP (HTTP 418) after too many requests; stopped, data kept. Wait a few"
    )


@pytest.mark.parametrize("kind", ["500", "drop", "truncate", "non_json", "slow"])
def test_transient_faults_are_retried(sim: SimulatorServer, tmp_path: Path, kind: str) -> None:
    sim.faults.inject(kind, count=2, market="KRW-ETH", seconds=0.2)
    report = run_fetch(sim.url, tmp_path, ["KRW-BTC", "KRW-ETH"], days=30)
    assert report.failed == []
    got = CandleStore(tmp_path).load("KRW-ETH", H1)
    pd.testing.assert_frame_equal(
        got, truth(sim, "KRW-ETH", "1h", to_ms(NOW) - 30 * 86_400_000, NOW)
    )


def test_a_market_that_keeps_failing_is_reported_and_others_complete(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    sim.faults.inject("500", count=100, market="KRW-ETH")
    report = run_fetch(sim.url, tmp_path, MARKETS, days=30)
    assert [(o.market, type(o.error).__name__) for o in report.failed] == [
        ("KRW-ETH", "ServerError")
    ]
    assert "HTTP 500" in str(report.failed[0].error)
    assert len(CandleStore(tmp_path).load("KRW-BTC", H1)) == 720
    assert len(CandleStore(tmp_path).load("KRW-XRP", H1)) == 720


LIES = [
    ("empty", "an empty answer for"),
    ("shift", "last trade outside its period"),
    ("wrong_market", "another market"),
    ("impossible", "zero or less"),
    ("bad_types", "non-numbers"),
    ("missing_field", "lack field"),
]
HOURLY = "/v1/candles/minutes/60"  # the 1h pages only: a day-candle witness stays honest


@pytest.mark.parametrize(("kind", "_message"), LIES)
def test_an_answer_that_lies_once_is_asked_again(
    sim: SimulatorServer, tmp_path: Path, kind: str, _message: str
) -> None:
    sim.faults.inject(kind, count=1, market="KRW-ETH", path=HOURLY)
    report = run_fetch(sim.url, tmp_path, ["KRW-BTC", "KRW-ETH"], days=30)
    assert report.failed == [] and sim.stats()["faults_served"] == 1
    start = to_ms(NOW) - 30 * 86_400_000
    got = CandleStore(tmp_path).load("KRW-ETH", H1)
    pd.testing.assert_frame_equal(got, truth(sim, "KRW-ETH", "1h", start, NOW))
    assert CandleStore(tmp_path).fetched(H1, "KRW-ETH").covers(TimeRange(start, to_ms(NOW)))


@pytest.mark.slow  # its retries wait out real backoff
@pytest.mark.parametrize(("kind", "message"), LIES)
def test_an_answer_that_keeps_lying_fails_its_market_and_nothing_of_it_is_stored(
    sim: SimulatorServer, tmp_path: Path, kind: str, message: str
) -> None:
    sim.faults.inject(kind, count=1000, market="KRW-ETH", path=HOURLY)
    report = run_fetch(sim.url, tmp_path, ["KRW-BTC", "KRW-ETH"], days=30)
    [failed] = report.failed
    assert failed.market == "KRW-ETH"
    assert type(failed.error).__name__ == "ResponseFormatError"
    assert message in str(failed.error) and "failed the checks 3 times" in str(failed.error)
    store = CandleStore(tmp_path)
    assert store.load("KRW-ETH", H1).empty and not store.fetched(H1, "KRW-ETH")
    assert len(store.load("KRW-BTC", H1)) == 720
