"""The course's one TCP relay: it sits between a real client and a real server.

It forwards every byte both ways, counts them, and records the first ``keep`` bytes of
each connection (all of them by default), with the time of the last bytes each way.
Chapter 2 reads the recorded handshake and frames (:mod:`course.ui.frames` prints
them); the Autobahn check watches it for a server that stopped answering; chapter 1's
transports experiment counts the bytes every strategy costs.

A relay has the course's lifecycle (:class:`course.net.lifecycle.Service`)::

    relay = await start_relay("127.0.0.1", server.port)
    ... connect clients to relay.port ...
    relay.close()
    await relay.wait_closed()
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from course.net.lifecycle import Service

__all__ = ["Link", "Relay", "start_relay"]

_READ_SIZE = 65536


@dataclass
class Link:
    """One relayed TCP connection.

    Attributes:
        number: 1 for the first connection, 2 for the next...
        to_server: The first bytes the client sent (at most the relay's ``keep``).
        to_client: The first bytes the server sent back (the same bound).
        bytes_up: How many bytes the client sent in all.
        bytes_down: How many bytes the server sent in all.
        last_to_server: ``time.monotonic()`` of the client's last bytes (``None``: none yet).
        last_to_client: The same for the server.
        open: Whether both directions still run.
    """

    number: int
    to_server: bytearray = field(default_factory=bytearray)
    to_client: bytearray = field(default_factory=bytearray)
    bytes_up: int = 0
    bytes_down: int = 0
    last_to_server: float | None = None
    last_to_client: float | None = None
    open: bool = True


class Relay(Service):
    """A TCP relay on 127.0.0.1 that forwards to a server, counting and recording.

    Args:
        target_host: The real server's address.
        target_port: The real server's port.
        keep: Bytes recorded per connection and direction (``None``: all of them; ``0``:
            count only).

    Attributes:
        port: Where clients connect (instead of the server's port).
        links: Every connection (:class:`Link`), in the order they came.
        to_server: Everything recorded from clients, in arrival order.
        to_client: Everything recorded from the server, in arrival order.
    """

    def __init__(self, target_host: str, target_port: int, *, keep: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.keep = keep
        self.links: list[Link] = []
        self.to_server = bytearray()
        self.to_client = bytearray()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task] = set()

    @property
    def connections(self) -> int:
        """How many connections the relay accepted."""
        return len(self.links)

    @property
    def bytes_up(self) -> int:
        """Bytes clients sent, in all."""
        return sum(link.bytes_up for link in self.links)

    @property
    def bytes_down(self) -> int:
        """Bytes the server sent back, in all."""
        return sum(link.bytes_down for link in self.links)

    async def start(self) -> Relay:
        """Listen on 127.0.0.1, port 0."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        return self

    def clear(self) -> None:
        """Forget what was recorded so far (the links still open keep counting)."""
        self.to_server.clear()
        self.to_client.clear()
        self.links.clear()

    def _record(self, link: Link, data: bytes, upstream: bool) -> None:
        now = time.monotonic()
        mine, everything = ((link.to_server, self.to_server) if upstream
                            else (link.to_client, self.to_client))
        if upstream:
            link.bytes_up += len(data)
            link.last_to_server = now
        else:
            link.bytes_down += len(data)
            link.last_to_client = now
        room = len(data) if self.keep is None else max(0, self.keep - len(mine))
        if room:
            mine += data[:room]
            everything += data[:room]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    link: Link, upstream: bool) -> None:
        try:
            while data := await reader.read(_READ_SIZE):
                self._record(link, data, upstream)
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof() and not writer.is_closing():  # pass the half-close on
                writer.write_eof()
        except (ConnectionError, OSError):
            pass

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self._handlers.add(asyncio.current_task())
        s_writer = None
        try:
            async with asyncio.timeout(5):
                s_reader, s_writer = await asyncio.open_connection(*self.target)
            link = Link(len(self.links) + 1)
            self.links.append(link)
            try:
                await asyncio.gather(self._pipe(c_reader, s_writer, link, upstream=True),
                                     self._pipe(s_reader, c_writer, link, upstream=False))
            finally:
                link.open = False
        except (OSError, TimeoutError, asyncio.CancelledError):
            # a cancelled handler would be logged as an error by asyncio.streams on 3.11
            pass
        finally:
            for writer in (s_writer, c_writer):
                if writer is not None:
                    writer.transport.abort() if self.closing else writer.close()
            self._handlers.discard(asyncio.current_task())

    async def _stop(self) -> None:
        """Stop listening and cut the connections still open (bounded: 3 s at most)."""
        if self._server is not None:
            self._server.close()
        for handler in list(self._handlers):
            handler.cancel()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=2)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await self._server.wait_closed()


async def start_relay(target_host: str, target_port: int, *, keep: int | None = None) -> Relay:
    """Start a :class:`Relay` on 127.0.0.1, port 0, forwarding to the target.

    Args:
        target_host: The real server's address.
        target_port: The real server's port.
        keep: Bytes recorded per connection and direction (``None``: all).

    Returns:
        The running relay; connect clients to ``relay.port``.

    Raises:
        OSError: No port to listen on.
    """
    return await Relay(target_host, target_port, keep=keep).start()
