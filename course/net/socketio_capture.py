"""A real Socket.IO exchange, recorded on the wire: python-socketio's server and client
talking through the course's relay (:mod:`course.net.relay`).

:func:`capture_socketio` starts ``socketio.AsyncServer(async_mode="aiohttp")`` on an aiohttp
app (127.0.0.1, port 0), a :class:`course.net.relay.Relay` in front of it, and two
``socketio.AsyncClient``:

- **ada** connects with ``transports=["websocket"]`` to the namespaces ``/`` and ``/chat``;
- **bob** connects with the default transports: an HTTP long-polling handshake first, then
  the upgrade to WebSocket (``2probe`` / ``3probe`` / ``5``), the path a client takes when
  a proxy blocks WebSockets (it then simply stays on polling).

Both join the room ``lobby`` on ``/chat``; ada emits ``chat`` with an acknowledgement, the
server broadcasts it to the room (sender skipped) and acks; the server asks bob
``whoami`` (``sio.call``, an ack from the client); the heartbeat (server ``2``, client
``3``) runs every ``ping_interval`` seconds.  Afterwards the recorded bytes are cut into
HTTP messages and WebSocket frames (:func:`course.ui.frames`-style, with
:func:`packets_of`), and :func:`transcript` prints them with sids masked.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import socketio
from aiohttp import web

from course.net.relay import Link, Relay, start_relay
from course.protocol import apply_mask, parse_frame_header

__all__ = ["Captured", "Capture", "packets_of", "capture_socketio", "transcript", "mask_ids",
           "NoWebSocketProxy", "Blocked", "capture_blocked"]


@dataclass(frozen=True)
class Captured:
    """One Engine.IO unit seen on the wire.

    Attributes:
        link: the relay's connection number (1, 2...).
        direction: ``"C->S"`` or ``"S->C"``.
        transport: ``"websocket"`` (one text frame), ``"polling"`` (one HTTP body) or
            ``"http"`` (an HTTP request or response line).
        text: the frame's text or the body (several packets joined by ``\\x1e``);
            for an HTTP request or response with no body, its first line.
        http: ``True`` when ``text`` is an HTTP first line rather than a payload.
    """

    link: int
    direction: str
    transport: str
    text: str
    http: bool = False


@dataclass
class Capture:
    """What :func:`capture_socketio` saw.

    Attributes:
        packets: every unit in order per link and direction (client side first).
        acks: what each acknowledgement returned, by name.
        received: the events each client received, by client name.
        sids: every sid the server handed out (to mask them).
    """

    packets: list[Captured]
    acks: dict[str, object]
    received: dict[str, list]
    sids: list[str]


def _http_messages(data: bytes) -> tuple[list[tuple[str, bytes]], bytes]:
    """Split HTTP/1.1 messages (Content-Length or chunked); stop after an upgrade.

    Returns:
        ([(first line and headers, body)], the bytes after a 101 / upgrade request).
    """
    messages, pos = [], 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        head = data[pos:end].decode("latin-1")
        pos = end + 4
        lower = head.lower()
        length = re.search(r"(?m)^content-length:\s*(\d+)", lower)
        body = b""
        if length:
            body, pos = data[pos:pos + int(length.group(1))], pos + int(length.group(1))
        elif re.search(r"(?m)^transfer-encoding:\s*chunked", lower):
            while True:
                line_end = data.find(b"\r\n", pos)
                size = int(data[pos:line_end].split(b";")[0], 16)
                pos = line_end + 2
                body += data[pos:pos + size]
                pos += size + 2
                if size == 0:
                    break
        messages.append((head, body))
        status = head.split("\r\n")[0].split(" ")[1:2]
        if status == ["101"] or "upgrade: websocket" in lower:  # a 101, or the request for one
            return messages, data[pos:]
    return messages, b""


def _text_frames(data: bytes) -> list[str]:
    """The text frames' payloads (unmasked) in ``data``; other opcodes are skipped."""
    texts, pos = [], 0
    while pos < len(data):
        header = parse_frame_header(data[pos:pos + 14])
        if header is None or pos + header.header_length + header.payload_length > len(data):
            break
        body = data[pos + header.header_length:pos + header.header_length + header.payload_length]
        if header.mask is not None:
            body = apply_mask(body, header.mask)
        if header.opcode == 0x1:
            texts.append(body.decode())
        pos += header.header_length + header.payload_length
    return texts


