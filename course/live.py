"""Chapter 3: WebSocket servers and clients that live in the notebook's kernel.

Everything here runs on the ``websockets`` library (asyncio flavour) and knows
nothing about widgets: servers push *messages*, clients hand decoded messages to
a callback.  ``course.widgets`` shows them; a notebook wires the two together.

The wire format is one JSON object per text frame, with a ``type`` field::

    {"type": "news",  "seq": 1, "text": "...", "sent_ns": ...}
    {"type": "clock", "seq": 2, "time": "09:00:01", "sent_ns": ...}
    {"type": "price", "seq": 3, "symbol": "ACME", "price": 101.25, "sent_ns": ...}
    {"type": "control", "name": "slider", "value": 42}      # client -> server
    {"type": "ack", "text": "got slider=42"}                 # server -> client
    {"type": "error", "text": "bad JSON: ..."}               # server -> client

``sent_ns`` is :func:`time.perf_counter_ns` at the moment the server sends; the
client and the server share the kernel's clock, so the client can measure the
push latency (server send -> widget update) exactly.

The broadcast :class:`Hub` follows gorilla/websocket's chat example: one bounded
send queue and one writer task per client (``course.fanout``); a burst is
absorbed, and a client whose queue stays full for longer than a grace period (or
outgrows a byte bound) is too slow and is disconnected (close code 1008) instead
of stalling everybody; dead peers are found by the library's keepalive pings
(``ping_interval`` / ``ping_timeout``, the equivalent of gorilla's ``pingPeriod`` /
``pongWait``).
"""

from __future__ import annotations

import asyncio
import enum
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from course.fanout import Fanout, Verdict, close_within
from course.stats import percentile

__all__ = [
    "Kind", "BadMessage", "encode", "decode", "format_event",
    "echo_handler", "news_feed", "clock_feed", "price_feed", "demo_events",
    "push_events", "PushServer", "read_messages", "Hub", "HubConnection", "serve_hub",
    "LatencyRecorder", "percentile", "url_of", "shutdown", "noise",
]


class Kind(str, enum.Enum):
    """The ``type`` field of a message."""

    NEWS = "news"
    CLOCK = "clock"
    PRICE = "price"
    CONTROL = "control"
    ACK = "ack"
    ERROR = "error"
    CHAT = "chat"


PUSH_KINDS = frozenset({Kind.NEWS, Kind.CLOCK, Kind.PRICE})


class BadMessage(ValueError):
    """A frame that is not a JSON object with a known ``type``."""


def encode(kind: Kind | str, **fields: Any) -> str:
    """Build one wire message.

    Args:
        kind: the message type (a :class:`Kind` or its value).
        **fields: JSON-serialisable fields.

    Raises:
        BadMessage: unknown kind or a field that JSON cannot encode.
    """
    try:
        kind = Kind(kind)
    except ValueError:
        raise BadMessage(f"unknown message type {kind!r}") from None
    try:
        return json.dumps({"type": kind.value, **fields}, separators=(",", ":"))
    except TypeError as error:
        raise BadMessage(f"cannot encode message: {error}") from None


