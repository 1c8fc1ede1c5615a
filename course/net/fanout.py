"""Broadcast with bounded queues, and the rule that decides when a client is too slow.

This is the transport-agnostic core of a broadcast hub, after gorilla/websocket's chat
example: every client gets a bounded send queue (an :class:`Outbox`) drained by its own
writer task, and the :class:`Fanout` puts each message into every queue, without ever
waiting for anybody.  It knows nothing of ``websockets`` or ``aiohttp``: a client is
three callables, a coroutine that sends one text, a coroutine that closes with a code
and a reason, and a function that aborts the TCP connection.  ``course.live.Hub``
(``websockets``) and ``course.net.chat`` (``aiohttp``) both broadcast through it.

**The slow-client rule.**  A burst is not a slow client: a dozen messages arriving at
once fill a queue of eight for a few milliseconds, then the writer drains it.  So the
queue's size (``queue_size`` messages) is where the clock starts, not a wall, and a client
is too slow only when its backlog *lasts*, or outgrows the memory it may use:

* its queue reached ``queue_size`` messages and has not drained back to half of that for
  longer than ``grace`` seconds (:data:`Verdict.QUEUE_FULL`);
* its queue holds more than ``max_bytes`` (and more than one message): too slow at once,
  whatever the clock says; this bounds the server's memory (:data:`Verdict.QUEUE_FULL`);
* its queue has room but its transport's write buffer has stayed above ``max_buffered``
  bytes for longer than ``grace`` (:data:`Verdict.BUFFER_FULL`: big messages stuck in
  front of a reader that stopped, in a room too quiet to fill the queue).

:func:`observe` and :func:`judge` are that rule as two pure functions (no I/O, no clock);
an :class:`Outbox` applies it each time a message is queued, and :class:`Fanout` in a
thin watchdog loop; a slow client is closed with 1008 and a reason naming the verdict.

**Why not wait for room instead** (backpressure on the sender)?  While the hub waits, it
stops reading the sender's connection, pings included: with a short keepalive the sender
itself gets disconnected, and every other client waits for the slowest one.  Here nobody
waits: healthy clients keep receiving while a stalled one runs out of grace or of bytes.

**Other policies** (:class:`course.wire.backpressure.Policy`, the ``policy`` argument of
:class:`Fanout`).  The rule above is :data:`~course.wire.backpressure.Policy.DROP_CLIENT`,
the default.  With ``DROP_OLDEST`` a client's queue keeps its newest ``queue_size``
messages (and at most ``max_bytes``) and the client stays, lagging; with ``COALESCE`` a
message broadcast with a ``key`` (a price's symbol) replaces the queued one with the same
key; ``UNBOUNDED`` keeps everything for ever (the naive server whose memory grows).
Under those three nobody is dropped for being slow: dead peers are the heartbeat's job.
The bound trims a healthy client too when it falls ``queue_size`` messages behind for a
moment (a burst, a busy machine): size it for bursts, and pair ``DROP_OLDEST`` with
sequence numbers so that a client knows what it missed.

**Closing is bounded.**  A peer that reads nothing never answers a close frame, and the
close frame itself may sit behind megabytes it will never read.  :func:`close_within`
gives every close a deadline and then aborts the transport, so stopping always ends.

Layering: this module uses only asyncio and sockets; servers build on it.
"""

from __future__ import annotations

import asyncio
import enum
import socket
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass, replace
from typing import Any

from course.protocol import upgrade_request
from course.wire.backpressure import Decision, Policy, SendQueue
from course.wire.rfc import RFC_KEY

__all__ = [
    "Verdict", "Event", "SlowRule", "Load", "Backlog", "observe", "judge", "close_within",
    "Outbox", "Fanout", "join_aiohttp", "stalled_reader", "SLOW_CLOSE_CODE", "GOING_AWAY",
]

SLOW_CLOSE_CODE = 1008   #: policy violation: the code a too-slow client is closed with
GOING_AWAY = 1001        #: the server is stopping
_KIB = 1024


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
class SlowRule:
    """The parameters of the slow-client rule.

    Args:
        queue_size: messages in a queue that count as full (the clock starts), at least 1.
        grace: seconds a full queue, or an over-full write buffer, may last.
        max_bytes: bytes a queue may hold (beyond: too slow at once); a queue may
            always hold one message, whatever its size.
        max_buffered: bytes a transport's write buffer may hold for longer than ``grace``.

    Raises:
        ValueError: ``queue_size`` below 1, ``grace`` not positive, a negative bound.
    """

    queue_size: int = 16
    grace: float = 1.0
    max_bytes: int = 1024 * _KIB
    max_buffered: int = 256 * _KIB

    def __post_init__(self) -> None:
        if self.queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {self.queue_size}")
        if not self.grace > 0:
            raise ValueError(f"grace must be > 0 seconds, got {self.grace}")
        if self.max_bytes < 0 or self.max_buffered < 0:
            raise ValueError(f"max_bytes and max_buffered must be >= 0, got "
                             f"{self.max_bytes} and {self.max_buffered}")


