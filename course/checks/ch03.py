"""Self-checks for chapter 3: push and broadcast with real servers and clients.

Every case starts a real ``websockets`` server on ``127.0.0.1`` port 0 that runs the
student's handler, connects real clients, and bounds every wait.  The student's code
runs inside a wrapper, so an exception in it (``NotImplementedError`` in a stub
included) becomes a ❌ line, never a traceback or a "connection handler failed" log.

Used by ``solutions/03_push_and_broadcast.ipynb``::

    await check_push_news(push_news)
    await check_broadcast_handler(broadcast_handler, CLIENTS)
    await stop_all()          # last cell: nothing the checks started is left running
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from course.checks import acheck, expect, expect_equal, summary

__all__ = ["Handler", "check_push_news", "check_broadcast_handler", "stop_all"]

Handler = Callable[[ServerConnection], Awaitable[None]]

_servers: set[Server] = set()
_clients: set[ClientConnection] = set()


class _Recorder:
    """Wraps the student's handler: records how each call ended instead of logging it."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.errors: list[BaseException] = []
        self.finished = 0
        self.started_at: list[float] = []
        self.ended_at: list[float] = []

    async def __call__(self, websocket: ServerConnection) -> None:
        self.started_at.append(time.monotonic())
        try:
            result = self.handler(websocket)
            if not asyncio.iscoroutine(result) and not isinstance(result, asyncio.Future):
                raise TypeError("the handler must be an `async def` function "
                                f"(calling it returned {type(result).__name__})")
            await result
        except ConnectionClosed:
            pass  # the client left: a normal way for a handler to end
        except BaseException as error:  # noqa: BLE001 - reported by the check instead
            self.errors.append(error)
        finally:
            self.ended_at.append(time.monotonic())
            self.finished += 1

    def raise_first(self) -> None:
        """Re-raise the first error the student's handler raised, if any."""
        if self.errors:
            raise self.errors[0]


@contextlib.asynccontextmanager
async def _server(handler: Handler) -> AsyncIterator[str]:
    server = await serve(handler, "127.0.0.1", 0, ping_interval=None, close_timeout=1)
    _servers.add(server)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3):
                await server.wait_closed()
        _servers.discard(server)


async def _connect(url: str) -> ClientConnection:
    client = await connect(url, open_timeout=3, close_timeout=1)
    _clients.add(client)
    return client


async def _close(*clients: ClientConnection) -> None:
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    for c in clients:
        _clients.discard(c)


async def _receive_all(client: ClientConnection, limit: float, messages: list) -> None:
    """Append to ``messages`` everything ``client`` receives until the server closes.

    Raises:
        TimeoutError: still open after ``limit`` s (``messages`` keeps what arrived).
    """
    async with asyncio.timeout(limit):
        try:
            async for message in client:
                messages.append(message)
        except ConnectionClosed:
            pass


async def _nothing_arrives(client: ClientConnection, wait: float) -> Any:
    """Return ``None`` if nothing arrives within ``wait`` s, else what arrived."""
    try:
        async with asyncio.timeout(wait):
            return await client.recv()
    except TimeoutError:
        return None


