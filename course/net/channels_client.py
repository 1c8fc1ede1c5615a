"""A small Phoenix Channels client for the kernel, on ``websockets``.

It speaks the V2 JSON frames of :mod:`course.wire.phoenix`, like Phoenix's own
JavaScript ``Socket`` and ``Channel``, in a few lines each::

    client = await ChannelClient.connect("ws://127.0.0.1:4000/socket/websocket")
    reply = await client.join("room:lobby", {"name": "ada"})   # {"status": "ok", "response": {...}}
    reply = await client.push("room:lobby", "new_msg", {"body": "hi"})
    message = await client.next_event()                        # a Message: presence, new_msg...
    await client.close()

Every push gets a fresh ``ref``; its reply is matched by that ref, and waiting for it is
bounded (``timeout``, default 5 s: :class:`TimeoutError`).  Everything that is not a
reply (broadcasts, presence, errors on topic ``phoenix``) goes into a bounded queue read
with :meth:`ChannelClient.next_event` or ``async for message in client``; when it is
full the oldest is dropped and counted in :attr:`ChannelClient.dropped`.  A background
task sends ``heartbeat`` every ``heartbeat_interval`` seconds (``None``: never, to watch
the server drop a silent client); a heartbeat not answered within ``heartbeat_timeout``
seconds (default: the interval, as Phoenix's client: no reply before the next beat)
means the server is gone, even if TCP says nothing (a half-open link): the client
aborts the connection and sets :attr:`ChannelClient.dead` to ``"heartbeat timeout"``.

**Resuming (chapter 6).**  :class:`ResumingClient` stays in one topic across lost
connections, exactly once in effect: it reconnects (capped exponential backoff with
full jitter), rejoins with ``{"last_seq": n, "client": id}``, drops duplicates and stops
at gaps (:class:`course.wire.resume.Receiver`), and re-sends every unacknowledged push
with its id (:class:`course.wire.resume.Outbox`) until the server acknowledges it::

    async with ResumingClient(url, "room:lobby", "ada", heartbeat_interval=0.1) as ada:
        ada.send("hi")                         # returns the message id at once
        message = await ada.next_message()     # {"id", "name", "body", "seq"}, in order, once
        await ada.flush()                      # every send acknowledged
"""

from __future__ import annotations

import asyncio
import itertools
import random
import secrets
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import websockets

from course.wire.backoff import backoff_delay
from course.wire.phoenix import PHOENIX_TOPIC, BadFrame, Event, Message, decode, encode
from course.wire.resume import Outbox, Receiver, Seen

__all__ = ["ChannelClient", "ResumingClient"]


def _fail(future: asyncio.Future, error: BaseException) -> None:
    """Fail ``future`` and mark its error retrieved: the caller may have stopped waiting."""
    future.set_exception(error)
    future.exception()


