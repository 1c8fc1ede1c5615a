"""Chapter 5's rooms across processes: a Redis backend behind :class:`course.net.channels.Rooms`.

Each process keeps its own :class:`~course.net.channels.Rooms` (its members, its
presence, its history) and shares what its members *say* through Redis, as Action Cable's
Redis adapter does (one Redis channel per room, ``<prefix><room>``; the payload is the
event, the room's payload and this process's id)::

    server = await start_channels("127.0.0.1", 0)           # Phoenix, Action Cable, Socket.IO
    shared = await RedisRooms(server.rooms, redis.url).start()
    ...
    shared.close()
    await shared.wait_closed()

A ``new_msg`` or ``typing`` sent by a member here is delivered here at once (as before)
and published; every other process delivers it to its own members of that room (a
``new_msg`` also enters its history and its resume log).  A process skips its own
messages (the ``node`` field).  From a shell, ``python -m course.net.redis_rooms --redis
URL`` runs a channel server with the backend and prints ``serving on ws://…``.

**What is not shared** (said in the lesson): presence (each process shows its own
members), message ids (each process numbers its messages: ``id`` is unique per process,
not across processes) and the history a joiner gets (the process's own, which includes
what it received from the others since it started).  A message published while a process
is down is lost for it, as with any pub/sub.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from typing import Any

import redis.asyncio as aioredis

from course.net.channels import ChannelServer, Rooms
from course.net.lifecycle import Service, run_until_signal
from course.net.redis_server import pattern_messages
from course.wire.channels import NEW_MSG, TYPING

__all__ = ["PREFIX", "RedisRooms", "ChannelsWithRedis", "start_channels_with_redis", "main"]

PREFIX = "course_rooms:"  #: the Redis channel of room R is ``PREFIX + R``
_SHARED = (NEW_MSG, TYPING)


class RedisRooms(Service):
    """Share ``rooms``' ``new_msg`` and ``typing`` with every process on the same Redis.

    Args:
        rooms: this process's rooms (:attr:`course.net.channels.ChannelServer.rooms`).
        redis_url: ``redis://HOST:PORT``.
        prefix: the Redis channels' prefix.
        queue_size: messages waiting to be published, at most; beyond, the oldest is
            dropped and counted in :attr:`lost` (Redis unreachable for a while).

    Attributes:
        node: this process's id in the payloads.
        published: messages published so far.
        received: messages from other processes delivered here.
        lost: messages dropped because the queue was full.
    """

    scheme = "redis"

    def __init__(self, rooms: Rooms, redis_url: str, *, prefix: str = PREFIX, queue_size: int = 1000) -> None:
        self.rooms, self.redis_url, self.prefix = rooms, redis_url, prefix
        self.node = uuid.uuid4().hex[:8]
        self.published = self.received = self.lost = 0
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(queue_size)
        self._tasks: list[asyncio.Task] = []
        self.redis: aioredis.Redis | None = None

    @property
    def url(self) -> str:
        return self.redis_url

    async def start(self) -> RedisRooms:
        """Subscribe (``PSUBSCRIBE <prefix>*``) and hook into ``rooms``; returns ``self``."""
        self.redis = aioredis.from_url(self.redis_url)
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        async with asyncio.timeout(5):
            await pubsub.psubscribe(f"{self.prefix}*")
        self.rooms.published = self._publish
        self._tasks = [asyncio.create_task(self._listen(pubsub), name="redis rooms listener"),
                       asyncio.create_task(self._write(), name="redis rooms writer")]
        return self

    def _publish(self, room: str, event: str, payload: dict[str, Any]) -> None:
        # called synchronously by a Room: queue it, the writer publishes in order
        if event not in _SHARED:
            return
        text = json.dumps({"node": self.node, "event": event, "payload": payload})
        if self._queue.full():
            self._queue.get_nowait()
            self.lost += 1
        self._queue.put_nowait((f"{self.prefix}{room}", text))

    async def _write(self) -> None:
        while True:
            channel, text = await self._queue.get()
            try:
                await self.redis.publish(channel, text)
                self.published += 1
            except (OSError, aioredis.RedisError):
                self.lost += 1

    async def _listen(self, pubsub: Any) -> None:
        async for name, data in pattern_messages(pubsub, self.prefix):
            try:
                value = json.loads(data)
                node, event, payload = value["node"], value["event"], value["payload"]
            except (ValueError, KeyError, TypeError):
                continue
            if node == self.node or event not in _SHARED or not isinstance(payload, dict):
                continue
            room = self.rooms.rooms.get(name)
            if room is None:
                continue  # nobody here ever joined it
            if event == NEW_MSG:
                room.history.append(payload)
                room.log.append(payload)
            room.broadcast(event, payload)
            self.received += 1

    async def _stop(self) -> None:
        self.rooms.published = lambda room, event, payload: None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.redis is not None:
            await self.redis.aclose()


class ChannelsWithRedis(Service):
    """A :class:`~course.net.channels.ChannelServer` and its :class:`RedisRooms`, as one service."""

    path = ChannelServer.path

    def __init__(self, server: ChannelServer, shared: RedisRooms) -> None:
        self.server, self.shared = server, shared
        self.host, self.port = server.host, server.port

    async def _stop(self) -> None:
        self.shared.close()
        await self.shared.wait_closed()
        self.server.close()
        await self.server.wait_closed()


async def start_channels_with_redis(redis_url: str, host: str = "127.0.0.1", port: int = 0,
                                    **options: Any) -> ChannelsWithRedis:
    """Start a channel server (options as :class:`ChannelServer`'s) sharing its rooms through Redis."""
    server = await ChannelServer(**options).start(host, port)
    try:
        shared = await RedisRooms(server.rooms, redis_url).start()
    except BaseException:
        server.close()
        await server.wait_closed()
        raise
    return ChannelsWithRedis(server, shared)


def main(argv: list[str] | None = None) -> int:
    """``python -m course.net.redis_rooms --redis URL [--port P]``: serve until SIGTERM/Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    return run_until_signal(lambda: start_channels_with_redis(args.redis, args.host, args.port),
                            "serving on {url}")


if __name__ == "__main__":
    sys.exit(main())
