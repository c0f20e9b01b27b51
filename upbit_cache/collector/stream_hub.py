"""One upstream connection to Upbit's WebSocket, shared by many subscribers.

Each subscriber names the streams it wants as (type, code) keys. The hub keeps ONE
connection subscribed to the union of every subscriber's keys and hands each message to the
subscribers of its key, so many local clients (the relay's) and the `Keeper`'s trade feed
cost Upbit one connection. What it does, and why:

- The union only grows while the hub runs (a subscriber that leaves shrinks nothing: the
  others' keys stay, and a re-subscribe costs Upbit's budget and re-sends every snapshot).
  On a reconnect the hub subscribes to the keys of the subscribers present then.
- Growing the union re-sends the whole subscribe message (Upbit replaces a connection's
  subscription with each message). Messages are paced under Upbit's limits, 5 a second and
  100 a minute; joins that come close together share one message.
- Snapshots: a new subscriber that wants them gets, per key, the latest message the hub
  has seen of it (as Upbit's snapshot is the latest state), marked `SNAPSHOT`; a key the hub
  has no message of yet waits for the upstream snapshot that the re-subscribe brings. The
  snapshots a re-subscribe re-sends for keys already flowing go to nobody else.
- Drops: the connection comes back under `retry.reconnect` (the stream client's policy);
  subscribers stay and get `Disconnected` / `Connected(again=True)` (the Keeper repairs the
  hole through REST; relayed clients simply miss what came meanwhile, as Upbit would not
  tell them either).
- An error frame naming a refused request (websocket.PERMANENT_ERRORS) answers the last
  subscribe message: the keys it added are dropped again and their subscribers get the
  frame. TOO_MANY_SUBSCRIBE (Upbit's limits are per IP in its older docs: other programs
  count) leaves the connection's subscription as it was: the message is sent again after a
  wait that doubles up to SUBSCRIBE_BACKOFF_CAP, and its subscribers are told Disconnected
  until it is accepted. Any other error frame is a reconnect, as in websocket.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from upbit_cache import retry
from upbit_cache.collector.websocket import (
    PERMANENT_ERRORS,
    Connected,
    Disconnected,
    Trade,
    trade_of,
)

Key = tuple[str, str]  # (type, code), e.g. ("trade", "KRW-BTC")
SUBSCRIBES_PER_SECOND = 5  # Upbit's limits on subscribe messages
SUBSCRIBES_PER_MINUTE = 100
SUBSCRIBE_BACKOFF_CAP = 10.0  # seconds: the longest wait before re-sending a refused subscribe
QUEUE_LIMIT = 20_000  # messages waiting for one subscriber before it is cut off (too slow)
_REALTIME = b'"stream_type":"REALTIME"'
_SNAPSHOT = b'"stream_type":"SNAPSHOT"'


@dataclass(frozen=True)
class Message:
    """One upstream data message: its raw bytes (DEFAULT format), the parsed body, and the
    stream type the subscriber is to see (a remembered REALTIME message replayed as a
    snapshot says SNAPSHOT)."""

    key: Key
    raw: bytes
    body: dict[str, Any]
    stream_type: str
    received: float = 0.0  # monotonic seconds at arrival

    def default_bytes(self) -> bytes:
        """The message in Upbit's DEFAULT format, as the subscriber is to see it."""
        if self.body.get("stream_type") == self.stream_type:
            return self.raw
        if self.stream_type == "SNAPSHOT":
            return self.raw.replace(_REALTIME, _SNAPSHOT)
        return self.raw.replace(_SNAPSHOT, _REALTIME)


@dataclass(frozen=True)
class Refused:
    """Upbit refused the subscribe message that added some of this subscriber's keys."""

    raw: bytes
    keys: frozenset[Key]


@dataclass(frozen=True)
class Want:
    """What a subscriber wants of one key: its snapshot, its realtime messages, or both."""

    snapshot: bool = True
    realtime: bool = True


HubItem = Message | Refused | Connected | Disconnected


class Subscription:
    """One subscriber's keys and its queue of items; iterate `items()` or `trades()`."""

    def __init__(self, hub: StreamHub, wants: Mapping[Key, Want]) -> None:
        self.hub = hub
        self.wants = dict(wants)
        self.awaiting: set[Key] = set()  # keys whose snapshot has not come yet
        self.queue: asyncio.Queue[HubItem | None] = asyncio.Queue()
        self.connected_on = 0  # the connection generation it was told of (0: none)
        self.ever_connected = False
        self.cut = False

    def put(self, item: HubItem | None) -> None:
        if self.cut:
            return
        if self.queue.qsize() >= QUEUE_LIMIT:  # a reader that cannot keep up is let go
            self.cut = True
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(item)

    async def items(self) -> AsyncIterator[HubItem]:
        """Items until the hub closes or leaves this subscriber."""
        while True:
            item = await self.queue.get()
            if item is None:
                return
            yield item

    async def trades(self) -> AsyncIterator[Trade | Connected | Disconnected]:
        """The trade stream of `websocket.trade_stream` (Trade, Connected, Disconnected)
        made of this subscription's trade messages."""
        async for item in self.items():
            if isinstance(item, Message):
                if item.key[0] == "trade":
                    yield trade_of(item.body, item.received)
            elif isinstance(item, Connected | Disconnected):
                yield item

    def close(self) -> None:
        """Leave the hub."""
        self.hub.leave(self)


