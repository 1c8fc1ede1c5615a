"""Connection handlers and client helpers on the ``websockets`` library (chapter 3).

* :func:`echo_handler`: the echo server, the course's one copy;
* :func:`push_events` and :class:`PushServer`: a server that pushes a feed *and*
  answers the client meanwhile (full duplex);
* :func:`read_messages`: the client side, decoding every frame into a message.

Messages are the course's envelope (:mod:`course.wire.envelope`); each pushed frame
gets a ``sent_ns`` field (:func:`time.perf_counter_ns`) so that a client in the same
process measures the push latency exactly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from course.wire.envelope import BadMessage, ErrorCode, Kind, decode, encode

__all__ = ["echo_handler", "push_events", "answer_control", "PushServer", "read_messages"]


async def echo_handler(websocket: ServerConnection) -> None:
    """Send every message back to the client that sent it, until it leaves."""
    try:
        async for message in websocket:
            await websocket.send(message)
    except ConnectionClosed:  # the client vanished without a close frame: nothing to do
        pass



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
        raise BadMessage(ErrorCode.BAD_SHAPE, "a control message needs 'name' and 'value'")
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
            message = decode(frame, types={Kind.CONTROL.value})
            text = answer_control(message)
        except BadMessage as error:
            self.errors.append(str(error))
            await websocket.send(error.encode())
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
    is not a valid message, or a message that ``on_message`` fails on (raises an
    ``Exception``), goes to ``on_error`` (or is skipped) instead of killing the
    reader: later messages are still delivered.

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
            try:
                on_message(message)
            except Exception as error:  # what a peer sent broke the callback: report, go on
                if on_error is not None:
                    on_error(f"cannot handle {message.get('type')!r} message: {error!r}")
                continue
            delivered += 1
    except ConnectionClosed:
        pass
    return delivered
