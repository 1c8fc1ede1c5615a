"""A small Phoenix Channels client for the kernel, on ``websockets``.

It speaks the V2 JSON frames of :mod:`course.wire.phoenix`, like Phoenix's own
JavaScript ``Socket`` and ``Channel``, in a few lines each::

    client = await ChannelClient.connect("ws://127.0.0.1:4000/socket/websocket")
    reply = await client.join("room:lobby", {"name": "ada"})   # {"status": "ok", "response": {...}}
    reply = await client.push("room:lobby", "new_msg", {"body": "hi"})
    message = await client.next_event()                        # a Message: presence, new_msg...
    await client.close()

Every push gets a fresh ``ref``; its reply is matched by that ref, and waiting for it is
bounded (``timeout``, default 5 s: :class:`TimeoutError`).  Everything that is not a
reply (broadcasts, presence, errors on topic ``phoenix``) goes into a bounded queue read
with :meth:`ChannelClient.next_event` or ``async for message in client``; when it is
full the oldest is dropped and counted in :attr:`ChannelClient.dropped`.  A background
task sends ``heartbeat`` every ``heartbeat_interval`` seconds (``None``: never, to watch
the server drop a silent client).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import websockets

from course.wire.phoenix import PHOENIX_TOPIC, BadFrame, Event, Message, decode, encode

__all__ = ["ChannelClient"]


class ChannelClient:
    """One connection to a Phoenix-style server; create it with :meth:`connect`.

    Attributes:
        joined: topic → ``join_ref`` of the last join sent on it.
        dropped: events dropped because the queue was full.
        closed: set once the connection has ended (the reader stopped).
    """

    def __init__(self, connection: Any, *, heartbeat_interval: float | None = 30.0,
                 timeout: float = 5.0, max_events: int = 1000) -> None:
        self.connection = connection
        self.timeout = timeout
        self.joined: dict[str, str] = {}
        self.dropped = 0
        self.closed = asyncio.Event()
        self._refs = itertools.count(1)
        self._pending: dict[str, asyncio.Future] = {}
        self._events: asyncio.Queue[Message] = asyncio.Queue(max_events)
        self._reader = asyncio.create_task(self._read(), name="channel client reader")
        self._beater = (asyncio.create_task(self._beat(heartbeat_interval), name="channel heartbeat")
                        if heartbeat_interval else None)

    @classmethod
    async def connect(cls, url: str, *, heartbeat_interval: float | None = 30.0,
                      timeout: float = 5.0, max_events: int = 1000) -> "ChannelClient":
        """Open the WebSocket (``?vsn=2.0.0`` is added) within ``timeout`` seconds.

        Raises:
            TimeoutError: no connection within ``timeout``.
            OSError, websockets.InvalidHandshake: the server refused or is not there.
        """
        if "vsn=" not in url:
            url += ("&" if "?" in url else "?") + "vsn=2.0.0"
        async with asyncio.timeout(timeout):
            connection = await websockets.connect(url, ping_interval=None, max_size=2 ** 20)
        return cls(connection, heartbeat_interval=heartbeat_interval, timeout=timeout,
                   max_events=max_events)

    def _next_ref(self) -> str:
        return str(next(self._refs))

    async def send_raw(self, data: str | bytes) -> None:
        """Send one frame as is (for experiments with malformed frames)."""
        await self.connection.send(data)

    async def request(self, topic: str, event: str, payload: dict[str, Any] | None = None, *,
                      join_ref: str | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Send one push and wait for its reply.

        Returns:
            The reply's payload, ``{"status": "ok" | "error", "response": {...}}``.

        Raises:
            TimeoutError: no reply within ``timeout`` (default: the client's).
            ConnectionError: the connection closed before the reply.
        """
        return await self._call(join_ref, self._next_ref(), topic, event, payload, timeout)

    async def _call(self, join_ref: str | None, ref: str, topic: str, event: str,
                    payload: dict[str, Any] | None, timeout: float | None) -> dict[str, Any]:
        future = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        try:
            await self.connection.send(encode(Message(join_ref, ref, topic, event, payload or {})))
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                return await future
        except websockets.ConnectionClosed as closed:
            raise ConnectionError(f"connection closed: {closed}") from None
        finally:
            self._pending.pop(ref, None)

    async def join(self, topic: str, payload: dict[str, Any] | None = None, *,
                   timeout: float | None = None) -> dict[str, Any]:
        """``phx_join`` a topic; returns the reply (see :meth:`request`).

        The join's ``ref`` becomes the topic's ``join_ref`` for later pushes.
        """
        ref = self._next_ref()
        self.joined[topic] = ref
        return await self._call(ref, ref, topic, Event.JOIN.value, payload, timeout)

    async def push(self, topic: str, event: str, payload: dict[str, Any] | None = None, *,
                   timeout: float | None = None) -> dict[str, Any]:
        """Push an event on a topic, with that topic's ``join_ref``; returns the reply."""
        return await self.request(topic, event, payload, join_ref=self.joined.get(topic),
                                  timeout=timeout)

    async def leave(self, topic: str, *, timeout: float | None = None) -> dict[str, Any]:
        """``phx_leave`` a topic; returns the reply."""
        reply = await self.push(topic, Event.LEAVE.value, {}, timeout=timeout)
        self.joined.pop(topic, None)
        return reply

    async def cast(self, topic: str, event: str, payload: dict[str, Any] | None = None) -> None:
        """Push without waiting for a reply (``typing``, which gets none)."""
        message = Message(self.joined.get(topic), self._next_ref(), topic, event, payload or {})
        await self.connection.send(encode(message))

    async def next_event(self, timeout: float | None = None) -> Message:
        """The next message that is not a reply, within ``timeout`` seconds.

        Raises:
            TimeoutError: none arrived in time.
        """
        async with asyncio.timeout(self.timeout if timeout is None else timeout):
            return await self._events.get()

    async def __aiter__(self) -> AsyncIterator[Message]:
        while True:
            yield await self._events.get()

    async def _read(self) -> None:
        try:
            async for data in self.connection:
                try:
                    message = decode(data)
                except BadFrame:
                    continue  # not V2: nothing to route it to
                if message.event == Event.REPLY.value and message.ref in self._pending:
                    future = self._pending.pop(message.ref)
                    if not future.done():
                        future.set_result(message.payload)
                    continue
                if self._events.full():
                    self._events.get_nowait()
                    self.dropped += 1
                self._events.put_nowait(message)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("connection closed"))

    async def _beat(self, interval: float) -> None:
        try:
            while True:
                await asyncio.sleep(interval)
                await self.request(PHOENIX_TOPIC, Event.HEARTBEAT.value, {})
        except (ConnectionError, TimeoutError, websockets.ConnectionClosed):
            pass  # the reader sees the end; a missed heartbeat reply ends the beating

    async def wait_closed(self, timeout: float | None = None) -> None:
        """Wait until the server closed the connection (bounded by ``timeout``)."""
        async with asyncio.timeout(self.timeout if timeout is None else timeout):
            await self.closed.wait()

    @property
    def close_code(self) -> int | None:
        """The close code received, once closed."""
        return self.connection.close_code

    async def close(self) -> None:
        """Close the connection and stop the background tasks (bounded)."""
        tasks = [t for t in (self._beater, self._reader) if t is not None]
        if self._beater is not None:
            self._beater.cancel()
        try:
            async with asyncio.timeout(self.timeout):
                await self.connection.close()
        finally:
            self._reader.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> "ChannelClient":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()