@dataclass
class _Link:
    """`retry.Link` for the hub's connection."""

    connected_once: bool = False
    failures: int = 0
    errors: int = 0


@dataclass
class _Pending:
    """The subscribe message last sent: the keys it added, and whose they were."""

    added: set[Key] = field(default_factory=set)
    keys: set[Key] = field(default_factory=set)


class StreamHub:
    """The shared upstream connection; `subscribe()` to join, `close()` to end."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        heartbeat: float = 30.0,
        per_second: int = SUBSCRIBES_PER_SECOND,
        per_minute: int = SUBSCRIBES_PER_MINUTE,
    ) -> None:
        self.session = session
        self.url = url
        self.heartbeat = heartbeat
        self.per_second = per_second
        self.per_minute = per_minute
        self.subs: set[Subscription] = set()
        self.by_key: dict[Key, set[Subscription]] = {}
        self.union: set[Key] = set()  # keys the upstream is (to be) subscribed to
        self.sent: set[Key] = set()  # keys of the last subscribe message sent
        self.latest: dict[Key, Message] = {}  # the last message seen of each key
        self.connections = 0  # upstream connections opened (a count for tests and notes)
        self.subscribes = 0  # subscribe messages sent
        self._generation = 0  # the current connection's number; 0 while down
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._dirty = asyncio.Event()
        self._sends: deque[float] = deque()
        self._pending = _Pending()
        self._hold_until = 0.0  # monotonic: no subscribe message before (after a refusal)
        self._refusals = 0  # TOO_MANY_SUBSCRIBE in a row
        self._task: asyncio.Task[None] | None = None

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the connection (it opens when the first keys come)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Close the connection and end every subscriber's items."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sub in list(self.subs):
            self.leave(sub)

    # ---- subscribers ----------------------------------------------------------------------

    def subscribe(self, wants: Mapping[Key, Want]) -> Subscription:
        """Join with `wants`; snapshots the hub already holds are queued at once."""
        sub = Subscription(self, wants)
        self.subs.add(sub)
        for key, want in sub.wants.items():
            self.by_key.setdefault(key, set()).add(sub)
            if want.snapshot:
                known = self.latest.get(key)
                if known is not None and key in self.sent and self._generation:
                    sub.put(Message(key, known.raw, known.body, "SNAPSHOT", known.received))
                else:
                    sub.awaiting.add(key)
        new = set(sub.wants) - self.union
        if new:
            self.union |= new
            self._dirty.set()
        elif self._generation and set(sub.wants) <= self.sent:
            self._tell_connected(sub)
        self.start()
        return sub

    def leave(self, sub: Subscription) -> None:
        """`sub` is gone; its keys stay subscribed upstream (see the module's notes)."""
        if sub not in self.subs:
            return
        self.subs.discard(sub)
        for key in sub.wants:
            group = self.by_key.get(key)
            if group is not None:
                group.discard(sub)
                if not group:
                    del self.by_key[key]
        sub.queue.put_nowait(None)

    def _tell_connected(self, sub: Subscription) -> None:
        if sub.connected_on != self._generation:
            sub.connected_on = self._generation
            sub.put(Connected(again=sub.ever_connected))
            sub.ever_connected = True

    # ---- the connection -------------------------------------------------------------------

    async def _run(self) -> None:
        link = _Link()
        while True:
            try:
                async for attempt in retry.reconnect(link):
                    with attempt:
                        await self._connection(link)
            except retry.Dropped:  # never connected: keep trying, at the slowest pace
                await asyncio.sleep(retry.RECONNECT_CAP)
                link = _Link()

    async def _connection(self, link: _Link) -> None:
        """One connection: subscribe, read, re-subscribe when the union grows; ends with
        `retry.Dropped` to be opened again."""
        if not self.union:
            await self._dirty.wait()
        reason = "connection closed"
        try:
            async with self.session.ws_connect(self.url, heartbeat=self.heartbeat) as ws:
                self.connections += 1
                self._ws, self._generation = ws, self.connections
                self.sent = set()
                self._dirty.set()
                link.connected_once, link.failures = True, 0
                sender = asyncio.create_task(self._sender(ws))
                try:
                    reason = await self._read(ws, link)
                finally:
                    sender.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await sender
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        finally:
            dropped = self._generation
            self._ws, self._generation = None, 0
            if dropped:
                for sub in list(self.subs):
                    if sub.connected_on == dropped:
                        sub.put(Disconnected(reason))
        link.failures += 1
        raise retry.Dropped(reason)

    async def _sender(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Send the union whenever it grew, within Upbit's subscribe limits."""
        while True:
            await self._dirty.wait()
            await self._pace()
            self._dirty.clear()
            keys = set(self.union)
            self._pending = _Pending(added=keys - self.sent, keys=keys)
            await ws.send_str(json.dumps(_request(keys)))
            self.subscribes += 1
            self.sent = keys
            for sub in list(self.subs):
                if set(sub.wants) <= keys:
                    self._tell_connected(sub)

    async def _pace(self) -> None:
        """Wait until one more subscribe message is within both limits, then count it."""
        while (hold := self._hold_until - time.monotonic()) > 0:
            await asyncio.sleep(hold)
        while True:
            now = time.monotonic()
            while self._sends and self._sends[0] <= now - 60.0:
                self._sends.popleft()
            last_second = sum(1 for t in self._sends if t > now - 1.0)
            if last_second < self.per_second and len(self._sends) < self.per_minute:
                self._sends.append(now)
                return
            oldest = self._sends[-self.per_second] if last_second >= self.per_second else 0.0
            wait = oldest + 1.0 - now if oldest else self._sends[0] + 60.0 - now
            await asyncio.sleep(max(0.01, wait))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, link: _Link) -> str:
        """Hand out messages until the connection ends; returns why it did."""
        async for message in ws:
            if message.type is aiohttp.WSMsgType.ERROR:
                return f"connection error: {ws.exception()}"
            if message.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                continue
            data = message.data
            raw = data if isinstance(data, bytes) else data.encode()
            try:
                body = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(body, dict):
                continue
            if "error" in body:
                if self._refused(raw, body) or self._throttled(body):
                    continue
                link.errors += 1
                return f"Upbit's WebSocket sent an error ({body['error']})"
            kind, code = body.get("type"), body.get("code")
            if not isinstance(kind, str) or not isinstance(code, str):
                continue  # a status answer ({"status":"UP"})
            link.errors, self._refusals = 0, 0
            stream_type = str(body.get("stream_type", ""))
            self._hand_out(Message((kind, code), raw, body, stream_type, time.monotonic()))
        return "connection closed"

    def _refused(self, raw: bytes, body: dict[str, Any]) -> bool:
        """A permanent error answers the last subscribe: take back the keys it added."""
        error = body["error"]
        name = error.get("name") if isinstance(error, dict) else error
        added = self._pending.added
        if name not in PERMANENT_ERRORS or not added:
            return False
        self._pending = _Pending()
        self.union -= added
        self.sent -= added
        for sub in list(self.subs):
            mine = frozenset(added & set(sub.wants))
            if mine:
                sub.put(Refused(raw, mine))
        self._dirty.set()  # subscribe again to what stands
        return True

    def _throttled(self, body: dict[str, Any]) -> bool:
        """TOO_MANY_SUBSCRIBE: the last message did not count; send it again later."""
        error = body["error"]
        if not isinstance(error, dict) or error.get("name") != "TOO_MANY_SUBSCRIBE":
            return False
        refused = self._pending
        self._pending = _Pending()
        self.sent -= refused.added
        self._refusals += 1
        wait = min(SUBSCRIBE_BACKOFF_CAP, 0.5 * 2.0 ** (self._refusals - 1))
        self._hold_until = time.monotonic() + wait
        for sub in list(self.subs):
            if sub.connected_on == self._generation and not set(sub.wants) <= self.sent:
                sub.connected_on = 0
                sub.put(Disconnected("Upbit refused a subscribe message (too many); again soon"))
        self._dirty.set()
        return True

    def _hand_out(self, message: Message) -> None:
        key = message.key
        snapshot = message.stream_type == "SNAPSHOT"
        self.latest[key] = message
        for sub in list(self.by_key.get(key, ())):
            want = sub.wants[key]
            if key in sub.awaiting:
                sub.awaiting.discard(key)
                if want.snapshot and (snapshot or not want.realtime):
                    sub.put(Message(key, message.raw, message.body, "SNAPSHOT", message.received))
                    continue
            if not snapshot and want.realtime:
                sub.put(message)


def _request(keys: Iterable[Key]) -> list[dict[str, object]]:
    """One subscribe message for `keys`, a type object per type, DEFAULT format."""
    codes: dict[str, list[str]] = {}
    for kind, code in sorted(keys):
        codes.setdefault(kind, []).append(code)
    request: list[dict[str, object]] = [{"ticket": f"upbit-cache-{uuid.uuid4()}"}]
    request += [{"type": kind, "codes": names} for kind, names in codes.items()]
    request.append({"format": "DEFAULT"})
    return request