def decode(text: str | bytes) -> dict[str, Any]:
    """Parse one wire message.

    Args:
        text: the payload of a text frame (bytes are decoded as UTF-8).

    Returns:
        The message as a dict whose ``type`` is a :class:`Kind` value.

    Raises:
        BadMessage: not UTF-8, not JSON, not an object, or an unknown ``type``.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = bytes(text).decode()
        except UnicodeDecodeError:
            raise BadMessage("binary frame is not UTF-8 text") from None
    try:
        message = json.loads(text)
    except json.JSONDecodeError as error:
        raise BadMessage(f"bad JSON: {error.msg} at position {error.pos}") from None
    if not isinstance(message, dict):
        raise BadMessage(f"expected a JSON object, got {type(message).__name__}")
    kind = message.get("type")
    if kind not in {k.value for k in Kind}:
        raise BadMessage(f"unknown message type {kind!r}")
    return message


def format_event(message: dict[str, Any]) -> str:
    """One human-readable line for a message (what the feed widget shows).

    Timing fields (``sent_ns``) are left out so that the line is deterministic.
    """
    kind = message.get("type")
    seq = message.get("seq")
    prefix = f"#{seq:02d} " if isinstance(seq, int) else ""
    if kind == Kind.NEWS:
        return f"{prefix}news   {message['text']}"
    if kind == Kind.CLOCK:
        return f"{prefix}clock  {message['time']}"
    if kind == Kind.PRICE:
        return f"{prefix}price  {message['symbol']} {message['price']:.2f}"
    if kind == Kind.ACK:
        return f"server: {message['text']}"
    if kind == Kind.ERROR:
        return f"server error: {message['text']}"
    if kind == Kind.CHAT:
        return f"chat: {_clip(str(message.get('text', '')))}"
    return json.dumps(message, sort_keys=True)


def _clip(text: str, limit: int = 16) -> str:
    return text if len(text) <= limit else f"{text[:limit - 1]}… ({len(text)} chars)"


def noise(size: int, seed: int = 0) -> str:
    """``size`` characters of seeded random text (incompressible, for load tests).

    Raises:
        ValueError: negative ``size``.
    """
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    rng = random.Random(seed)
    return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=size))


# --------------------------------------------------------------------------- echo


async def echo_handler(websocket: ServerConnection) -> None:
    """Send every message back to the client that sent it, until it leaves."""
    try:
        async for message in websocket:
            await websocket.send(message)
    except ConnectionClosed:  # the client vanished without a close frame: nothing to do
        pass


def url_of(server: Server) -> str:
    """``ws://127.0.0.1:PORT`` of a server started with :func:`websockets.asyncio.server.serve`."""
    host, port = server.sockets[0].getsockname()[:2]
    return f"ws://{host}:{port}"


# --------------------------------------------------------------------------- feeds

HEADLINES = [
    "RFC 6455 turns fifteen",
    "Browsers agree on WebSocket close codes",
    "Polling declared harmful by tired servers",
    "Full duplex spotted in the wild",
    "Ping and pong keep the connection alive",
    "Masking keys foil proxy cache poisoning",
    "Server-Sent Events wave from across the street",
    "Chat app scales to three whole users",
]
SYMBOLS = ["ACME", "GLOBEX", "INITECH"]


