"""Broadcast with bounded queues, and the rule that decides when a client is too slow.

This is the transport-agnostic core of a broadcast hub, after gorilla/websocket's chat
example: every client gets a bounded send queue (an :class:`Outbox`) drained by its own
writer task, and the :class:`Fanout` relays each message into every queue.  It knows
nothing of ``websockets`` or ``aiohttp``: a client is three callables, a coroutine that
sends one text, a coroutine that closes with a code and a reason, and a function that
aborts the TCP connection.  ``course.live.Hub`` (``websockets``) and ``course.chat``
(``aiohttp``) both broadcast through it.

**The slow-client rule.**  A burst is not a slow client: twelve messages arriving at once
fill a queue of eight for a few milliseconds, then the writer drains it.  So a client is
too slow only when its backlog *lasts*:

* its queue filled up and has not drained back to half its size for longer than the
  grace period (:data:`Verdict.QUEUE_FULL`); or
* its queue has room but its transport's write buffer has stayed above ``max_buffered``
  bytes for longer than the grace period (:data:`Verdict.BUFFER_FULL`: one big message
  stuck in front of a reader that stopped).

:func:`observe` and :func:`judge` are that rule as two pure functions (no I/O, no clock);
:class:`Fanout` runs them in a thin watchdog loop and closes a slow client with 1008.

**Backpressure absorbs bursts.**  When a queue is full, :meth:`Fanout.broadcast` does not
drop anybody: it hands the message to every client that has room, then *waits* for room in
the full queues.  The connection handler awaiting ``broadcast`` stops reading its sender
meanwhile, so TCP slows the sender down to what the readers drain.  The wait is bounded:
a queue that stays full past the grace period gets its client dropped, which frees the
waiter.  Memory stays bounded (``queue_size`` messages per client), a burst of any length
is delivered to everyone who reads, and while one client stalls the others wait at most
about one grace period, once, instead of for as long as it stalls.

**Closing is bounded.**  A peer that reads nothing never answers a close frame, and the
close frame itself may sit behind megabytes it will never read.  :func:`close_within`
gives every close a deadline and then aborts the transport, so stopping always ends.

Layering: this module uses only asyncio and sockets; servers build on it.
"""

from __future__ import annotations

import asyncio
import enum
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "Verdict", "Event", "Backlog", "SlowRule", "observe", "judge", "close_within",
    "Outbox", "Fanout", "stalled_reader", "SLOW_CLOSE_CODE", "GOING_AWAY",
]

SLOW_CLOSE_CODE = 1008   #: policy violation: the code a too-slow client is closed with
GOING_AWAY = 1001        #: the server is stopping


class Verdict(str, enum.Enum):
    """What the slow-client rule says about one client."""

    KEEPING_UP = "keeping up"
    QUEUE_FULL = "send queue full"
    BUFFER_FULL = "write buffer full"

    @property
    def close_reason(self) -> str:
        """The close reason a client dropped for this verdict receives."""
        return f"too slow: {self.value}"


class Event(str, enum.Enum):
    """What :class:`Fanout` reports to its ``on_event`` callback (as the plain value)."""

    JOIN = "join"
    LEAVE = "leave"
    DROP = "drop"


@dataclass(frozen=True)
class Backlog:
    """The history the rule needs about one client.

    Attributes:
        full_since: when its queue filled up, or ``None`` if it has drained back to
            half its size since (or never filled).
        over_since: when its write buffer went above the bound, or ``None`` if it was
            at or below the bound at the last observation.
    """

    full_since: float | None = None
    over_since: float | None = None


@dataclass(frozen=True)
class SlowRule:
    """The parameters of the slow-client rule.

    Args:
        grace: seconds a backlog may last before the client counts as too slow.
        max_buffered: bytes a transport's write buffer may hold for longer than
            ``grace`` while the queue has room.

    Raises:
        ValueError: ``grace`` not positive, or ``max_buffered`` negative.
    """

    grace: float = 1.0
    max_buffered: int = 256 * 1024

    def __post_init__(self) -> None:
        if not self.grace > 0:
            raise ValueError(f"grace must be > 0 seconds, got {self.grace}")
        if self.max_buffered < 0:
            raise ValueError(f"max_buffered must be >= 0 bytes, got {self.max_buffered}")


