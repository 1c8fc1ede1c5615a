"""The broadcast hub of chapter 3, on the ``websockets`` library.

Every message a client sends goes to every client.  The :class:`Hub` follows
gorilla/websocket's chat example: one bounded send queue and one writer task per client
(:mod:`course.net.fanout`); a burst is absorbed, and a client whose queue stays full
for longer than a grace period (or outgrows a byte bound) is too slow and is
disconnected (close code 1008) instead of stalling everybody.  Dead peers are found by
the library's keepalive pings (``ping_interval`` / ``ping_timeout``, the equivalent of
gorilla's ``pingPeriod`` / ``pongWait``).

Messages are the course's envelope (:mod:`course.wire.envelope`); a frame that is not
one is answered with an error message, and the connection stays open.  The hub, not the
client, says who sent a message: it sets ``sender`` (a client-supplied one is replaced).

Limits, with their defaults: a message of at most 1 MiB (``websockets``' ``max_size``;
bigger: 1009); per connection, :data:`course.wire.limits.MESSAGE_RATE` messages a second
with bursts of :data:`~course.wire.limits.MESSAGE_BURST` (beyond: an error
``rate-limited``; :data:`~course.wire.limits.RATE_STRIKES` refusals in a row: 1008); JSON
nested at most :data:`~course.wire.limits.MAX_JSON_DEPTH` deep; browser pages only from
allowed origins (:mod:`course.wire.origin`, else 403); connections capped and handshakes
bounded by a :class:`course.net.guard.ConnectionGuard`.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Collection
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from course.net.fanout import Fanout, Verdict, close_within
from course.net.guard import ConnectionGuard, flushed
from course.net.lifecycle import Service
from course.wire.envelope import BadMessage, ErrorCode, decode
from course.wire.limits import MESSAGE_BURST, MESSAGE_RATE, RATE_STRIKES, RateLimit
from course.wire.limits import Verdict as Rate
from course.wire.origin import request_origin_allowed

__all__ = ["Hub", "HubConnection", "HubServer", "serve_hub"]


class Hub(Fanout):
    """Broadcast hub: every message a client sends goes to every client.

    Like gorilla/websocket's chat hub, each client has a bounded send queue and one
    writer task (the queues, the broadcast and the slow-client rule live in
    :class:`course.net.fanout.Fanout`, shared with ``course.net.chat``).  :meth:`broadcast` never
    waits: it puts the message in each queue.  A burst is absorbed: ``queue_size`` is
    where a clock starts, not a wall.  A client whose queue *stays* full for longer than
    ``grace`` seconds, or outgrows ``max_bytes``, is too slow: it is closed with
    ``1008 POLICY_VIOLATION`` and forgotten, and nobody else waits for it.

    The sender receives its own messages too (as in gorilla's chat): it sees the
    order in which the hub relayed them.

    Args:
        queue_size: capacity of each client's send queue (at least 1).
        on_event: optional callback ``on_event(kind, detail)`` for joins, leaves
            and drops (``kind`` is ``"join"``, ``"leave"`` or ``"drop"``).
        grace: seconds a client's queue may stay full before it is dropped.
        max_bytes: bytes a client's queue may hold; beyond, it is dropped at once.
        max_buffered: bytes a client's write buffer may hold for longer than ``grace``.
        rate: messages per second one client may send (``None``: no limit); see
            :class:`course.wire.limits.RateLimit`.
        burst: messages one client may send at once.
        strikes: refused messages in a row that close the client (1008).

    Raises:
        ValueError: ``queue_size`` below 1, ``grace`` not positive, a negative bound.
    """

    SLOW_CLOSE_CODE = CloseCode.POLICY_VIOLATION
    SLOW_CLOSE_REASON = Verdict.QUEUE_FULL.close_reason

    def __init__(self, queue_size: int = 16,
                 on_event: Callable[[str, str], None] | None = None, *,
                 grace: float = 1.0, max_bytes: int = 1024 * 1024,
                 max_buffered: int = 256 * 1024, rate: float | None = MESSAGE_RATE,
                 burst: float = MESSAGE_BURST, strikes: int = RATE_STRIKES) -> None:
        super().__init__(queue_size, grace=grace, max_bytes=max_bytes,
                         max_buffered=max_buffered, on_event=on_event)
        self.errors: deque[str] = deque(maxlen=100)  #: the last refusals, for people
        self.rate, self.burst, self.strikes = rate, burst, strikes

    async def handler(self, websocket: ServerConnection) -> None:
        """The ``websockets`` connection handler (pass ``hub.handler`` to ``serve``).

        A dropped client's closing handshake is bounded by the connection's
        ``close_timeout`` (a ``serve`` / :func:`serve_hub` argument).
        """
        transport = websocket.transport
        outbox = self.join(websocket, _peer(websocket), send=websocket.send,
                           close=websocket.close, abort=transport.abort,
                           buffered=transport.get_write_buffer_size,
                           close_timeout=websocket.close_timeout)
        limit = None if self.rate is None else RateLimit(self.rate, self.burst, self.strikes)
        try:
            async for frame in websocket:
                verdict = Rate.ALLOW if limit is None else limit.check(time.monotonic())
                if verdict is Rate.CLOSE:
                    await flushed(outbox)  # its error replies first
                    await websocket.close(CloseCode.POLICY_VIOLATION, "too many messages")
                    break
                try:
                    if verdict is Rate.REFUSE:
                        raise BadMessage(ErrorCode.RATE_LIMITED,
                                         f"too many messages: at most {self.rate:g} a second")
                    message = decode(frame)
                except BadMessage as error:
                    self.errors.append(str(error))
                    self.send(websocket, error.encode())
                    continue
                message["sender"] = outbox.name  # the hub says who sent it, not the client
                self.broadcast(json.dumps(message, separators=(",", ":")))
        except ConnectionClosed:  # dropped as too slow, or vanished without a close frame
            pass
        finally:
            self.leave(websocket)

    def drop(self, websocket: ServerConnection, verdict: Verdict = Verdict.QUEUE_FULL) -> None:
        """Disconnect a client now (close code 1008) without waiting for it."""
        super().drop(websocket, verdict)


class HubConnection(ServerConnection):
    """A server connection whose :meth:`close` always ends within ``close_timeout``.

    ``websockets`` waits for its write buffer to drain before the close frame counts
    as sent; a peer that reads nothing never lets it drain, so ``server.close()`` would
    wait forever.  Here the handshake gets ``close_timeout`` seconds, then the TCP
    connection is aborted.
    """

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        await close_within(super().close(code, reason), self.close_timeout, self.transport.abort)


def _peer(websocket: ServerConnection) -> str:
    address = websocket.remote_address
    return f"{address[0]}:{address[1]}" if address else "?"


class HubServer(Service):
    """A running hub server (from :func:`serve_hub`): ``url``, ``port``, ``close()``,
    ``await wait_closed()``, ``async with``.

    Attributes:
        hub: the hub that serves every connection.
        server: the ``websockets`` server underneath.
    """

    def __init__(self, hub: Hub, server: Server) -> None:
        self.hub = hub
        self.server = server
        self.host, self.port = server.sockets[0].getsockname()[:2]

    def close(self) -> None:
        """Close every connection (1001) and stop listening; returns at once."""
        self.hub.cut_closes()  # dropped clients still closing would hold wait_closed() up
        self.server.close()

    async def wait_closed(self) -> None:
        """Wait until every connection is closed (each within its ``close_timeout``)."""
        await self.server.wait_closed()


async def serve_hub(hub: Hub, host: str = "127.0.0.1", port: int = 0, *,
                    ping_interval: float | None = 5.0, ping_timeout: float | None = 5.0,
                    allowed_origins: str | Collection[str] = (),
                    guard: ConnectionGuard | None = None, **kwargs: Any) -> HubServer:
    """Start a server whose handler is ``hub.handler``.

    Its connections are :class:`HubConnection`: closing one (``close()``, a
    dropped client) never takes longer than ``close_timeout``, even if the peer stopped
    reading; and ``server.close()`` aborts at once the clients the hub dropped whose close
    is still running, so stopping waits for nobody it already gave up on.

    Args:
        hub: the hub whose handler serves every connection.
        host: interface to listen on (keep ``127.0.0.1`` in the course).
        port: ``0`` lets the OS pick a free port (read it from ``.port`` or ``.url``).
        ping_interval: the library pings each client every ``ping_interval`` seconds
            (``None``: never), like gorilla's ``pingPeriod``.
        ping_timeout: a client whose pong does not come back within ``ping_timeout``
            seconds is dead or frozen and gets closed (gorilla's ``pongWait``).
        allowed_origins: browser origins let in besides the server's own (``"*"``: any);
            others get 403 (:func:`course.wire.origin.origin_allowed`).
        guard: the connection cap and handshake deadline (default: a new
            :class:`course.net.guard.ConnectionGuard` with its defaults; ``open_timeout``,
            10 s by default, also bounds the handshake).
        **kwargs: passed to :func:`websockets.asyncio.server.serve`; e.g.
            ``close_timeout`` bounds how long a dropped, dead or stopped peer has to
            answer the close frame before its TCP connection is aborted (default 10 s).

    Raises:
        OSError: the address is not available.
    """
    guard = guard if guard is not None else ConnectionGuard()
    kwargs.setdefault("create_connection", guard.connection_class(HubConnection))
    kwargs.setdefault("max_size", 1 << 20)

    def check_origin(connection: ServerConnection, request: Request) -> Response | None:
        if request_origin_allowed(request.headers, allowed_origins, connection.local_address[1]):
            return None
        return connection.respond(403, "origin not allowed\n")

    kwargs.setdefault("process_request", check_origin)
    server = await serve(hub.handler, host, port, ping_interval=ping_interval,
                         ping_timeout=ping_timeout, **kwargs)
    return HubServer(hub, server)


