"""The "application" of Laravel Echo's pattern: it publishes events to Redis and signs subscriptions.

It plays Laravel: :func:`broadcast` is ``broadcast(new OrderShipped($order))`` with
``RedisBroadcaster`` (the payload ``{"event","data","socket"}`` published to
``<prefix><channel>``), and :class:`EchoApp` is the HTTP side::

    POST /broadcasting/auth   form socket_id=…&channel_name=…  → {"auth": "KEY:hex"} (+ channel_data)
    POST /broadcast           JSON {"channel","event","data"}  → {"receivers": n, "id": "…"}
                              (header X-Socket-ID: the sender, skipped: Laravel's toOthers())
    GET  <path>               the files given to it (a page, the JS builds)

Who the user is: Laravel reads its session cookie; here (a demo, not an authentication
scheme) the header ``X-User`` or the cookie ``user`` names them, and ``can_join(user,
channel)`` decides (default: any named user may join any private or presence channel).
A request without a user, or refused, gets HTTP 403, which pusher-js reports as a
subscription error.

**Lost when nobody listens.**  ``PUBLISH`` returns how many subscribers got the message,
and :func:`broadcast` returns it: 0 means no server process was subscribed and the event
is gone from pub/sub.  That is why :func:`broadcast` also appends it to a capped Redis
Stream (``history`` entries, ``XADD … MAXLEN ~``), in the same Lua script so that the
stream's order is the publish order: a client catches up from there (see
:mod:`course.net.pusher_server`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from course.net.lifecycle import AppService
from course.net.pusher_server import KEY, SECRET, stream_key
from course.wire.pusher import PREFIX, BadFrame, Kind, Member, authorize, broadcast_payload, kind_of

__all__ = ["Published", "broadcast", "EchoApp", "start_echo_app"]

# XADD then PUBLISH, atomically; the published copy gets the entry's id appended as "id"
# (the payload is a JSON object built by broadcast_payload, so it ends with "}").
_PUBLISH = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'payload', ARGV[1])
local message = string.sub(ARGV[1], 1, -2) .. ',"id":"' .. id .. '"}'
return {id, redis.call('PUBLISH', KEYS[2], message)}
"""


@dataclass(frozen=True)
class Published:
    """What a broadcast did: ``receivers`` (server processes subscribed; 0 = lost from
    pub/sub) and the stream entry ``id`` (``None`` without history)."""

    receivers: int
    id: str | None


async def broadcast(redis: aioredis.Redis, channel: str, event: str, data: Any,
                    socket: str | None = None, *, prefix: str = PREFIX,
                    history: int = 1000) -> Published:
    """Publish one event the way Laravel's ``RedisBroadcaster`` does.

    Args:
        redis: a ``redis.asyncio`` client.
        channel: the channel as the browser names it (``orders``, ``private-orders.1``...).
        event: the event name (Laravel: the class name or ``broadcastAs()``).
        data: the event's data (any JSON).
        socket: the sender's socket id, skipped by the servers (``toOthers()``).
        prefix: Laravel's Redis prefix.
        history: keep the last ~``history`` events in the channel's stream (0: plain
            ``PUBLISH``, nothing kept, no id).

    Returns:
        :class:`Published`.

    Raises:
        BadFrame: an empty event name or data that is not JSON.
    """
    payload = broadcast_payload(event, data, socket)
    if history <= 0:
        return Published(await redis.publish(f"{prefix}{channel}", payload), None)
    entry_id, receivers = await redis.eval(_PUBLISH, 2, stream_key(channel, prefix),
                                           f"{prefix}{channel}", payload, history)
    return Published(int(receivers), entry_id.decode() if isinstance(entry_id, bytes) else entry_id)


def _serve(file: Path) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.FileResponse:
        return web.FileResponse(file)
    return handler


def _user_of(request: web.Request) -> str | None:
    return request.headers.get("X-User") or request.cookies.get("user") or None


class EchoApp(AppService):
    """Laravel's side over HTTP (see the module docstring).

    Args:
        redis_url: the shared Redis.
        key: the application key.
        secret: the application secret.
        prefix: the Redis prefix.
        can_join: ``can_join(user, channel) -> bool`` for private and presence channels.
        user_info: ``user_info(user) -> JSON`` for presence members (default ``{"name": user}``).
        files: URL path → file served by ``GET`` (a test page, the JS builds).

    Attributes:
        redis: its ``redis.asyncio`` client (after :meth:`start`).
    """

    scheme = "http"

    def __init__(self, redis_url: str, *, key: str = KEY, secret: str = SECRET, prefix: str = PREFIX,
                 can_join: Callable[[str, str], bool] = lambda user, channel: True,
                 user_info: Callable[[str], Any] = lambda user: {"name": user},
                 files: dict[str, Path] | None = None) -> None:
        self.redis_url, self.key, self.secret, self.prefix = redis_url, key, secret, prefix
        self.can_join, self.user_info = can_join, user_info
        self.redis: aioredis.Redis | None = None
        self.app = web.Application()
        self.app.router.add_post("/broadcasting/auth", self._auth)
        self.app.router.add_post("/broadcast", self._broadcast)
        for path, file in (files or {}).items():
            self.app.router.add_get(path, _serve(Path(file)))

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> EchoApp:
        """Connect to Redis and listen on ``host:port``."""
        self.redis = aioredis.from_url(self.redis_url)
        return await super().start(host, port)

    async def broadcast(self, channel: str, event: str, data: Any, socket: str | None = None,
                        *, history: int = 1000) -> Published:
        """:func:`broadcast` through this app's Redis client and prefix."""
        return await broadcast(self.redis, channel, event, data, socket, prefix=self.prefix,
                               history=history)

    async def _auth(self, request: web.Request) -> web.Response:
        form = await request.post()
        socket_id, channel = form.get("socket_id"), form.get("channel_name")
        user = _user_of(request)
        if user is None:
            return web.json_response({"message": "Unauthenticated."}, status=403)
        if not isinstance(channel, str) or not isinstance(socket_id, str) or not self.can_join(user, channel):
            return web.json_response({"message": "This action is unauthorized."}, status=403)
        member = Member(user, self.user_info(user)) if kind_of(channel) is Kind.PRESENCE else None
        try:
            return web.json_response(authorize(self.key, self.secret, socket_id, channel, member))
        except BadFrame as exc:
            return web.json_response({"message": str(exc)}, status=400)

    async def _broadcast(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            channel, event = body["channel"], body["event"]
            if not isinstance(channel, str) or not channel:
                raise ValueError("channel must be a non-empty string")
            published = await self.broadcast(channel, event, body.get("data"),
                                             request.headers.get("X-Socket-ID") or None)
        except (ValueError, KeyError, TypeError, BadFrame) as exc:
            return web.json_response({"message": f"bad broadcast: {exc}"}, status=400)
        return web.json_response({"receivers": published.receivers, "id": published.id})

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self.redis is not None:
            await self.redis.aclose()


async def start_echo_app(redis_url: str, host: str = "127.0.0.1", port: int = 0, **options: Any) -> EchoApp:
    """Start an :class:`EchoApp` (options as its constructor's) and return it."""
    return await EchoApp(redis_url, **options).start(host, port)