def observe(backlog: Backlog, *, queued: int, capacity: int, buffered: int,
            max_buffered: int, now: float) -> Backlog:
    """Update a client's history with what its queue and buffer hold at ``now``.

    A queue counts as backed up from the moment it is full until it has drained to
    half its size (``capacity // 2``): a writer that keeps up empties it right after a
    burst, while a writer that trickles one message out as the next one comes in keeps
    it full.

    Args:
        backlog: the history so far.
        queued: messages waiting in the queue now.
        capacity: the queue's size.
        buffered: bytes in the transport's write buffer now.
        max_buffered: the bound on ``buffered``.
        now: the current time, in seconds (any monotonic clock).

    Returns:
        The new history (``backlog`` itself is not changed).
    """
    full_since = backlog.full_since
    if queued >= capacity:
        full_since = now if full_since is None else full_since
    elif queued <= capacity // 2:
        full_since = None
    over_since = backlog.over_since
    if buffered > max_buffered:
        over_since = now if over_since is None else over_since
    else:
        over_since = None
    return replace(backlog, full_since=full_since, over_since=over_since)


def judge(backlog: Backlog, *, now: float, grace: float) -> Verdict:
    """Is this client too slow?

    A backed-up queue is judged by how long it has been backed up; only a queue with room
    is judged by its write buffer (so a stalled client that fills both gets one stable
    verdict, :data:`Verdict.QUEUE_FULL`).

    Args:
        backlog: the client's history (see :func:`observe`).
        now: the current time, on the same clock.
        grace: seconds a backlog may last.

    Returns:
        :data:`Verdict.KEEPING_UP`, or why the client is too slow.
    """
    if backlog.full_since is not None:
        return Verdict.QUEUE_FULL if now - backlog.full_since > grace else Verdict.KEEPING_UP
    if backlog.over_since is not None and now - backlog.over_since > grace:
        return Verdict.BUFFER_FULL
    return Verdict.KEEPING_UP


async def close_within(close: Coroutine[Any, Any, Any], timeout: float | None,
                       abort: Callable[[], None]) -> bool:
    """Run a closing handshake for at most ``timeout`` seconds, then abort the transport.

    Args:
        close: the library's close coroutine (e.g. ``websocket.close(1008, "...")``).
        timeout: seconds the peer has to read what is in flight and answer; ``None``
            waits for as long as it takes.
        abort: drops the TCP connection at once (e.g. ``transport.abort``).

    Returns:
        ``True`` if the handshake ended in time, ``False`` if the transport was aborted.

    Raises:
        asyncio.CancelledError: the caller was cancelled (the transport is aborted first).
    """
    try:
        async with asyncio.timeout(timeout):
            await close
        return True
    except asyncio.CancelledError:
        abort()
        raise
    except Exception:  # noqa: BLE001 - timed out, or the connection broke while closing
        abort()
        return False


# --------------------------------------------------------------------------- one client


