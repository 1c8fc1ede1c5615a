"""Chapter 1: five ways to get server events to a client, measured on real sockets.

One :class:`~course.demo.news.NewsSource` emits headlines at random instants.  Five
strategies deliver them to a client, each through a real server on ``127.0.0.1``
(aiohttp) and a real client (aiohttp, or the ``websockets`` library for WebSocket):

- ``reload``: the client GETs a full HTML page every ``reload_interval`` s;
- ``polling``: AJAX short polling, ``GET /events?since=N`` every ``poll_interval`` s;
- ``long-polling``: ``GET /events?since=N&wait=S``; the server holds the request until an
  event exists (or ``S`` s pass); the client asks again at once;
- ``sse``: Server-Sent Events, one ``text/event-stream`` response that never ends;
- ``websocket``: one WebSocket; the server pushes, the client streams acks *up*.

Between each client and its server sits a :class:`CountingProxy`, a tiny TCP relay
that counts every byte both ways (request lines, headers, bodies, chunk sizes,
WebSocket frames: everything TCP carries; TCP/IP headers themselves are not counted).
The server counts HTTP requests.  The client computes delivery latency = receipt
instant - ``Event.t`` (same ``perf_counter_ns`` clock: one process).

Notebook use (the kernel's loop is running, so ``await`` directly)::

    results = await measure_all(duration=10, seed=1)
    print(table(results))
    plot(results)

Command line::

    python -m course.measure.transports           # a table
    python -m course.measure.transports --json    # one JSON object per strategy
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from typing import Any

import aiohttp
from aiohttp import web
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from course.measure import stats
from course.demo.news import Event, NewsSource, schedule

__all__ = [
    "STRATEGIES", "Settings", "Result", "Capture", "Exchange", "CountingProxy", "EventServer",
    "SSEParser", "format_sse", "parse_page", "measure_all", "run_strategy", "capture_empty_poll",
    "table", "plot", "percentile", "compact_json", "Event", "NewsSource", "schedule",
]

STRATEGIES = ("reload", "polling", "long-polling", "sse", "websocket")
HOST = "127.0.0.1"


def compact_json(value: Any) -> str:
    """JSON without optional spaces, as browsers' ``JSON.stringify`` writes it."""
    return json.dumps(value, separators=(",", ":"))


# --------------------------------------------------------------------------- settings, results

@dataclass(frozen=True)
class Settings:
    """Parameters of one measurement (seconds unless said otherwise).

    Attributes:
        reload_interval: full page reload period (a ``<meta http-equiv="refresh">``).
        poll_interval: AJAX short-polling period.
        long_poll_wait: how long the client asks the server to hold a long-poll request.
        ack_interval: the WebSocket client sends a cumulative ack upstream at most this often.
        page_size: how many newest events the reloaded HTML page lists.
        mean_interval: mean time between two events of the news source.
    """

    reload_interval: float = 2.5
    poll_interval: float = 1.0
    long_poll_wait: float = 20.0
    ack_interval: float = 1.0
    page_size: int = 30
    mean_interval: float = 0.15

    def __post_init__(self) -> None:
        for name in ("reload_interval", "poll_interval", "long_poll_wait", "ack_interval",
                     "mean_interval"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"Settings.{name} must be a positive number of seconds, got {value!r}")
        if not (isinstance(self.page_size, int) and self.page_size >= 1):
            raise ValueError(f"Settings.page_size must be an int >= 1, got {self.page_size!r}")

    def describe(self, strategy: str) -> str:
        """One line saying how ``strategy`` was configured."""
        return {
            "reload": f"GET / (HTML, {self.page_size} newest) every {self.reload_interval * 1000:.0f} ms",
            "polling": f"GET /events?since=N every {self.poll_interval * 1000:.0f} ms",
            "long-polling": f"GET /events?since=N&wait={self.long_poll_wait:g}, again at once",
            "sse": "GET /stream, one text/event-stream response",
            "websocket": f"GET /ws upgrade; acks up every {self.ack_interval * 1000:.0f} ms",
        }[strategy]


