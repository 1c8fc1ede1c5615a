"""A WebSocket server process speaking the Pusher protocol, fed by Redis: Laravel Echo's pattern.

The application publishes Laravel's payload ``{"event","data","socket"}`` to Redis
(:func:`course.net.pusher_app.broadcast`); every server process ``PSUBSCRIBE`` s
``<prefix>*`` as laravel-echo-server did and pushes each event to *its own* browsers
subscribed to that channel.  Run several, each on its own port::

    python -m course.net.pusher_server --port 0 --redis redis://127.0.0.1:6379

prints ``serving on ws://127.0.0.1:PORT`` and serves until SIGTERM or Ctrl-C.  Browsers
connect with ``laravel-echo`` + ``pusher-js`` (``wsHost``, ``wsPort``, ``key``): the
path is ``/app/<key>?protocol=7&client=js&version=...``.  In a notebook::

    server = await PusherServer(redis.url).start()
    ...
    server.close()
    await server.wait_closed()

**What each process shares through Redis.**

* Events: the pub/sub channel ``<prefix><channel>``.  A publish reaches the processes
  subscribed *at that moment*; ``PUBLISH`` returns how many; with none, the event is gone.
  The sender's connection (``socket``, Laravel's ``toOthers()``) is skipped.
* Client events (``client-*``, whispers) are published the same way with the sender's
  ``socket``, so the other processes' subscribers get them too.
* Presence: a hash ``<prefix>presence:<channel>``, one field per connection
  (``socket_id`` → ``{"user_id","user_info","until"}``).  Each process rewrites ``until``
  for its own connections every ``presence_ttl / 3`` seconds (the heartbeat) and deletes
  the entries whose ``until`` has passed (whoever deletes an entry announces
  ``member_removed`` if that user has no other live connection).  A process killed
  with SIGKILL stops refreshing: its users disappear within about ``presence_ttl`` seconds.
  ``member_added`` goes to the others when a user's first connection joins (anywhere).
* Replay: the application also appends each event to a Redis Stream
  ``<prefix>stream:<channel>`` (capped, ``MAXLEN ~``) and the published payload carries
  its ``"id"``, which the browsers' frames carry too (an extra top-level field pusher-js
  ignores).  A client that subscribes with ``"since": "<last id seen>"`` (the course's
  extension of ``pusher:subscribe``) first gets every later entry (``XRANGE``), then the
  live ones, with no gap and no duplicate: live events that arrive during the replay wait
  in a buffer, and a live event whose id is at or below the replay's last id is dropped,
  during the replay and after it (the stream read and the pub/sub message travel on two
  connections: the live copy of a replayed event may be read after the replay ended).

**Sending.**  With ``fastlane=True`` (the default) a broadcast's WebSocket frame is
encoded *once* (:func:`course.protocol.encode_frame`) and the same bytes are written to
every subscriber's transport, Phoenix's "fastlane"; a subscriber whose write buffer holds
more than ``max_buffered`` bytes is too slow and is dropped (aborted).  With
``fastlane=False`` every frame goes through the course's bounded queues
(:class:`course.net.fanout.Fanout`, one writer task per connection, aiohttp encodes the
frame per client); ``benchmarks/fanout_load.py`` measures the difference.

**Limits and errors.**  A wrong key in the path gets ``pusher:error`` 4001 and a close
with 4001; ``?protocol=`` other than 7 gets 4007.  A frame above 10 000 bytes, bad JSON, an
unknown event or a bad signature gets a ``pusher:error`` (4200, 4009, 4301: see
:mod:`course.wire.pusher`) and the connection lives.  A connection silent for
``2 × activity_timeout`` seconds (pusher-js pings after ``activity_timeout``) is closed
with 4201.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from aiohttp import WSMsgType, web

from course.net.fanout import Fanout, close_within, join_aiohttp
from course.net.lifecycle import AppService, run_until_signal
from course.net.processes import ServerProcess, spawn
from course.net.redis_server import pattern_messages
from course.protocol import Opcode, encode_frame
from course.wire.pusher import (ACTIVITY_TIMEOUT, PREFIX, PROTOCOL, BadFrame, Broadcast, ErrorCode,
                                Event, Kind, Member, PusherSession, Reply, Subscribe, Unsubscribe,
                                Whisper, broadcast_payload, connection_established, error_frame,
                                event_frame, kind_of, new_socket_id, parse_broadcast,
                                stream_id_key, subscription_succeeded)

__all__ = ["KEY", "SECRET", "stream_key", "presence_key", "Connection", "PusherServer",
           "start_pusher", "spawn_pusher", "main"]

KEY = "course-key"          #: the demo application's key (public: it is in the page)
SECRET = "course-secret"    #: the demo application's secret (the app and the servers only)


def stream_key(channel: str, prefix: str = PREFIX) -> str:
    """The Redis Stream that keeps ``channel``'s recent events."""
    return f"{prefix}stream:{channel}"


