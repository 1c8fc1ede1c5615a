"""The kernel's Pusher client (``websockets``): what pusher-js does, minus reconnection.

::

    client = await PusherClient.connect(server.url)        # ws://HOST:PORT
    print(client.socket_id)
    await client.subscribe("orders")
    frame = await client.next_event("OrderShipped")        # a course.wire.pusher.Frame
    await client.close()

Private and presence channels need the application's signature: pass ``auth`` (and
``channel_data``) as :func:`course.wire.pusher.authorize` returns them.  ``since`` asks the
server to replay the stream entries after that id first (:mod:`course.net.pusher_server`);
:attr:`PusherClient.last_id` is the newest id received.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets

from course.wire.pusher import PROTOCOL, BadFrame, Event, Frame, decode, stream_id_key

__all__ = ["PusherClient", "SubscriptionRefused"]


class SubscriptionRefused(Exception):
    """The server answered a subscription with ``pusher:error`` (``code``, message)."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class PusherClient:
    """One Pusher connection; :attr:`frames` keeps every frame received, in order."""

    def __init__(self, ws: Any, socket_id: str) -> None:
        self.ws = ws
        self.socket_id = socket_id
        self.frames: list[Frame] = []
        self.last_id: str | None = None
        self._queue: asyncio.Queue[Frame] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read(), name=f"pusher client {socket_id}")

    @classmethod
    async def connect(cls, url: str, key: str = "course-key", *, timeout: float = 5.0) -> PusherClient:
        """Open ``url/app/<key>?protocol=7…`` and wait for ``connection_established``.

        Raises:
            ConnectionError: the server sent something else first (its text is in the message).
            TimeoutError: nothing within ``timeout``.
        """
        async with asyncio.timeout(timeout):
            ws = await websockets.connect(f"{url}/app/{key}?protocol={PROTOCOL}&client=py&version=1",
                                          ping_interval=None, max_size=2**20)
            first = decode(await ws.recv())
        if first.event != Event.CONNECTION_ESTABLISHED.value:
            await ws.close()
            raise ConnectionError(f"expected connection_established, got {first}")
        return cls(ws, json.loads(first.data)["socket_id"])

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                try:
                    frame = decode(text)
                except BadFrame:
                    continue
                if isinstance(frame.data, str):
                    try:
                        frame = Frame(frame.event, json.loads(frame.data), frame.channel, frame.user_id)
                    except ValueError:
                        pass
                entry_id = json.loads(text).get("id")
                if isinstance(entry_id, str) and (self.last_id is None or
                                                  stream_id_key(entry_id) > stream_id_key(self.last_id)):
                    self.last_id = entry_id
                self.frames.append(frame)
                await self._queue.put(frame)
        except websockets.ConnectionClosed:
            pass

    async def send(self, event: str, data: Any = None, channel: str | None = None) -> None:
        """Send one frame (``data`` as an object, as pusher-js does)."""
        frame: dict[str, Any] = {"event": event, "data": {} if data is None else data}
        if channel is not None:
            frame["channel"] = channel
        await self.ws.send(json.dumps(frame))

    async def next_event(self, event: str | None = None, *, timeout: float = 5.0) -> Frame:
        """The next frame received (named ``event`` if given; others before it are skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self._queue.get()
                if event is None or frame.event == event:
                    return frame

    async def subscribe(self, channel: str, *, auth: str | None = None, channel_data: str | None = None,
                        since: str | None = None, timeout: float = 5.0) -> Frame:
        """Subscribe and wait for ``subscription_succeeded`` (its data: presence members).

        Raises:
            SubscriptionRefused: the server answered ``pusher:error``.
        """
        data: dict[str, Any] = {"channel": channel}
        for name, value in (("auth", auth), ("channel_data", channel_data), ("since", since)):
            if value is not None:
                data[name] = value
        await self.send(Event.SUBSCRIBE.value, data)
        async with asyncio.timeout(timeout):
            while True:
                frame = await self._queue.get()
                if frame.event == Event.SUBSCRIPTION_SUCCEEDED.value and frame.channel == channel:
                    return frame
                if frame.event == Event.ERROR.value:
                    info = frame.data if isinstance(frame.data, dict) else {}
                    raise SubscriptionRefused(info.get("code"), str(info.get("message")))

    async def close(self) -> None:
        """Close the connection (bounded) and stop reading."""
        try:
            async with asyncio.timeout(3):
                await self.ws.close()
        except TimeoutError:
            pass
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