@dataclass
class Result:
    """What one strategy cost and delivered.

    Attributes:
        strategy: one of :data:`STRATEGIES`.
        setting: how it was configured (:meth:`Settings.describe`).
        events: distinct events the client received.
        emitted: events the source emitted during the run.
        p50_ms, p95_ms, max_ms: delivery latency percentiles (None if no event arrived).
        http_requests: HTTP requests the server handled (a WebSocket upgrade is one).
        empty_responses: answers that brought the client nothing new.
        connections: TCP connections the client opened.
        bytes_up, bytes_down: bytes client -> server and server -> client, headers included.
        bytes_per_event: (bytes_up + bytes_down) / events (None if no event arrived).
        upstream_messages: messages the client streamed up to the server (WebSocket only).
        upstream_p50_ms: median client -> server latency of those messages.
    """

    strategy: str
    setting: str
    events: int
    emitted: int
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None
    http_requests: int
    empty_responses: int
    connections: int
    bytes_up: int
    bytes_down: int
    bytes_per_event: float | None
    upstream_messages: int = 0
    upstream_p50_ms: float | None = None

    @property
    def missed(self) -> int:
        """Emitted events the client never saw (a reloaded page lists only the newest ones)."""
        return self.emitted - self.events

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``missed`` included)."""
        data = asdict(self)
        data["missed"] = self.missed
        return data


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (``p`` in 0..100) of ``values``; None when empty.

    Raises:
        ValueError: ``p`` outside 0..100.
    """
    if not values and 0 <= p <= 100:
        return None
    return stats.percentile(values, p)


# --------------------------------------------------------------------------- counting proxy

@dataclass
class Capture:
    """The first bytes of one proxied TCP connection, each direction (capped)."""

    up: bytearray = field(default_factory=bytearray)
    down: bytearray = field(default_factory=bytearray)