def _first_line(head: str) -> str:
    line = head.split("\r\n")[0]
    return re.sub(r"&(sid|t)=[^& ]*", "", line)  # sid and the client's cache-buster vary


def packets_of(link: Link) -> list[Captured]:
    """Cut one relayed connection into :class:`Captured` units (client side, then server)."""
    out: list[Captured] = []
    for direction, data in (("C->S", bytes(link.to_server)), ("S->C", bytes(link.to_client))):
        messages, rest = _http_messages(data)
        for head, body in messages:
            out.append(Captured(link.number, direction, "http", _first_line(head), http=True))
            if body:
                out.append(Captured(link.number, direction, "polling", body.decode()))
        for text in _text_frames(rest):
            out.append(Captured(link.number, direction, "websocket", text))
    return out


def _server(ping_interval: float) -> tuple[socketio.AsyncServer, web.Application, list[str]]:
    """python-socketio on an aiohttp app: room ``lobby`` on ``/chat``, event ``chat`` acked."""
    sio = socketio.AsyncServer(async_mode="aiohttp", ping_interval=ping_interval, ping_timeout=5,
                               logger=False, engineio_logger=False)
    app = web.Application()
    sio.attach(app)
    sids: list[str] = []

    @sio.on("connect", namespace="/chat")
    async def chat_connect(sid, environ, auth):
        sids.append(sid)
        await sio.enter_room(sid, "lobby", namespace="/chat")

    @sio.on("connect")
    async def main_connect(sid, environ, auth):
        sids.append(sid)

    @sio.on("chat", namespace="/chat")
    async def chat(sid, data):
        await sio.emit("chat", {"name": "ada", "body": data["body"]}, room="lobby",
                       skip_sid=sid, namespace="/chat")
        return {"ok": True, "id": 1}

    return sio, app, sids


async def capture_socketio(*, ping_interval: float = 1.0, timeout: float = 10.0) -> Capture:
    """Run the exchange described in the module docstring and return what was on the wire.

    Everything it starts is stopped before it returns (bounded by ``timeout`` seconds).

    Raises:
        TimeoutError: the exchange did not finish in time.
    """
    sio, app, sids = _server(ping_interval)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    relay: Relay = await start_relay("127.0.0.1", port)
    received: dict[str, list] = {"ada": [], "bob": []}
    acks: dict[str, object] = {}
    clients = {name: socketio.AsyncClient(reconnection=False) for name in ("ada", "bob")}
    for name, client in clients.items():
        client.on("chat", namespace="/chat", handler=lambda data, name=name: received[name].append(data))
    clients["bob"].on("whoami", namespace="/chat", handler=lambda: "bob")
    url = f"http://127.0.0.1:{relay.port}"
    try:
        async with asyncio.timeout(timeout):
            await clients["ada"].connect(url, transports=["websocket"], namespaces=["/", "/chat"],
                                         auth={"token": "ada"}, wait_timeout=5)
            await clients["bob"].connect(url, namespaces=["/chat"], wait_timeout=5)
            while clients["bob"].transport() != "websocket":
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
            acks["chat"] = await clients["ada"].call("chat", {"body": "hi"}, namespace="/chat",
                                                     timeout=5)
            bob_sid = clients["bob"].get_sid("/chat")
            acks["whoami"] = await sio.call("whoami", to=bob_sid, namespace="/chat", timeout=5)
            await clients["ada"].emit("hello", "world")
            while not received["bob"]:
                await asyncio.sleep(0.01)
            await asyncio.sleep(ping_interval * 1.5)  # at least one heartbeat each
            captured = [p for link in relay.links for p in packets_of(link)]
    finally:
        for client in clients.values():
            try:
                async with asyncio.timeout(2):
                    await client.disconnect()
            except (TimeoutError, Exception):  # noqa: BLE001 - cleanup must not hide the result
                pass
        relay.close()
        await relay.wait_closed()
        await sio.shutdown()
        await runner.cleanup()
    return Capture(captured, acks, received, sids)


def mask_ids(text: str, sids: list[str]) -> str:
    """Replace every sid in ``text`` by ``<sid>`` (they are random)."""
    for sid in sids:
        text = text.replace(sid, "<sid>")
    return re.sub(r'"sid":"[^"]+"', '"sid":"<sid>"', text)