@dataclass(frozen=True)
class Load:
    """What one client's outbox holds at one moment.

    Attributes:
        queued: messages in its queue.
        queued_bytes: their total size in bytes.
        buffered: bytes in its transport's write buffer.
    """

    queued: int = 0
    queued_bytes: int = 0
    buffered: int = 0


@dataclass(frozen=True)
class Backlog:
    """The history the rule needs about one client.

    Attributes:
        full_since: when its queue became full, or ``None`` if it has drained back to
            half since (or never was full).
        over_since: when its write buffer went above the bound, or ``None`` if it was
            at or below the bound at the last observation.
    """

    full_since: float | None = None
    over_since: float | None = None


def observe(backlog: Backlog, load: Load, now: float, rule: SlowRule) -> Backlog:
    """Update a client's history with what it holds at ``now``.

    A queue counts as backed up from the moment it holds ``queue_size`` messages until it
    has drained to half of that (``queue_size // 2``): a writer that keeps up empties it
    right after a burst, a writer that trickles one message out as the next comes in
    keeps it full.

    Args:
        backlog: the history so far.
        load: what the client's queue and write buffer hold now.
        now: the current time in seconds (any monotonic clock).
        rule: the rule's parameters.

    Returns:
        The new history (``backlog`` itself is not changed).
    """
    full_since = backlog.full_since
    if load.queued >= rule.queue_size:
        full_since = now if full_since is None else full_since
    elif load.queued <= rule.queue_size // 2:
        full_since = None
    over_since = backlog.over_since
    if load.buffered > rule.max_buffered:
        over_since = now if over_since is None else over_since
    else:
        over_since = None
    return replace(backlog, full_since=full_since, over_since=over_since)