class CountingProxy:
    """A TCP relay on ``127.0.0.1`` that counts (and samples) every byte it forwards.

    Args:
        upstream_port: the real server's port on ``127.0.0.1``.
        capture_limit: keep at most this many first bytes per direction and connection.
    """

    def __init__(self, upstream_port: int, capture_limit: int = 4096) -> None:
        self.upstream_port = upstream_port
        self.capture_limit = capture_limit
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections = 0
        self.captures: list[Capture] = []
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task] = set()
        self._handlers: set[asyncio.Task] = set()

    @property
    def port(self) -> int:
        """The port clients connect to (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("CountingProxy not started")
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> CountingProxy:
        """Listen on ``127.0.0.1`` port 0."""
        self._server = await asyncio.start_server(self._handle, HOST, 0)
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        self._handlers.add(handler)
        self.connections += 1
        up_writer = None
        try:
            async with asyncio.timeout(5):
                up_reader, up_writer = await asyncio.open_connection(HOST, self.upstream_port)
            capture = Capture()
            self.captures.append(capture)
            pumps = [asyncio.create_task(self._pump(reader, up_writer, capture.up, "up")),
                     asyncio.create_task(self._pump(up_reader, writer, capture.down, "down"))]
            self._pumps.update(pumps)
            await asyncio.gather(*pumps, return_exceptions=True)
            self._pumps.difference_update(pumps)
        except (OSError, TimeoutError, asyncio.CancelledError):
            # a cancelled handler task would be logged as an error by asyncio.streams on 3.11
            pass
        finally:
            for w in (up_writer, writer):
                if w is not None:
                    with contextlib.suppress(asyncio.CancelledError):
                        await _close_writer(w)
            self._handlers.discard(handler)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    capture: bytearray, direction: str) -> None:
        try:
            while data := await reader.read(65536):
                if direction == "up":
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
                room = self.capture_limit - len(capture)
                if room > 0:
                    capture += data[:room]
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():  # pass the half-close on
                writer.write_eof()
        except (ConnectionError, OSError):
            pass

    async def close(self) -> None:
        """Stop listening and drop every relayed connection (bounded: a few seconds at most)."""
        if self._server is not None:
            self._server.close()
        for pump in list(self._pumps):
            pump.cancel()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=3)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()
            self._server = None


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1):
            await writer.wait_closed()


# --------------------------------------------------------------------------- SSE and HTML formats

def format_sse(event: Event) -> str:
    """One Server-Sent Events message: ``id``, ``event`` and ``data`` lines, then a blank line."""
    return f"id: {event.id}\nevent: news\ndata: {compact_json(event.to_json())}\n\n"


@dataclass
class SSEMessage:
    """A dispatched Server-Sent Events message."""

    event: str
    data: str
    id: str | None


class SSEParser:
    """Sans-I/O parser of a ``text/event-stream`` (HTML Living Standard, 9.2.6), line by line.

    Feed it decoded lines (with or without their line ending); it returns a
    :class:`SSEMessage` when a blank line ends a message, else None.
    """

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self.last_id: str | None = None

    def feed_line(self, line: str) -> SSEMessage | None:
        """Process one line; return the message it completes, if any."""
        line = line.rstrip("\r\n")
        if line == "":
            if not self._data:
                self._event = ""
                return None
            message = SSEMessage(self._event or "message", "\n".join(self._data), self.last_id)
            self._data, self._event = [], ""
            return message
        if line.startswith(":"):  # a comment, e.g. a keep-alive
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        return None  # "retry" and unknown fields are ignored here


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []
        self._current: dict[str, str] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "li" and "data-id" in values and "data-t" in values:
            self._current, self._text = values, []

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "li" and self._current is not None:
            self.events.append(Event(int(self._current["data-id"]), "".join(self._text).strip(),
                                     int(self._current["data-t"])))
            self._current = None


def parse_page(page: str) -> list[Event]:
    """The events listed in a page rendered by :class:`EventServer` (oldest first).

    Raises:
        ValueError: a ``<li>`` carries a non-integer ``data-id`` or ``data-t``.
    """
    parser = _PageParser()
    parser.feed(page)
    parser.close()
    return sorted(parser.events, key=lambda e: e.id)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh:g}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Live news (reloads every {refresh:g} s)</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 40rem; }}
header, footer {{ color: #555; border-bottom: 1px solid #ddd; padding: .5rem 0; }}
ol {{ padding-left: 1.5rem; }} li {{ margin: .25rem 0; }}
</style>
</head>
<body>
<header><h1>Live news</h1><nav><a href="/">Home</a> · <a href="/about">About</a></nav></header>
<main><ol reversed>
{items}
</ol></main>
<footer>This page reloads itself every {refresh:g} s. {count} headlines so far.</footer>
</body>
</html>
"""


# --------------------------------------------------------------------------- the server

@dataclass
class ServerStats:
    """What an :class:`EventServer` saw."""

    http_requests: int = 0
    by_path: Counter = field(default_factory=Counter)
    bad_requests: int = 0
    upstream_messages: int = 0
    upstream_latencies_ms: list[float] = field(default_factory=list)
    posts: int = 0
    queries: list[dict[str, str]] = field(default_factory=list)  # the first 1000 query strings