async def _until(condition: Callable[[], bool], limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(what)
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def _loop_ticks(tick: float = 0.01) -> AsyncIterator[list[float]]:
    """Record when a ticker task runs (``time.monotonic()``) while the body runs.

    While a coroutine waits with ``await asyncio.sleep``, the loop runs other tasks: the
    ticker keeps ticking, slower on a busy machine but never not at all. Blocking code
    (``time.sleep``, a busy loop) freezes the whole loop: no tick at all meanwhile.
    """
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            await asyncio.sleep(tick)
            ticks.append(time.monotonic())

    task = asyncio.create_task(ticker())
    try:
        yield ticks
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --------------------------------------------------------------------------- push_news


class _TimedSocket:
    """Passes everything to the real connection; notes when ``send`` is called.

    Timing the sends on the server side keeps the pacing check honest on a
    loaded machine: a client that reads late can see two messages at once, but
    ``asyncio.sleep`` never lets two sends happen closer than ``interval``.
    """

    def __init__(self, websocket: ServerConnection) -> None:
        self._websocket = websocket
        self.send_times: list[float] = []

    async def send(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self.send_times.append(time.monotonic())
        await self._websocket.send(message, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._websocket, name)

    def __aiter__(self):
        return self._websocket.__aiter__()


async def _push_case(push_news: Callable, items: list[str], interval: float,
                     limit: float = 5.0) -> tuple[list[Any], list[float], _Recorder]:
    sockets: list[_TimedSocket] = []

    def start(websocket: ServerConnection):
        sockets.append(_TimedSocket(websocket))
        return push_news(sockets[-1], list(items), interval)

    recorder = _Recorder(start)
    async with _server(recorder) as url:
        client = await _connect(url)
        messages: list[Any] = []
        try:
            await _receive_all(client, limit, messages)
        except TimeoutError:
            recorder.raise_first()
            raise AssertionError(
                f"the connection was still open {limit:.0f} s later, after {len(messages)} "
                "message(s): does push_news return after the last item?") from None
        finally:
            await _close(client)
    recorder.raise_first()
    times = sockets[0].send_times if sockets else []
    return messages, times, recorder


async def check_push_news(push_news: Callable) -> bool:
    """Check ``async def push_news(websocket, items, interval)``.

    Expected behaviour: send each string of ``items`` as one text message, in
    order, waiting ``interval`` seconds between two messages, then return (the
    server closes the connection when the handler returns).  If the client
    leaves, ``send`` raises ``ConnectionClosed``: let it end the function.
    """
    items = ["RFC 6455 published", "Browsers ship WebSocket", "Polling retires"]

    async def in_order():
        messages, _, _ = await _push_case(push_news, items, 0.01)
        expect_equal(messages, items, "messages received")

    async def empty():
        messages, _, _ = await _push_case(push_news, [], 0.01)
        expect_equal(messages, [], "messages received for items=[]")

    async def any_text():
        texts = ["", "héllo ✓ 🚀", "x" * 70_000]
        messages, _, _ = await _push_case(push_news, texts, 0.0)
        expect_equal([len(m) for m in messages], [len(t) for t in texts], "lengths received")
        expect(all(isinstance(m, str) for m in messages),
               "each item must arrive as a text message (send the str itself, not bytes)")
        expect_equal(messages, texts, "messages received")

    async def paced():
        interval = 0.2
        async with _loop_ticks() as ticks:
            messages, times, recorder = await _push_case(push_news, ["a", "b", "c", "d"], interval)
        expect_equal(messages, ["a", "b", "c", "d"], "messages received")
        expect_equal(len(times), 4, "calls to websocket.send")
        # How often the loop ran other tasks during each wait between two sends: about 20
        # times for a 10 ms ticker in 0.2 s (still ~19 with 4 busy processes on 2 cores);
        # 0, or 1 if the send itself yields, when the wait blocks the loop.
        ran = [sum(earlier < t < later for t in ticks) for earlier, later in zip(times, times[1:])]
        expect(sum(n >= 3 for n in ran) >= 2,
               f"while push_news waited between two messages, the event loop ran nothing else "
               f"(other tasks ran {ran} times in the 3 waits): a blocking wait (time.sleep) "
               "freezes every other task of the kernel, other clients and keepalive pings included")
        gaps = [later - earlier for earlier, later in zip(times, times[1:])]
        expect(min(gaps) >= 0.9 * interval,
               f"two messages were sent {min(gaps) * 1000:.0f} ms apart; expected at least "
               f"{interval * 1000:.0f} ms between two sends")
        before_first = times[0] - recorder.started_at[0]
        expect(before_first < 0.5 * interval,
               f"the first item left {before_first * 1000:.0f} ms after the client connected: "
               "wait between two messages, not before the first")
        after_last = recorder.ended_at[0] - times[-1]
        expect(after_last < 0.5 * interval,
               f"push_news returned {after_last * 1000:.0f} ms after sending the last item: "
               "wait between two messages, not after the last (the client waits for nothing)")

    async def stops_when_client_leaves():
        recorder = _Recorder(lambda ws: push_news(ws, [f"item {i}" for i in range(200)], 0.02))
        async with _server(recorder) as url:
            client = await _connect(url)
            try:
                async with asyncio.timeout(3):
                    first = await client.recv()
            except ConnectionClosed:
                recorder.raise_first()
                raise AssertionError("the server closed the connection before the first item") from None
            expect_equal(first, "item 0", "first message")
            await _close(client)
            try:
                await _until(lambda: recorder.finished == 1, 2.0, "")
            except AssertionError:
                raise AssertionError("push_news kept running for 2 s after the client left "
                                     "(don't swallow ConnectionClosed)") from None
        recorder.raise_first()

    results = [
        await acheck("pushes every item, in order", in_order,
                     hint="one text message per item, in the order of `items` "
                          "(not the list itself, not the items joined)."),
        await acheck("no items: sends nothing and returns", empty),
        await acheck("any text: empty, non-ASCII, 70 000 characters", any_text, timeout=10),
        await acheck("waits `interval` seconds between two messages", paced, timeout=10,
                     hint="wait without blocking the event loop, and only between two "
                          "messages (the exercise text says how)."),
        await acheck("stops when the client leaves", stops_when_client_leaves, timeout=10,
                     hint="let ConnectionClosed propagate out of push_news."),
    ]
    return summary(results, "push_news")


# --------------------------------------------------------------------------- broadcast


async def check_broadcast_handler(broadcast_handler: Handler, clients: set) -> bool:
    """Check a broadcasting handler that registers connections in ``clients``.

    Expected behaviour: add the connection to ``clients``; relay every message it
    sends to every *other* connection in ``clients`` (the sender does not get its
    own message back), in order; remove the connection when it leaves, however it
    leaves; a peer that vanished must not stop the relay to the others.

    Args:
        broadcast_handler: the student's ``async def broadcast_handler(websocket)``.
        clients: the set the handler registers connections in.  The check empties
            it before each case (connections of earlier runs are gone anyway).
    """

    async def with_clients(n: int, recorder: _Recorder, url: str) -> list[ClientConnection]:
        conns = [await _connect(url) for _ in range(n)]
        try:
            await _until(lambda: len(clients) == n or recorder.errors, 2.0, "")
            recorder.raise_first()  # the handler failed: say why at once
        except AssertionError:
            recorder.raise_first()
            raise AssertionError(f"{n} clients connected but the set holds {len(clients)}") from None
        return conns

    async def run(case: Callable[[str, _Recorder], Awaitable[None]]) -> None:
        if not isinstance(clients, set):
            raise AssertionError(f"pass the set of clients, got {type(clients).__name__}")
        clients.clear()
        recorder = _Recorder(broadcast_handler)
        try:
            async with _server(recorder) as url:
                await case(url, recorder)
        finally:
            for c in list(_clients):
                await _close(c)
            clients.clear()
        recorder.raise_first()

    async def registers(url, recorder):
        conns = [await _connect(url) for _ in range(3)]
        try:
            await _until(lambda: len(clients) == 3 or recorder.errors, 2.0, "")
            recorder.raise_first()
        except AssertionError:
            recorder.raise_first()
            raise AssertionError(f"3 clients connected but the set holds {len(clients)} "
                                 "(add the websocket to the set first thing)") from None
        expect(all(isinstance(c, ServerConnection) for c in clients),
               "the set must hold the server-side websocket objects")
        await _close(*conns)

    async def relays_to_others(url, recorder):
        a, b, c = await with_clients(3, recorder, url)
        await a.send("hello from A")
        for name, conn in (("B", b), ("C", c)):
            try:
                async with asyncio.timeout(2):
                    got = await conn.recv()
            except TimeoutError:
                recorder.raise_first()
                raise AssertionError(f"{name} received nothing within 2 s") from None
            expect_equal(got, "hello from A", f"what {name} received")
        echoed = await _nothing_arrives(a, 0.3)
        expect(echoed is None, f"the sender got its own message back ({echoed!r}): "
                               "relay to the *other* clients only")

    async def keeps_order(url, recorder):
        a, b, c = await with_clients(3, recorder, url)
        sent = [f"m{i}" for i in range(30)]
        for text in sent:
            await a.send(text)
        await b.send("from B")
        async with asyncio.timeout(3):
            got_b = [await b.recv() for _ in sent]
            got_c = [await c.recv() for _ in range(len(sent) + 1)]
            got_a = await a.recv()
        expect_equal(got_b, sent, "B's messages")
        # A's messages keep A's order; B's message may come anywhere among them.
        expect_equal([m for m in got_c if m != "from B"], sent, "C's messages from A")
        expect("from B" in got_c, "C did not receive B's message")
        expect_equal(got_a, "from B", "what A received from B")

    async def forgets_leavers(url, recorder):
        a, b, c = await with_clients(3, recorder, url)
        await _close(c)
        try:
            await _until(lambda: len(clients) == 2, 2.0, "")
        except AssertionError:
            raise AssertionError(f"a client left but the set still holds {len(clients)} "
                                 "(remove it in a `finally:` block)") from None
        b.transport.abort()  # vanishes without a close frame
        try:
            await _until(lambda: len(clients) == 1, 2.0, "")
        except AssertionError:
            raise AssertionError("a client whose connection broke (no close frame) is still "
                                 "in the set: ConnectionClosedError must remove it too") from None

    async def survives_vanished_peer(url, recorder):
        a, b, *gone = await with_clients(6, recorder, url)
        for conn in gone:
            conn.transport.abort()  # they vanish while A is talking
        for i in range(5):
            await a.send(f"after {i}")
            await asyncio.sleep(0)
        try:
            async with asyncio.timeout(3):
                got = [await b.recv() for _ in range(5)]
        except (TimeoutError, ConnectionClosed):
            recorder.raise_first()
            raise AssertionError("B stopped receiving after other clients vanished "
                                 "(sending to a closed connection raised in A's handler?)") from None
        expect_equal(got, [f"after {i}" for i in range(5)], "B's messages")
        expect(not recorder.errors, f"a handler raised {recorder.errors[:1]!r}")

    results = [
        await acheck("registers each connected client in the set", lambda: run(registers)),
        await acheck("relays a message to the others, not to the sender",
                      lambda: run(relays_to_others),
                      hint="for each `client` in the set except `websocket`: send the message."),
        await acheck("keeps each sender's order; several senders", lambda: run(keeps_order)),
        await acheck("removes clients that leave, cleanly or not", lambda: run(forgets_leavers),
                     hint="remove the connection however its loop ends: a `finally:` block "
                          "runs after a clean close and after an error alike."),
        await acheck("clients vanishing mid-broadcast don't break the others",
                     lambda: run(survives_vanished_peer), timeout=10,
                     hint="`broadcast(others, message)` (imported above) skips closed connections; "
                          "or catch ConnectionClosed per client, and iterate over a copy of the set."),
    ]
    return summary(results, "broadcast_handler")


async def stop_all() -> str:
    """Close any server or client a check left behind (e.g. after an interrupt)."""
    clients, servers = list(_clients), list(_servers)
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    for server in servers:
        server.close()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            await asyncio.gather(*(s.wait_closed() for s in servers), return_exceptions=True)
    _clients.difference_update(clients)
    _servers.difference_update(servers)
    return f"nothing left running by the checks: {not _clients and not _servers}"
