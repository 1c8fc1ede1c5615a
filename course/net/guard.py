"""A connection cap and a handshake deadline for any asyncio server (the course's servers).

:class:`ConnectionGuard` applies :class:`course.wire.limits.ConnectionTable` to real
transports: each accepted TCP connection is admitted or refused (an HTTP ``503`` written,
then the connection closed, without waiting for its request), a connection still in its
opening handshake after ``handshake_timeout`` seconds is aborted (slowloris), and a
newcomer that finds no place evicts the oldest connection still in its handshake, so
half-open connections cannot lock out a client that completes its own.

The cap stays below the process's open-file limit: a server that runs out of file
descriptors cannot accept anyone, and asyncio logs an error for each failed ``accept()``.
Refusals are counted in :attr:`ConnectionGuard.stats` and logged at most once every
10 seconds.

Three ways in, one per kind of server:

* raw asyncio streams (:mod:`course.net.rawserver`): call :meth:`~ConnectionGuard.admit`,
  :meth:`~ConnectionGuard.opened`, :meth:`~ConnectionGuard.release` yourself;
* ``websockets`` (:mod:`course.net.hub`): ``serve(..., create_connection=guard.connection_class())``;
* aiohttp (:mod:`course.net.chat`, the transports server, the channel server):
  ``web.Application(middlewares=[guard.middleware])`` and :func:`start_site` instead of
  ``web.TCPSite``.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from course.protocol import error_response
from course.wire.limits import (
    HANDSHAKE_TIMEOUT,
    MAX_CONNECTIONS,
    MAX_PENDING,
    IDLE_GRACE,
    MAX_PER_ADDRESS,
    Admission,
    ConnectionTable,
    TokenBucket,
)

__all__ = ["FD_RESERVE", "default_max_connections", "GuardStats", "ConnectionGuard", "start_site",
           "start_app", "flushed"]

logger = logging.getLogger("course.net.guard")

#: File descriptors kept free for everything else the process opens.
FD_RESERVE = 24


def default_max_connections() -> int:
    """``min(MAX_CONNECTIONS, open-file soft limit - FD_RESERVE)``: 1,000 at the usual 1,024."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(1, min(MAX_CONNECTIONS, soft - FD_RESERVE))


@dataclass
class GuardStats:
    """What a :class:`ConnectionGuard` did."""

    admitted: int = 0
    refused: int = 0   #: refused with 503 (no place, or the address holds its share)
    evicted: int = 0   #: pending connections aborted to make room for a newcomer
    expired: int = 0   #: pending connections aborted at their handshake deadline


