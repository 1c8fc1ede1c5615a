"""Chapter 6's dead peers: a blackholed link, and how long each side takes to notice.

The fault relay (:class:`course.net.relay.Relay`) blackholes a connection: both TCP legs
stay open, every byte is thrown away, no FIN ever comes.  Without heartbeats neither end
can tell; with them, each end notices at most *interval + timeout* after the cut (the
next heartbeat leaves within one interval, and its answer is given up after the
timeout), on average about *interval / 2 + timeout*.

Two heartbeats are measured, each on both ends:

- WebSocket ping/pong (:func:`websockets_blackhole`): ``websockets``' keepalive,
  ``ping_interval`` and ``ping_timeout``; a missed pong fails the connection with
  1011 ``keepalive ping timeout``;
- the Phoenix channel heartbeat (:func:`channels_blackhole`): the client
  (:class:`course.net.channels_client.ChannelClient`) beats every ``interval`` and gives
  up after ``timeout`` without a reply (``dead == "heartbeat timeout"``); the server
  (:class:`course.net.channels.ChannelServer`) closes a connection silent for
  ``heartbeat_timeout`` with 1000 ``heartbeat timeout``::

    ends = await websockets_blackhole(0.2, 0.2)     # [Detection(side="client", ...), ...]
    ends = await channels_blackhole(0.2, 0.2)
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import websockets
from websockets.protocol import State

from course.net.channels import start_channels
from course.net.channels_client import ChannelClient
from course.net.relay import Fault, start_relay

__all__ = ["Detection", "websockets_blackhole", "channels_blackhole"]


@dataclass(frozen=True)
class Detection:
    """When one end of a blackholed connection noticed.

    Attributes:
        side: ``"client"`` or ``"server"``.
        seconds: from the cut to the end declaring the connection dead, i.e. leaving the
            OPEN state (``None``: it still believed the connection open when the wait ended).
        code: the close code that end sent (``None``: none, or not noticed).
        reason: the close reason it sent, or what it recorded.
    """

    side: str
    seconds: float | None
    code: int | None
    reason: str


async def _watch(side: str, cut_at: list[float], done: asyncio.Future, wait: float) -> Detection:
    try:
        async with asyncio.timeout(wait):
            code, reason, at = await asyncio.shield(done)
    except TimeoutError:
        return Detection(side, None, None, "still open")
    return Detection(side, at - cut_at[0], code, reason)


async def websockets_blackhole(ping_interval: float | None, ping_timeout: float | None, *,
                               wait: float = 5.0, settle: float = 0.0) -> list[Detection]:
    """A ``websockets`` client and server, their link blackholed: who notices, when.

    Args:
        ping_interval, ping_timeout: ``websockets``' keepalive, the same on both ends
            (``None``: no pings).
        wait: how long to wait for each end after the cut, seconds.
        settle: seconds to wait after connecting before the cut (the phase of the cut
            within the ping cycle).

    Returns:
        ``[client, server]`` detections.
    """
    loop = asyncio.get_running_loop()
    server_done: asyncio.Future = loop.create_future()
    client_done: asyncio.Future = loop.create_future()

    async def gives_up(ws: websockets.ClientConnection | websockets.ServerConnection,
                       done: asyncio.Future) -> None:
        """The moment the library stops believing in the connection: it leaves OPEN (the
        close frame it sends then is lost too; ``close_timeout`` later it drops TCP)."""
        while ws.state is State.OPEN:
            await asyncio.sleep(0.002)
        sent = ws.protocol.close_sent
        done.set_result((sent.code if sent else None, sent.reason if sent else "", time.monotonic()))

    async def handler(ws: websockets.ServerConnection) -> None:
        await gives_up(ws, server_done)

    options = dict(ping_interval=ping_interval, ping_timeout=ping_timeout,
                   close_timeout=ping_timeout or 1.0)
    server = await websockets.serve(handler, "127.0.0.1", 0, **options)
    port = server.sockets[0].getsockname()[1]
    relay = await start_relay("127.0.0.1", port)
    client = await websockets.connect(f"ws://127.0.0.1:{relay.port}", **options)
    reader = asyncio.create_task(gives_up(client, client_done))
    try:
        await asyncio.sleep(settle)
        cut_at = [time.monotonic()]
        await relay.cut_all(Fault.BLACKHOLE)
        return list(await asyncio.gather(_watch("client", cut_at, client_done, wait),
                                         _watch("server", cut_at, server_done, wait)))
    finally:
        reader.cancel()
        client.transport.abort()
        relay.close()
        await relay.wait_closed()
        server.close(close_connections=False)
        for connection in list(server.connections):
            connection.transport.abort()
        await server.wait_closed()


async def channels_blackhole(interval: float | None, timeout: float | None, *,
                             server_timeout: float | None = None, wait: float = 5.0,
                             settle: float = 0.0) -> list[Detection]:
    """A :class:`ChannelClient` in a room of a :class:`ChannelServer`, blackholed.

    Args:
        interval, timeout: the client's heartbeat (``None``: it sends none).
        server_timeout: the server's ``heartbeat_timeout`` (default ``interval + timeout``,
            or an hour without client heartbeats).
        wait: how long to wait for each end after the cut, seconds.
        settle: seconds to wait after joining before the cut.

    Returns:
        ``[client, server]`` detections.
    """
    if server_timeout is None:
        server_timeout = (interval + (timeout or interval)) if interval else 3600.0
    server = await start_channels(heartbeat_timeout=server_timeout, action_cable=False,
                                  socket_io=False)
    relay = await start_relay("127.0.0.1", server.port)
    client = await ChannelClient.connect(f"ws://127.0.0.1:{relay.port}/socket/websocket",
                                         heartbeat_interval=interval, heartbeat_timeout=timeout)
    loop = asyncio.get_running_loop()
    client_done: asyncio.Future = loop.create_future()
    server_done: asyncio.Future = loop.create_future()

    async def watch_client() -> None:
        await client.closed.wait()
        client_done.set_result((None, client.dead or "closed", time.monotonic()))

    async def watch_server() -> None:
        while not server.timed_out:
            await asyncio.sleep(0.002)
        server_done.set_result((1000, "heartbeat timeout", time.monotonic()))

    watchers = [asyncio.create_task(watch_client()), asyncio.create_task(watch_server())]
    try:
        await client.join("room:lobby", {"name": "ada"})
        await asyncio.sleep(settle)
        cut_at = [time.monotonic()]
        await relay.cut_all(Fault.BLACKHOLE)
        return list(await asyncio.gather(_watch("client", cut_at, client_done, wait),
                                         _watch("server", cut_at, server_done, wait)))
    finally:
        for watcher in watchers:
            watcher.cancel()
        client.abort()
        await client.close()
        relay.close()
        await relay.wait_closed()
        server.close()
        await server.wait_closed()
