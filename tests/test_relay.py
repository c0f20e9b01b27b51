"""The WebSocket relay of `serve` (server/relay.py over collector/stream_hub.py) in front of
the simulator's /websocket/v1, with real aiohttp clients on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import NOW

from upbit_cache.collector.stream_hub import StreamHub
from upbit_cache.server.relay import Relay, parse_subscribe, render
from upbit_cache.simulator import SimulatorConfig, SimulatorServer

CODES = ["KRW-BTC", "KRW-ETH", "KRW-XRP"]
Message = dict[str, Any]


@pytest.fixture(scope="module")
def easy() -> Iterator[SimulatorServer]:
    """A simulator whose limits never refuse the direct clients the tests compare with."""
    config = SimulatorConfig(
        clock_start=NOW,
        frozen=True,
        rate=100_000,
        ws_connect_rate=1_000,
        ws_subscribe_rate=1_000,
        ws_subscribe_per_minute=100_000,
        ws_candle_interval=0.05,
    )
    with SimulatorServer(config) as server:
        yield server


@pytest.fixture
def fresh(easy: SimulatorServer) -> SimulatorServer:
    easy.clock.set(NOW)
    easy.clock.freeze()
    easy.reset_stats()
    return easy


@contextlib.asynccontextmanager
async def relay_at(ws_url: str, **options: Any) -> AsyncIterator[tuple[Relay, str]]:
    """A relay on a loopback port in front of `ws_url`; yields it and its ws:// URL."""
    async with aiohttp.ClientSession() as session:
        relay = Relay(StreamHub(session, ws_url), **options)
        app = web.Application()
        app.router.add_get("/websocket/v1", relay.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        relay.start()
        try:
            yield relay, f"ws://127.0.0.1:{port}/websocket/v1"
        finally:
            await relay.close()
            await runner.cleanup()


def request(*streams: tuple[str, list[str]], fmt: str = "DEFAULT", **options: Any) -> str:
    types = [{"type": kind, "codes": codes, **options} for kind, codes in streams]
    return json.dumps([{"ticket": "test"}, *types, {"format": fmt}])


class Client:
    """One local (or direct) WebSocket client and what it received."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.got: list[Message] = []
        self.raw: list[bytes] = []
        self.texts: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.BINARY:
                self.raw.append(msg.data)
                self.got.append(json.loads(msg.data.decode("utf-8")))
            elif msg.type is aiohttp.WSMsgType.TEXT:
                self.texts.append(msg.data)

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    def by_key(self) -> dict[tuple[str, str], list[Message]]:
        keyed: dict[tuple[str, str], list[Message]] = {}
        for m in self.got:
            keyed.setdefault((m.get("type", m.get("ty")), m.get("code", m.get("cd"))), []).append(m)
        return keyed


async def connect(session: aiohttp.ClientSession, url: str, text: str | None = None) -> Client:
    client = Client(await session.ws_connect(url, autoping=False))
    if text is not None:
        await client.ws.send_str(text)
    return client


async def until(
    done: Callable[[], bool], timeout: float = 15.0, info: Callable[[], object] = str
) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out {info()}"
        await asyncio.sleep(0.02)


async def settle(*clients: Client, quiet: float = 0.5) -> None:
    """Wait until none of `clients` has received anything for `quiet` seconds."""
    counts = [-1]
    while True:
        now = [len(c.got) for c in clients]
        if now == counts:
            return
        counts = now
        await asyncio.sleep(quiet)


async def subscribed(sim: SimulatorServer, relay: Relay) -> None:
    """The relay's union is sent and the simulator has handled it (its t0 is taken)."""
    await until(lambda: relay.hub.union <= relay.hub.sent and relay.hub.subscribes > 0)
    await until(
        lambda: sim.stats()["ws_subscribes"] >= relay.hub.subscribes,
        info=lambda: (sim.stats(), relay.hub.subscribes, relay.hub.connections),
    )


SUBSCRIPTIONS = [
    request(("trade", ["KRW-BTC", "KRW-ETH"])),
    request(("trade", ["KRW-ETH"]), ("candle.1m", ["KRW-XRP"])),
    request(("candle.1m", ["KRW-BTC"]), ("trade", ["KRW-XRP"]), is_only_realtime=True),
    request(("candle.5m", ["KRW-ETH"]), is_only_snapshot=True),
]


def test_each_client_gets_what_it_asked_as_straight_from_upbit(fresh: SimulatorServer) -> None:
    async def scenario() -> None:
        async with relay_at(fresh.ws_url) as (relay, url), aiohttp.ClientSession() as session:
            local = [await connect(session, url, text) for text in SUBSCRIPTIONS]
            direct = [await connect(session, fresh.ws_url, text) for text in SUBSCRIPTIONS]
            await subscribed(fresh, relay)
            await settle(*local, *direct)
            fresh.clock.advance(3 * 60)
            await until(lambda: all(len(c.got) > 1 for c in local[:3]))
            await settle(*local, *direct)
            for mine, theirs in zip(local, direct, strict=True):
                assert mine.got and mine.by_key() == theirs.by_key()
            # A later client, on keys already flowing: its snapshot comes from what the
            # relay last saw, as the simulator would give it now.
            late = request(("trade", ["KRW-BTC"]), ("candle.1m", ["KRW-XRP"]))
            mine, theirs = (
                await connect(session, url, late),
                await connect(session, fresh.ws_url, late),
            )
            await until(lambda: len(mine.got) >= 2 and len(theirs.got) >= 2)
            await settle(mine, theirs)
            assert [m["stream_type"] for m in mine.got] == ["SNAPSHOT", "SNAPSHOT"]
            assert mine.by_key() == theirs.by_key()
            assert sorted(mine.raw) == sorted(theirs.raw)  # byte for byte
            assert fresh.stats()["ws_connections"] == len(SUBSCRIPTIONS) + 1 + 1
            for c in [*local, *direct, mine, theirs]:
                await c.close()

    asyncio.run(scenario())


def test_simple_and_list_formats_rename_as_upbit(fresh: SimulatorServer) -> None:
    async def scenario() -> None:
        async with relay_at(fresh.ws_url) as (relay, url), aiohttp.ClientSession() as session:
            wanted = [("trade", ["KRW-BTC"]), ("candle.1m", ["KRW-BTC"])]
            default = await connect(session, url, request(*wanted))
            simple = await connect(session, url, request(*wanted, fmt="SIMPLE"))
            listed = await connect(session, url, request(*wanted, fmt="JSON_LIST"))
            await subscribed(fresh, relay)
            fresh.clock.advance(2 * 60)
            await until(lambda: len(default.got) > 3)
            await settle(default, simple, listed)
            assert len(default.got) == len(simple.got) == len(listed.got)

            # Snapshots of different keys may come in another order; each key's are in order.
            def order(ms: list[Any]) -> list[Any]:
                return sorted(ms, key=lambda m: json.dumps(m, sort_keys=True))

            assert order([[m] for m in default.got]) == order(listed.got)
            shorts = {(m["ty"], m["tms"], m.get("sid"), m.get("cdttmu")): m for m in simple.got}
            for full in default.got:
                short = shorts[
                    full["type"],
                    full["timestamp"],
                    full.get("sequential_id"),
                    full.get("candle_date_time_utc"),
                ]
                assert short["ty"] == full["type"] and short["cd"] == full["code"]
                assert short["st"] == full["stream_type"] and short["tms"] == full["timestamp"]
                if full["type"] == "trade":
                    assert (short["tp"], short["tv"], short["sid"], short["ttms"]) == (
                        full["trade_price"],
                        full["trade_volume"],
                        full["sequential_id"],
                        full["trade_timestamp"],
                    )
                else:
                    assert (short["cdttmu"], short["op"], short["catv"]) == (
                        full["candle_date_time_utc"],
                        full["opening_price"],
                        full["candle_acc_trade_volume"],
                    )
            for c in (default, simple, listed):
                await c.close()

    asyncio.run(scenario())


def test_one_upstream_connection_and_paced_subscribes(sim: SimulatorServer) -> None:
    """Twelve clients join at once on a simulator with Upbit's limits (5 subscribes a
    second per IP): one connection upstream, nothing refused, a leaver shrinks nothing."""
    sim.reset()  # the subscribe windows too: the limits counted here are this test's

    async def scenario() -> None:
        async with relay_at(sim.ws_url) as (relay, url), aiohttp.ClientSession() as session:
            clients = [
                await connect(session, url, request(("trade", [CODES[i % 3]]))) for i in range(12)
            ]
            await subscribed(sim, relay)
            await until(lambda: all(c.got for c in clients))  # each its snapshot
            stats = sim.stats()
            assert stats["ws_connections"] == 1 and stats["ws_rejected"] == 0
            assert relay.hub.subscribes <= 5
            for c in clients[:6]:  # half leave, their codes are others' codes too
                await c.close()
            await until(lambda: relay.clients == 6)
            before = [len(c.got) for c in clients[6:]]
            sim.clock.advance(60)
            await until(
                lambda: all(len(c.got) > n for c, n in zip(clients[6:], before, strict=True))
            )
            for c in clients[6:]:
                assert {m["code"] for m in c.got} == {c.got[0]["code"]}
                assert c.got[-1]["stream_type"] == "REALTIME"
                await c.close()
            assert sim.stats()["ws_connections"] == 1

    asyncio.run(scenario())


def test_an_upstream_drop_is_reconnected_and_clients_keep_receiving(sim: SimulatorServer):
    sim.reset()

    async def scenario() -> None:
        async with relay_at(sim.ws_url) as (relay, url), aiohttp.ClientSession() as session:
            a = await connect(session, url, request(("trade", ["KRW-BTC"])))
            b = await connect(session, url, request(("trade", ["KRW-ETH", "KRW-XRP"])))
            await subscribed(sim, relay)
            await until(lambda: bool(a.got and b.got))
            assert sim.drop_websockets() == 1
            await until(lambda: relay.hub.connections == 2)
            await subscribed(sim, relay)
            got = len(a.got), len(b.got)
            sim.clock.advance(60)
            await until(lambda: len(a.got) > got[0] and len(b.got) > got[1])
            await settle(a, b)
            # After the reconnect: realtime trades only (no second snapshot), none twice.
            for c in (a, b):
                later = c.got[got[0] if c is a else got[1] :]
                assert {m["stream_type"] for m in later} == {"REALTIME"}
                ids = [(m["code"], m["sequential_id"]) for m in c.got]
                assert len(ids) == len(set(ids))
            assert not a.ws.closed and not b.ws.closed
            assert sim.stats()["ws_connections"] == 2
            await a.close()
            await b.close()

    asyncio.run(scenario())


def test_a_subscribe_refused_for_the_ips_limit_is_sent_again(sim: SimulatorServer) -> None:
    """Other programs on this IP used its 5 subscribes of the second: Upbit (the simulator,
    counting per IP) refuses the relay's; the relay sends it again and the client is served."""
    sim.reset()

    async def scenario() -> None:
        async with relay_at(sim.ws_url) as (relay, url), aiohttp.ClientSession() as session:
            others = [await connect(session, sim.ws_url) for _ in range(3)]
            for other in others:  # 6 subscribes of this IP, within the second
                for _ in range(2):
                    await other.ws.send_str(request(("trade", ["KRW-XRP"])))
            mine = await connect(session, url, request(("trade", ["KRW-BTC"])))
            await until(lambda: bool(mine.got))
            assert mine.got[0]["code"] == "KRW-BTC" and mine.got[0]["stream_type"] == "SNAPSHOT"
            assert sim.stats()["ws_rejected"] >= 1 and relay.hub.subscribes >= 2
            assert relay.hub.connections == 1  # sent again on the same connection
            for c in (*others, mine):
                await c.close()

    asyncio.run(scenario())


def test_a_type_upbit_refuses_answers_its_client_only(fresh: SimulatorServer) -> None:
    """The simulator has no ticker stream (INVALID_PARAM): the client that asked gets
    Upbit's error frame; the others keep their subscription and their messages."""

    async def scenario() -> None:
        async with relay_at(fresh.ws_url) as (relay, url), aiohttp.ClientSession() as session:
            staying = await connect(session, url, request(("trade", ["KRW-BTC"])))
            await subscribed(fresh, relay)
            await until(lambda: bool(staying.got))
            asking = await connect(session, url, request(("ticker", ["KRW-ETH"])))
            await until(lambda: bool(asking.got))
            assert asking.got[0]["error"]["name"] == "INVALID_PARAM"
            await until(lambda: ("ticker", "KRW-ETH") not in relay.hub.union)
            # Subscribed again to what stands (the simulator counts the accepted ones).
            await until(lambda: relay.hub.subscribes == 3 and relay.hub.union <= relay.hub.sent)
            await until(lambda: fresh.stats()["ws_subscribes"] == 2)
            count = len(staying.got)
            fresh.clock.advance(60)
            await until(lambda: len(staying.got) > count)
            assert {m["stream_type"] for m in staying.got[count:]} == {"REALTIME"}
            assert len(asking.got) == 1
            for c in (staying, asking):
                await c.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("not json", "WRONG_FORMAT"),
        ('{"ticket":"x"}', "WRONG_FORMAT"),
        ('[{"type":"trade","codes":["KRW-BTC"]}]', "NO_TICKET"),
        ('[{"ticket":"x"},{"format":"DEFAULT"}]', "NO_TYPE"),
        ('[{"ticket":"x"},{"type":"trade"}]', "NO_CODES"),
        ('[{"ticket":"x"},{"type":"trade","codes":[]}]', "NO_CODES"),
        ('[{"ticket":"x"},{"type":"candle.2m","codes":["KRW-BTC"]}]', "INVALID_PARAM"),
        ('[{"ticket":"x"},{"type":"trade","codes":["KRW-BTC"]},{"format":"XML"}]', "INVALID_PARAM"),
    ],
)
def test_bad_subscriptions_get_upbits_error_frames(text: str, name: str) -> None:
    with pytest.raises(Exception) as caught:
        parse_subscribe(text)
    assert getattr(caught.value, "name", None) == name