class Outbox:
    """One client's bounded send queue and its writer task (gorilla's ``writePump``).

    Args:
        name: how the client appears in events and logs (e.g. ``"127.0.0.1:50312"``).
        send: coroutine function sending one text message to the client.
        close: coroutine function ``close(code, reason)`` running the closing handshake.
        abort: function dropping the TCP connection at once.
        buffered: function returning the bytes in the transport's write buffer
            (``transport.get_write_buffer_size``); ``None`` counts as always 0.
        capacity: the queue's size (at least 1).
        rule: the slow-client rule.
        close_timeout: seconds :meth:`close` waits for the handshake before aborting.

    Raises:
        ValueError: ``capacity`` below 1.
    """

    def __init__(self, name: str, *, send: Callable[[str], Awaitable[Any]],
                 close: Callable[[int, str], Coroutine[Any, Any, Any]],
                 abort: Callable[[], None], buffered: Callable[[], int] | None = None,
                 capacity: int = 16, rule: SlowRule = SlowRule(),
                 close_timeout: float | None = 10.0) -> None:
        if capacity < 1:
            raise ValueError(f"queue size must be at least 1, got {capacity}")
        self.name = name
        self.capacity = capacity
        self.rule = rule
        self.close_timeout = close_timeout
        self.backlog = Backlog()
        self.sent = 0
        self._send, self._close, self._abort = send, close, abort
        self._buffered = buffered or (lambda: 0)
        self._queue: deque[str] = deque()
        self._has_items = asyncio.Event()
        self._has_room = asyncio.Event()
        self._has_room.set()
        self._writer: asyncio.Task | None = None
        self.closed = False

    def __repr__(self) -> str:
        return f"Outbox({self.name!r}, queued={len(self._queue)}/{self.capacity}, sent={self.sent})"

    @property
    def queued(self) -> int:
        """Messages waiting in the queue."""
        return len(self._queue)

    def _buffered_now(self) -> int:
        try:
            return self._buffered()
        except (AttributeError, OSError):  # the transport is already gone
            return 0

    def note(self, now: float | None = None) -> Backlog:
        """Record the queue's and the buffer's state now in :attr:`backlog` and return it."""
        now = asyncio.get_running_loop().time() if now is None else now
        self.backlog = observe(self.backlog, queued=len(self._queue), capacity=self.capacity,
                               buffered=self._buffered_now(),
                               max_buffered=self.rule.max_buffered, now=now)
        return self.backlog

    def verdict(self, now: float | None = None) -> Verdict:
        """Observe, then apply the rule: is this client too slow right now?"""
        now = asyncio.get_running_loop().time() if now is None else now
        return judge(self.note(now), now=now, grace=self.rule.grace)

    def start(self, on_gone: Callable[[Outbox], None]) -> None:
        """Start the writer task; ``on_gone(self)`` runs if a send fails (the peer left)."""
        if self._writer is None:
            self._writer = asyncio.create_task(self._pump(on_gone), name=f"writer {self.name}")

    def offer(self, text: str) -> bool:
        """Queue ``text`` if there is room, without waiting.

        Returns:
            ``False`` if the queue is full or the outbox is closed.
        """
        if self.closed or len(self._queue) >= self.capacity:
            return False
        self._queue.append(text)
        self._has_items.set()
        if len(self._queue) >= self.capacity:
            self._has_room.clear()
        self.note()
        return True

    async def put(self, text: str) -> bool:
        """Queue ``text``, waiting for room if the queue is full (backpressure).

        The wait ends when the writer makes room, or when the outbox is closed (for
        instance because the client was judged too slow).

        Returns:
            ``False`` if the outbox was closed before ``text`` could be queued.
        """
        while not self.offer(text):
            if self.closed:
                return False
            await self._has_room.wait()
        return True

    async def _pump(self, on_gone: Callable[[Outbox], None]) -> None:
        while True:
            await self._has_items.wait()
            if not self._queue:
                self._has_items.clear()
                continue
            text = self._queue.popleft()
            if not self._queue:
                self._has_items.clear()
            self._has_room.set()
            self.note()
            try:
                await self._send(text)
            except Exception:  # noqa: BLE001 - whatever the library raises, the peer is gone
                self.shut()
                on_gone(self)
                return
            self.sent += 1

    def shut(self) -> None:
        """Stop the writer, refuse new messages and release every waiting :meth:`put`."""
        self.closed = True
        self._queue.clear()
        self._has_room.set()
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()

    async def close(self, code: int, reason: str, timeout: float | None = None) -> bool:
        """Shut the outbox, then close the connection within a deadline.

        Args:
            code: the WebSocket close code (1008 for a slow client, 1001 when stopping).
            reason: the close reason, at most 123 bytes of UTF-8.
            timeout: seconds the peer has to answer (default: ``close_timeout``); after
                that the transport is aborted.

        Returns:
            ``True`` if the closing handshake ended in time, ``False`` if aborted.
        """
        self.shut()
        timeout = self.close_timeout if timeout is None else timeout
        try:
            if self._writer is not None:  # let a cancelled send unwind before closing
                await asyncio.gather(self._writer, return_exceptions=True)
        except asyncio.CancelledError:
            self._abort()
            raise
        return await close_within(self._close(code, reason), timeout, self._abort)


