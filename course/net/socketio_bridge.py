"""Socket.IO at ``/socket.io/``: the real ``python-socketio`` server, bridged to the rooms.

:class:`course.net.channels.ChannelServer` mounts a ``socketio.AsyncServer(async_mode=
"aiohttp")`` on its aiohttp app (``sio.attach(app)``), so ``socket.io-client`` and
python-socketio's ``AsyncClient`` join the same rooms as Phoenix and Action Cable
clients.  Engine.IO (the handshake, polling and the upgrade to WebSocket, pings) and the
Socket.IO packets are python-socketio's; this module only registers event handlers::

    socket.emit("join", {room: "lobby", name: "ada"}, (ack) => ...)  // {ok, room, history}
    socket.emit("new_msg", {body: "hi"}, (ack) => ...)               // {ok, id}
    socket.on("new_msg", (msg) => ...)                                // {id, name, body}

Events, client → server (each answers through its ack, the handler's return value):

- ``join`` ``{"room": name, "name": nickname}`` → ``{"ok": true, "room", "history"}``;
  a socket is in one room at a time (joining another leaves the first);
- ``new_msg`` ``{"body": text}`` → ``{"ok": true, "id"}``;
- ``typing`` ``{}`` or ``{"typing": bool}`` → ``{"ok": true}`` (the others get ``typing``);
- ``leave`` → ``{"ok": true}``;
- anything wrong → ``{"ok": false, "reason", "detail"}`` and nothing else happens:
  ``reason`` is ``"bad payload"`` (not an object, bad room or nickname, empty or long
  body), ``"not joined"`` (``new_msg``/``typing`` before ``join``) or ``"unknown event"``.

Server → client: ``new_msg`` (``id``, ``name``, ``body``), ``typing`` (``name``,
``typing``), ``presence`` (``{"names": [...]}``, sorted, after every join and leave).
A disconnect leaves the room.

**The members live in** :class:`course.net.channels.Rooms`, not in python-socketio's
rooms: a room has members of three protocols, and ``sio.emit(..., room=...)`` reaches
only Socket.IO sockets.  Each Socket.IO member's ``deliver`` schedules
``sio.emit(event, payload, to=sid)`` as a task (``deliver`` must not wait); the tasks
run in the order they were created, and each only appends to the socket's queue, so a
socket receives its events in order.

**A slow reader** (python-socketio's own send path, not the course's
:class:`~course.net.fanout.Fanout`): every Engine.IO socket has an *unbounded*
``asyncio.Queue`` (``engineio/async_socket.py``) drained by one writer task that awaits
each WebSocket send.  A reader that stops reading makes that writer wait while its
queue grows in memory, without any bound in bytes or messages; nobody else waits.  It
is dropped only by the heartbeat: the server pings every ``ping_interval`` seconds and
closes a socket whose pong has not come within ``ping_timeout`` (checked at the next
send or ping; python-socketio's defaults are 25 s and 20 s, here 10 s and 10 s).  So a
stalled Socket.IO reader costs memory for up to about 20 s of the room's traffic; the
Phoenix and Action Cable endpoints drop theirs by the fanout's queue rule.

**Stopping**: every Engine.IO socket is told to close (``eio.disconnect()``: Socket.IO's
``41`` and Engine.IO's ``1``), then each WebSocket is closed with 1001 within
``close_timeout`` seconds (aborted after that), then ``sio.shutdown()`` stops the
background tasks.  Without the second step aiohttp would wait for its shutdown timeout:
Engine.IO's handler keeps reading until the client speaks or its heartbeat expires.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import socketio
from aiohttp import web

from course.net.fanout import GOING_AWAY, close_within
from course.wire.channels import NEW_MSG, TYPING, room_of
from course.wire.chat import MAX_FRAME_BYTES, MAX_NAME_CHARS, MAX_TEXT_CHARS, text_field
from course.wire.origin import origin_allowed
from course.wire.phoenix import Event

if TYPE_CHECKING:  # the server imports this module to mount it: no import cycle at run time
    from course.net.channels import Rooms

__all__ = ["SocketIOBridge"]

_Ack = dict[str, Any]


def _refuse(reason: str, detail: str) -> _Ack:
    return {"ok": False, "reason": reason, "detail": detail}




class SocketIOBridge:
    """A python-socketio server whose events act on ``rooms``.

    Args:
        rooms: the server's :class:`course.net.channels.Rooms`.
        allowed_origins: ``"*"``, or a set of origins a browser page may come from (the
            server's own host is always allowed; clients without ``Origin`` too).
        ping_interval, ping_timeout: Engine.IO's heartbeat, in seconds.
        close_timeout: seconds stopping may take before the sockets are left to aiohttp.

    Attributes:
        sio: the ``socketio.AsyncServer`` (attach more handlers to it if you like).
        joined: Socket.IO ``sid`` → the room it joined.
    """

    path = "/socket.io/"

    def __init__(self, rooms: "Rooms", *, allowed_origins: str | set[str] = frozenset(),
                 ping_interval: float = 10.0, ping_timeout: float = 10.0,
                 close_timeout: float = 2.0) -> None:
        self.rooms = rooms
        self.allowed_origins = allowed_origins
        self.close_timeout = close_timeout
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp", async_handlers=False, cors_allowed_origins=self._origin_allowed,
            ping_interval=ping_interval, ping_timeout=ping_timeout,
            max_http_buffer_size=MAX_FRAME_BYTES, logger=False, engineio_logger=False)
        self.joined: dict[str, str] = {}
        self._emits: set[asyncio.Task] = set()
        self._websockets: weakref.WeakKeyDictionary[web.WebSocketResponse, Callable[[], None]] = \
            weakref.WeakKeyDictionary()
        for event, handler in (("join", self._join), ("new_msg", self._new_msg),
                               ("typing", self._typing), ("leave", self._leave),
                               ("disconnect", self._disconnect)):
            self.sio.on(event, handler)
        self.sio.on("*", self._unknown)

    def mount(self, app: web.Application) -> None:
        """Attach the server at ``/socket.io/`` and close its sockets when the app stops."""
        self.sio.attach(app)
        app.on_response_prepare.append(self._track)
        app.on_shutdown.append(self._stop)

    async def _track(self, request: web.Request, response: web.StreamResponse) -> None:
        if isinstance(response, web.WebSocketResponse) and request.path.startswith(self.path):
            self._websockets[response] = request.transport.abort if request.transport else lambda: None

    def _origin_allowed(self, origin: str | None, environ: dict[str, Any]) -> bool:
        return origin_allowed(origin, environ.get("HTTP_HOST"), self.allowed_origins,
                              proxied="HTTP_X_FORWARDED_CONTEXT" in environ)

    async def _stop(self, app: web.Application) -> None:
        try:
            async with asyncio.timeout(self.close_timeout):
                if self.sio.eio.sockets:  # engineio's disconnect() raises with no sockets
                    await self.sio.eio.disconnect()
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        # Engine.IO has queued its close packet; its handler still waits for the client to
        # speak (up to ping_interval + ping_timeout).  Close the WebSockets themselves.
        await asyncio.gather(*(close_within(ws.close(code=GOING_AWAY, message=b"server stopping"),
                                            self.close_timeout, abort)
                               for ws, abort in list(self._websockets.items()) if not ws.closed))
        await self.sio.shutdown()
        for task in list(self._emits):
            task.cancel()

    # --- Rooms → Socket.IO

    def _deliver(self, sid: str, room: str) -> Callable[[str, dict[str, Any]], None]:
        def deliver(event: str, payload: dict[str, Any]) -> None:
            if event == Event.PRESENCE_STATE.value:  # the diff that follows says the same
                return
            if event == Event.PRESENCE_DIFF.value:
                event, payload = "presence", {"names": self.rooms.room(room).names()}
            task = asyncio.get_running_loop().create_task(self._emit(event, payload, sid))
            self._emits.add(task)
            task.add_done_callback(self._emits.discard)
        return deliver

    async def _emit(self, event: str, payload: dict[str, Any], sid: str) -> None:
        try:
            await self.sio.emit(event, payload, to=sid)
        except Exception:  # noqa: BLE001 - the socket went away meanwhile: nothing to deliver
            pass

    # --- Socket.IO → Rooms (each return value is the ack)

    def _key(self, sid: str) -> tuple[str, str]:
        return ("socket.io", sid)

    async def _join(self, sid: str, *args: Any) -> _Ack:
        payload = args[0] if args else None
        try:
            name = text_field(payload, "name", MAX_NAME_CHARS)
            room = payload.get("room")
            if not isinstance(room, str) or room_of(f"room:{room}") is None:
                raise ValueError('"room" must be 1 to 32 letters, digits, _ or -')
        except ValueError as problem:
            return _refuse("bad payload", f'join needs {{"room": name, "name": nickname}}: {problem}')
        self._leave_room(sid)
        history = self.rooms.room(room).join(self._key(sid), name, self._deliver(sid, room))
        self.joined[sid] = room
        return {"ok": True, "room": room, "history": history}

    async def _new_msg(self, sid: str, *args: Any) -> _Ack:
        room = self.joined.get(sid)
        if room is None:
            return _refuse("not joined", "send join before new_msg")
        try:
            body = text_field(args[0] if args else None, "body", MAX_TEXT_CHARS)
        except ValueError as problem:
            return _refuse("bad payload", f'new_msg needs {{"body": text}}: {problem}')
        message = self.rooms.room(room).say(self._key(sid), body)
        return {"ok": True, "id": message["id"]}

    async def _typing(self, sid: str, *args: Any) -> _Ack:
        room = self.joined.get(sid)
        if room is None:
            return _refuse("not joined", "send join before typing")
        payload = args[0] if args else {}
        typing = payload.get("typing", True) if isinstance(payload, dict) else None
        if not isinstance(typing, bool):
            return _refuse("bad payload", 'typing takes {} or {"typing": true|false}')
        self.rooms.room(room).typing(self._key(sid), typing)
        return {"ok": True}

    async def _leave(self, sid: str, *args: Any) -> _Ack:
        self._leave_room(sid)
        return {"ok": True}

    async def _unknown(self, event: str, sid: str, *args: Any) -> _Ack:
        return _refuse("unknown event", f"events are join, {NEW_MSG}, {TYPING} and leave, not {event!r}")

    async def _disconnect(self, sid: str, *args: Any) -> None:
        self._leave_room(sid)

    def _leave_room(self, sid: str) -> None:
        room = self.joined.pop(sid, None)
        if room is not None:
            self.rooms.room(room).leave(self._key(sid))