def test_errors_pings_and_idle_on_the_wire(sim: SimulatorServer) -> None:
    async def scenario() -> None:
        async with (
            relay_at(sim.ws_url, idle_timeout=1.0, per_second=2) as (relay, url),
            aiohttp.ClientSession() as session,
        ):
            ws = await session.ws_connect(url, autoping=False)
            await ws.send_str('[{"ticket":"x"}]')
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.BINARY
            assert json.loads(msg.data)["error"]["name"] == "NO_TYPE"
            await ws.send_bytes(b"PING")
            assert (await ws.receive(timeout=5)).data == '{"status":"UP"}'
            await ws.ping(b"hi")
            pong = await ws.receive(timeout=5)
            assert pong.type is aiohttp.WSMsgType.PONG and pong.data == b"hi"
            await ws.send_str("[]")  # the second subscribe this second; the third is refused
            await ws.receive(timeout=5)
            await ws.send_str(request(("trade", ["KRW-BTC"])))
            refused = json.loads((await ws.receive(timeout=5)).data)
            assert refused["error"]["name"] == "TOO_MANY_SUBSCRIBE"
            started = time.monotonic()
            closed = await ws.receive(timeout=5)  # nothing sent for a second: closed
            assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 1000
            assert 0.5 < time.monotonic() - started < 3
            assert relay.hub.connections == 0  # nobody subscribed: never connected upstream

    asyncio.run(scenario())


def test_render_keeps_default_bytes_and_marks_snapshots() -> None:
    from upbit_cache.collector.stream_hub import Message as HubMessage

    raw = b'{"type":"trade","code":"KRW-BTC","trade_price":1.5,"stream_type":"REALTIME"}'
    body = json.loads(raw)
    live = HubMessage(("trade", "KRW-BTC"), raw, body, "REALTIME")
    assert render(live, "DEFAULT") is raw
    again = HubMessage(("trade", "KRW-BTC"), raw, body, "SNAPSHOT")
    assert json.loads(render(again, "DEFAULT"))["stream_type"] == "SNAPSHOT"
    assert json.loads(render(again, "SIMPLE_LIST")) == [
        {"ty": "trade", "cd": "KRW-BTC", "tp": 1.5, "st": "SNAPSHOT"}
    ]
