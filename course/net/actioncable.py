"""Action Cable at ``/cable``: Rails' protocol, over the channel server's rooms.

:class:`course.net.channels.ChannelServer` mounts it, so ``@rails/actioncable``'s
consumer joins the same rooms as Phoenix and Socket.IO clients::

    const cable = createConsumer("ws://HOST:PORT/cable")
    cable.subscriptions.create({channel: "RoomChannel", room: "lobby", name: "ada"},
                               {received(message) { ... }})
    subscription.perform("speak", {body: "hi"})

The frames and the command rules are :mod:`course.wire.actioncable` (pure); this module
does the I/O.  What it adds:

- **The handshake.**  The client must offer the subprotocol ``actioncable-v1-json`` in
  ``Sec-WebSocket-Protocol`` (the JS client offers it with ``actioncable-unsupported``);
  the 101 answer selects it.  A request that does not offer it gets HTTP 400 with a
  sentence (Rails' server would upgrade without a protocol, and its client would then
  close: an error at the handshake says more).  A browser ``Origin`` follows the server's
  rule (HTTP 403 otherwise).
- **Welcome, then a ping every 3 s** (one timer for all connections, as Rails'
  ``BEAT_INTERVAL``); the client reconnects when it hears nothing for 6 s.
- **A subscription is a room member** keyed by ``(ws, identifier)``: it receives
  ``confirm_subscription``, then a ``history`` message, then ``presence`` messages (the
  sorted nicknames, after every join or leave), ``new_msg`` and ``typing``.
- **Every outgoing frame goes through the server's** :class:`course.net.fanout.Fanout`:
  a connection that stops reading is dropped with 1008 and never holds up the room.
- **Stopping**: each connection gets ``{"type":"disconnect","reason":"server_restart",
  "reconnect":true}`` and a close 1001, within the fanout's ``close_timeout``.
- Bad input never closes the connection (error frames, table in
  :mod:`course.wire.actioncable`); binary frames get an ``invalid command`` error; a
  frame above 64 KiB closes it with 1009, as on the Phoenix endpoint.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from course.net.fanout import GOING_AWAY, Fanout, join_aiohttp
from course.wire import actioncable as cable
from course.wire.chat import MAX_FRAME_BYTES
from course.wire.phoenix import Event

if TYPE_CHECKING:  # the server imports this module to mount it: no import cycle at run time
    from course.net.channels import Rooms

__all__ = ["ActionCable"]


class ActionCable:
    """The ``/cable`` endpoint over ``rooms``, sending through ``fanout``.

    Args:
        rooms: the server's :class:`course.net.channels.Rooms`.
        fanout: the server's fanout (the bounded queues).
        origin_allowed: ``origin_allowed(request) -> bool``, the server's browser rule.
        ping_interval: seconds between pings (Rails: 3).

    Attributes:
        connections: the open connections (``aiohttp`` responses).
    """

    path = "/cable"

    def __init__(self, rooms: "Rooms", fanout: Fanout, *,
                 origin_allowed: Callable[[web.Request], bool] = lambda request: True,
                 ping_interval: float = cable.PING_INTERVAL) -> None:
        if not ping_interval > 0:
            raise ValueError(f"ping_interval must be > 0 seconds, got {ping_interval}")
        self.rooms = rooms
        self.fanout = fanout
        self.origin_allowed = origin_allowed
        self.ping_interval = ping_interval
        self.connections: set[web.WebSocketResponse] = set()
        self._beat: asyncio.Task | None = None

    def mount(self, app: web.Application) -> None:
        """Add the route and the ping timer (started and stopped with the app)."""
        app.router.add_get(self.path, self.handler)
        app.on_startup.append(self._start)
        app.on_shutdown.append(self._stop)

    async def _start(self, app: web.Application) -> None:
        self._beat = asyncio.create_task(self._ping_forever(), name="action cable pings")

    async def _stop(self, app: web.Application) -> None:
        if self._beat is not None:
            self._beat.cancel()
            await asyncio.gather(self._beat, return_exceptions=True)
            self._beat = None

    async def _ping_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            frame = cable.ping(time.time())
            for ws in list(self.connections):
                self.fanout.send(ws, frame)

    async def handler(self, request: web.Request) -> web.StreamResponse:
        """One Action Cable connection (the aiohttp handler of ``GET /cable``)."""
        if not self.origin_allowed(request):
            return web.Response(status=403, text="origin not allowed\n")
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        if cable.PROTOCOL not in offered:
            return web.Response(status=400, text=f"this endpoint speaks the subprotocol {cable.PROTOCOL}: "
                                                 "offer it in Sec-WebSocket-Protocol\n")
        ws = web.WebSocketResponse(protocols=(cable.PROTOCOL,), max_msg_size=MAX_FRAME_BYTES)
        if not await join_aiohttp(self.fanout, request, ws, prefix="cable ",
                                  close=lambda code, reason: self._close(ws, code, reason)):
            return ws
        self.connections.add(ws)
        self.fanout.send(ws, cable.welcome())
        session = cable.CableSession()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._carry_out(ws, session.receive(msg.data))
                elif msg.type == WSMsgType.BINARY:
                    self.fanout.send(ws, cable.error("invalid command",
                                                     "binary frames are not accepted; send JSON text"))
                else:  # ERROR (a frame > 64 KiB: aiohttp sent 1009)
                    break
        except (ConnectionError, RuntimeError):
            pass
        finally:
            self.connections.discard(ws)
            for action in session.close():
                self.rooms.room(action.room).leave((ws, action.identifier))
            self.fanout.leave(ws)
        return ws

    @staticmethod
    async def _close(ws: web.WebSocketResponse, code: int, reason: str) -> None:
        if code == GOING_AWAY:  # tell the client why, and that it may come back
            await ws.send_str(cable.disconnect("server_restart", True))
        await ws.close(code=code, message=reason.encode())

    def _deliver(self, ws: web.WebSocketResponse, identifier: str, room: str) -> Callable[[str, dict[str, Any]], None]:
        def deliver(event: str, payload: dict[str, Any]) -> None:
            if event == Event.PRESENCE_STATE.value:  # the diff that follows says the same
                return
            if event == Event.PRESENCE_DIFF.value:
                message = {"event": "presence", "names": self.rooms.room(room).names()}
            else:
                message = {"event": event, **payload}
            self.fanout.send(ws, cable.transmit(identifier, message))
        return deliver

    def _carry_out(self, ws: web.WebSocketResponse, actions: list[cable.Action]) -> None:
        for action in actions:
            if isinstance(action, cable.Send):
                self.fanout.send(ws, action.text)
            elif isinstance(action, cable.Subscribe):
                identifier = action.identifier

                def welcome(history: list[dict[str, Any]], identifier: str = identifier) -> None:
                    self.fanout.send(ws, cable.confirm(identifier))
                    self.fanout.send(ws, cable.transmit(identifier, {"event": "history",
                                                                     "messages": history}))

                self.rooms.room(action.room).join((ws, identifier), action.name,
                                                  self._deliver(ws, identifier, action.room),
                                                  welcome=welcome)
            elif isinstance(action, cable.Unsubscribe):
                self.rooms.room(action.room).leave((ws, action.identifier))
            elif isinstance(action, cable.Speak):
                self.rooms.room(action.room).say((ws, action.identifier), action.body)
            elif isinstance(action, cable.Typing):
                self.rooms.room(action.room).typing((ws, action.identifier), action.typing)
