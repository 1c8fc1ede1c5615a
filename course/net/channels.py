"""Chapter 5's channel server: rooms shared by every protocol, and Phoenix's on top.

Run it from a shell::

    python -m course.net.channels --host 127.0.0.1 --port 0

It prints ``serving on ws://HOST:PORT/socket/websocket`` and serves until SIGTERM or
Ctrl-C; the same rooms are served to Action Cable clients at ``/cable``
(:mod:`course.net.actioncable`) and to Socket.IO clients at ``/socket.io/``
(:mod:`course.net.socketio_bridge`).  Phoenix's own JavaScript client joins it
(``new Socket("ws://HOST:PORT/socket")``; the client appends ``/websocket?vsn=2.0.0``),
and so does the kernel's
:class:`course.net.channels_client.ChannelClient`.  In a notebook::

    server = await start_channels("127.0.0.1", 0)
    ...
    server.close()
    await server.wait_closed()

**Layers.**  The frames are :mod:`course.wire.phoenix`; what a frame means is decided by
:class:`course.wire.channels.ChannelSession` (pure); presence is :mod:`course.wire.presence`
(pure).  This module does the I/O: a thin loop per connection that carries out the
session's actions on the :class:`Rooms`.  Every outgoing frame goes through one
:class:`course.net.fanout.Fanout`: a connection that stops reading is dropped with 1008
and never holds up the others.

**Limits and errors.**  A frame above 64 KiB closes the connection with 1009 (message too
big).  Every other bad input gets an error reply and the connection lives (the table is
in :mod:`course.wire.channels`; an unparsable frame is answered on topic ``phoenix``).
A connection that sends nothing, not even a heartbeat, for ``heartbeat_timeout`` seconds
(default 60, Phoenix's own idle timeout; its client beats every 30 s) is closed with 1000
("heartbeat timeout") and its presence leaves.  ``?vsn=`` other than ``2.0.0`` is refused
with HTTP 400 (a missing ``vsn`` means 2.0.0).

**The rooms, for other protocols' adapters** (Action Cable, Socket.IO: they plug into the
same :class:`Rooms`, so a message crosses protocols).  A member is a key (any hashable,
unique per connection *and* room, e.g. ``(ws, "lobby")``), a nickname, and a ``deliver``
callable ``deliver(event: str, payload: dict) -> None`` that must not block (encode in
your protocol, then ``Fanout.send``)::

    room = rooms.room("lobby")                  # created on first use
    history = room.join(key, "ada", deliver, welcome=lambda history: ...)
    message = room.say(key, "hi")               # {"id": 7, "name": "ada", "body": "hi"}
    room.typing(key, True)                      # to the others only
    room.broadcast("event", {...}, exclude=key) # anything else
    room.leave(key)                             # idempotent

``join`` calls ``welcome(history)`` first (send your join reply there: Phoenix's ok
reply, Action Cable's ``confirm_subscription``, a Socket.IO ack), then delivers
``presence_state`` to the joiner and ``presence_diff`` to the whole room (joiner
included, as Phoenix does).  The events ``deliver`` receives: ``new_msg`` (``id``,
``name``, ``body``; ids increase across all rooms), ``typing`` (``name``, ``typing``),
``presence_state`` (a :mod:`course.wire.presence` state keyed by nickname) and
``presence_diff`` (``joins``/``leaves``).  Each member's meta is ``{"phx_ref": ...,
"online_at": ...}``; two connections of one nickname are one key with two metas.

**Resume (chapter 6).**  Each room also numbers its messages in a bounded
:class:`course.wire.resume.TopicLog` (``room.log``; ``log_size`` entries).  A Phoenix join
whose payload holds ``"last_seq": n`` (0 on a first join) resumes: its reply's
``response`` adds ``"resume": "replay"`` and ``"seq"`` (the room's newest), and every
message after ``n`` is pushed as ``new_msg`` right after the reply, in order, before any
live message; or, when the log no longer holds ``n + 1`` (or ``n`` is ahead of it: the
server restarted), ``"resume": "resync"``, ``"seq"`` and a ``"reason"``, and nothing is
replayed.  Such a member's ``new_msg`` payloads carry ``"seq"``; other members' payloads
are unchanged.  A ``new_msg`` push with an ``"id"`` (a string, an idempotency key) is
acknowledged by its ok reply, ``{"id": message id, "seq": seq}``; the same id sent again
by the same client gets the same reply plus ``"duplicate": true`` and is not posted again
(:class:`course.wire.resume.Deduplicator`, bounded by ``dedup_per_client`` ids per client).
"The same client" is the join's ``"client"``, a random id that only that client knows
(never shown to others), so it deduplicates across its reconnections; a join without one
is deduplicated on its own connection only.  Never by nickname: a nickname is public, and
anyone joining under it could send first the ids its owner will use, and have the owner's
messages dropped as repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from course.net.actioncable import ActionCable
from course.net.fanout import Fanout, join_aiohttp
from course.net.guard import ConnectionGuard, flushed
from course.net.lifecycle import AppService, run_until_signal
from course.net.socketio_bridge import SocketIOBridge
from course.protocol import CloseCode
from course.wire import presence
from course.wire.channels import (NEW_MSG, TYPING, ChannelSession, JoinRoom, LeaveRoom, Say, Send,
                                  Typing, malformed, refusal)
from course.wire.chat import HISTORY_SIZE, MAX_FRAME_BYTES
from course.wire.limits import MAX_JOINS, MESSAGE_BURST, MESSAGE_RATE, RATE_STRIKES, RateLimit, Verdict
from course.wire.origin import request_origin_allowed
from course.wire.phoenix import VSN, BadFrame, Event, Message, encode, error, ok, push
from course.wire.resume import Deduplicator, Replay, TopicLog, message_id

__all__ = ["Deliver", "Member", "Room", "Rooms", "ChannelServer", "start_channels", "command_line",
           "serve_command", "main"]

Deliver = Callable[[str, dict[str, Any]], None]  #: ``deliver(event, payload)``, never blocks


@dataclass
class Member:
    """One connection in one room."""

    key: Hashable
    name: str
    deliver: Deliver
    phx_ref: str


class Room:
    """One room: its members, its last ``HISTORY_SIZE`` messages, its presence.

    Create rooms with :meth:`Rooms.room` (message ids are numbered across the rooms).
    """

    def __init__(self, name: str, rooms: "Rooms") -> None:
        self.name = name
        self.members: dict[Hashable, Member] = {}
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY_SIZE)
        self.presence: presence.State = {}
        self.log = TopicLog(rooms.log_size)  #: numbered messages, for resuming members
        self._rooms = rooms

    def __len__(self) -> int:
        return len(self.members)

    def join(self, key: Hashable, name: str, deliver: Deliver, *,
             welcome: Callable[[list[dict[str, Any]]], None] | None = None) -> list[dict[str, Any]]:
        """Add a member; see the module docstring for the order of what it receives.

        Args:
            key: unique per connection and room; joining again with a key replaces it.
            name: the nickname (the presence key).
            deliver: ``deliver(event, payload)`` for this member.
            welcome: called with the history before any presence is delivered.

        Returns:
            The history (oldest first) as of the join.
        """
        self.leave(key)
        history = list(self.history)
        member = Member(key, name, deliver, self._rooms.new_ref())
        self.members[key] = member
        if welcome is not None:
            welcome(history)
        diff = presence.join(self.presence, name, presence.meta(member.phx_ref,
                                                                online_at=int(time.time())))
        self.presence = presence.apply_diff(self.presence, diff)
        deliver(Event.PRESENCE_STATE.value, self.presence)
        self.broadcast(Event.PRESENCE_DIFF.value, diff)
        return history

    def leave(self, key: Hashable) -> bool:
        """Remove a member (its presence leaves); ``False`` if it was not here."""
        member = self.members.pop(key, None)
        if member is None:
            return False
        diff = presence.leave(self.presence, member.name, member.phx_ref)
        self.presence = presence.apply_diff(self.presence, diff)
        self.broadcast(Event.PRESENCE_DIFF.value, diff)
        return True

    def say(self, key: Hashable | None, body: str, name: str | None = None) -> dict[str, Any]:
        """Post a message from a member (``key``), or from ``name`` (the kernel) if ``key``
        is ``None``; every member gets ``new_msg``.  ``body`` is already validated.

        Returns:
            The message: ``{"id", "name", "body"}``.

        Raises:
            KeyError: ``key`` is not a member.
        """
        sender = self.members[key].name if key is not None else (name or "kernel")
        message = {"id": self._rooms.new_id(), "name": sender, "body": body}
        self.history.append(message)
        self.log.append(message)
        self.broadcast(NEW_MSG, message)
        self._rooms.published(self.name, NEW_MSG, message)
        return message

    def typing(self, key: Hashable, typing: bool = True) -> None:
        """Tell the other members that ``key`` is typing (ephemeral: no history)."""
        member = self.members[key]
        payload = {"name": member.name, "typing": typing}
        self.broadcast(TYPING, payload, exclude=key)
        self._rooms.published(self.name, TYPING, payload)

    def broadcast(self, event: str, payload: dict[str, Any], *, exclude: Hashable | None = None) -> int:
        """Deliver to every member but ``exclude``; returns how many."""
        targets = [m for k, m in list(self.members.items()) if k != exclude]
        for member in targets:
            member.deliver(event, payload)
        return len(targets)

    def names(self) -> list[str]:
        """The nicknames online, sorted (two tabs of one name count once)."""
        return presence.keys(self.presence)


class Rooms:
    """Every room of one server, by name; shared by all protocol adapters.

    Args:
        log_size: how many numbered messages each room's :attr:`Room.log` keeps.
    """

    def __init__(self, log_size: int = 1000) -> None:
        self.log_size = log_size
        self.rooms: dict[str, Room] = {}
        #: ``published(room, event, payload)``, called after each ``new_msg`` and ``typing``
        #: a member or the kernel sent here; :mod:`course.net.redis_rooms` sets it to share
        #: them with other processes (the default does nothing).
        self.published: Callable[[str, str, dict[str, Any]], None] = lambda room, event, payload: None
        self._ids = itertools.count(1)
        self._refs = itertools.count(1)

    def room(self, name: str) -> Room:
        """The room ``name``, created on first use."""
        if name not in self.rooms:
            self.rooms[name] = Room(name, self)
        return self.rooms[name]

    def new_id(self) -> int:
        """The next message id (increasing, across rooms)."""
        return next(self._ids)

    def new_ref(self) -> str:
        """A fresh presence ``phx_ref``."""
        return f"p{next(self._refs)}"


class ChannelServer(AppService):
    """Rooms over Phoenix Channels V2 JSON, at ``/socket/websocket``; the same rooms over
    Action Cable at ``/cable`` (:mod:`course.net.actioncable`) and Socket.IO at
    ``/socket.io/`` (:mod:`course.net.socketio_bridge`).

    Args:
        heartbeat_timeout: seconds of silence after which a connection is closed.
        allowed_origins: as :class:`course.net.chat.ChatServer`: by default a browser page
            must come from this host and port; ``"*"`` accepts any; clients that send no
            ``Origin`` (Node, Python) are always accepted.
        queue_size, grace, max_bytes, close_timeout: the :class:`course.net.fanout.Fanout`
            bounds (the slow-client rule).
        action_cable, socket_io: mount those adapters (default: both); their objects are
            :attr:`cable` and :attr:`socketio` (``None`` when not mounted).
        log_size: messages kept per room for resuming joins (see the module docstring).
        dedup_per_client: message ids remembered per client (the deduplicator's bound).
        guard: connection caps and handshake deadline (default: a
            :class:`course.net.guard.ConnectionGuard` with its defaults).
        rate, burst, strikes: each connection's message rate limit
            (:class:`course.wire.limits.RateLimit`): a frame over it gets the error
            ``rate limited``; ``strikes`` refusals in a row close the connection with 1008.
        max_joins: topics one connection may have joined at once.

    Raises:
        ValueError: ``heartbeat_timeout`` not positive, a bad fanout bound, or a bound < 1.
    """

    scheme = "ws"
    path = "/socket/websocket"

    def __init__(self, *, heartbeat_timeout: float = 60.0,
                 allowed_origins: str | set[str] | None = None, queue_size: int = 64,
                 grace: float = 1.0, max_bytes: int = 1024 * 1024, close_timeout: float = 2.0,
                 action_cable: bool = True, socket_io: bool = True, log_size: int = 1000,
                 dedup_per_client: int = 1024, guard: ConnectionGuard | None = None,
                 rate: float = MESSAGE_RATE, burst: float = MESSAGE_BURST,
                 strikes: int = RATE_STRIKES, max_joins: int = MAX_JOINS):
        if not heartbeat_timeout > 0:
            raise ValueError(f"heartbeat_timeout must be > 0 seconds, got {heartbeat_timeout}")
        self.heartbeat_timeout = heartbeat_timeout
        self.allowed_origins = allowed_origins if allowed_origins == "*" else set(allowed_origins or ())
        self.fanout = Fanout(queue_size, grace=grace, max_bytes=max_bytes, close_timeout=close_timeout)
        if log_size < 1:
            raise ValueError(f"log_size must be >= 1, got {log_size}")
        self.rooms = Rooms(log_size)
        self.dedup = Deduplicator(dedup_per_client)  #: client → message ids seen (resume)
        self._clients: dict[tuple[Any, str], Hashable] = {}  # (ws, topic) → dedup key
        self._anonymous = itertools.count(1)  # the dedup keys of joins without "client"
        self.timed_out = 0  #: connections closed for silence
        self.host = ""
        self.port = 0
        self._runner: web.AppRunner | None = None
        self.guard = guard if guard is not None else ConnectionGuard()
        self.limits = (rate, burst, strikes)
        self.max_joins = max_joins
        self.app = web.Application(middlewares=[self.guard.middleware])
        self.app.router.add_get("/socket/websocket", self._websocket)
        self.cable = ActionCable(self.rooms, self.fanout, origin_allowed=self._origin_allowed) \
            if action_cable else None
        self.socketio = SocketIOBridge(self.rooms, allowed_origins=self.allowed_origins,
                                       close_timeout=close_timeout) if socket_io else None
        for adapter in (self.cable, self.socketio):
            if adapter is not None:
                adapter.mount(self.app)

    @property
    def shutdown_timeout(self) -> float:  # aiohttp's wait for handlers still running
        return self.fanout.close_timeout or 60.0

    async def _stop(self) -> None:
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        await self.fanout.stop(CloseCode.GOING_AWAY, "server stopping")
        await runner.cleanup()

    def post(self, room: str, body: str, name: str = "kernel") -> dict[str, Any]:
        """Post a message to ``room`` as ``name`` (from the kernel); returns it."""
        return self.rooms.room(room).say(None, body, name)

    def _origin_allowed(self, request: web.Request) -> bool:
        return request_origin_allowed(request.headers, self.allowed_origins, self.port)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if not self._origin_allowed(request):
            return web.Response(status=403, text="origin not allowed\n")
        if request.query.get("vsn", VSN) != VSN:
            return web.Response(status=400, text=f"unsupported vsn; this server speaks {VSN}\n")
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES)
        if not await join_aiohttp(self.fanout, request, ws):
            return ws
        session = ChannelSession(self.max_joins)
        limit = RateLimit(*self.limits)
        try:
            while True:
                try:
                    msg = await ws.receive(timeout=self.heartbeat_timeout)
                except asyncio.TimeoutError:
                    self.timed_out += 1
                    self.fanout.leave(ws)
                    await ws.close(code=WSCloseCode.OK, message=b"heartbeat timeout")
                    break
                if msg.type == WSMsgType.TEXT:
                    verdict = limit.check(time.monotonic())
                    if verdict is Verdict.ALLOW:
                        self._carry_out(ws, session.receive(msg.data))
                    elif verdict is Verdict.REFUSE:
                        self._send(ws, refusal(msg.data, "rate limited",
                                               f"at most {limit.bucket.rate:g} messages per second"))
                    else:
                        await flushed(self.fanout.clients.get(ws))  # its error replies first
                        self.fanout.leave(ws)
                        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"rate limit exceeded")
                        break
                elif msg.type == WSMsgType.BINARY:  # Phoenix's binary serializer: not spoken here
                    self._send(ws, malformed(b"", BadFrame("binary frames are not accepted; send V2 JSON text")))
                else:  # CLOSE, CLOSING, CLOSED, ERROR (a frame > 64 KiB: aiohttp sent 1009)
                    break
        except (ConnectionError, RuntimeError):
            pass
        finally:
            for action in session.close():
                self.rooms.room(action.room).leave((ws, action.topic))
                self._clients.pop((ws, action.topic), None)
            self.fanout.leave(ws)
        return ws

    def _send(self, ws: Any, message: Message) -> None:
        self.fanout.send(ws, encode(message))

    def _carry_out(self, ws: Any, actions: list) -> None:
        for action in actions:
            if isinstance(action, Send):
                self._send(ws, action.message)
            elif isinstance(action, JoinRoom) and action.resume is not None:
                self._join_resuming(ws, action)
            elif isinstance(action, JoinRoom):
                topic, join_ref = action.topic, action.join_ref

                def deliver(event: str, payload: dict[str, Any], topic=topic, join_ref=join_ref) -> None:
                    self._send(ws, push(topic, event, payload, join_ref))

                self.rooms.room(action.room).join(
                    (ws, topic), action.name, deliver,
                    welcome=lambda history, request=action.request: self._send(
                        ws, ok(request, {"history": history})))
            elif isinstance(action, LeaveRoom):
                self.rooms.room(action.room).leave((ws, action.topic))
            elif isinstance(action, Say) and self._say_once(ws, action):
                pass  # a push with an id: posted once, acknowledged every time
            elif isinstance(action, Say):
                message = self.rooms.room(action.room).say((ws, action.topic), action.body)
                self._send(ws, ok(action.request, {"id": message["id"]}))
            elif isinstance(action, Typing):
                self.rooms.room(action.room).typing((ws, action.topic), action.typing)


    # --- resume (chapter 6): replay on join, deduplicate pushes with ids ---------------------

    def _join_resuming(self, ws: Any, action: JoinRoom) -> None:
        """Join with ``last_seq``: reply, replay the gap (or say resync), then go live."""
        last_seq, client = action.resume
        room = self.rooms.room(action.room)
        topic, join_ref = action.topic, action.join_ref
        self._clients[(ws, topic)] = ((action.room, client) if client
                                      else (action.room, "connection", next(self._anonymous)))

        def deliver(event: str, payload: dict[str, Any]) -> None:
            if event == NEW_MSG and room.log.last_seq and payload is room.log.newest.payload:
                payload = {**payload, "seq": room.log.last_seq}  # live: say() just logged it
            self._send(ws, push(topic, event, payload, join_ref))

        def welcome(history: list[dict[str, Any]]) -> None:
            answer = room.log.since(last_seq)
            response = {"history": history, "seq": room.log.last_seq}
            if not isinstance(answer, Replay):
                self._send(ws, ok(action.request, {**response, "resume": "resync",
                                                   "reason": answer.reason}))
                return
            self._send(ws, ok(action.request, {**response, "resume": "replay"}))
            for entry in answer.entries:  # synchronous: nothing live can come in between
                self._send(ws, push(topic, NEW_MSG, {**entry.payload, "seq": entry.seq}, join_ref))

        room.join((ws, topic), action.name, deliver, welcome=welcome)

    def _say_once(self, ws: Any, action: Say) -> bool:
        """Post a push that carries an ``id`` once; ``False`` if it carries none."""
        try:
            msg_id = message_id(action.request.payload)
        except ValueError as problem:
            self._send(ws, error(action.request, "bad payload", f"new_msg: {problem}"))
            return True
        if msg_id is None:
            return False
        client = self._clients.get((ws, action.topic))
        if client is None:  # a plain join: this connection only
            client = self._clients[(ws, action.topic)] = (action.room, "connection",
                                                          next(self._anonymous))
        repeat, answer = self.dedup.seen(client, msg_id)
        if not repeat:
            room = self.rooms.room(action.room)
            message = room.say((ws, action.topic), action.body)
            answer = {"id": message["id"], "seq": room.log.last_seq}
            self.dedup.remember(client, msg_id, answer)
        self._send(ws, ok(action.request, {**answer, "duplicate": True} if repeat else answer))
        return True


async def start_channels(host: str = "127.0.0.1", port: int = 0, **options: Any) -> ChannelServer:
    """Start a :class:`ChannelServer` on ``host:port`` in the running event loop.

    Args:
        host: interface to listen on.
        port: TCP port; 0 picks a free one (read it from ``server.port``).
        **options: see :class:`ChannelServer`.

    Raises:
        OSError: the address is in use or cannot be bound.
        ValueError: a bad option value.
    """
    return await ChannelServer(**options).start(host, port)


def command_line(prog: str, description: str) -> argparse.ArgumentParser:
    """The options of every channel server's command line: ``--host``, ``--port``,
    ``--heartbeat-timeout`` (the messenger adds its own)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=4000, help="TCP port, 0 for any free one (default 4000)")
    parser.add_argument("--heartbeat-timeout", type=float, default=60.0,
                        help="seconds of silence before a connection is closed (default 60)")
    return parser


def serve_command(start: Callable[[], Awaitable[Any]], args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM; exit status 1, with the reason, if it cannot start."""
    try:
        return run_until_signal(start, "serving on {url}")
    except (OSError, ValueError) as problem:
        print(f"cannot serve on {args.host}:{args.port}: {problem}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m course.net.channels --host H --port P``."""
    args = command_line("python -m course.net.channels", __doc__.split("\n")[0]).parse_args(argv)
    return serve_command(lambda: start_channels(args.host, args.port,
                                                heartbeat_timeout=args.heartbeat_timeout), args)


if __name__ == "__main__":
    sys.exit(main())