def presence_key(channel: str, prefix: str = PREFIX) -> str:
    """The Redis hash of ``channel``'s present connections."""
    return f"{prefix}presence:{channel}"


@dataclass(eq=False)
class Connection:
    """One browser connection on this process."""

    ws: web.WebSocketResponse
    session: PusherSession
    transport: Any
    #: channel -> live frames held back while that channel's replay runs
    held: dict[str, list[tuple[str | None, bytes | str]]] = field(default_factory=dict)
    #: channel -> the last stream id its replay sent (or the ``since`` it asked from)
    replayed: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def socket_id(self) -> str:
        return self.session.socket_id

    def already_replayed(self, channel: str, entry_id: str | None) -> bool:
        """Whether the event ``entry_id`` of ``channel`` was sent by this connection's replay
        (or was before its ``since``): then its live copy is a duplicate."""
        mark = self.replayed.get(channel)
        if mark is None or entry_id is None:
            return False
        try:
            return stream_id_key(entry_id) <= mark
        except BadFrame:
            return False


class PusherServer(AppService):
    """One WebSocket process of the pattern (see the module docstring).

    Args:
        redis_url: ``redis://HOST:PORT`` of the shared Redis.
        key: the application key (the path ``/app/<key>``).
        secret: the application secret (checks private and presence signatures).
        prefix: the Redis prefix (Laravel's ``<app>_database_``).
        activity_timeout: seconds announced to clients (they ping after that much silence).
        presence_ttl: seconds a presence entry lives without a heartbeat.
        fastlane: encode each broadcast frame once (see the module docstring).
        queue_size: the bounded queues' size when ``fastlane`` is off.
        max_buffered: write-buffer bytes beyond which a subscriber is too slow.

    Attributes:
        name: this process's id (in logs and presence entries).
        delivered: frames delivered to subscribers so far.
        dropped: connections dropped for being too slow.
    """

    path = ""

    def __init__(self, redis_url: str, *, key: str = KEY, secret: str = SECRET, prefix: str = PREFIX,
                 activity_timeout: int = ACTIVITY_TIMEOUT, presence_ttl: float = 15.0,
                 fastlane: bool = True, queue_size: int = 64, max_buffered: int = 4 * 1024 * 1024) -> None:
        self.redis_url, self.key, self.secret, self.prefix = redis_url, key, secret, prefix
        self.activity_timeout = activity_timeout
        self.presence_ttl = presence_ttl
        self.fastlane = fastlane
        self.max_buffered = max_buffered
        self.fanout = Fanout(queue_size, grace=2.0, max_buffered=max_buffered)
        self.name = uuid.uuid4().hex[:8]
        self.delivered = 0
        self.dropped = 0
        self.channels: dict[str, dict[str, Connection]] = {}
        self.connections: set[Connection] = set()
        self.redis: aioredis.Redis | None = None
        self._tasks: list[asyncio.Task] = []
        self.app = web.Application()
        self.app.router.add_get("/app/{key}", self._handle)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> PusherServer:
        """Connect to Redis, ``PSUBSCRIBE <prefix>*``, then listen on ``host:port``.

        Raises:
            redis.exceptions.ConnectionError: Redis does not answer.
        """
        self.redis = aioredis.from_url(self.redis_url)
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        async with asyncio.timeout(5):
            await pubsub.psubscribe(f"{self.prefix}*")
        self._tasks = [asyncio.create_task(self._listen(pubsub), name="redis listener"),
                       asyncio.create_task(self._heartbeat(), name="presence heartbeat")]
        return await super().start(host, port)

    # ----------------------------------------------------------------------- Redis → browsers

    async def _listen(self, pubsub: Any) -> None:
        async for channel, data in pattern_messages(pubsub, self.prefix):
            if channel not in self.channels:
                continue
            try:
                broadcast = parse_broadcast(data)
            except BadFrame:
                continue  # not Laravel's shape: ignored, like laravel-echo-server
            self.deliver(channel, broadcast)

    def deliver(self, channel: str, broadcast: Broadcast) -> int:
        """Push one event to this process's subscribers of ``channel`` (but ``socket``).

        Returns:
            How many connections it was written or queued for.
        """
        subscribers = self.channels.get(channel)
        if not subscribers:
            return 0
        text = event_frame(channel, broadcast)
        payload: bytes | str = encode_frame(Opcode.TEXT, text.encode()) if self.fastlane else text
        sent = 0
        for conn in list(subscribers.values()):
            if conn.socket_id == broadcast.socket or conn.already_replayed(channel, broadcast.id):
                continue
            held = conn.held.get(channel)
            if held is not None:
                held.append((broadcast.id, payload))
            elif self._send(conn, payload):
                sent += 1
        self.delivered += sent
        return sent

    def _send(self, conn: Connection, payload: bytes | str) -> bool:
        if isinstance(payload, str):
            if self.fastlane:
                payload = encode_frame(Opcode.TEXT, payload.encode())
            else:
                return self.fanout.send(conn.ws, payload)
        transport = conn.transport
        if transport is None or transport.is_closing() or conn.ws.closed:
            return False
        if transport.get_write_buffer_size() > self.max_buffered:
            self.dropped += 1
            transport.abort()
            return False
        transport.write(payload)
        return True

    # ----------------------------------------------------------------------- one browser

    def _refusal(self, request: web.Request) -> tuple[ErrorCode, str] | None:
        if request.match_info["key"] != self.key:
            return ErrorCode.APP_DOES_NOT_EXIST, "Application does not exist"
        protocol = request.query.get("protocol", str(PROTOCOL))
        if protocol != str(PROTOCOL):
            return ErrorCode.UNSUPPORTED_PROTOCOL, f"Unsupported protocol version {protocol[:20]!r}"
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=64 * 1024, autoping=True)
        refusal = self._refusal(request)
        if refusal is not None or self.fastlane:
            try:
                await ws.prepare(request)
            except ConnectionError:
                return ws
        elif not await join_aiohttp(self.fanout, request, ws, prefix="pusher "):
            return ws
        if refusal is not None:
            code, reason = refusal
            try:
                await ws.send_str(error_frame(code, reason))
            except ConnectionError:
                pass
            await close_within(ws.close(code=int(code), message=reason.encode()), 2, request.transport.abort)
            return ws
        conn = Connection(ws, PusherSession(self.key, self.secret, new_socket_id()), request.transport)
        self.connections.add(conn)
        self._send(conn, connection_established(conn.socket_id, self.activity_timeout))
        try:
            while True:
                msg = await ws.receive(timeout=2 * self.activity_timeout)
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    for action in conn.session.receive(msg.data):
                        await self._act(conn, action)
                elif msg.type == WSMsgType.ERROR and isinstance(ws.exception(), asyncio.TimeoutError):
                    break
                else:
                    break
        except TimeoutError:
            await close_within(ws.close(code=int(ErrorCode.PONG_NOT_RECEIVED), message=b"no activity"),
                               2, conn.transport.abort)
        finally:
            self.connections.discard(conn)
            self.fanout.leave(ws)
            for channel in list(conn.session.channels):
                await self._unsubscribe(conn, channel)
        return ws

    async def _act(self, conn: Connection, action: Any) -> None:
        if isinstance(action, Reply):
            self._send(conn, action.text)
        elif isinstance(action, Subscribe):
            await self._subscribe(conn, action)
        elif isinstance(action, Unsubscribe):
            await self._unsubscribe(conn, action.channel)
        elif isinstance(action, Whisper):
            await self.redis.publish(f"{self.prefix}{action.channel}",
                                     broadcast_payload(action.event, action.data, conn.socket_id,
                                                       action.user_id))

    async def _subscribe(self, conn: Connection, action: Subscribe) -> None:
        channel = action.channel
        if action.member is not None:
            members, first = await self._presence_join(channel, conn.socket_id, action.member)
            self._send(conn, subscription_succeeded(channel, members))
            self.channels.setdefault(channel, {})[conn.socket_id] = conn
            if first:
                await self.redis.publish(f"{self.prefix}{channel}", broadcast_payload(
                    Event.MEMBER_ADDED.value, {"user_id": action.member.user_id,
                                               "user_info": action.member.user_info}, conn.socket_id))
            return
        self._send(conn, subscription_succeeded(channel))
        conn.replayed.pop(channel, None)
        if action.since is None:
            self.channels.setdefault(channel, {})[conn.socket_id] = conn
            return
        conn.held[channel] = []
        self.channels.setdefault(channel, {})[conn.socket_id] = conn
        last = stream_id_key(action.since)
        try:
            entries = await self.redis.xrange(stream_key(channel, self.prefix), min=f"({action.since}")
            for entry_id, fields in entries:
                entry_id = entry_id.decode()
                try:
                    stored = parse_broadcast(fields[b"payload"])
                except (BadFrame, KeyError):
                    continue
                self._send(conn, event_frame(channel, Broadcast(stored.event, stored.data, None, entry_id)))
                last = max(last, stream_id_key(entry_id))
        finally:
            conn.replayed[channel] = last
            for entry_id, payload in conn.held.pop(channel, []):
                if not conn.already_replayed(channel, entry_id):
                    self._send(conn, payload)

    async def _unsubscribe(self, conn: Connection, channel: str) -> None:
        subscribers = self.channels.get(channel, {})
        conn.replayed.pop(channel, None)
        if subscribers.pop(conn.socket_id, None) is None:
            return
        if not subscribers:
            self.channels.pop(channel, None)
        if kind_of(channel) is Kind.PRESENCE and self.redis is not None:
            try:
                async with asyncio.timeout(2):
                    await self._presence_leave(channel, [conn.socket_id])
            except Exception:  # noqa: BLE001 - Redis gone while stopping: the entry expires
                pass

    # ----------------------------------------------------------------------- presence

    def _entry(self, member: Member) -> str:
        return json.dumps({"user_id": member.user_id, "user_info": member.user_info,
                           "until": time.time() + self.presence_ttl, "server": self.name})

    async def _live(self, channel: str) -> dict[str, dict]:
        raw = await self.redis.hgetall(presence_key(channel, self.prefix))
        now, live = time.time(), {}
        for field_, value in raw.items():
            try:
                entry = json.loads(value)
            except ValueError:
                continue
            entry["expired"] = entry.get("until", 0) < now
            live[field_.decode()] = entry
        return live

    async def _presence_join(self, channel: str, socket_id: str, member: Member) -> tuple[list[Member], bool]:
        key = presence_key(channel, self.prefix)
        await self.redis.hset(key, socket_id, self._entry(member))
        await self.redis.expire(key, int(self.presence_ttl * 4) + 1)
        entries = await self._live(channel)
        live = [e for e in entries.values() if not e["expired"]]
        first = not any(e["user_id"] == member.user_id for s, e in entries.items()
                        if s != socket_id and not e["expired"])
        return [Member(e["user_id"], e.get("user_info")) for e in live], first

    async def _presence_leave(self, channel: str, socket_ids: list[str]) -> None:
        key = presence_key(channel, self.prefix)
        entries = await self._live(channel)
        for socket_id in socket_ids:
            entry = entries.get(socket_id)
            if not await self.redis.hdel(key, socket_id) or entry is None:
                continue  # somebody else removed it, and announced it
            entries.pop(socket_id)
            user = entry["user_id"]
            if not any(e["user_id"] == user and not e["expired"] for e in entries.values()):
                await self.redis.publish(f"{self.prefix}{channel}", broadcast_payload(
                    Event.MEMBER_REMOVED.value, {"user_id": user}))

    async def _heartbeat(self) -> None:
        """Refresh this process's presence entries; remove (and announce) expired ones."""
        while True:
            await asyncio.sleep(self.presence_ttl / 3)
            try:
                for channel, subscribers in list(self.channels.items()):
                    if kind_of(channel) is not Kind.PRESENCE:
                        continue
                    key = presence_key(channel, self.prefix)
                    mine = {s: c.session.channels.get(channel) for s, c in subscribers.items()}
                    mapping = {s: self._entry(m) for s, m in mine.items() if m is not None}
                    if mapping:
                        await self.redis.hset(key, mapping=mapping)
                        await self.redis.expire(key, int(self.presence_ttl * 4) + 1)
                    expired = [s for s, e in (await self._live(channel)).items() if e["expired"]]
                    if expired:
                        await self._presence_leave(channel, expired)
            except (OSError, aioredis.RedisError):
                continue  # Redis away for a moment: try again next beat

    # ----------------------------------------------------------------------- stopping

    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        conns = list(self.connections)
        await asyncio.gather(*(close_within(c.ws.close(code=1001, message=b"server stopping"), 2,
                                            c.transport.abort) for c in conns), return_exceptions=True)
        await self.fanout.stop(timeout=2)
        if self._runner is not None:
            await self._runner.cleanup()
        if self.redis is not None:
            await self.redis.aclose()