# --------------------------------------------------------------------------- the room


class Fanout:
    """Every client's outbox, and one broadcast that reaches them all (gorilla's ``Hub``).

    Args:
        queue_size: each client's queue size (at least 1).
        grace: seconds a client's backlog may last before it is dropped (see
            :func:`judge`).
        max_buffered: bytes a client's write buffer may hold for longer than ``grace``.
        close_timeout: seconds a closing client has to read its backlog and answer
            the close frame before its TCP connection is aborted (``None``: no limit).
        on_event: optional ``on_event(kind, name)``, ``kind`` an :class:`Event` value.

    Raises:
        ValueError: ``queue_size`` below 1, or a bad ``grace`` / ``max_buffered``.
    """

    def __init__(self, queue_size: int = 16, *, grace: float = 1.0,
                 max_buffered: int = 256 * 1024, close_timeout: float | None = 10.0,
                 on_event: Callable[[str, str], None] | None = None) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self.queue_size = queue_size
        self.rule = SlowRule(grace, max_buffered)
        self.close_timeout = close_timeout
        self.on_event = on_event
        self.clients: dict[Hashable, Outbox] = {}
        self.relayed = 0
        self.dropped: list[str] = []
        self._order = asyncio.Lock()
        self._watcher: asyncio.Task | None = None
        self._closing: set[asyncio.Task] = set()

    @property
    def grace(self) -> float:
        """Seconds a client's backlog may last before it is dropped."""
        return self.rule.grace

    def __len__(self) -> int:
        return len(self.clients)

    def _notify(self, kind: Event, name: str) -> None:
        if self.on_event is not None:
            self.on_event(kind.value, name)

    def join(self, key: Hashable, name: str, *, send: Callable[[str], Awaitable[Any]],
             close: Callable[[int, str], Coroutine[Any, Any, Any]], abort: Callable[[], None],
             buffered: Callable[[], int] | None = None,
             close_timeout: float | None = None) -> Outbox:
        """Add a client (see :class:`Outbox` for the callables) and start its writer.

        Args:
            key: what identifies the client later (usually its connection object).
            name: how it appears in events.
            close_timeout: overrides the fanout's ``close_timeout`` for this client.

        Returns:
            The client's outbox (queue a first message with ``outbox.offer``).
        """
        outbox = Outbox(name, send=send, close=close, abort=abort, buffered=buffered,
                        capacity=self.queue_size, rule=self.rule,
                        close_timeout=self.close_timeout if close_timeout is None else close_timeout)
        self.clients[key] = outbox
        outbox.start(lambda _: self.leave(key))
        self._notify(Event.JOIN, name)
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch(), name="fanout watchdog")
        return outbox

    def leave(self, key: Hashable) -> None:
        """Forget a client that left (its connection is already closed or closing)."""
        outbox = self.clients.pop(key, None)
        if outbox is not None:
            outbox.shut()
            self._notify(Event.LEAVE, outbox.name)

    async def broadcast(self, text: str) -> int:
        """Queue ``text`` for every client, in one order that all clients share.

        Clients with room get it at once; then this waits for room in the full queues
        (at most about ``grace`` seconds: a queue that stays full gets its client dropped).

        Returns:
            How many clients the message was queued for.
        """
        targets = list(self.clients.values())  # who is in the room when the message comes
        self.relayed += 1
        async with self._order:  # one broadcast at a time: everybody sees the same order
            waiting = [outbox for outbox in targets if not outbox.offer(text)]
            queued = len(targets) - len(waiting)
            for outbox in waiting:
                queued += await outbox.put(text)
        return queued

    def drop(self, key: Hashable, verdict: Verdict = Verdict.QUEUE_FULL) -> None:
        """Disconnect a client now with 1008 and the verdict as reason; nobody waits for it.

        The closing handshake runs in the background, bounded by ``close_timeout``.
        """
        outbox = self.clients.pop(key, None)
        if outbox is None:
            return
        self.dropped.append(outbox.name)
        self._notify(Event.DROP, outbox.name)
        reason = (verdict if verdict is not Verdict.KEEPING_UP else Verdict.QUEUE_FULL).close_reason
        self._close_later(outbox, SLOW_CLOSE_CODE, reason)

    def _close_later(self, outbox: Outbox, code: int, reason: str) -> None:
        outbox.shut()  # release waiting broadcasts now, not when the close ends
        task = asyncio.create_task(outbox.close(code, reason), name=f"close {outbox.name}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def check(self, now: float | None = None) -> list[tuple[str, Verdict]]:
        """Apply the rule to every client once; drop the slow ones.

        Returns:
            ``(name, verdict)`` for each client dropped.
        """
        now = asyncio.get_running_loop().time() if now is None else now
        slow = [(key, outbox.name, outbox.verdict(now)) for key, outbox in list(self.clients.items())]
        slow = [(key, name, verdict) for key, name, verdict in slow if verdict is not Verdict.KEEPING_UP]
        for key, _, verdict in slow:
            self.drop(key, verdict)
        return [(name, verdict) for _, name, verdict in slow]

    async def _watch(self) -> None:
        """Watchdog: apply the rule a few times per grace period while anybody is here."""
        tick = min(max(self.grace / 4, 0.005), 0.5)
        while self.clients:
            await asyncio.sleep(tick)
            self.check()

    def cut_closes(self) -> int:
        """Abort the TCP connections of dropped clients whose close is still running.

        Returns:
            How many closes were cut short.
        """
        closing = list(self._closing)
        for task in closing:
            task.cancel()  # Outbox.close aborts the transport when cancelled
        return len(closing)

    async def stop(self, code: int = GOING_AWAY, reason: str = "server stopping",
                   timeout: float | None = None) -> None:
        """Close every client at once, each within ``timeout`` seconds, then abort the rest.

        Closes still running for dropped clients are cut short too: stopping always ends,
        in about ``timeout`` seconds (default ``close_timeout``) whatever the peers do.
        """
        if self._watcher is not None:
            self._watcher.cancel()
        clients = list(self.clients.values())
        self.clients.clear()
        closing = list(self._closing)
        self.cut_closes()
        await asyncio.gather(*closing, return_exceptions=True)
        await asyncio.gather(*(outbox.close(code, reason, timeout) for outbox in clients),
                             return_exceptions=True)


# --------------------------------------------------------------------------- a stalled peer


async def stalled_reader(host: str, port: int, path: str = "/", *, rcvbuf: int = 4096,
                         timeout: float = 5.0) -> socket.socket:
    """Open a real WebSocket connection that completes the handshake, then never reads.

    A frozen browser tab, as the server sees it: the TCP receive window is tiny
    (``SO_RCVBUF`` set before connecting), so the server's buffers fill up quickly.
    Close the returned socket to make the peer go away.

    Args:
        host: the server's address.
        port: the server's port.
        path: the WebSocket endpoint (``"/ws"`` for the chat).
        rcvbuf: the receive buffer to ask the kernel for, in bytes.
        timeout: bound on connecting and on the handshake, in seconds.

    Raises:
        ConnectionError: the server did not answer ``101 Switching Protocols``.
        TimeoutError: no complete answer within ``timeout``.
        OSError: the connection failed.
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode()
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (host, port))
            await loop.sock_sendall(sock, request)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = await loop.sock_recv(sock, 1)  # one byte at a time: read no frame
                if not chunk:
                    raise ConnectionError("the server closed the connection during the handshake")
                head += chunk
    except BaseException:
        sock.close()
        raise
    status = head.split(b"\r\n", 1)[0].decode("latin-1")
    if " 101 " not in f"{status} ":
        sock.close()
        raise ConnectionError(f"handshake refused: {status}")
    return sock
