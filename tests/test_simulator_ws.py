"""The simulator's WebSocket (/websocket/v1) with a real aiohttp client on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from conftest import DEADLINE, StoppedTime, request

from upbit_cache.simulator import SimClock, SimulatorConfig, SimulatorServer, to_epoch_ms
from upbit_cache.simulator import ws as simulator_ws
from upbit_cache.simulator.__main__ import parse_args

NOW = "2026-11-20T00:00:00Z"
NOW_MS = to_epoch_ms(NOW)
MINUTE = 60_000
CODES = ["KRW-BTC", "KRW-ETH", "KRW-XRP"]
# Generous limits and a quick candle push interval for the tests that are not about them.
EASY = {
    "clock_start": NOW,
    "frozen": True,
    "rate": 100_000,
    "ws_connect_rate": 1_000,
    "ws_subscribe_rate": 1_000,
    "ws_subscribe_per_minute": 100_000,
    "ws_candle_interval": 0.05,
}
CANDLE_FIELDS = [
    "candle_date_time_utc",
    "candle_date_time_kst",
    "opening_price",
    "high_price",
    "low_price",
    "trade_price",
    "candle_acc_trade_volume",
    "candle_acc_trade_price",
    "timestamp",
]


# ---- helpers --------------------------------------------------------------------------------


def call(url: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
    """GET (or POST `body`) and return (status, parsed JSON)."""
    reply = request(url, path, params, body)
    return reply.status, json.loads(reply.body or b"null")


def subscribe_text(*streams: tuple[str, list[str]], **options: Any) -> str:
    types = [{"type": kind, "codes": codes, **options} for kind, codes in streams]
    return json.dumps([{"ticket": "test"}, *types, {"format": "DEFAULT"}])


class Client:
    """One WebSocket connection; every data message must be a binary JSON frame."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._early: deque[dict[str, Any]] = deque()

    async def subscribe(self, *streams: tuple[str, list[str]], **options: Any) -> None:
        """Subscribe, and return once the server has handled it (the clock may move then)."""
        await self.ws.send_str(subscribe_text(*streams, **options))
        await self.sync()

    async def sync(self) -> None:
        """Send a text PING and wait for its answer; what comes before it is kept for next()."""
        await self.ws.send_str("PING")
        while True:
            msg = await self.ws.receive(timeout=5)
            if msg.type is aiohttp.WSMsgType.TEXT:
                assert json.loads(msg.data) == {"status": "UP"}
                return
            self._early.append(self._decode(msg))

    @staticmethod
    def _decode(msg: aiohttp.WSMessage) -> dict[str, Any]:
        assert msg.type is aiohttp.WSMsgType.BINARY, msg
        return json.loads(msg.data.decode("utf-8"))

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        if self._early:
            return self._early.popleft()
        return self._decode(await self.ws.receive(timeout=timeout))

    async def take(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        return [await self.next(timeout) for _ in range(n)]

    async def until(
        self, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Messages until `done(messages)` holds."""
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while not done(messages):
            messages.append(await self.next(max(0.01, deadline - time.monotonic())))
        return messages

    async def during(self, seconds: float) -> list[dict[str, Any]]:
        """Everything that arrives within the next `seconds`."""
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + seconds
        with contextlib.suppress(TimeoutError):
            while (left := deadline - time.monotonic()) > 0:
                messages.append(await self.next(left))
        return messages

    async def quiet(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Whatever arrives within `seconds` of silence."""
        messages: list[dict[str, Any]] = []
        while True:
            try:
                messages.append(await self.next(seconds))
            except TimeoutError:
                return messages


Body = Callable[[Callable[..., Awaitable[Client]]], Awaitable[None]]


def with_clients(server: SimulatorServer, body: Body) -> None:
    """Run `body(connect)` in a fresh event loop; `connect()` opens a Client."""

    async def main() -> None:
        clients: list[Client] = []
        async with aiohttp.ClientSession() as session:

            async def connect(**kwargs: Any) -> Client:
                clients.append(Client(await session.ws_connect(server.ws_url, **kwargs)))
                return clients[-1]

            try:
                await body(connect)
            finally:
                for client in clients:
                    await client.ws.close()

    asyncio.run(main())


def history_trades(server: SimulatorServer, code: str, start: int, end: int) -> list[dict]:
    df = server.history.trades(code, start, end)
    return [
        {
            "code": code,
            "trade_timestamp": int(row.timestamp),
            "trade_price": float(row.price),
            "trade_volume": float(row.volume),
            "ask_bid": str(row.ask_bid),
            "sequential_id": int(row.sequential_id),
        }
        for row in df.itertuples()
    ]


def trade_view(message: dict[str, Any]) -> dict[str, Any]:
    keys = ("code", "trade_timestamp", "trade_price", "trade_volume", "ask_bid", "sequential_id")
    return {k: message[k] for k in keys}


def expected_trades(server: SimulatorServer, codes: list[str], start: int, end: int) -> list:
    rows = [t for code in codes for t in history_trades(server, code, start, end)]
    return sorted(rows, key=lambda t: (t["trade_timestamp"], codes.index(t["code"])))


def wait_for(check: Callable[[], bool], timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def easy_server() -> Iterator[SimulatorServer]:
    with SimulatorServer(SimulatorConfig(**EASY)) as server:
        yield server


@pytest.fixture
def server(easy_server: SimulatorServer) -> SimulatorServer:
    """The module's server: clock frozen at NOW, no faults, counters and limits reset."""
    easy_server.clock.freeze()
    easy_server.clock.set(NOW)
    easy_server.reset()
    return easy_server


# ---- subscribe, snapshot, realtime ----------------------------------------------------------


def test_ws_url_and_plain_get(server: SimulatorServer) -> None:
    port = urlsplit(server.url).port
    assert server.ws_url == f"ws://127.0.0.1:{port}/websocket/v1"
    status, body = call(server.url, "/websocket/v1")
    assert status == 400 and set(body["error"]) == {"name", "message"}


def test_snapshot_first_then_realtime_in_order(server: SimulatorServer) -> None:
    async def body(connect: Callable[..., Awaitable[Client]]) -> None:
        client = await connect()
        await client.subscribe(("trade", ["KRW-BTC"]), ("candle.1m", ["KRW-BTC"]))
        trade, candle = await client.take(2)
        last = history_trades(server, "KRW-BTC", NOW_MS - 3_600_000, NOW_MS)[-1]
        assert trade["type"] == "trade" and trade["stream_type"] == "SNAPSHOT"
        assert trade_view(trade) == last
        assert candle["type"] == "candle.1m" and candle["stream_type"] == "SNAPSHOT"
        _, rows = call(server.url, "/v1/candles/minutes/1", {"market": "KRW-BTC", "count": 5})
        assert {k: candle[k] for k in CANDLE_FIELDS} == {k: rows[0][k] for k in CANDLE_FIELDS}
        # A frozen clock pushes nothing.
        assert await client.quiet(0.3) == []
        server.clock.advance(150)
        want = expected_trades(server, ["KRW-BTC"], NOW_MS, NOW_MS + 150_000)
        assert want
        got = await client.until(lambda m: sum(x["type"] == "trade" for x in m) == len(want))
        got += await client.quiet(0.3)
        assert all(m["stream_type"] == "REALTIME" for m in got)
        assert [trade_view(m) for m in got if m["type"] == "trade"] == want
        assert {m["type"] for m in got} == {"trade", "candle.1m"}
        # Each candle message comes after the trades it contains.
        seen: set[int] = set()
        for m in got:
            if m["type"] == "trade":
                seen.add(m["trade_timestamp"])
            else:
                assert m["timestamp"] in seen

    with_clients(server, body)


def test_trades_after_advances_equal_history(server: SimulatorServer) -> None:
    async def body(connect: Callable[..., Awaitable[Client]]) -> None:
        client = await connect()
        await client.subscribe(("trade", CODES), is_only_realtime=True)
        got: list[dict[str, Any]] = []
        total = 0
        for step in (45, 200, 1, 600):
            total += step
            server.clock.advance(step)
            want = expected_trades(server, CODES, NOW_MS, NOW_MS + total * 1000)
            missing = len(want) - len(got)
            got += await client.until(lambda m, n=missing: len(m) == n)
        got += await client.quiet(0.3)
        assert [trade_view(m) for m in got] == want
        assert len({m["sequential_id"] for m in got}) == len(got)
        assert all(m["stream_type"] == "REALTIME" for m in got)
        times = [m["trade_timestamp"] for m in got]
        assert times == sorted(times)
        first = got[0]
        assert first["trade_date"] == "2026-11-20" and first["trade_time"].startswith("00:00:")
        assert first["timestamp"] >= first["trade_timestamp"]
        assert first["change"] in ("RISE", "EVEN", "FALL")
        assert abs(first["trade_price"] - first["prev_closing_price"]) == pytest.approx(
            first["change_price"]
        )

    with_clients(server, body)


def test_clock_set_backwards_resends_nothing(server: SimulatorServer) -> None:
    async def body(connect: Callable[..., Awaitable[Client]]) -> None:
        client = await connect()
        await client.subscribe(("trade", ["KRW-BTC"]), is_only_realtime=True)
        server.clock.advance(300)
        want = expected_trades(server, ["KRW-BTC"], NOW_MS, NOW_MS + 300_000)
        await client.until(lambda m: len(m) == len(want))
        server.clock.set(NOW)
        assert await client.quiet(0.2) == []
        server.clock.set(NOW_MS + 420_000)
        more = await client.until(lambda m: len(m) > 0)
        more += await client.quiet(0.2)
        assert [trade_view(m) for m in more] == expected_trades(
            server, ["KRW-BTC"], NOW_MS + 300_000, NOW_MS + 420_000
        )

    with_clients(server, body)


def test_only_snapshot_and_unknown_codes(server: SimulatorServer) -> None:
    async def body(connect: Callable[..., Awaitable[Client]]) -> None:
        client = await connect()
        await client.subscribe(("trade", ["KRW-NOPE", "KRW-ETH"]), is_only_snapshot=True)
        (snapshot,) = await client.take(1)
        assert snapshot["code"] == "KRW-ETH" and snapshot["stream_type"] == "SNAPSHOT"
        server.clock.advance(600)
        assert await client.quiet(0.3) == []

    with_clients(server, body)


# ---- candles --------------------------------------------------------------------------------


def rest_candles(server: SimulatorServer, code: str, unit: int, count: int) -> dict[str, dict]:
    _, rows = call(server.url, f"/v1/candles/minutes/{unit}", {"market": code, "count": count})
    return {row["candle_date_time_utc"]: row for row in rows}


@pytest.mark.slow
@pytest.mark.parametrize("unit", [1, 15])
def test_candle_stream_equals_rest(server: SimulatorServer, unit: int) -> None:
    codes = ["KRW-BTC", "KRW-DOGE"]
    minutes = 2 * unit + 3
    step = 37 if unit == 1 else 170

    async def body(connect: Callable[..., Awaitable[Client]]) -> None:
        client = await connect()
        await client.subscribe((f"candle.{unit}m", codes))
        snapshots = await client.take(len(codes))
        assert [m["code"] for m in snapshots] == codes
        got = list(snapshots)
        elapsed = 0
        while elapsed < minutes * 60:
            server.clock.advance(step)
            elapsed += step
            got += await client.quiet(0.12)
        rest = {code: rest_candles(server, code, unit, 200) for code in codes}

        def caught_up(new: list[dict[str, Any]]) -> bool:
            last = latest(got + new)
            return all(
                last.get((c, t)) == {k: row[k] for k in CANDLE_FIELDS}
                for c in codes
                for t, row in rest[c].items()
                if t >= "2026-11-20"
            )

        got += await client.until(caught_up)
        last = latest(got)
        assert all(m["stream_type"] == "REALTIME" for m in got[len(codes) :])
        for code in codes:
            periods = sorted(t for c, t in last if c == code and t >= "2026-11-20")
            # Every period since the subscription was pushed, and the last message of each
            # equals REST: closed ones and the in-progress one alike.
            assert periods == sorted(t for t in rest[code] if t >= "2026-11-20")
            assert len(periods) >= 2
            for t in periods:
                row = rest[code][t]
                assert last[code, t] == {k: row[k] for k in CANDLE_FIELDS}, (code, t)
        # Some period was pushed more than once (it grew), and the last one wins.
        keys = [(m["code"], m["candle_date_time_utc"]) for m in got]
        assert len(keys) > len(set(keys))

    with_clients(server, body)


@pytest.mark.slow
def test_second_candle_stream_equals_rest(server: SimulatorServer) -> None:
    codes = ["KRW-BTC", "KRW-ETH"]

    async def body(connect: Callable[..., Awaitable[Client]]) -> None:
        client = await connect()
        await client.subscribe(("candle.1s", codes))
        got = await client.take(len(codes))
        assert all(m["type"] == "candle.1s" for m in got)
        for _ in range(30):
            server.clock.advance(5)
            got += await client.quiet(0.1)
        since = {"to": "2026-11-20T00:02:30Z", "count": 150}
        rest = {
            code: {
                row["candle_date_time_utc"]: row
                for row in call(server.url, "/v1/candles/seconds", {"market": code, **since})[1]
            }
            for code in codes
        }
        last = latest(got + await client.quiet(0.3))
        for code in codes:
            pushed = {t: v for (c, t), v in last.items() if c == code and t >= "2026-11-20"}
            # Every second with a trade was pushed, as REST shows it; no other second was.
            assert len(pushed) >= 3
            assert pushed == {t: {k: r[k] for k in CANDLE_FIELDS} for t, r in rest[code].items()}

    with_clients(server, body)


def latest(messages: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (m["code"], m["candle_date_time_utc"]): {k: m[k] for k in CANDLE_FIELDS} for m in messages
    }


def test_candle_push_is_throttled_per_stream() -> None:
    config = SimulatorConfig(**{**EASY, "ws_candle_interval": 0.5})
    with SimulatorServer(config) as server:

        async def body(connect: Callable[..., Awaitable[Client]]) -> None:
            client = await connect()
            await client.subscribe(("candle.1m", ["KRW-BTC"]), is_only_realtime=True)
            server.clock.advance(61)
            started = time.monotonic()
            first = await client.take(1)
            server.clock.advance(60)
            second = await client.take(1)
            waited = time.monotonic() - started
            assert first[0]["candle_date_time_utc"] < second[0]["candle_date_time_utc"]
            assert 0.4 <= waited < 2.0

        with_clients(server, body)


# ---- PING, idle timeout, drop -----------------------------------------------------------------


def test_text_ping_and_ping_frames(server: SimulatorServer) -> None:
    async def body(connect: Callable[..., Awaitable[Client]]) -> None:
        client = await connect(autoping=False)
        await client.ws.send_str("PING")
        msg = await client.ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.TEXT and json.loads(msg.data) == {"status": "UP"}
        await client.ws.ping(b"x")
        msg = await client.ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.PONG and msg.data == b"x"

    with_clients(server, body)


@pytest.mark.slow
def test_idle_connections_are_closed() -> None:
    # Traffic every 0.1 s on two connections keeps them open through a 1 s idle timeout: a
    # busy machine's stalls stay well inside it.
    config = SimulatorConfig(**{**EASY, "ws_idle_timeout": 1.0})
    with SimulatorServer(config) as server:

        async def body(connect: Callable[..., Awaitable[Client]]) -> None:
            idle, texting, pinging = await connect(), await connect(), await connect()
            await idle.subscribe(("trade", ["KRW-BTC"]))
            await idle.take(1)
            closing = asyncio.ensure_future(idle.ws.receive(timeout=DEADLINE))
            started = time.monotonic()
            # The idle one closed while the others went on, for 3 idle timeouts at least.
            while not closing.done() or time.monotonic() - started < 3.0:
                await asyncio.sleep(0.1)
                await texting.ws.send_str("PING")
                await pinging.ws.ping()
            msg = closing.result()
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1000
            assert not texting.ws.closed and not pinging.ws.closed
            await texting.ws.close()
            await pinging.ws.close()

        with_clients(server, body)
        wait_for(lambda: server.stats()["ws_open"] == 0)
        assert server.stats()["ws_connections"] == 3


def test_drop_endpoint_cuts_every_connection(server: SimulatorServer) -> None:
    async def body(connect: Callable[..., Awaitable[Client]]) -> None:
        first, second = await connect(), await connect()
        await first.subscribe(("trade", ["KRW-BTC"]))
        await first.take(1)
        # Counted once the upgrade is answered: a moment after the client has it.
        await asyncio.to_thread(wait_for, lambda: server.stats()["ws_open"] == 2)
        status, answer = await asyncio.to_thread(call, server.url, "/_sim/ws/drop", None, {})
        assert status == 200 and answer == {"dropped": 2}
        for client in (first, second):
            msg = await client.ws.receive(timeout=5)
            # Abrupt: no close frame with a code, the connection is just gone.
            assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR), msg
        await asyncio.to_thread(wait_for, lambda: server.stats()["ws_open"] == 0)
        # The client reconnects and subscribes again.
        again = await connect()
        await again.subscribe(("trade", ["KRW-BTC"]), is_only_realtime=True)
        server.clock.advance(120)
        want = expected_trades(server, ["KRW-BTC"], NOW_MS, NOW_MS + 120_000)
        got = await again.until(lambda m: len(m) == len(want))
        assert [trade_view(m) for m in got] == want
        assert server.drop_websockets() == 1

    with_clients(server, body)


# ---- faults and counters --------------------------------------------------------------------


def test_duplicate_trade_fault(server: SimulatorServer) -> None:
    status, answer = call(
        server.url, "/_sim/faults", body={"kind": "ws_duplicate", "count": 3, "market": "KRW-ETH"}
    )
    assert status == 200 and answer == {"pending": 3}
    # REST requests do not consume WebSocket faults.
    assert call(server.url, "/v1/candles/minutes/1", {"market": "KRW-ETH"})[0] == 200
    assert server.faults.pending() == 3

    async def body(connect: Callable[..., Awaitable[Client]]) -> None:
        client = await connect()
        await client.subscribe(("trade", ["KRW-BTC", "KRW-ETH"]), is_only_realtime=True)
        server.clock.advance(300)
        want = expected_trades(server, ["KRW-BTC", "KRW-ETH"], NOW_MS, NOW_MS + 300_000)
        got = await client.until(lambda m: len(m) == len(want) + 3)
        got += await client.quiet(0.2)
        ids = [m["sequential_id"] for m in got]
        first_eth = [m["sequential_id"] for m in got if m["code"] == "KRW-ETH"][:6]
        assert first_eth[0::2] == first_eth[1::2]  # each of the first 3 ETH trades twice
        assert len(ids) == len(want) + 3 and len(set(ids)) == len(want)
        deduped = list({m["sequential_id"]: trade_view(m) for m in got}.values())
        assert deduped == want

    with_clients(server, body)
    stats = server.stats()
    assert stats["faults_by_kind"] == {"ws_duplicate": 3} and server.faults.pending() == 0


def test_counters(server: SimulatorServer) -> None:
    async def body(connect: Callable[..., Awaitable[Client]]) -> None:
        client = await connect()
        await client.subscribe(("trade", ["KRW-BTC"]), ("candle.5m", ["KRW-BTC"]))
        await client.take(2)
        await client.subscribe(("trade", ["KRW-ETH"]))
        await client.take(1)
        other = await connect()
        # Counted once the upgrade is answered: a moment after the client has it.
        await asyncio.to_thread(wait_for, lambda: server.stats()["ws_open"] == 2)
        stats = server.stats()
        assert stats["ws_connections"] == 2 and stats["ws_open"] == 2
        assert stats["ws_subscribes"] == 2 and stats["ws_messages"] == 3
        assert stats["ws_rejected"] == 0 and stats["requests"] == 0
        _, over_http = await asyncio.to_thread(call, server.url, "/_sim/stats")
        assert over_http == stats
        await other.ws.close()

    with_clients(server, body)
    wait_for(lambda: server.stats()["ws_open"] == 0)
    server.reset_stats()
    assert server.stats()["ws_connections"] == 0


@pytest.mark.parametrize(
    ("message", "name"),
    [
        ("not json", "WRONG_FORMAT"),
        ('{"ticket": "x"}', "WRONG_FORMAT"),
        ('[{"type": "trade", "codes": ["KRW-BTC"]}]', "NO_TICKET"),
        ('[{"ticket": "x"}, {"format": "DEFAULT"}]', "NO_TYPE"),
        ('[{"ticket": "x"}, {"type": "trade"}]', "NO_CODES"),
        ('[{"ticket": "x"}, {"type": "ticker", "codes": ["KRW-BTC"]}]', "INVALID_PARAM"),
        ('[{"ticket": "x"}, {"type": "candle.1d", "codes": ["KRW-BTC"]}]', "INVALID_PARAM"),
    ],
)
def test_bad_subscribe_messages(server: SimulatorServer, message: str, name: str) -> None:
    async def body(connect: Callable[..., Awaitable[Client]]) -> None:
        client = await connect()
        await client.ws.send_str(message)
        error = (await client.next())["error"]
        assert error["name"] == name and error["message"]

    with_clients(server, body)


# ---- limits ---------------------------------------------------------------------------------


def test_subscribe_limit_per_second(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = StoppedTime()  # the limit's window: real seconds, only as the test sleeps them
    monkeypatch.setattr(simulator_ws, "time", clock)
    config = SimulatorConfig(clock_start=NOW, frozen=True)
    with SimulatorServer(config) as server:

        async def body(connect: Callable[..., Awaitable[Client]]) -> None:
            client = await connect()
            for _ in range(5):
                await client.subscribe(("trade", ["KRW-BTC"]), is_only_realtime=True)
            await client.subscribe(("trade", ["KRW-ETH"]))
            error = (await client.next())["error"]
            assert error["name"] == "TOO_MANY_SUBSCRIBE" and error["message"]
            # The refused message changed nothing: KRW-BTC still streams, KRW-ETH does not.
            server.clock.advance(120)
            got = await client.until(lambda m: len(m) > 0)
            got += await client.quiet(0.2)
            assert {m["code"] for m in got} == {"KRW-BTC"}
            clock.sleep(1.05)
            await client.subscribe(("trade", ["KRW-ETH"]))
            assert (await client.next())["code"] == "KRW-ETH"

        with_clients(server, body)
        stats = server.stats()
        assert stats["ws_subscribes"] == 6 and stats["ws_rejected"] == 1


def test_subscribe_limit_per_minute() -> None:
    config = SimulatorConfig(
        clock_start=NOW, frozen=True, ws_subscribe_rate=1_000, ws_subscribe_per_minute=10
    )
    with SimulatorServer(config) as server:

        async def body(connect: Callable[..., Awaitable[Client]]) -> None:
            # The limit is per IP, not per connection.
            first, second = await connect(), await connect()
            for i in range(10):
                await (first, second)[i % 2].subscribe(("trade", ["KRW-BTC"]))
            await first.take(5)
            await second.take(5)
            await second.subscribe(("trade", ["KRW-BTC"]))
            assert (await second.next())["error"]["name"] == "TOO_MANY_SUBSCRIBE"

        with_clients(server, body)
        assert server.stats()["ws_rejected"] == 1
        server.reset()  # forgets the windows

        async def after_reset(connect: Callable[..., Awaitable[Client]]) -> None:
            client = await connect()
            await client.subscribe(("trade", ["KRW-BTC"]))
            assert (await client.next())["type"] == "trade"

        with_clients(server, after_reset)


def test_connection_limit_answers_429(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = StoppedTime()  # the limit's window: real seconds, only as the test sleeps them
    monkeypatch.setattr(simulator_ws, "time", clock)
    config = SimulatorConfig(clock_start=NOW, frozen=True)
    with SimulatorServer(config) as server:

        async def body(connect: Callable[..., Awaitable[Client]]) -> None:
            clients = [await connect() for _ in range(5)]
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await connect()
            assert info.value.status == 429
            clock.sleep(1.05)
            clients.append(await connect())
            await asyncio.to_thread(wait_for, lambda: server.stats()["ws_open"] == 6)

        with_clients(server, body)
        stats = server.stats()
        assert stats["ws_connections"] == 6 and stats["ws_rejected"] == 1


# ---- clock speed ----------------------------------------------------------------------------


def test_clock_speed_unit() -> None:
    clock = SimClock(NOW, frozen=True, speed=60)
    assert clock.speed == 60 and clock.real_seconds_until(NOW_MS + 60_000) is None
    began = time.monotonic()
    clock.run()
    time.sleep(0.1)
    left = clock.real_seconds_until(NOW_MS + 120_000)
    # 60 times as much as really passed (the sleep at least; more on a busy machine).
    passed = clock.now_ms() - NOW_MS
    assert 5_000 <= passed <= 60 * (time.monotonic() - began) * 1000 + 60
    # 2 real seconds to 2 simulated minutes, less what had passed (none once they have).
    assert left is not None and 0.0 <= left <= 2.0 - 5_000 / 60_000
    assert left > 0 or passed >= 120_000
    clock.set_speed(1)
    began = time.monotonic()
    at = clock.now_ms()
    time.sleep(0.05)
    assert 40 <= clock.now_ms() - at <= (time.monotonic() - began) * 1000 + 1
    with pytest.raises(ValueError):
        clock.set_speed(0)
    assert parse_args(["--speed", "50"]).clock_speed == 50.0
    assert parse_args([]).clock_speed == 1.0
    assert parse_args(["--ws-idle-timeout", "3"]).ws_idle_timeout == 3.0
    with pytest.raises(SystemExit):
        parse_args(["--speed", "-1"])


@pytest.mark.slow
def test_clock_speed_drives_rest_and_websocket() -> None:
    config = SimulatorConfig(**{**EASY, "frozen": False, "clock_speed": 120.0})
    with SimulatorServer(config) as server:

        async def body(connect: Callable[..., Awaitable[Client]]) -> None:
            client = await connect()
            await client.subscribe(("trade", CODES), is_only_realtime=True)
            t0 = server.clock.now_ms()
            got = await client.during(1.5)
            t1, at = server.clock.now_ms(), time.monotonic()
            # Simulated minutes pass in real seconds; trades arrive as the clock passes them.
            assert t1 - t0 >= 120_000
            views = [trade_view(m) for m in got]
            want = expected_trades(server, CODES, t0, t1)
            assert len(views) >= 5 and views == want[: len(views)]
            # Each trade was sent within a few simulated seconds of its time.
            lags = [m["timestamp"] - m["trade_timestamp"] for m in got]
            assert min(lags) >= 0 and sorted(lags)[len(lags) // 2] < 15_000
            # REST follows the same clock.
            _, state = await asyncio.to_thread(call, server.url, "/_sim/clock")
            # 120 times the real time the request took (half a second's worth to spare).
            most = (time.monotonic() - at) * 120_000 + 60_000
            assert state["speed"] == 120.0 and state["now_ms"] - t1 < most

        with_clients(server, body)
        _, state = call(server.url, "/_sim/clock", body={"speed": 1})
        assert state["speed"] == 1.0 and server.clock.speed == 1.0
        assert call(server.url, "/_sim/clock", body={"speed": 0})[0] == 400