class EventServer:
    """An aiohttp server exposing one :class:`NewsSource` five ways.

    Routes: ``GET /`` (HTML page), ``GET /events?since=N[&wait=S]`` (JSON list; ``wait``
    holds the request up to ``S`` s, capped at ``max_wait``), ``GET /stream`` (SSE;
    honours ``Last-Event-ID``), ``GET /ws`` (WebSocket).  Over the WebSocket the server
    pushes each event as the same JSON object ``{"id", "text", "t"}`` that ``/events``
    lists; the client may send ``{"ack": N, "t": ns}`` (a cumulative receipt, stamped
    with its send instant) or ``{"post": "text"}`` (publish a headline); anything else is
    answered with ``{"error": "..."}`` and the socket stays open.  A bad query parameter
    gets ``400`` with ``{"error": "..."}``.

    Args:
        source: where events come from.
        max_wait: cap on the long-poll ``wait`` parameter, in seconds.
        page_size: how many newest events ``GET /`` lists.
        refresh: the page's meta-refresh period, in seconds.
    """

    def __init__(self, source: NewsSource, *, max_wait: float = 30.0, page_size: int = 30,
                 refresh: float = 2.5) -> None:
        if not (math.isfinite(max_wait) and max_wait >= 0):
            raise ValueError(f"max_wait must be a finite number of seconds >= 0, got {max_wait}")
        self.source = source
        self.max_wait = max_wait
        self.page_size = page_size
        self.refresh = refresh
        self.stats = ServerStats()
        self.closing = False
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._sockets: set[web.WebSocketResponse] = set()

    @property
    def port(self) -> int:
        if self._runner is None:
            raise RuntimeError("EventServer not started")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (after :meth:`start`)."""
        return f"http://{HOST}:{self.port}"

    def _stop(self) -> bool:
        return self.closing

    async def start(self) -> EventServer:
        """Listen on ``127.0.0.1`` port 0."""
        app = web.Application(middlewares=[self._count])
        app.router.add_get("/", self._page)
        app.router.add_get("/events", self._events)
        app.router.add_get("/stream", self._stream)
        app.router.add_get("/ws", self._websocket)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        """Release held requests and streams, close WebSockets (1001), stop listening."""
        if self._runner is None:
            return
        self.closing = True
        self.source.wake()
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await ws.close(code=1001, message=b"server shutting down")
        await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> EventServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @web.middleware
    async def _count(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        self.stats.http_requests += 1
        self.stats.by_path[request.path] += 1
        if len(self.stats.queries) < 1000:
            self.stats.queries.append(dict(request.query))
        return await handler(request)

    def _bad(self, message: str) -> web.HTTPBadRequest:
        self.stats.bad_requests += 1
        return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")

    def _int_param(self, value: str | None, name: str) -> int:
        if value is None or value == "":
            return 0
        if not value.isascii() or not value.isdigit():
            raise self._bad(f"{name} must be a non-negative integer (an event id), got {value!r}")
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
        newest = self.source.events[-self.page_size:]
        items = "\n".join(
            f'<li data-id="{e.id}" data-t="{e.t}">{html.escape(e.text)}</li>' for e in reversed(newest))
        body = _PAGE.format(refresh=self.refresh, items=items, count=len(self.source.events))
        return web.Response(text=body, content_type="text/html")

    async def _events(self, request: web.Request) -> web.Response:
        since = self._int_param(request.query.get("since"), "since")
        wait = self._wait_param(request.query.get("wait"))
        if wait > 0:
            events = await self.source.wait_after(since, wait, self._stop)
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
            async for event in self.source.follow(since, self._stop):
                await response.write(format_sse(event).encode())
        except (ConnectionError, RuntimeError):  # the client went away
            pass
        return response

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        since = self._int_param(request.query.get("since"), "since")
        ws = web.WebSocketResponse(compress=False, heartbeat=None, timeout=2.0)
        await ws.prepare(request)
        self._sockets.add(ws)
        pusher = asyncio.create_task(self._push(ws, since))
        try:
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    await self._upstream(ws, message.data)
                elif message.type == aiohttp.WSMsgType.ERROR:
                    break
                else:
                    await ws.send_str(compact_json({"error": "send JSON text messages"}))
        finally:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pusher
            self._sockets.discard(ws)
        return ws

    async def _push(self, ws: web.WebSocketResponse, since: int) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            async for event in self.source.follow(since, self._stop):
                await ws.send_str(compact_json(event.to_json()))

    async def _upstream(self, ws: web.WebSocketResponse, text: str) -> None:
        now = time.perf_counter_ns()
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            message = {}
        if isinstance(message.get("ack"), int) and isinstance(message.get("t"), int):
            self.stats.upstream_messages += 1
            self.stats.upstream_latencies_ms.append((now - message["t"]) / 1e6)
        elif isinstance(message.get("post"), str) and message["post"] and not self.source.closed:
            self.stats.upstream_messages += 1
            self.stats.posts += 1
            self.source.publish(message["post"][:200])
        else:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(compact_json(
                    {"error": 'expected {"ack": N, "t": ns} or {"post": "text"}'}))


# --------------------------------------------------------------------------- clients

class Collector:
    """What a client received: first-receipt latency per event, empty answers."""

    def __init__(self) -> None:
        self.latencies_ms: dict[int, float] = {}
        self.empty = 0
        self.ready = asyncio.Event()
        self.complete = asyncio.Event()
        self._expect: int | None = None

    @property
    def highest(self) -> int:
        return max(self.latencies_ms, default=0)

    def receive(self, events: list[Event]) -> int:
        """Record a batch received now; return how many events were new."""
        now = time.perf_counter_ns()
        new = 0
        for event in events:
            if event.id not in self.latencies_ms:
                self.latencies_ms[event.id] = (now - event.t) / 1e6
                new += 1
        if not new:
            self.empty += 1
        self._check()
        return new

    def expect(self, last_id: int) -> None:
        """Set :attr:`complete` once the event ``last_id`` has been received."""
        self._expect = last_id
        self._check()

    def _check(self) -> None:
        if self._expect is not None and self.highest >= self._expect:
            self.complete.set()


async def _ticker(interval: float, step: Callable[[], Awaitable[None]]) -> None:
    """Call ``step`` at a fixed rate (like ``setInterval``), never overlapping."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    ticks = 0
    while True:
        await step()
        ticks += 1
        await asyncio.sleep(max(0.0, start + ticks * interval - loop.time()))


