"""A WebSocket echo server on asyncio streams, built only on :mod:`course.protocol`.

All the protocol lives in :class:`course.protocol.ServerProtocol` (sans-I/O);
this module only moves bytes between sockets and that state machine: read ->
``receive_data()`` -> ``events_received()`` -> ``send_message()`` -> ``data_to_send()`` -> write.

It answers every ping (RFC 6455 requires it) but sends none: there is no keepalive, so a client
that stays silent, like a hand-typed raw connection in a notebook while you read, keeps its
connection for as long as it likes. A server facing the internet would ping to find dead peers
and free their resources (``course.net.hub.serve_hub`` shows how, with ``websockets``).

From a notebook (the kernel's loop is already running)::

    from course.net.rawserver import start_server
    server = await start_server(host="127.0.0.1", port=0)
    print(server.url)            # ws://127.0.0.1:PORT
    ...
    server.close()               # sends 1001 "going away" to open connections
    await server.wait_closed()

From a shell::

    python -m course.net.rawserver --host 127.0.0.1 --port 0
    # prints "listening on ws://127.0.0.1:PORT"; SIGTERM or Ctrl-C stops it (exit 0)
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ctypes.util
import logging
import sys
import time
from collections.abc import Collection
from typing import Any

from course.net.guard import ConnectionGuard
from course.net.lifecycle import Service, run_until_signal
from course.protocol import (
    Accepted,
    CloseCode,
    ConnectionLost,
    Failed,
    HandshakeError,
    Message,
    Ping,
    Rejected,
    Request,
    ServerProtocol,
    State,
)
from course.wire.limits import TokenBucket
from course.wire.origin import request_origin_allowed

__all__ = ["READ_SIZE", "MAX_MESSAGE_SIZE", "MESSAGE_TIMEOUT", "WRITE_TIMEOUT", "FRAME_RATE",
           "FRAME_BURST", "PING_RATE", "PING_BURST", "EchoServer", "start_server", "main"]

logger = logging.getLogger("course.net.rawserver")

#: Bytes asked from the socket per read (small enough that one flooding client
#: cannot hold the event loop for long).
READ_SIZE = 64 * 1024
#: Largest message by default (Autobahn's biggest case is 16 MiB); bigger: 1009.
MAX_MESSAGE_SIZE = 16 * 1024 * 1024
#: Seconds a started frame or fragmented message has to arrive in full; then 1008.
MESSAGE_TIMEOUT = 10.0
#: Seconds a client that does not read has to take its echo; then it is dropped.
WRITE_TIMEOUT = 10.0
#: Frames per second a connection may send, sustained (floods of empty fragments: 1008).
FRAME_RATE = 20_000.0
#: Frames a connection may send at once (a 4 MiB message in 64-byte fragments fits).
FRAME_BURST = 100_000.0
#: Pings per second a connection may send, sustained (each costs us a pong); then 1008.
PING_RATE = 20.0
#: Pings a connection may send at once.
PING_BURST = 100.0


def _give_memory_back() -> None:
    """Return freed heap memory to the OS (glibc ``malloc_trim``; elsewhere a no-op).

    Without it, the megabytes a big or stalled message used stay in the process after
    the client left: glibc keeps freed blocks of that size for reuse.
    """
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None
#: A connection that received more than this many bytes gives memory back when it ends.
_TRIM_AFTER = 1 << 20


class EchoServer(Service):
    """A running echo server; create it with :func:`start_server`.

    Limits (each closes only the offending connection; the defaults are the module's
    constants): message size (1009); a frame or fragmented message must arrive within
    ``message_timeout`` seconds (1008); frames and pings are rate-limited with token
    buckets (floods: 1008); a client that does not read its echoes for ``write_timeout``
    seconds is dropped; connections are capped in total and per address, and must complete
    the opening handshake within ``handshake_timeout`` (:class:`course.net.guard.ConnectionGuard`);
    a browser page is let in only by the course's ``Origin`` rule (:mod:`course.wire.origin`).

    Attributes:
        host: The address it listens on.
        port: The TCP port it listens on (the real one when started with port 0).
        max_message_size: Largest message accepted (bigger: close with 1009).
        max_frame_size: Largest frame accepted (``None``: ``max_message_size``).
        close_timeout: Seconds to wait for a client's close frame after we sent ours.
        allowed_origins: Origins let in besides the server's own (``"*"``: any).
        guard: The :class:`~course.net.guard.ConnectionGuard` (caps, handshake deadline).
    """

    def __init__(self, *, max_message_size: int | None = MAX_MESSAGE_SIZE,
                 max_frame_size: int | None = None, close_timeout: float = 2.0,
                 allowed_origins: str | Collection[str] = (), guard: ConnectionGuard | None = None,
                 message_timeout: float = MESSAGE_TIMEOUT, write_timeout: float = WRITE_TIMEOUT,
                 frame_rate: float = FRAME_RATE, frame_burst: float = FRAME_BURST,
                 ping_rate: float = PING_RATE, ping_burst: float = PING_BURST) -> None:
        self.max_message_size = max_message_size
        self.max_frame_size = max_frame_size
        self.close_timeout = close_timeout
        self.allowed_origins = allowed_origins
        self.guard = guard if guard is not None else ConnectionGuard()
        self.message_timeout = message_timeout
        self.write_timeout = write_timeout
        self.frame_rate, self.frame_burst = frame_rate, frame_burst
        self.ping_rate, self.ping_burst = ping_rate, ping_burst
        self.host = ""
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._connections: dict[asyncio.Task, tuple[ServerProtocol, asyncio.StreamWriter]] = {}
        self._closing = False

    @property
    def connections(self) -> int:
        """Number of open client connections."""
        return len(self._connections)

    async def _listen(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, host, port, limit=READ_SIZE)
        sockname = self._server.sockets[0].getsockname()
        self.host, self.port = sockname[0], sockname[1]

    def _check_request(self, request: Request) -> None:
        if not request_origin_allowed(request, self.allowed_origins, self.port):
            raise HandshakeError(403, "origin not allowed")

    async def _read(self, conn: ServerProtocol, reader: asyncio.StreamReader,
                    started: float | None) -> bytes:
        """One read, bounded by the close timeout or by the pending message's deadline."""
        if conn.state == State.CLOSING:
            try:
                async with asyncio.timeout(self.close_timeout):
                    return await reader.read(READ_SIZE)
            except TimeoutError:
                conn.receive_eof()
                return b""
        if started is not None and conn.state == State.OPEN:
            left = started + self.message_timeout - time.monotonic()
            try:
                async with asyncio.timeout(max(left, 0)):
                    return await reader.read(READ_SIZE)
            except TimeoutError:
                conn.fail(CloseCode.POLICY_VIOLATION,
                          f"message not completed within {self.message_timeout:g} s")
                return b""
        return await reader.read(READ_SIZE)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        transport = writer.transport
        if not self.guard.admit(transport):
            return
        conn = ServerProtocol(max_message_size=self.max_message_size,
                              max_frame_size=self.max_frame_size,
                              check_request=self._check_request)
        task = asyncio.current_task()
        self._connections[task] = (conn, writer)
        peer = writer.get_extra_info("peername")
        frames = TokenBucket(self.frame_rate, self.frame_burst)
        pings = TokenBucket(self.ping_rate, self.ping_burst)
        started: float | None = None  # when the pending frame or message began
        received = 0
        try:
            while not conn.should_close:
                if self._closing and conn.state == State.OPEN:  # opened after close() was called
                    conn.send_close(CloseCode.GOING_AWAY, "server shutting down")
                    writer.write(conn.data_to_send())
                data = await self._read(conn, reader, started)
                received += len(data)
                if data:
                    self.guard.touch(transport)
                if conn.should_close:  # failed by a deadline
                    events = []
                elif data:
                    conn.receive_data(data)
                    # lazy: each echo is queued before the next frame is parsed
                    events = conn.events_received()
                else:
                    events = conn.receive_eof()
                seen = conn.frames_count
                for event in events:
                    if isinstance(event, Message):
                        if conn.state == State.OPEN:
                            conn.send_message(event.data)  # the echo
                    elif isinstance(event, Accepted):
                        self.guard.opened(transport)
                    elif isinstance(event, Ping) and not pings.take(time.monotonic()):
                        conn.fail(CloseCode.POLICY_VIOLATION, "too many pings")
                    elif isinstance(event, (Failed, Rejected)):
                        logger.info("%s: %s", peer, event)
                    elif isinstance(event, ConnectionLost):
                        logger.debug("%s: connection lost", peer)
                now = time.monotonic()
                if conn.state == State.OPEN and not frames.take(now, conn.frames_count - seen):
                    conn.fail(CloseCode.POLICY_VIOLATION, "too many frames")
                started = (started or now) if conn.message_pending else None
                out = conn.data_to_send()
                if out:
                    writer.write(out)
                    try:
                        async with asyncio.timeout(self.write_timeout):
                            await writer.drain()
                    except TimeoutError:  # the client does not read: drop it
                        logger.info("%s: not reading, dropped", peer)
                        transport.abort()
                        break
                await asyncio.sleep(0)  # let other clients in, even under a flood
        except (ConnectionError, OSError) as exc:
            logger.debug("%s: %r", peer, exc)
        except Exception:  # a bug: tell the client (1011) rather than hang up silently
            logger.exception("%s: internal error", peer)
            if conn.state in (State.OPEN, State.CLOSING):
                conn.fail(CloseCode.INTERNAL_ERROR, "internal server error")
                writer.write(conn.data_to_send())
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
        finally:
            del self._connections[task]
            self.guard.release(transport)
            writer.close()
            try:
                async with asyncio.timeout(self.close_timeout):
                    await writer.wait_closed()
            except (ConnectionError, OSError, TimeoutError):
                transport.abort()
            if received > _TRIM_AFTER:  # once this task and its buffers are gone
                asyncio.get_running_loop().call_later(0.1, _give_memory_back)

    def close(self) -> None:
        """Stop accepting connections and ask open ones to close with 1001 (going away).

        Each connection sends its close frame and waits up to ``close_timeout``
        seconds for the client's reply; :meth:`wait_closed` waits for all of them.
        """
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        for conn, writer in list(self._connections.values()):
            if conn.state == State.OPEN:
                conn.send_close(CloseCode.GOING_AWAY, "server shutting down")
                writer.write(conn.data_to_send())

    async def wait_closed(self) -> None:
        """Wait until the listener and every connection are closed.

        Connections still open ``close_timeout`` seconds after :meth:`close`
        (plus one) are aborted.
        """
        tasks = list(self._connections)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.close_timeout + 1)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)
        if self._server is not None:
            await self._server.wait_closed()