class ConnectionGuard:
    """Connection cap, per-address cap and handshake deadline for one server.

    Args:
        max_connections: connections in total (default :func:`default_max_connections`).
        max_per_address: connections from one client IP (default
            :data:`course.wire.limits.MAX_PER_ADDRESS`).
        max_pending: connections still in their handshake (default
            :data:`course.wire.limits.MAX_PENDING`); the oldest is evicted for a newcomer.
        handshake_timeout: seconds to complete the opening handshake (default
            :data:`course.wire.limits.HANDSHAKE_TIMEOUT`); for aiohttp, to send a
            complete request head.
        idle_grace: when every place is taken by open connections, the one silent the
            longest is evicted for a newcomer if it sent nothing for this many seconds
            (default :data:`course.wire.limits.IDLE_GRACE`).

    Attributes:
        table: the :class:`~course.wire.limits.ConnectionTable` (the bookkeeping).
        stats: a :class:`GuardStats`.
    """

    def __init__(self, *, max_connections: int | None = None, max_per_address: int = MAX_PER_ADDRESS,
                 max_pending: int = MAX_PENDING, handshake_timeout: float = HANDSHAKE_TIMEOUT,
                 idle_grace: float = IDLE_GRACE) -> None:
        self.table = ConnectionTable(max_connections or default_max_connections(), max_per_address,
                                     max_pending, handshake_timeout, idle_grace)
        self.stats = GuardStats()
        self._timers: dict[Any, asyncio.TimerHandle] = {}
        self._log_bucket = TokenBucket(rate=0.1, burst=1)

    def __len__(self) -> int:
        return len(self.table)

    def admit(self, transport: asyncio.BaseTransport) -> bool:
        """A connection was accepted: keep it (``True``), or refuse it with 503 and close it.

        Pending connections evicted to make room are aborted here.
        """
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, (tuple, list)) and peer else "?"
        loop = asyncio.get_running_loop()
        verdict, evicted = self.table.admit(transport, address, loop.time())
        for victim in evicted:
            self._forget_timer(victim)
            self.stats.evicted += 1
            victim.abort()
        if verdict is not Admission.ADMIT:
            self.stats.refused += 1
            why = ("too many connections from your address" if verdict is Admission.ADDRESS_FULL
                   else "too many connections")
            if self._log_bucket.take(time.monotonic()):
                logger.warning("refusing connections (%s); %d refused so far", why, self.stats.refused)
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(error_response(503, why, [("Retry-After", "1")]))
            transport.close()
            return False
        self.stats.admitted += 1
        self._timers[transport] = loop.call_later(self.table.handshake_timeout, self._expire, transport)
        return True

    def touch(self, transport: asyncio.BaseTransport | None) -> None:
        """The connection sent something: it is alive (see ``idle_grace``)."""
        self.table.touch(transport, asyncio.get_running_loop().time())

    def opened(self, transport: asyncio.BaseTransport | None) -> None:
        """The connection completed its handshake (or its request head): no deadline now."""
        if transport is not None:
            self._forget_timer(transport)
            self.table.opened(transport)

    def release(self, transport: asyncio.BaseTransport | None) -> None:
        """The connection ended: free its place."""
        if transport is not None:
            self._forget_timer(transport)
            self.table.release(transport)

    def _forget_timer(self, transport: Any) -> None:
        timer = self._timers.pop(transport, None)
        if timer is not None:
            timer.cancel()

    def _expire(self, transport: asyncio.BaseTransport) -> None:
        self._timers.pop(transport, None)
        if transport in self.table and not self.table.is_open(transport):
            self.table.release(transport)
            self.stats.expired += 1
            transport.abort()

    # -- websockets ---------------------------------------------------------------

    def connection_class(self, base: type | None = None) -> type:
        """A ``websockets`` connection class (``serve(create_connection=...)``) under this guard.

        Args:
            base: the ``ServerConnection`` subclass to extend (e.g. the hub's
                ``HubConnection``; default ``websockets``' own ``ServerConnection``).
        """
        if base is None:  # imported here: the raw server must not load websockets
            from websockets.asyncio.server import ServerConnection
            base = ServerConnection
        guard = self

        class GuardedConnection(base):  # type: ignore[misc, valid-type]
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                guard.admit(transport)

            def connection_lost(self, exc: Exception | None) -> None:
                guard.release(self.transport)
                super().connection_lost(exc)

            def data_received(self, data: bytes) -> None:
                guard.touch(self.transport)
                super().data_received(data)

            async def handshake(self, *args: Any, **kwargs: Any) -> None:
                await super().handshake(*args, **kwargs)
                guard.opened(self.transport)

        GuardedConnection.__name__ = GuardedConnection.__qualname__ = f"Guarded{base.__name__}"
        return GuardedConnection

    # -- aiohttp --------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """aiohttp middleware: a request that reached its handler has sent its whole head."""
        self.opened(request.transport)
        return await handler(request)

    def wrap(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """Wrap an asyncio protocol factory (aiohttp's ``runner.server``) with this guard."""
        def guarded() -> asyncio.Protocol:
            return _GuardedProtocol(self, factory())
        return guarded


class _GuardedProtocol(asyncio.Protocol):
    """Forwards everything to the real protocol; admits on connect, releases on loss."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._inner.connection_made(transport)
        self._guard.admit(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.release(self._transport)
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._transport is not None and self._transport.is_closing():
            return  # refused: do not parse its request
        self._guard.touch(self._transport)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def start_site(runner: web.AppRunner, host: str, port: int, guard: ConnectionGuard, *,
                     ssl_context: ssl.SSLContext | None = None) -> web.TCPSite:
    """``web.TCPSite(runner, host, port).start()``, with every connection under ``guard``.

    The site belongs to ``runner`` as usual: ``await runner.cleanup()`` stops it.  With
    ``ssl_context`` it speaks TLS: the guard counts a connection once its TLS handshake is
    done, and that handshake has the guard's handshake deadline too (asyncio's
    ``ssl_handshake_timeout``, 60 s by default).

    Returns:
        The started site; its port is ``runner.addresses[0][1]``.

    Raises:
        OSError: the address is in use or cannot be bound.
    """
    site = _GuardedSite(runner, host, port, guard, ssl_context)
    await site.start()
    return site


async def start_app(app: web.Application, host: str, port: int, guard: ConnectionGuard,
                    shutdown_timeout: float = 60.0, *,
                    ssl_context: ssl.SSLContext | None = None) -> web.AppRunner:
    """Serve an aiohttp application on ``host:port`` under ``guard``; return its runner.

    Add ``guard.middleware`` to the application's middlewares, so that a request that
    reached its handler ends the handshake deadline.  Stop with ``await runner.cleanup()``.

    Raises:
        OSError: the address is in use or cannot be bound.
    """
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        await start_site(runner, host, port, guard, ssl_context=ssl_context)
    except BaseException:
        await runner.cleanup()
        raise
    return runner


class _GuardedSite(web.TCPSite):
    __slots__ = ("_guard",)

    def __init__(self, runner: web.AppRunner, host: str, port: int, guard: ConnectionGuard,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        factory = self._runner.server
        assert factory is not None
        tls = {} if self._ssl_context is None else {
            "ssl": self._ssl_context, "ssl_handshake_timeout": self._guard.table.handshake_timeout}
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.wrap(factory), self._host, self._port, backlog=self._backlog,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port, **tls)


async def flushed(outbox: Any, timeout: float = 1.0) -> bool:
    """Wait until a fan-out client's queue is empty (``outbox.load().queued == 0``).

    Used before closing an abusive client (1008), so that the error replies queued for it
    go out first.  Bounded: a client that does not read is not waited for longer.

    Returns:
        ``True`` if the queue emptied within ``timeout`` seconds.
    """
    try:
        async with asyncio.timeout(timeout):
            while outbox is not None and outbox.load().queued:
                await asyncio.sleep(0.005)
    except TimeoutError:
        return False
    return True