async def reload_client(url: str, collector: Collector, settings: Settings) -> None:
    """GET the full page every ``reload_interval`` and read the events it lists."""
    collector.ready.set()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async def step() -> None:
            async with session.get(url + "/") as response:
                response.raise_for_status()
                collector.receive(parse_page(await response.text()))
        await _ticker(settings.reload_interval, step)


async def polling_client(url: str, collector: Collector, settings: Settings) -> None:
    """AJAX short polling: ``GET /events?since=N`` every ``poll_interval``."""
    collector.ready.set()
    since = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async def step() -> None:
            nonlocal since
            async with session.get(url + "/events", params={"since": since}) as response:
                response.raise_for_status()
                events = [Event.from_json(item) for item in await response.json()]
            collector.receive(events)
            if events:
                since = events[-1].id
        await _ticker(settings.poll_interval, step)


async def long_polling_client(url: str, collector: Collector, settings: Settings) -> None:
    """Long polling: each request waits at the server for news; ask again at once."""
    collector.ready.set()
    since = 0
    timeout = aiohttp.ClientTimeout(total=settings.long_poll_wait + 10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            params = {"since": since, "wait": settings.long_poll_wait}
            async with session.get(url + "/events", params=params) as response:
                response.raise_for_status()
                events = [Event.from_json(item) for item in await response.json()]
            collector.receive(events)
            if events:
                since = events[-1].id


async def sse_client(url: str, collector: Collector, settings: Settings) -> None:
    """Server-Sent Events: read one never-ending ``text/event-stream`` response."""
    parser = SSEParser()
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        headers = {"Accept": "text/event-stream"}
        async with session.get(url + "/stream", headers=headers) as response:
            response.raise_for_status()
            collector.ready.set()
            async for raw in response.content:
                message = parser.feed_line(raw.decode())
                if message is not None and message.event == "news":
                    collector.receive([Event.from_json(json.loads(message.data))])


async def websocket_client(url: str, collector: Collector, settings: Settings,
                           upstream: list[int] | None = None) -> None:
    """WebSocket: receive pushed events; stream cumulative acks *up* on the same socket.

    Args:
        upstream: if given, the number of messages sent up is appended to it at the end.
    """
    ws_url = url.replace("http://", "ws://", 1) + "/ws"
    sent = 0
    async with ws_connect(ws_url, compression=None, open_timeout=5, close_timeout=2,
                          ping_interval=None) as ws:
        collector.ready.set()

        async def ack() -> None:
            nonlocal sent
            acked = 0
            while True:
                await asyncio.sleep(settings.ack_interval)
                if collector.highest > acked:
                    acked = collector.highest
                    await ws.send(compact_json({"ack": acked, "t": time.perf_counter_ns()}))
                    sent += 1

        acker = asyncio.create_task(ack())
        try:
            async for raw in ws:
                message = json.loads(raw)
                if "error" in message:
                    raise RuntimeError(f"the server said: {message['error']}")
                collector.receive([Event.from_json(message)])
        except ConnectionClosed:
            pass
        finally:
            acker.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await acker
            if upstream is not None:
                upstream.append(sent)


CLIENTS: dict[str, Callable[[str, Collector, Settings], Awaitable[None]]] = {
    "reload": reload_client,
    "polling": polling_client,
    "long-polling": long_polling_client,
    "sse": sse_client,
    "websocket": websocket_client,
}


# --------------------------------------------------------------------------- one trial

class _Trial:
    """One strategy: server -> counting proxy -> client, on a given source."""

    def __init__(self, strategy: str, source: NewsSource, settings: Settings) -> None:
        self.strategy = strategy
        self.source = source
        self.settings = settings
        self.server = EventServer(source, max_wait=max(settings.long_poll_wait, 1.0),
                                  page_size=settings.page_size, refresh=settings.reload_interval)
        self.proxy: CountingProxy | None = None
        self.collector = Collector()
        self.task: asyncio.Task | None = None
        self.error: BaseException | None = None

    async def start(self) -> None:
        await self.server.start()
        self.proxy = await CountingProxy(self.server.port).start()
        client = CLIENTS[self.strategy]
        self.task = asyncio.create_task(client(f"http://{HOST}:{self.proxy.port}", self.collector,
                                               self.settings))
        waiter = asyncio.create_task(self.collector.ready.wait())
        await asyncio.wait({waiter, self.task}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self.task.done():
            self.task.result()  # raise what went wrong
        if not self.collector.ready.is_set():
            raise TimeoutError(f"{self.strategy} client did not connect within 5 s")

    async def stop_client(self) -> None:
        if self.task is None:
            return
        if self.task.done() and not self.task.cancelled() and self.task.exception() is not None:
            self.error = self.task.exception()
        self.task.cancel()
        await asyncio.wait({self.task}, timeout=5)
        self.task = None

    async def close(self) -> None:
        await self.stop_client()
        await self.server.close()
        if self.proxy is not None:
            await self.proxy.close()

    def result(self, emitted: int) -> Result:
        lat = list(self.collector.latencies_ms.values())
        stats = self.server.stats
        up, down = self.proxy.bytes_up, self.proxy.bytes_down
        events = len(lat)
        empty = self.collector.empty if self.strategy in ("reload", "polling", "long-polling") else 0
        return Result(
            strategy=self.strategy, setting=self.settings.describe(self.strategy),
            events=events, emitted=emitted,
            p50_ms=_round(percentile(lat, 50)), p95_ms=_round(percentile(lat, 95)),
            max_ms=_round(max(lat, default=None)),
            http_requests=stats.http_requests, empty_responses=empty,
            connections=self.proxy.connections, bytes_up=up, bytes_down=down,
            bytes_per_event=_round((up + down) / events if events else None, 1),
            upstream_messages=stats.upstream_messages,
            upstream_p50_ms=_round(percentile(stats.upstream_latencies_ms, 50)),
        )


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


async def _run(strategies: list[str], sources: list[NewsSource], duration: float,
               settings: Settings) -> list[Result]:
    """Run the trials of ``strategies`` at once; ``sources[i]`` feeds ``strategies[i]``."""
    trials = [_Trial(s, src, settings) for s, src in zip(strategies, sources)]
    try:
        for trial in trials:
            await trial.start()
        distinct = list(dict.fromkeys(sources))
        runs = [asyncio.create_task(src.run(duration)) for src in distinct]
        async with asyncio.timeout(duration + 10):
            await asyncio.gather(*runs)
        grace = max(settings.reload_interval, settings.poll_interval) + 1.0
        for trial in trials:
            trial.collector.expect(trial.source.last_id)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await asyncio.gather(*(t.collector.complete.wait() for t in trials))
        for trial in trials:
            await trial.stop_client()
            if trial.error is not None:
                raise RuntimeError(f"the {trial.strategy} client failed: {trial.error!r}") from trial.error
        return [trial.result(len(trial.source.events)) for trial in trials]
    finally:
        for trial in trials:
            await trial.close()
        for source in sources:
            source.close()


def _check_names(strategies: list[str]) -> None:
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; choose among {list(STRATEGIES)}")


async def measure_all(duration: float = 12.0, seed: int = 1, settings: Settings | None = None,
                      strategies: list[str] | None = None, concurrent: bool = True) -> list[Result]:
    """Measure every strategy on the same seeded event schedule.

    Args:
        duration: seconds during which the source emits events (then up to
            ``max(reload_interval, poll_interval) + 1`` s of grace for late deliveries).
        seed: seed of the event schedule (same seed, same instants and headlines).
        settings: intervals and sizes; :class:`Settings` defaults if None.
        strategies: a subset of :data:`STRATEGIES` (all by default).
        concurrent: True runs all strategies at once on ONE source (fast: the same events
            reach the five clients); False runs them one after the other, each on a fresh
            source with the same seed (slower, no interference on a busy machine).

    Returns:
        One :class:`Result` per strategy, in the order of ``strategies``.

    Raises:
        ValueError: unknown strategy, or ``duration`` not within (0, 300].
    """
    settings = settings or Settings()
    strategies = list(strategies or STRATEGIES)
    _check_names(strategies)
    if not (isinstance(duration, (int, float)) and 0 < duration <= 300):
        raise ValueError(f"duration must be within (0, 300] seconds, got {duration!r}")
    if concurrent:
        source = NewsSource(seed, settings.mean_interval)
        return await _run(strategies, [source] * len(strategies), duration, settings)
    results = []
    for strategy in strategies:
        source = NewsSource(seed, settings.mean_interval)
        results += await _run([strategy], [source], duration, settings)
    return results


async def run_strategy(name: str, duration: float = 5.0, seed: int = 1,
                       settings: Settings | None = None) -> Result:
    """Measure one strategy alone (its own server, proxy, client and source).

    Raises:
        ValueError: unknown ``name`` or bad ``duration``.
    """
    return (await measure_all(duration, seed, settings, [name], concurrent=False))[0]


# --------------------------------------------------------------------------- one captured poll

@dataclass(frozen=True)
class Exchange:
    """The exact bytes of one HTTP request and its response, as TCP carried them."""

    request: bytes
    response: bytes

    @staticmethod
    def _split(message: bytes) -> tuple[bytes, bytes]:
        head, sep, body = message.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("no blank line (CRLF CRLF) ends the header block")
        return head + sep, body

    @property
    def request_head(self) -> bytes:
        """Request line + headers + blank line."""
        return self._split(self.request)[0]

    @property
    def response_head(self) -> bytes:
        """Status line + headers + blank line."""
        return self._split(self.response)[0]

    @property
    def response_body(self) -> bytes:
        return self._split(self.response)[1]


async def capture_empty_poll() -> Exchange:
    """Make one AJAX poll that finds nothing new and return the bytes both ways.

    A quiet :class:`NewsSource`, an :class:`EventServer`, a :class:`CountingProxy` and
    an aiohttp client are started and all closed again before returning.
    """
    source = NewsSource()
    server = await EventServer(source).start()
    proxy = None
    try:
        proxy = await CountingProxy(server.port).start()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            async with session.get(f"http://{HOST}:{proxy.port}/events", params={"since": 0}) as r:
                r.raise_for_status()
                await r.read()
        # the proxy records bytes before relaying them, so both directions are complete here
        if len(proxy.captures) != 1:
            raise RuntimeError(f"expected 1 proxied connection, saw {len(proxy.captures)}")
        capture = proxy.captures[0]
        return Exchange(bytes(capture.up), bytes(capture.down))
    finally:
        await server.close()
        if proxy is not None:
            await proxy.close()
        source.close()


# --------------------------------------------------------------------------- presenting

COLUMNS = ("strategy", "events", "p50_ms", "p95_ms", "http_requests", "empty_responses",
           "bytes_per_event", "setting")


def table(results: list[Result]) -> str:
    """A plain-text table of ``results``, one row per strategy."""
    head = ("strategy", "events", "p50 ms", "p95 ms", "requests", "empty", "bytes/event", "setting")
    rows = [head]
    for r in results:
        rows.append((r.strategy, f"{r.events}/{r.emitted}", _fmt(r.p50_ms), _fmt(r.p95_ms),
                     str(r.http_requests), str(r.empty_responses), _fmt(r.bytes_per_event, 0),
                     r.setting))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:-1], widths[1:-1])]
        lines.append("  ".join(cells + [row[-1]]))
    return "\n".join(lines)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def plot(results: list[Result]):
    """Three bar charts: latency (p50 bar, p95 tick, log scale), HTTP requests, bytes/event.

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    names = [r.strategy for r in results]
    x = range(len(results))
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.8))
    p50 = [r.p50_ms or 0 for r in results]
    p95 = [r.p95_ms or 0 for r in results]
    ax1.bar(x, p50, color="tab:blue", label="p50")
    ax1.scatter(x, p95, color="tab:red", marker="_", s=400, label="p95", zorder=3)
    ax1.set_yscale("log")
    ax1.set_title("delivery latency (ms, log)")
    ax1.legend()
    ax2.bar(x, [r.http_requests for r in results], color="tab:orange")
    ax2.set_yscale("log")
    ax2.set_title("HTTP requests (log)")
    ax3.bar(x, [r.bytes_per_event or 0 for r in results], color="tab:green")
    ax3.set_title("bytes on the wire per event")
    for ax in (ax1, ax2, ax3):
        ax.set_xticks(list(x), names, rotation=30)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    """``python -m course.measure.transports [--json] [--duration S] [--seed N] [--sequential]``."""
    parser = argparse.ArgumentParser(prog="python -m course.measure.transports", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print a JSON list, one object per strategy")
    parser.add_argument("--duration", type=float, default=12.0,
                        help="seconds of events (default 12; total run about duration + 4 s)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the event schedule (default 1)")
    parser.add_argument("--sequential", action="store_true",
                        help="one strategy after the other (5x slower, no interference)")
    args = parser.parse_args(argv)
    if not (math.isfinite(args.duration) and 0 < args.duration <= 120):
        parser.error(f"--duration must be within (0, 120] seconds, got {args.duration}")
    start = time.perf_counter()
    results = asyncio.run(measure_all(args.duration, args.seed, concurrent=not args.sequential))
    wall = time.perf_counter() - start
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        settings = Settings()
        mode = "one after the other" if args.sequential else "all at once on one source"
        print(f"{len(results)} strategies, {mode}: events for {args.duration:g} s, "
              f"seed {args.seed}, mean {settings.mean_interval * 1000:.0f} ms between events")
        print(table(results))
        print(f"bytes are counted at the TCP level, both ways, headers included; wall time {wall:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
