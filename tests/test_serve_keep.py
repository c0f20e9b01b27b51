"""`serve --keep` whole: the REST pages, the WebSocket relay and the kept series on one
upstream stream, in front of the simulator."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
from conftest import request, wait_for
from serving import serving

from upbit_cache.simulator import SimulatorServer
from upbit_cache.timeframes import Timeframe

M15 = Timeframe.parse("15m")


def test_a_kept_series_open_candle_comes_from_the_stream_and_the_relay_shares_it(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    kept = (["KRW-BTC"], "15m")
    with serving(sim.url, tmp_path, ws_url=sim.ws_url, keep=kept, fresh=0.0) as server:
        keeper = server.keeper
        assert keeper is not None
        wait_for(
            lambda: keeper.book is not None and keeper.book.recent("KRW-BTC", M15),
            "the Keeper's book seeded from REST",
        )
        sim.clock.advance(5 * 60)  # trades of the open quarter reach the Keeper's book
        wait_for(lambda: keeper.in_progress("KRW-BTC", M15), "an open quarter from the stream")
        page = {"market": "KRW-BTC", "count": 3}
        theirs = request(sim.url, "/v1/candles/minutes/15", page)
        wait_for(
            lambda: keeper.in_progress("KRW-BTC", M15) == theirs.json()[0],
            "the open quarter as Upbit answers it",
        )
        before = sim.stats()["candle_requests"]
        answers = [request(server.url, "/v1/candles/minutes/15", page) for _ in range(2)]
        # The open candle is the Keeper's and the closed ones the store's: no upstream ask,
        # although `fresh=0` reuses no upstream page.
        assert sim.stats()["candle_requests"] == before
        for mine in answers:
            assert mine.status == 200 and mine.json() == theirs.json()

        # A bot on the relay: its trades come over the Keeper's one upstream connection.
        async def subscriber() -> dict[str, object]:
            ask = [{"ticket": "bot"}, {"type": "trade", "codes": ["KRW-BTC"]}]
            async with aiohttp.ClientSession() as session:
                ws_url = server.url.replace("http", "ws") + "/websocket/v1"
                async with session.ws_connect(ws_url) as ws:
                    await ws.send_str(json.dumps(ask))
                    await asyncio.to_thread(sim.clock.advance, 30)
                    message = await ws.receive(timeout=10)
                    return dict(json.loads(message.data))

        trade = asyncio.run(subscriber())
        assert trade["type"] == "trade" and trade["code"] == "KRW-BTC"
        assert sim.stats()["ws_connections"] == 1