async def start_server(host: str = "127.0.0.1", port: int = 0, *,
                       max_message_size: int | None = MAX_MESSAGE_SIZE,
                       max_frame_size: int | None = None,
                       close_timeout: float = 2.0, **limits: Any) -> EchoServer:
    """Start the echo server and return once it listens.

    Args:
        host: Address to bind (keep ``127.0.0.1`` in the course).
        port: TCP port, ``0`` for any free one (read it back from ``.port``).
        max_message_size: Largest message in bytes; bigger ones close with 1009.
        max_frame_size: Largest frame in bytes (default: ``max_message_size``).
        close_timeout: Seconds to wait for the client's close frame on shutdown.
        **limits: ``allowed_origins``, ``guard``, ``message_timeout``, ``write_timeout``,
            ``frame_rate``, ``frame_burst``, ``ping_rate``, ``ping_burst`` (see
            :class:`EchoServer`).

    Returns:
        The running :class:`EchoServer` (also an async context manager).

    Raises:
        OSError: If the address cannot be bound.
    """
    server = EchoServer(max_message_size=max_message_size, max_frame_size=max_frame_size,
                        close_timeout=close_timeout, **limits)
    await server._listen(host, port)
    return server


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: ``python -m course.net.rawserver [--host H] [--port P]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--max-message-size", type=int, default=MAX_MESSAGE_SIZE,
                        help="bytes; bigger messages are refused with close code 1009")
    parser.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                        help="let browser pages from ORIGIN in (repeatable; '*': any)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each connection")
    args = parser.parse_args(argv)
    allowed = "*" if "*" in args.allow_origin else set(args.allow_origin)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(name)s: %(message)s")
    return run_until_signal(lambda: start_server(args.host, args.port,
                                                 max_message_size=args.max_message_size,
                                                 allowed_origins=allowed))


if __name__ == "__main__":
    sys.exit(main())