def news_feed(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """``n`` news headlines in a seeded, reproducible order."""
    rng = random.Random(seed)
    for _ in range(n):
        yield {"type": Kind.NEWS.value, "text": rng.choice(HEADLINES)}


def clock_feed(n: int, start: int = 9 * 3600, step: int = 1) -> Iterator[dict[str, Any]]:
    """``n`` ticks of a fictional clock (``HH:MM:SS``), ``step`` seconds apart."""
    for i in range(n):
        t = (start + i * step) % 86400
        yield {"type": Kind.CLOCK.value, "time": f"{t // 3600:02d}:{t // 60 % 60:02d}:{t % 60:02d}"}


def price_feed(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """``n`` prices from a seeded random walk, in whole cents."""
    rng = random.Random(seed)
    cents = {symbol: 10000 + 2500 * i for i, symbol in enumerate(SYMBOLS)}
    for _ in range(n):
        symbol = rng.choice(SYMBOLS)
        cents[symbol] = max(1, cents[symbol] + rng.randint(-150, 150))
        yield {"type": Kind.PRICE.value, "symbol": symbol, "price": cents[symbol] / 100}


def demo_events(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` events mixing news, clock ticks and prices, numbered ``seq`` 1..n.

    The same ``(n, seed)`` always gives the same list.
    """
    rng = random.Random(seed)
    sources = {
        Kind.NEWS: news_feed(n, seed),
        Kind.CLOCK: clock_feed(n),
        Kind.PRICE: price_feed(n, seed),
    }
    kinds = list(sources)
    events = []
    for seq in range(1, n + 1):
        event = dict(next(sources[rng.choice(kinds)]))
        event["seq"] = seq
        events.append(event)
    return events


# --------------------------------------------------------------------------- push


async def push_events(websocket: ServerConnection | ClientConnection,
                      events: Iterable[dict[str, Any]], interval: float) -> int:
    """Send each event as one JSON text frame, ``interval`` seconds apart.

    Each frame gets a ``sent_ns`` field (``time.perf_counter_ns()`` just before
    sending) so that a client in the same process can measure latency.

    Args:
        websocket: an open connection.
        events: dicts with a ``type`` field.
        interval: pause between two frames, in seconds (0 = as fast as possible).

    Returns:
        How many frames were sent.

    Raises:
        ValueError: negative interval.
        ConnectionClosed: the peer left (the caller usually lets it end the handler).
    """
    if interval < 0:
        raise ValueError(f"interval must be >= 0, got {interval}")
    sent = 0
    for event in events:
        if sent and interval:
            await asyncio.sleep(interval)
        kind = event.get("type", "")
        fields = {k: v for k, v in event.items() if k != "type"}
        fields["sent_ns"] = time.perf_counter_ns()
        await websocket.send(encode(kind, **fields))
        sent += 1
    return sent


def answer_control(message: dict[str, Any]) -> str:
    """The server's answer to a ``control`` message: ``"got NAME=VALUE"``.

    Raises:
        BadMessage: the control message lacks ``name`` or ``value``.
    """
    if "name" not in message or "value" not in message:
        raise BadMessage("a control message needs 'name' and 'value'")
    return f"got {message['name']}={message['value']}"


@dataclass
class PushServer:
    """A full-duplex handler: pushes events *and* answers the client meanwhile.

    On each connection it starts a task that pushes ``events`` (a fresh copy per
    client) every ``interval`` seconds, while it reads what the client sends:
    a ``control`` message is answered with an ``ack``; a frame that is not a
    valid message is answered with an ``error`` (the connection stays open).
    After the pushes end the connection stays open for more controls.

    Args:
        events: the events each client receives, in order.
        interval: seconds between two pushes.
        on_control: optional callback called with each valid control message
            (the notebook uses it to show what the server received).
    """

    events: list[dict[str, Any]]
    interval: float = 0.05
    on_control: Callable[[dict[str, Any]], None] | None = None
    received: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def handler(self, websocket: ServerConnection) -> None:
        """The ``websockets`` connection handler (pass ``push.handler`` to ``serve``)."""
        pusher = asyncio.create_task(push_events(websocket, list(self.events), self.interval))
        try:
            async for frame in websocket:
                await self._answer(websocket, frame)
        except ConnectionClosed:  # the client vanished without a close frame
            pass
        finally:
            pusher.cancel()
            try:
                await pusher
            except (asyncio.CancelledError, ConnectionClosed):
                pass

    async def _answer(self, websocket: ServerConnection, frame: str | bytes) -> None:
        try:
            message = decode(frame)
            if message["type"] != Kind.CONTROL:
                raise BadMessage(f"the server only accepts 'control' messages, not {message['type']!r}")
            text = answer_control(message)
        except BadMessage as error:
            self.errors.append(str(error))
            await websocket.send(encode(Kind.ERROR, text=str(error)))
            return
        self.received.append(message)
        if self.on_control is not None:
            self.on_control(message)
        await websocket.send(encode(Kind.ACK, text=text))


async def read_messages(websocket: ClientConnection,
                        on_message: Callable[[dict[str, Any]], Any],
                        on_error: Callable[[str], Any] | None = None) -> int:
    """Client side: decode every incoming frame and hand it to ``on_message``.

    Runs until the connection closes (normally a background task).  A frame that
    is not a valid message goes to ``on_error`` (or is skipped) instead of
    killing the reader.

    Returns:
        How many messages were delivered.
    """
    delivered = 0
    try:
        async for frame in websocket:
            try:
                message = decode(frame)
            except BadMessage as error:
                if on_error is not None:
                    on_error(str(error))
                continue
            on_message(message)
            delivered += 1
    except ConnectionClosed:
        pass
    return delivered


# --------------------------------------------------------------------------- latency


@dataclass
class LatencyRecorder:
    """Collects ``now - sent_ns`` for each pushed message, in milliseconds."""

    samples_ms: list[float] = field(default_factory=list)

    def record(self, message: dict[str, Any], now_ns: int | None = None) -> float | None:
        """Record the latency of ``message`` if it carries ``sent_ns``; return it in ms."""
        sent = message.get("sent_ns")
        if not isinstance(sent, int):
            return None
        now_ns = time.perf_counter_ns() if now_ns is None else now_ns
        latency = (now_ns - sent) / 1e6
        self.samples_ms.append(latency)
        return latency

    def p(self, q: float) -> float:
        """The ``q``-th percentile in milliseconds (see :func:`percentile`)."""
        return percentile(self.samples_ms, q)


# --------------------------------------------------------------------------- hub


class Hub(Fanout):
    """Broadcast hub: every message a client sends goes to every client.

    Like gorilla/websocket's chat hub, each client has a bounded send queue and one
    writer task (the queues, the broadcast and the slow-client rule live in
    :class:`course.fanout.Fanout`, shared with ``course.chat``).  :meth:`broadcast` never
    waits: it puts the message in each queue.  A burst is absorbed: ``queue_size`` is
    where a clock starts, not a wall.  A client whose queue *stays* full for longer than
    ``grace`` seconds, or outgrows ``max_bytes``, is too slow: it is closed with
    ``1008 POLICY_VIOLATION`` and forgotten, and nobody else waits for it.

    The sender receives its own messages too (as in gorilla's chat): it sees the
    order in which the hub relayed them.

    Args:
        queue_size: capacity of each client's send queue (at least 1).
        on_event: optional callback ``on_event(kind, detail)`` for joins, leaves
            and drops (``kind`` is ``"join"``, ``"leave"`` or ``"drop"``).
        grace: seconds a client's queue may stay full before it is dropped.
        max_bytes: bytes a client's queue may hold; beyond, it is dropped at once.
        max_buffered: bytes a client's write buffer may hold for longer than ``grace``.

    Raises:
        ValueError: ``queue_size`` below 1, ``grace`` not positive, a negative bound.
    """

    SLOW_CLOSE_CODE = CloseCode.POLICY_VIOLATION
    SLOW_CLOSE_REASON = Verdict.QUEUE_FULL.close_reason

    def __init__(self, queue_size: int = 16,
                 on_event: Callable[[str, str], None] | None = None, *,
                 grace: float = 1.0, max_bytes: int = 1024 * 1024,
                 max_buffered: int = 256 * 1024) -> None:
        super().__init__(queue_size, grace=grace, max_bytes=max_bytes,
                         max_buffered=max_buffered, on_event=on_event)
        self.errors: list[str] = []

    async def handler(self, websocket: ServerConnection) -> None:
        """The ``websockets`` connection handler (pass ``hub.handler`` to ``serve``).

        A dropped client's closing handshake is bounded by the connection's
        ``close_timeout`` (a ``serve`` / :func:`serve_hub` argument).
        """
        transport = websocket.transport
        outbox = self.join(websocket, _peer(websocket), send=websocket.send,
                           close=websocket.close, abort=transport.abort,
                           buffered=transport.get_write_buffer_size,
                           close_timeout=websocket.close_timeout)
        try:
            async for frame in websocket:
                try:
                    message = decode(frame)
                except BadMessage as error:
                    self.errors.append(str(error))
                    self.send(websocket, encode(Kind.ERROR, text=str(error)))
                    continue
                message.setdefault("sender", outbox.name)
                self.broadcast(json.dumps(message, separators=(",", ":")))
        except ConnectionClosed:  # dropped as too slow, or vanished without a close frame
            pass
        finally:
            self.leave(websocket)

    def drop(self, websocket: ServerConnection, verdict: Verdict = Verdict.QUEUE_FULL) -> None:
        """Disconnect a client now (close code 1008) without waiting for it."""
        super().drop(websocket, verdict)


class HubConnection(ServerConnection):
    """A server connection whose :meth:`close` always ends within ``close_timeout``.

    ``websockets`` waits for its write buffer to drain before the close frame counts
    as sent; a peer that reads nothing never lets it drain, so ``server.close()`` would
    wait forever.  Here the handshake gets ``close_timeout`` seconds, then the TCP
    connection is aborted.
    """

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        await close_within(super().close(code, reason), self.close_timeout, self.transport.abort)


def _peer(websocket: ServerConnection) -> str:
    address = websocket.remote_address
    return f"{address[0]}:{address[1]}" if address else "?"


async def serve_hub(hub: Hub, host: str = "127.0.0.1", port: int = 0, *,
                    ping_interval: float | None = 5.0, ping_timeout: float | None = 5.0,
                    **kwargs: Any) -> Server:
    """Start a server whose handler is ``hub.handler``.

    Its connections are :class:`HubConnection`: closing one (``server.close()``, a
    dropped client) never takes longer than ``close_timeout``, even if the peer stopped
    reading; and ``server.close()`` aborts at once the clients the hub dropped whose close
    is still running, so stopping waits for nobody it already gave up on.

    Args:
        hub: the hub whose handler serves every connection.
        host: interface to listen on (keep ``127.0.0.1`` in the course).
        port: ``0`` lets the OS pick a free port (read it with :func:`url_of`).
        ping_interval: the library pings each client every ``ping_interval`` seconds
            (``None``: never), like gorilla's ``pingPeriod``.
        ping_timeout: a client whose pong does not come back within ``ping_timeout``
            seconds is dead or frozen and gets closed (gorilla's ``pongWait``).
        **kwargs: passed to :func:`websockets.asyncio.server.serve`; e.g.
            ``close_timeout`` bounds how long a dropped, dead or stopped peer has to
            answer the close frame before its TCP connection is aborted (default 10 s).

    Raises:
        OSError: the address is not available.
    """
    kwargs.setdefault("create_connection", HubConnection)
    server = await serve(hub.handler, host, port, ping_interval=ping_interval,
                         ping_timeout=ping_timeout, **kwargs)
    close = server.close

    def close_cutting_drops(*args: Any, **kw: Any) -> None:
        hub.cut_closes()  # dropped clients still closing would hold wait_closed() up
        close(*args, **kw)

    server.close = close_cutting_drops  # type: ignore[method-assign]
    return server


# --------------------------------------------------------------------------- stop


async def shutdown(*, tasks: Iterable[asyncio.Task | None] = (),
                   clients: Iterable[ClientConnection | None] = (),
                   servers: Iterable[Server | None] = (), timeout: float = 5.0) -> str:
    """Stop everything a notebook started, within ``timeout`` seconds.

    Cancels ``tasks``, closes ``clients``, closes ``servers`` and awaits
    ``wait_closed()``.  ``None`` entries are skipped, so cells can pass
    ``globals().get("name")``.

    Returns:
        A stable summary such as ``"stopped 2 tasks, 3 clients, 1 server"``.
    """
    tasks = [t for t in tasks if t is not None]
    clients = [c for c in clients if c is not None]
    servers = [s for s in servers if s is not None]
    async with asyncio.timeout(timeout):
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        for server in servers:
            server.close()
        await asyncio.gather(*(s.wait_closed() for s in servers), return_exceptions=True)
    plural = lambda n, word: f"{n} {word}{'' if n == 1 else 's'}"  # noqa: E731
    return (f"stopped {plural(len(tasks), 'task')}, {plural(len(clients), 'client')}, "
            f"{plural(len(servers), 'server')}")
