"""The five clients of the transports experiment, and the :class:`Collector` they fill.

Each client is a coroutine ``client(url, collector, settings)`` that runs until cancelled;
``url`` is ``http://127.0.0.1:PORT`` (the relay in front of an
:class:`~course.measure.transports.server.EventServer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable

import aiohttp
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from course.demo.news import Event
from course.measure.transports.config import Settings, compact_json
from course.measure.transports.page import parse_page
from course.wire.envelope import Kind
from course.wire.sse import SSEParser

__all__ = ["Collector", "reload_client", "polling_client", "long_polling_client", "sse_client",
           "websocket_client", "CLIENTS"]


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

    Raises:
        RuntimeError: the server refused a message (the envelope's ``{"type": "error"}``).
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
                if isinstance(message, dict) and message.get("type") == Kind.ERROR.value:
                    raise RuntimeError(f"the server refused a message ({message.get('code')}): "
                                       f"{message.get('error')}")
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