class ChannelClient:
    """One connection to a Phoenix-style server; create it with :meth:`connect`.

    Attributes:
        joined: topic → ``join_ref`` of the last join sent on it.
        dropped: events dropped because the queue was full.
        closed: set once the connection has ended (the reader stopped).
        dead: ``"heartbeat timeout"`` once a heartbeat went unanswered (``None`` before).
    """

    def __init__(self, connection: Any, *, heartbeat_interval: float | None = 30.0,
                 timeout: float = 5.0, max_events: int = 1000,
                 heartbeat_timeout: float | None = None) -> None:
        self.connection = connection
        self.timeout = timeout
        self.joined: dict[str, str] = {}
        self.dropped = 0
        self.dead: str | None = None
        self.closed = asyncio.Event()
        self._refs = itertools.count(1)
        self._pending: dict[str, asyncio.Future] = {}
        self._events: asyncio.Queue[Message] = asyncio.Queue(max_events)
        self._reader = asyncio.create_task(self._read(), name="channel client reader")
        self._beater = (asyncio.create_task(
            self._beat(heartbeat_interval, heartbeat_timeout or heartbeat_interval),
            name="channel heartbeat") if heartbeat_interval else None)

    @classmethod
    async def connect(cls, url: str, *, heartbeat_interval: float | None = 30.0,
                      timeout: float = 5.0, max_events: int = 1000,
                      heartbeat_timeout: float | None = None) -> "ChannelClient":
        """Open the WebSocket (``?vsn=2.0.0`` is added) within ``timeout`` seconds.

        Raises:
            TimeoutError: no connection within ``timeout``.
            OSError, websockets.InvalidHandshake: the server refused or is not there.
        """
        if "vsn=" not in url:
            url += ("&" if "?" in url else "?") + "vsn=2.0.0"
        async with asyncio.timeout(timeout):
            connection = await websockets.connect(url, ping_interval=None, max_size=2 ** 20)
        return cls(connection, heartbeat_interval=heartbeat_interval, timeout=timeout,
                   max_events=max_events, heartbeat_timeout=heartbeat_timeout)

    def _next_ref(self) -> str:
        return str(next(self._refs))

    async def send_raw(self, data: str | bytes) -> None:
        """Send one frame as is (for experiments with malformed frames)."""
        await self.connection.send(data)

    async def request(self, topic: str, event: str, payload: dict[str, Any] | None = None, *,
                      join_ref: str | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Send one push and wait for its reply.

        Returns:
            The reply's payload, ``{"status": "ok" | "error", "response": {...}}``.

        Raises:
            TimeoutError: no reply within ``timeout`` (default: the client's).
            ConnectionError: the connection closed before the reply.
        """
        return await self._call(join_ref, self._next_ref(), topic, event, payload, timeout)

    async def _call(self, join_ref: str | None, ref: str, topic: str, event: str,
                    payload: dict[str, Any] | None, timeout: float | None) -> dict[str, Any]:
        future = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        try:
            await self.connection.send(encode(Message(join_ref, ref, topic, event, payload or {})))
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                return await future
        except websockets.ConnectionClosed as closed:
            raise ConnectionError(f"connection closed: {closed}") from None
        finally:
            self._pending.pop(ref, None)

    async def join(self, topic: str, payload: dict[str, Any] | None = None, *,
                   timeout: float | None = None) -> dict[str, Any]:
        """``phx_join`` a topic; returns the reply (see :meth:`request`).

        The join's ``ref`` becomes the topic's ``join_ref`` for later pushes.
        """
        ref = self._next_ref()
        self.joined[topic] = ref
        return await self._call(ref, ref, topic, Event.JOIN.value, payload, timeout)

    async def push(self, topic: str, event: str, payload: dict[str, Any] | None = None, *,
                   timeout: float | None = None) -> dict[str, Any]:
        """Push an event on a topic, with that topic's ``join_ref``; returns the reply."""
        return await self.request(topic, event, payload, join_ref=self.joined.get(topic),
                                  timeout=timeout)

    async def leave(self, topic: str, *, timeout: float | None = None) -> dict[str, Any]:
        """``phx_leave`` a topic; returns the reply."""
        reply = await self.push(topic, Event.LEAVE.value, {}, timeout=timeout)
        self.joined.pop(topic, None)
        return reply

    async def cast(self, topic: str, event: str, payload: dict[str, Any] | None = None) -> None:
        """Push without waiting for a reply (``typing``, which gets none)."""
        message = Message(self.joined.get(topic), self._next_ref(), topic, event, payload or {})
        await self.connection.send(encode(message))

    async def next_event(self, timeout: float | None = None) -> Message:
        """The next message that is not a reply, within ``timeout`` seconds.

        Raises:
            TimeoutError: none arrived in time.
        """
        async with asyncio.timeout(self.timeout if timeout is None else timeout):
            return await self._events.get()

    async def __aiter__(self) -> AsyncIterator[Message]:
        while True:
            yield await self._events.get()

    async def _read(self) -> None:
        try:
            async for data in self.connection:
                try:
                    message = decode(data)
                except BadFrame:
                    continue  # not V2: nothing to route it to
                if message.event == Event.REPLY.value and message.ref in self._pending:
                    future = self._pending.pop(message.ref)
                    if not future.done():
                        future.set_result(message.payload)
                    continue
                if self._events.full():
                    self._events.get_nowait()
                    self.dropped += 1
                self._events.put_nowait(message)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()
            for future in list(self._pending.values()):
                if not future.done():
                    future.set_exception(ConnectionError("connection closed"))
                    future.exception()  # retrieved: whoever still awaits it gets the error;
                    # a request given up already (its wait timed out) must not log it

    async def _beat(self, interval: float, timeout: float) -> None:
        try:
            while True:
                await asyncio.sleep(interval)
                await self.request(PHOENIX_TOPIC, Event.HEARTBEAT.value, {}, timeout=timeout)
        except TimeoutError:  # no answer: the server or the path is gone, TCP may never say
            self.dead = "heartbeat timeout"
            self.abort()
        except (ConnectionError, websockets.ConnectionClosed):
            pass  # the reader sees the end

    def abort(self) -> None:
        """Drop the TCP connection at once, without a closing handshake (a dead peer
        would never answer one)."""
        transport = getattr(self.connection, "transport", None)
        if transport is not None:
            transport.abort()

    def send_push(self, topic: str, event: str, payload: dict[str, Any]) -> "asyncio.Future":
        """Send one push on a topic (its ``join_ref``) without waiting: the future gets
        the reply's payload, or :class:`ConnectionError` if the connection ends first.
        The frames of successive calls go out in call order (for pipelining).

        Raises:
            websockets.ConnectionClosed: the connection is closed already.
        """
        ref = self._next_ref()
        future = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        future.add_done_callback(lambda _, ref=ref: self._pending.pop(ref, None))
        task = asyncio.ensure_future(self.connection.send(
            encode(Message(self.joined.get(topic), ref, topic, event, payload))))
        task.add_done_callback(lambda sent: (sent.cancelled() or sent.exception() is None
                                             or future.done()
                                             or _fail(future, ConnectionError("not sent"))))
        return future

    async def wait_closed(self, timeout: float | None = None) -> None:
        """Wait until the server closed the connection (bounded by ``timeout``)."""
        async with asyncio.timeout(self.timeout if timeout is None else timeout):
            await self.closed.wait()

    @property
    def close_code(self) -> int | None:
        """The close code received, once closed."""
        return self.connection.close_code

    async def close(self) -> None:
        """Close the connection and stop the background tasks (bounded)."""
        tasks = [t for t in (self._beater, self._reader) if t is not None]
        if self._beater is not None:
            self._beater.cancel()
        try:
            async with asyncio.timeout(self.timeout):
                await self.connection.close()
        finally:
            self._reader.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> "ChannelClient":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()


class ResumingClient:
    """One member of one topic that survives lost connections, exactly once in effect.

    Server → client: every ``new_msg`` carries ``seq``; each is classified
    (:func:`course.wire.resume.classify`): delivered once, in order, to
    :meth:`next_message` and :attr:`received`; a duplicate is dropped (counted in
    ``receiver.duplicates``); a gap ends the connection, and the rejoin replays it.
    Client → server: :meth:`send` keeps the message in an
    :class:`course.wire.resume.Outbox` until its reply comes; at most ``window`` are in
    flight; after a reconnect the unacknowledged ones go again, in order, with the same
    ids, and the server deduplicates them.  A join answered ``resync`` (the server's log
    no longer holds the gap) continues from the server's ``seq`` and is counted in
    :attr:`resyncs`: that is loss, and it is reported, not hidden.

    Args:
        url: the server's ``ws://HOST:PORT/socket/websocket``.
        topic: the topic, e.g. ``"room:lobby"``.
        name: the nickname.
        client_id: names this client across connections (default: random).
        heartbeat_interval, heartbeat_timeout: the channel heartbeat (see
            :class:`ChannelClient`); they bound how long a half-open link goes unnoticed.
        window: pushes in flight at most.
        backoff_base, backoff_cap: reconnect delays, full jitter, seconds.
        seed: seeds the jitter (``None``: random).
        timeout: bound on connecting, joining and each reply.
        keep_received: keep every delivered payload in :attr:`received` (tests).

    Attributes:
        receiver: the :class:`course.wire.resume.Receiver` (``last_seen``, ``duplicates``, ``gaps``).
        outbox: the :class:`course.wire.resume.Outbox` (``client_id``, ``acked``, pending).
        received: every payload delivered, in order (when ``keep_received``).
        connections: connections made; ``joins``: successful joins; ``resyncs``: joins
            answered resync;
        rejected: pushes the server refused (error replies; dropped from the outbox).
    """

    def __init__(self, url: str, topic: str, name: str, *, client_id: str | None = None,
                 heartbeat_interval: float = 30.0, heartbeat_timeout: float | None = None,
                 window: int = 64, backoff_base: float = 0.05, backoff_cap: float = 2.0,
                 seed: int | None = None, timeout: float = 5.0, keep_received: bool = True) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.url, self.topic, self.name = url, topic, name
        self.heartbeat_interval, self.heartbeat_timeout = heartbeat_interval, heartbeat_timeout
        self.window, self.timeout = window, timeout
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.receiver = Receiver()
        self.outbox = Outbox(client_id or secrets.token_hex(6))
        self.received: list[dict[str, Any]] = []
        self.keep_received = keep_received
        self.connections = 0
        self.joins = 0
        self.resyncs = 0
        self.rejected = 0
        self.joined = asyncio.Event()  #: set while joined
        self.client: ChannelClient | None = None
        self._rng = random.Random(seed)
        self._messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._to_send: deque[tuple[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task | None = None

    async def start(self) -> "ResumingClient":
        """Connect and join (waits for the first join, bounded by ``timeout``).

        Raises:
            TimeoutError: not joined within ``timeout``.
        """
        self._task = asyncio.create_task(self._run(), name=f"resuming {self.name}")
        async with asyncio.timeout(self.timeout):
            await self.joined.wait()
        return self

    def send(self, body: str) -> str:
        """Queue ``new_msg {"body": body}``; it is sent now, or after the reconnect.

        Returns:
            The message id (its idempotency key).
        """
        msg_id = self.outbox.add({"body": body})
        self._to_send.append((msg_id, {"body": body}))
        self._wake.set()
        return msg_id

    async def next_message(self, timeout: float | None = None) -> dict[str, Any]:
        """The next delivered ``new_msg`` payload (with ``seq``), in order, once.

        Raises:
            TimeoutError: none within ``timeout`` (default: the client's).
        """
        async with asyncio.timeout(self.timeout if timeout is None else timeout):
            return await self._messages.get()

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every message sent so far is acknowledged.

        Raises:
            TimeoutError: still unacknowledged after ``timeout``.
        """
        async with asyncio.timeout(self.timeout if timeout is None else timeout):
            while len(self.outbox):
                await asyncio.sleep(0.01)

    async def wait_for_seq(self, seq: int, timeout: float | None = None) -> None:
        """Wait until the message numbered ``seq`` was delivered (bounded)."""
        async with asyncio.timeout(self.timeout if timeout is None else timeout):
            while self.receiver.last_seen < seq:
                await asyncio.sleep(0.01)

    async def rejoined(self, joins: int, timeout: float | None = None) -> None:
        """Wait until this client has joined more than ``joins`` times (read
        :attr:`joins` before a cut, then wait for the rejoin; bounded).

        Raises:
            TimeoutError: no new join within ``timeout``.
        """
        async with asyncio.timeout(self.timeout if timeout is None else timeout):
            while self.joins <= joins:
                await asyncio.sleep(0.005)

    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                client = await ChannelClient.connect(
                    self.url, heartbeat_interval=self.heartbeat_interval,
                    heartbeat_timeout=self.heartbeat_timeout, timeout=self.timeout,
                    max_events=1_000_000)
            except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.InvalidURI):
                attempt += 1
            else:
                self.connections += 1
                self.client = client
                try:
                    if await self._session(client):
                        attempt = 0
                    else:
                        attempt += 1
                except (ConnectionError, TimeoutError, websockets.ConnectionClosed):
                    attempt += 1
                finally:
                    self.joined.clear()
                    client.abort()
                    await client.close()
            if not self._closing:
                await asyncio.sleep(backoff_delay(attempt, base=self.backoff_base,
                                                  cap=self.backoff_cap, rng=self._rng))

    async def _session(self, client: ChannelClient) -> bool:
        """One connection: rejoin, re-send, deliver; returns when it ends (True if it joined)."""
        reply = await client.join(self.topic, {"name": self.name, "client": self.outbox.client_id,
                                               "last_seq": self.receiver.last_seen})
        if reply.get("status") != "ok":
            return False
        response = reply.get("response", {})
        if response.get("resume") == "resync":
            self.resyncs += 1
            self.receiver.resync(response["seq"])
        self._to_send = deque(self.outbox.unacked())  # in order, same ids
        self.joins += 1
        self.joined.set()
        sender = asyncio.create_task(self._send_loop(client))
        try:
            await self._receive_loop(client)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        return True

    async def _receive_loop(self, client: ChannelClient) -> None:
        events = client._events
        closed = asyncio.ensure_future(client.closed.wait())
        try:
            while True:
                if events.empty():
                    getter = asyncio.ensure_future(events.get())
                    try:
                        await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        got = getter.done()
                        if not got:
                            getter.cancel()
                    if not got:
                        return  # the connection ended
                    message = getter.result()
                else:
                    message = events.get_nowait()
                if message.topic != self.topic or message.event != "new_msg":
                    continue
                seq = message.payload.get("seq")
                if not isinstance(seq, int):
                    continue
                seen = self.receiver.receive(seq)
                if seen is Seen.DELIVER:
                    if self.keep_received:
                        self.received.append(message.payload)
                    self._messages.put_nowait(message.payload)
                elif seen is Seen.GAP:
                    return  # reconnect: the rejoin replays from last_seen
        finally:
            closed.cancel()

    async def _send_loop(self, client: ChannelClient) -> None:
        room = asyncio.Semaphore(self.window)
        while True:
            while not self._to_send:
                self._wake.clear()
                await self._wake.wait()
            await room.acquire()
            if not self._to_send:
                room.release()
                continue
            msg_id, payload = self._to_send.popleft()
            reply = client.send_push(self.topic, "new_msg", {**payload, "id": msg_id})
            reply.add_done_callback(lambda done, msg_id=msg_id: self._acked(done, msg_id, room))

    def _acked(self, reply: asyncio.Future, msg_id: str, room: asyncio.Semaphore) -> None:
        room.release()
        if reply.cancelled() or reply.exception() is not None:
            return  # the connection ended: the message stays in the outbox
        if reply.result().get("status") != "ok":
            self.rejected += 1
        self.outbox.ack(msg_id)

    async def close(self) -> None:
        """Stop reconnecting and close (bounded)."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.client is not None:
            self.client.abort()

    async def __aenter__(self) -> "ResumingClient":
        return await self.start()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()
