"""The transports experiment's server: one :class:`~course.demo.news.NewsSource`, five ways.

Routes: ``GET /`` (HTML page), ``GET /events?since=N[&wait=S]`` (JSON list),
``GET /stream`` (Server-Sent Events), ``GET /ws`` (WebSocket).  A refused request or
message gets the course's error envelope (:mod:`course.wire.envelope`)::

    {"type": "error", "code": "bad-shape", "error": "since must be ..."}
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from course.demo.news import NewsSource
from course.measure.transports.config import HOST, compact_json
from course.measure.transports.page import render_page
from course.net.guard import ConnectionGuard, start_app
from course.net.lifecycle import Service
from course.wire.envelope import BadMessage, ErrorCode, error_message, loads
from course.wire.limits import MESSAGE_BURST, MESSAGE_RATE, RATE_STRIKES, RateLimit, Verdict
from course.wire.origin import request_origin_allowed
from course.wire.sse import format_sse

__all__ = ["LATENCY_SAMPLES", "MAX_POSTS", "MAX_ID_DIGITS", "ServerStats", "EventServer"]

_UPSTREAM_SHAPE = 'expected {"ack": N, "t": ns} or {"post": "text"}'
_ROUTES = frozenset({"/", "/events", "/stream", "/ws"})

LATENCY_SAMPLES = 100_000  #: upstream latencies kept in :class:`ServerStats` (the newest)
MAX_POSTS = 10_000         #: posts an :class:`EventServer` publishes in its life; then refused
MAX_ID_DIGITS = 18         #: digits of an event id (``since``, ``Last-Event-ID``)


@dataclass
class ServerStats:
    """What an :class:`EventServer` saw."""

    http_requests: int = 0
    by_path: Counter = field(default_factory=Counter)  # the routes; any other path counts as "other"
    bad_requests: int = 0
    upstream_messages: int = 0
    upstream_latencies_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    posts: int = 0
    queries: list[dict[str, str]] = field(default_factory=list)  # the first 1000 query strings


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_upstream(text: str) -> dict[str, Any]:
    """A message the WebSocket client sent up: ``{"ack": N, "t": ns}`` or ``{"post": "text"}``.

    Raises:
        BadMessage: not JSON (``bad-json``), another shape (``bad-shape``), an empty post
            (``empty``).
    """
    message = loads(text)
    if not isinstance(message, dict):
        raise BadMessage(ErrorCode.BAD_SHAPE, _UPSTREAM_SHAPE)
    if _is_int(message.get("ack")) and _is_int(message.get("t")):
        return message
    if isinstance(message.get("post"), str):
        if not message["post"]:
            raise BadMessage(ErrorCode.EMPTY, "a post needs some text")
        return message
    raise BadMessage(ErrorCode.BAD_SHAPE, _UPSTREAM_SHAPE)


class EventServer(Service):
    """An aiohttp server exposing one :class:`NewsSource` five ways.

    Routes: ``GET /`` (HTML page), ``GET /events?since=N[&wait=S]`` (JSON list; ``wait``
    holds the request up to ``S`` s, capped at ``max_wait``), ``GET /stream`` (SSE;
    honours ``Last-Event-ID``), ``GET /ws`` (WebSocket).  Over the WebSocket the server
    pushes each event as the same JSON object ``{"id", "text", "t"}`` that ``/events``
    lists; the client may send ``{"ack": N, "t": ns}`` (a cumulative receipt, stamped
    with its send instant) or ``{"post": "text"}`` (publish a headline); anything else is
    answered with the envelope's error ``{"type": "error", "code": ..., "error": ...}``
    (codes ``not-text``, ``bad-json``, ``bad-shape``, ``empty``) and the socket stays
    open.  A bad query parameter gets ``400`` with the same error object (``bad-shape``).

    It has the course's lifecycle (:class:`course.net.lifecycle.Service`): ``url``,
    ``port``, ``close()`` (returns at once), ``await wait_closed()``, ``async with``::

        server = await EventServer(source).start()
        ...
        server.close()
        await server.wait_closed()

    Args:
        source: where events come from.
        max_wait: cap on the long-poll ``wait`` parameter, in seconds.
        page_size: how many newest events ``GET /`` lists.
        refresh: the page's meta-refresh period, in seconds.
        allowed_origins: browser origins whose pages may open ``/ws`` besides the server's
            own (``"*"``: any); others get 403 (:mod:`course.wire.origin`).
        guard: connection cap and handshake deadline (default: a
            :class:`course.net.guard.ConnectionGuard` with its defaults).
        rate: upstream messages per second per WebSocket (``None``: no limit); beyond, an
            error ``rate-limited``; ``strikes`` refusals in a row close it with 1008.
        burst: upstream messages at once.
        strikes: see ``rate``.
        max_posts: posts published in the server's life (:data:`MAX_POSTS`); later ones
            get the error ``rate-limited``.

    State is bounded: ``stats.by_path`` counts the four routes and ``"other"``,
    ``stats.upstream_latencies_ms`` keeps the newest :data:`LATENCY_SAMPLES`.
    """

    scheme = "http"

    def __init__(self, source: NewsSource, *, max_wait: float = 30.0, page_size: int = 30,
                 refresh: float = 2.5, allowed_origins: str | set[str] = (),
                 guard: ConnectionGuard | None = None, rate: float | None = MESSAGE_RATE,
                 burst: float = MESSAGE_BURST, strikes: int = RATE_STRIKES,
                 max_posts: int = MAX_POSTS) -> None:
        if not (math.isfinite(max_wait) and max_wait >= 0):
            raise ValueError(f"max_wait must be a finite number of seconds >= 0, got {max_wait}")
        self.source = source
        self.max_wait = max_wait
        self.page_size = page_size
        self.refresh = refresh
        self.stats = ServerStats()
        self.allowed_origins = allowed_origins
        self.guard = guard if guard is not None else ConnectionGuard()
        self.rate, self.burst, self.strikes = rate, burst, strikes
        self.max_posts = max_posts
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()

    async def start(self) -> EventServer:
        """Listen on ``127.0.0.1`` port 0; return ``self``.

        Raises:
            RuntimeError: already started, or closed.
        """
        if self._runner is not None or self.closing:
            raise RuntimeError("this EventServer is already started (or closed)")
        app = web.Application(middlewares=[self.guard.middleware, self._count])
        app.router.add_get("/", self._page)
        app.router.add_get("/events", self._events)
        app.router.add_get("/stream", self._stream)
        app.router.add_get("/ws", self._websocket)
        runner = await start_app(app, HOST, 0, self.guard, shutdown_timeout=2.0)
        self._runner = runner
        self.host, self.port = runner.addresses[0][:2]
        return self

    async def __aenter__(self) -> EventServer:
        """``async with EventServer(source) as server``: start it (unless started already)."""
        if self._runner is None and not self.closing:
            await self.start()
        return self

    def _stopped(self) -> bool:
        return self.closing

    async def _stop(self) -> None:
        """Release held requests and streams, close WebSockets (1001), stop listening.

        Bounded: about 2 s for the WebSockets, then aiohttp's 2 s shutdown timeout.
        """
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        self.source.wake()  # held long polls and streams see closing and return

        async def close_socket(ws: web.WebSocketResponse) -> None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await ws.close(code=1001, message=b"server shutting down")

        await asyncio.gather(*(close_socket(ws) for ws in list(self._sockets)))
        await runner.cleanup()

    @web.middleware
    async def _count(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        self.stats.http_requests += 1
        self.stats.by_path[request.path if request.path in _ROUTES else "other"] += 1
        if len(self.stats.queries) < 1000:
            self.stats.queries.append(dict(request.query))
        return await handler(request)

    def _bad(self, text: str) -> web.HTTPBadRequest:
        self.stats.bad_requests += 1
        return web.HTTPBadRequest(text=error_message(ErrorCode.BAD_SHAPE, text),
                                  content_type="application/json")

    def _int_param(self, value: str | None, name: str) -> int:
        if value is None or value == "":
            return 0
        if not value.isascii() or not value.isdigit() or len(value) > MAX_ID_DIGITS:
            raise self._bad(f"{name} must be a non-negative integer of at most {MAX_ID_DIGITS} "
                            f"digits (an event id), got {value[:40]!r}")
        return int(value)

    def _wait_param(self, value: str | None) -> float:
        if value is None or value == "":
            return 0.0
        try:
            wait = float(value)
        except ValueError:
            raise self._bad(f"wait must be a number of seconds, got {value!r}") from None
        if not math.isfinite(wait) or wait < 0:
            raise self._bad(f"wait must be a finite number of seconds >= 0, got {value!r}")
        return min(wait, self.max_wait)

    async def _page(self, request: web.Request) -> web.Response:
        body = render_page(self.source.events[-self.page_size:], refresh=self.refresh,
                           count=len(self.source.events))
        return web.Response(text=body, content_type="text/html")

    async def _events(self, request: web.Request) -> web.Response:
        since = self._int_param(request.query.get("since"), "since")
        wait = self._wait_param(request.query.get("wait"))
        if wait > 0:
            events = await self.source.wait_after(since, wait, self._stopped)
        else:
            events = self.source.after(since)
        return web.json_response([e.to_json() for e in events], dumps=compact_json)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        since = self._int_param(request.headers.get("Last-Event-ID", request.query.get("since")),
                                "Last-Event-ID")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        try:
            async for event in self.source.follow(since, self._stopped):
                message = format_sse(compact_json(event.to_json()), event="news", id=event.id)
                await response.write(message.encode())
        except (ConnectionError, RuntimeError):  # the client went away
            pass
        return response

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        if not request_origin_allowed(request.headers, self.allowed_origins, self.port):
            return web.Response(status=403, text="origin not allowed\n")
        since = self._int_param(request.query.get("since"), "since")
        ws = web.WebSocketResponse(compress=False, heartbeat=None, timeout=2.0, max_msg_size=64 * 1024)
        await ws.prepare(request)
        self._sockets.add(ws)
        pusher = asyncio.create_task(self._push(ws, since))
        limit = None if self.rate is None else RateLimit(self.rate, self.burst, self.strikes)
        try:
            async for message in ws:
                verdict = Verdict.ALLOW if limit is None else limit.check(time.monotonic())
                if verdict is Verdict.CLOSE:
                    await ws.close(code=1008, message=b"too many messages")
                    break
                if verdict is Verdict.REFUSE:
                    await self._refuse(ws, BadMessage(ErrorCode.RATE_LIMITED, "too many messages"))
                elif message.type == aiohttp.WSMsgType.TEXT:
                    await self._upstream(ws, message.data)
                elif message.type == aiohttp.WSMsgType.ERROR:
                    break
                else:
                    await self._refuse(ws, BadMessage(ErrorCode.NOT_TEXT,
                                                      "send JSON text messages, not binary"))
        finally:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pusher
            self._sockets.discard(ws)
        return ws

    async def _push(self, ws: web.WebSocketResponse, since: int) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            async for event in self.source.follow(since, self._stopped):
                await ws.send_str(compact_json(event.to_json()))

    async def _refuse(self, ws: web.WebSocketResponse, error: BadMessage) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_str(error.encode())

    async def _upstream(self, ws: web.WebSocketResponse, text: str) -> None:
        now = time.perf_counter_ns()
        try:
            message = _parse_upstream(text)
        except BadMessage as error:
            await self._refuse(ws, error)
            return
        if _is_int(message.get("ack")) and _is_int(message.get("t")):
            self.stats.upstream_messages += 1
            self.stats.upstream_latencies_ms.append((now - message["t"]) / 1e6)
        elif self.stats.posts >= self.max_posts:
            await self._refuse(ws, BadMessage(ErrorCode.RATE_LIMITED,
                                              f"this server takes at most {self.max_posts} posts"))
        elif not self.source.closed:
            self.stats.upstream_messages += 1
            self.stats.posts += 1
            self.source.publish(message["post"][:200])