def transcript(capture: Capture) -> list[str]:
    """One line per unit, ``link direction transport text``, sids masked, the separator shown
    as ``␞``; repeated heartbeats (``2``/``3`` after the first of each link) are left out."""
    lines, seen = [], set()
    for p in capture.packets:
        if p.text in ("2", "3"):
            if (p.link, p.text) in seen:
                continue
            seen.add((p.link, p.text))
        text = mask_ids(p.text, capture.sids).replace("\x1e", "␞")
        lines.append(f"link {p.link} {p.direction} {p.transport:<9} {text}")
    return lines


class NoWebSocketProxy:
    """An HTTP proxy that refuses every WebSocket upgrade with 403, as some corporate proxies
    do, and forwards every other request (HTTP/1.1, ``Content-Length`` bodies) to a target.

    Attributes:
        port: where clients connect.
        refused: how many upgrade requests it refused.
        forwarded: the request lines it forwarded.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.refused = 0
        self.forwarded: list[str] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self.port = 0

    async def start(self) -> "NoWebSocketProxy":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tasks.add(asyncio.current_task())
        upstream = None
        try:
            up_reader, upstream = await asyncio.open_connection(*self.target)
            back = asyncio.ensure_future(self._copy(up_reader, writer))
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    text = head.decode("latin-1").lower()
                    if "upgrade: websocket" in text:
                        self.refused += 1
                        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n"
                                     b"Connection: close\r\n\r\n")
                        await writer.drain()
                        break
                    length = re.search(r"(?m)^content-length:\s*(\d+)", text)
                    body = await reader.readexactly(int(length.group(1))) if length else b""
                    self.forwarded.append(_first_line(head.decode("latin-1")))
                    upstream.write(head + body)
                    await upstream.drain()
            finally:
                back.cancel()
                await asyncio.gather(back, return_exceptions=True)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass
        finally:
            for w in (upstream, writer):
                if w is not None:
                    w.close()
            self._tasks.discard(asyncio.current_task())

    @staticmethod
    async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass

    async def stop(self) -> None:
        """Stop listening and cut the connections (bounded)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)


@dataclass
class Blocked:
    """What :func:`capture_blocked` saw.

    Attributes:
        transport: the client's transport at the end (``"polling"`` when the upgrade failed).
        refused: WebSocket upgrades the proxy refused.
        requests: the HTTP request lines that reached the server (sid and ``t`` removed).
        bodies: every polling body both ways, in order per connection (client side first).
        ack: what the ``chat`` event's acknowledgement returned.
        sids: the sids, to mask them.
    """

    transport: str
    refused: int
    requests: list[str]
    bodies: list[Captured]
    ack: object
    sids: list[str]


async def capture_blocked(*, timeout: float = 10.0) -> Blocked:
    """A default python-socketio client behind a proxy that refuses WebSocket upgrades.

    client → :class:`NoWebSocketProxy` → :class:`course.net.relay.Relay` → python-socketio.
    The client connects to ``/chat`` with long-polling, tries the upgrade (refused), stays on
    polling, emits ``chat`` with an ack and gets it.  Everything is stopped before returning.
    """
    sio, app, sids = _server(1)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)  # a long-poll GET is pending
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    relay = await start_relay("127.0.0.1", runner.addresses[0][1])
    proxy = await NoWebSocketProxy("127.0.0.1", relay.port).start()
    client = socketio.AsyncClient(reconnection=False)
    try:
        async with asyncio.timeout(timeout):
            await client.connect(f"http://127.0.0.1:{proxy.port}", namespaces=["/chat"], wait_timeout=5)
            while proxy.refused == 0:
                await asyncio.sleep(0.01)
            ack = await client.call("chat", {"body": "hi"}, namespace="/chat", timeout=5)
            transport = client.transport()
            await asyncio.sleep(0.05)
            units = [p for link in relay.links for p in packets_of(link)]
    finally:
        try:  # abort: over polling, waiting for the pending long-poll GET takes a ping interval
            async with asyncio.timeout(2):
                await client.eio.disconnect(abort=True)
        except (TimeoutError, Exception):  # noqa: BLE001 - cleanup must not hide the result
            pass
        await proxy.stop()
        relay.close()
        await relay.wait_closed()
        await runner.cleanup()
    return Blocked(transport, proxy.refused, [u.text for u in units if u.http and u.direction == "C->S"],
                   [u for u in units if u.transport == "polling"], ack, sids)