async def start_pusher(redis_url: str, host: str = "127.0.0.1", port: int = 0, **options: Any) -> PusherServer:
    """Start a :class:`PusherServer` (options as its constructor's) and return it."""
    return await PusherServer(redis_url, **options).start(host, port)


async def spawn_pusher(redis_url: str, *args: str, timeout: float = 30.0) -> ServerProcess:
    """Run ``python -m course.net.pusher_server --port 0 --redis URL ARGS...`` and wait for its URL.

    Args:
        redis_url: the shared Redis.
        args: more command-line options (``"--presence-ttl", "1"``, ``"--no-fastlane"``...).
        timeout: seconds to wait for the ``serving on`` line.

    Returns:
        A :class:`course.net.processes.ServerProcess` (``url``, ``close()``, ``kill()``).

    Raises:
        RuntimeError: the process exited or printed something else first.
    """
    return await spawn("course.net.pusher_server", "--port", "0", "--redis", redis_url, *args,
                       timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    """``python -m course.net.pusher_server --port 0 --redis URL``: serve until SIGTERM/Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", required=True, help="redis://HOST:PORT")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key", default=KEY)
    parser.add_argument("--secret", default=SECRET)
    parser.add_argument("--prefix", default=PREFIX)
    parser.add_argument("--presence-ttl", type=float, default=15.0)
    parser.add_argument("--activity-timeout", type=int, default=ACTIVITY_TIMEOUT)
    parser.add_argument("--no-fastlane", action="store_true", help="encode each frame per client")
    parser.add_argument("--queue-size", type=int, default=64)
    args = parser.parse_args(argv)
    options = dict(key=args.key, secret=args.secret, prefix=args.prefix, presence_ttl=args.presence_ttl,
                   activity_timeout=args.activity_timeout, fastlane=not args.no_fastlane,
                   queue_size=args.queue_size)
    return run_until_signal(lambda: start_pusher(args.redis, args.host, args.port, **options),
                            "serving on {url}")


if __name__ == "__main__":
    sys.exit(main())