def judge(backlog: Backlog, load: Load, now: float, rule: SlowRule) -> Verdict:
    """Is this client too slow?

    A backed-up queue is judged by how long it has been backed up; only a queue with room
    is judged by its write buffer (so a stalled client that fills both gets one stable
    verdict, :data:`Verdict.QUEUE_FULL`).

    Args:
        backlog: the client's history (see :func:`observe`).
        load: what it holds now.
        now: the current time, on the same clock.
        rule: the rule's parameters.

    Returns:
        :data:`Verdict.KEEPING_UP`, or why the client is too slow.
    """
    if load.queued > 1 and load.queued_bytes > rule.max_bytes:
        return Verdict.QUEUE_FULL
    if backlog.full_since is not None:
        return Verdict.QUEUE_FULL if now - backlog.full_since > rule.grace else Verdict.KEEPING_UP
    if backlog.over_since is not None and now - backlog.over_since > rule.grace:
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
    """One client's send queue and its writer task (gorilla's ``writePump``).

    Under the default policy (``DROP_CLIENT``) the queue never refuses a message:
    :meth:`push` queues it and says whether the client is now too slow; the caller drops
    it if so.  Under ``DROP_OLDEST`` and ``COALESCE`` the queue keeps itself within
    ``queue_size`` messages and ``max_bytes`` (:class:`course.wire.backpressure.SendQueue`)
    and the client is never too slow; under ``UNBOUNDED`` it keeps everything.

    Args:
        name: how the client appears in events and logs (e.g. ``"127.0.0.1:50312"``).
        send: coroutine function sending one text message to the client.
        close: coroutine function ``close(code, reason)`` running the closing handshake.
        abort: function dropping the TCP connection at once.
        buffered: function returning the bytes in the transport's write buffer
            (``transport.get_write_buffer_size``); ``None`` counts as always 0.
        rule: the slow-client rule (and the queue's bound under the other policies).
        close_timeout: seconds :meth:`close` waits for the handshake before aborting.
        policy: what happens to a queue past its bound (see :class:`Fanout`).
    """

    def __init__(self, name: str, *, send: Callable[[str], Awaitable[Any]],
                 close: Callable[[int, str], Coroutine[Any, Any, Any]],
                 abort: Callable[[], None], buffered: Callable[[], int] | None = None,
                 rule: SlowRule = SlowRule(), close_timeout: float | None = 10.0,
                 policy: Policy = Policy.DROP_CLIENT) -> None:
        self.name = name
        self.rule = rule
        self.close_timeout = close_timeout
        self.backlog = Backlog()
        self.sent = 0
        self.closed = False
        self._send, self._close, self._abort = send, close, abort
        self._buffered = buffered or (lambda: 0)
        self.policy = Policy(policy)
        self.last_decision = Decision.QUEUED   #: what the queue did with the last message pushed
        self._queue: SendQueue[str] = SendQueue(
            self.policy, max_items=rule.queue_size, max_bytes=rule.max_bytes)
        self._has_items = asyncio.Event()
        self._writer: asyncio.Task | None = None

    def __repr__(self) -> str:
        return (f"Outbox({self.name!r}, queued={len(self._queue)}, "
                f"bytes={self._queue.bytes}, sent={self.sent})")

    @property
    def discarded(self) -> int:
        """Messages the policy dropped or replaced (never sent) for this client."""
        return self._queue.discarded

    def pending(self) -> list[str]:
        """The messages queued and not yet sent, oldest first."""
        return self._queue.items()

    def load(self) -> Load:
        """What the queue and the transport's write buffer hold now."""
        try:
            buffered = self._buffered()
        except (AttributeError, OSError):  # the transport is already gone
            buffered = 0
        return Load(len(self._queue), self._queue.bytes, buffered)

    def verdict(self, now: float | None = None) -> Verdict:
        """Observe the load now, update :attr:`backlog`, and apply the rule.

        Only the ``DROP_CLIENT`` policy judges; the others always keep the client.
        """
        if self.policy is not Policy.DROP_CLIENT:
            return Verdict.KEEPING_UP
        now = asyncio.get_running_loop().time() if now is None else now
        load = self.load()
        self.backlog = observe(self.backlog, load, now, self.rule)
        return judge(self.backlog, load, now, self.rule)

    def start(self, on_gone: Callable[[Outbox], None]) -> None:
        """Start the writer task; ``on_gone(self)`` runs if a send fails (the peer left)."""
        if self._writer is None:
            self._writer = asyncio.create_task(self._pump(on_gone), name=f"writer {self.name}")

    def push(self, text: str, size: int | None = None, key: Hashable | None = None) -> Verdict:
        """Queue ``text`` (never waits) and say whether the client is now too slow.

        What the queue did with it (queued, replaced, dropped the oldest) is in
        :attr:`last_decision`.

        Args:
            text: the message.
            size: its size in bytes, if the caller knows it (a broadcast computes it once).
            key: what it coalesces on under ``COALESCE`` (e.g. a price's symbol).

        Returns:
            The rule's verdict after queueing (:data:`Verdict.KEEPING_UP` if the outbox
            is closed: the message is discarded, there is nobody left to judge).
        """
        if self.closed:
            return Verdict.KEEPING_UP
        size = len(text.encode()) if size is None else size
        self.last_decision = self._queue.offer(text, size, key)
        self._has_items.set()
        return self.verdict()

    async def _pump(self, on_gone: Callable[[Outbox], None]) -> None:
        while True:
            await self._has_items.wait()
            if not self._queue:
                self._has_items.clear()
                continue
            text, _ = self._queue.pop()
            if not self._queue:
                self._has_items.clear()
            self.verdict()  # record the drain (the history is reset at half)
            try:
                await self._send(text)
            except Exception:  # noqa: BLE001 - whatever the library raises, the peer is gone
                self.shut()
                on_gone(self)
                return
            self.sent += 1

    def shut(self) -> None:
        """Stop the writer and discard what is queued; later pushes are ignored."""
        self.closed = True
        self._queue.clear()
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
        queue_size: messages in a client's queue that count as full (at least 1).
        grace: seconds a client's queue may stay full (see :func:`judge`).
        max_bytes: bytes a client's queue may hold; beyond, it is dropped at once.
        max_buffered: bytes a client's write buffer may hold for longer than ``grace``.
        close_timeout: seconds a closing client has to read its backlog and answer
            the close frame before its TCP connection is aborted (``None``: no limit).
        on_event: optional ``on_event(kind, name)``, ``kind`` an :class:`Event` value.
        policy: what happens to a client's queue past its bound
            (:class:`course.wire.backpressure.Policy`): ``DROP_CLIENT`` (the default) drops
            the client by the slow-client rule; ``DROP_OLDEST`` and ``COALESCE`` keep
            ``queue_size`` messages and ``max_bytes`` at most, and keep the client;
            ``UNBOUNDED`` keeps everything and everybody.

    Raises:
        ValueError: a bad ``queue_size``, ``grace`` or bound (see :class:`SlowRule`).
    """

    def __init__(self, queue_size: int = 16, *, grace: float = 1.0,
                 max_bytes: int = 1024 * _KIB, max_buffered: int = 256 * _KIB,
                 close_timeout: float | None = 10.0,
                 on_event: Callable[[str, str], None] | None = None,
                 policy: Policy = Policy.DROP_CLIENT) -> None:
        self.rule = SlowRule(queue_size, grace, max_bytes, max_buffered)
        self.policy = Policy(policy)
        self.close_timeout = close_timeout
        self.on_event = on_event
        self.clients: dict[Hashable, Outbox] = {}
        self.relayed = 0
        self.dropped: list[str] = []
        self._watcher: asyncio.Task | None = None
        self._closing: set[asyncio.Task] = set()

    @property
    def queue_size(self) -> int:
        """Messages in a client's queue that count as full."""
        return self.rule.queue_size

    @property
    def grace(self) -> float:
        """Seconds a client's queue may stay full."""
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
            The client's outbox.
        """
        outbox = Outbox(name, send=send, close=close, abort=abort, buffered=buffered,
                        rule=self.rule, policy=self.policy,
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

    def send(self, key: Hashable, text: str, size: int | None = None, *,
             topic: Hashable | None = None) -> bool:
        """Queue ``text`` for one client; drop it if that makes it too slow.

        Args:
            key: the client's key (see :meth:`join`).
            text: the message.
            size: its size in bytes, if known.
            topic: what it coalesces on under ``COALESCE`` (e.g. a price's symbol).

        Returns:
            ``False`` if the client is unknown or was dropped.
        """
        outbox = self.clients.get(key)
        if outbox is None:
            return False
        verdict = outbox.push(text, size, topic)
        if verdict is not Verdict.KEEPING_UP:
            self.drop(key, verdict)
            return False
        return True

    def broadcast(self, text: str, *, topic: Hashable | None = None) -> int:
        """Queue ``text`` for every client, never waiting; drop those it makes too slow.

        Every client gets the messages in the order of the calls, the same for all (under
        ``DROP_OLDEST`` and ``COALESCE`` a slow client gets a subsequence of them).

        Args:
            text: the message.
            topic: what it coalesces on under ``COALESCE`` (e.g. a price's symbol).

        Returns:
            How many clients the message was queued for (and kept).
        """
        self.relayed += 1
        size = len(text.encode())
        return sum(self.send(key, text, size, topic=topic) for key in list(self.clients))

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
        outbox.shut()
        task = asyncio.create_task(outbox.close(SLOW_CLOSE_CODE, reason), name=f"close {outbox.name}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def check(self, now: float | None = None) -> list[tuple[str, Verdict]]:
        """Apply the rule to every client once; drop the slow ones.

        Returns:
            ``(name, verdict)`` for each client dropped.
        """
        now = asyncio.get_running_loop().time() if now is None else now
        judged = [(key, outbox.name, outbox.verdict(now)) for key, outbox in list(self.clients.items())]
        slow = [(key, name, verdict) for key, name, verdict in judged if verdict is not Verdict.KEEPING_UP]
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


async def join_aiohttp(fanout: Fanout, request: Any, ws: Any, *, prefix: str = "",
                       close: Callable[[int, str], Awaitable[Any]] | None = None) -> bool:
    """Finish an aiohttp WebSocket handshake and give the connection an outbox in ``fanout``.

    The outbox is named after the peer (``prefix`` + ``HOST:PORT``), sends with
    ``ws.send_str``, closes with ``close`` (default: ``ws.close(code, reason)``), and is
    judged by its transport's write buffer too.

    Args:
        fanout: where the connection's outbox goes (its key is ``ws``).
        request: the ``aiohttp.web.Request`` of the handshake.
        ws: the ``aiohttp.web.WebSocketResponse`` to prepare.
        prefix: put before the peer's address in the outbox's name.
        close: how to close the connection with a code and a reason.

    Returns:
        ``False`` if the client left during the handshake (nothing joined), else ``True``.
    """
    try:
        await ws.prepare(request)
    except ConnectionError:
        return False
    transport = request.transport
    if transport is None:  # gone already
        return False
    peer = transport.get_extra_info("peername") or ("?", 0)
    fanout.join(ws, f"{prefix}{peer[0]}:{peer[1]}", send=ws.send_str,
                close=close or (lambda code, reason: ws.close(code=code, message=reason.encode())),
                abort=transport.abort, buffered=transport.get_write_buffer_size)
    return True


async def stalled_reader(host: str, port: int, path: str = "/", *, rcvbuf: int = 4096,
                         timeout: float = 5.0,
                         headers: list[tuple[str, str]] | None = None) -> socket.socket:
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
        headers: extra request headers, e.g. ``[("Sec-WebSocket-Protocol", "actioncable-v1-json")]``.

    Raises:
        ConnectionError: the server did not answer ``101 Switching Protocols``.
        TimeoutError: no complete answer within ``timeout``.
        OSError: the connection failed.
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    request = upgrade_request(f"{host}:{port}", RFC_KEY, path, headers)
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
