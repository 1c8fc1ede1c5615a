"""The kernel's client of the realtime database (:mod:`course.net.minibase`).

::

    db = await DbClient.connect(server.url, auth={"uid": "ada"})
    listener = db.listen("todos", lambda event: print(event.kind, event.key, event.value))
    key, written = db.push("todos", {"text": "milk", "done": False})  # listeners fire now
    await written                                                      # the server confirmed
    result = await db.transaction("counter", lambda n: (n or 0) + 1)
    db.set("visits", {".sv": {"increment": 1}})  # a server value: counts exactly, no retries
    await db.presence("online/ada")          # removed by the server when we vanish
    await db.close()

**The local cache.**  The client keeps what the server sent for the paths it listens to
(the *server cache*) and, on top of it, the writes the server has not confirmed yet (the
*pending writes*, in order).  What listeners see is the cache with the pending writes
applied: a write fires local listeners at once (*latency compensation*); the server's
``ok`` makes it part of the cache; a refusal removes it and listeners fire again with the
old data (*rollback*), and the write's future raises :class:`DbError`.  Events are
computed by :mod:`course.wire.dbevents` from the visible snapshot before and after every
change, whatever caused it.

**Offline.**  If the connection drops, writes keep going into the pending list and
listeners keep firing.  The client reconnects (0.05 s, then doubling up to 1 s), signs in
again, listens again, re-registers its onDisconnect writes (the server ran them when we
vanished) and sends every pending write again, in order: the state converges; nothing is
replayed as an event log.  A write sent just before a drop may be applied twice: sets
and updates are idempotent, so that is harmless.

**Transactions** are not latency-compensated here (Firebase shows them locally with
``applyLocally``): :meth:`DbClient.transaction` runs the function on the cached value (or
a fresh ``get``), sends the result with the hash of that value, and retries on
``datastale`` with the value the server returns, up to :data:`MAX_RETRIES` times, after a
random, growing delay (:func:`course.wire.transaction.retry_delay`).  The loop itself is
:func:`run_transaction`.  A transaction whose put was in flight when the connection
dropped is sent again with the same hash: if the first one had been applied, the hash no
longer matches, and the function would run again on the new value: applied twice.  So
each attempt carries an id (``"i"``, not in Firebase's protocol) that the server
remembers: an attempt sent again is answered ``ok`` and not applied again.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import websockets

from course.wire import dbproto
from course.wire.dbevents import DbEvent, events_for, initial_events
from course.wire.dbproto import Action, Hello, Push, Reply, Status
from course.wire.envelope import BadMessage
from course.wire.pushid import PushIds
from course.wire.transaction import MAX_RETRIES, Step, next_step, retry_delay, value_hash
from course.wire.tree import (Value, get, has_server_values, is_prefix, join_path, normalize, parse_path,
                              resolve_server_values, set_at, update)

__all__ = ["DbError", "TransactionResult", "Listener", "DbClient", "ABORT", "run_transaction"]

ABORT = object()  #: return it from a transaction's function to give up without writing


class DbError(Exception):
    """A request the server refused.

    Attributes:
        status: the reply status (``"permission_denied"``, ``"too_big"``, ``"invalid_path"``…).
        path: the path of the request.
    """

    def __init__(self, status: str, text: str, path: str = "/") -> None:
        super().__init__(f"{status} at {path}: {text}")
        self.status, self.path = status, path


@dataclass(frozen=True)
class TransactionResult:
    """How a transaction ended.

    Attributes:
        committed: whether the server wrote the value.
        value: the value written (or the last one seen if not committed).
        retries: how many times the function was run again after ``datastale``.
        status: ``"ok"``, ``"maxretry"`` or ``"aborted"``.
    """

    committed: bool
    value: Value
    retries: int
    status: str


class Listener:
    """One listener on one path: a callback, or an async iterator of :class:`DbEvent`.

    ``close()`` stops it (and unlistens on the server when it was the path's last one).
    """

    def __init__(self, client: "DbClient", keys: tuple[str, ...],
                 callback: Callable[[DbEvent], Any] | None) -> None:
        self.client, self.keys, self.callback = client, keys, callback
        self.initialized = False
        self.queue: asyncio.Queue[DbEvent] | None = asyncio.Queue() if callback is None else None
        self.ready = asyncio.Event()  #: set once the initial events were delivered

    @property
    def path(self) -> str:
        return join_path(self.keys)

    def deliver(self, events: list[DbEvent]) -> None:
        for event in events:
            if self.queue is not None:
                self.queue.put_nowait(event)
            else:
                try:
                    self.callback(event)
                except Exception as error:  # noqa: BLE001 - a broken callback breaks nobody else
                    self.client.callback_errors.append(error)

    def close(self) -> None:
        self.client._remove_listener(self)

    def __aiter__(self) -> "Listener":
        return self

    async def __anext__(self) -> DbEvent:
        if self.queue is None:
            raise TypeError("a listener with a callback is not an iterator")
        return await self.queue.get()


async def run_transaction(put: Callable[[Value, str], Awaitable[tuple[str, Any]]],
                          function: Callable[[Value], Any], current: Value, *,
                          max_retries: int = MAX_RETRIES, rng: random.Random | None = None,
                          sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> TransactionResult:
    """The transaction loop, whatever carries the put (the client's WebSocket, a test's fake).

    Args:
        put: ``await put(new_value, hash_of_current)`` → ``(status, data)``: ``("ok", _)``,
            or ``("datastale", the server's value)``; it raises for any other refusal.
        function: the update, run on the value believed current (returns the new value,
            or :data:`ABORT`).
        current: the value believed current at first (the cache's, or a fresh ``get``).
        max_retries: how many times the function may run again after ``datastale``.
        rng: the jitter's random generator.
        sleep: how to wait between tries (:func:`course.wire.transaction.retry_delay`).

    Returns:
        The :class:`TransactionResult`: ``"ok"``, ``"maxretry"`` or ``"aborted"``.
    """
    rng = rng or random.Random()
    retries = 0
    while True:
        new = function(current)
        if new is ABORT:
            return TransactionResult(False, current, retries, "aborted")
        status, data = await put(new, value_hash(current))
        step = next_step(status, retries, max_retries)
        if step is Step.DONE:
            return TransactionResult(True, normalize(new), retries, "ok")
        if step is not Step.RETRY:  # GIVE_UP (FAIL: put raised already)
            return TransactionResult(False, current, retries, step.value)
        current, retries = data, retries + 1
        await sleep(retry_delay(retries, rng))


@dataclass(eq=False)
class _Write:
    action: Action
    keys: tuple[str, ...]
    data: Any
    future: asyncio.Future


class DbClient:
    """One client of a :class:`course.net.minibase.MinibaseServer`; create it with :meth:`connect`.

    Attributes:
        server_cache: what the server sent (at the listened paths) and confirmed.
        pending: the writes not confirmed yet, in order.
        connected: whether the WebSocket is up right now.
        reconnects: how many times it connected again after a drop.
        callback_errors: exceptions raised by listener callbacks (they never stop the client).
    """

    def __init__(self, url: str, *, auth: Any = None, reconnect: bool = True,
                 rng: random.Random | None = None) -> None:
        self.url, self.auth, self.reconnect = url, auth, reconnect
        self.server_cache: Value = None
        self.pending: list[_Write] = []
        self.listeners: dict[tuple[str, ...], list[Listener]] = defaultdict(list)
        self.on_disconnect: list[tuple[Action, tuple[str, ...], Any]] = []
        self.presences: dict[tuple[str, ...], Any] = {}
        self.callback_errors: list[Exception] = []
        self.reconnects = 0
        self.server_time_offset = 0
        self.rng = rng or random.Random()
        self.push_ids = PushIds(self.rng)
        self._numbers = itertools.count(1)
        self._attempts = itertools.count(1)
        self._session = "".join(self.rng.choice("0123456789abcdef") for _ in range(16))
        self._waiting: dict[int, asyncio.Future] = {}
        self._in_flight: dict[int, _Write] = {}
        self._ws: Any = None
        self._up = asyncio.Event()
        self._closed = False
        self._tx_locks: dict[tuple[str, ...], asyncio.Lock] = defaultdict(asyncio.Lock)
        self._task: asyncio.Task | None = None
        self._auth_reply: asyncio.Future | None = None
        self._out: asyncio.Queue[str] | None = None

    def __repr__(self) -> str:  # stable text for notebooks
        return (f"DbClient(connected={self.connected}, listeners={sum(map(len, self.listeners.values()))}, "
                f"pending={len(self.pending)})")

    # ------------------------------------------------------------------ connection

    @classmethod
    async def connect(cls, url: str, *, auth: Any = None, reconnect: bool = True,
                      timeout: float = 5.0, rng: random.Random | None = None) -> "DbClient":
        """Connect (and sign in as ``auth``, e.g. ``{"uid": "ada"}``) within ``timeout`` s.

        Raises:
            TimeoutError: not connected in time.
            DbError: the server refused ``auth``.
        """
        client = cls(url, auth=auth, reconnect=reconnect, rng=rng)
        client._task = asyncio.create_task(client._run(), name=f"DbClient {url}")
        try:
            async with asyncio.timeout(timeout):
                await client._up.wait()
                if auth is not None:
                    reply = await client._auth_reply
                    if reply.status != Status.OK.value:
                        raise DbError(reply.status, str(reply.data))
        except BaseException:
            await client.close()
            raise
        return client

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    async def wait_connected(self, timeout: float = 5.0) -> None:
        """Wait until the WebSocket is up (after a drop), within ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            await self._up.wait()

    def now_ms(self) -> int:
        """The server's clock as this client estimates it (ms since 1970)."""
        return int(time.time() * 1000) + self.server_time_offset

    async def _run(self) -> None:
        delay = 0.05
        first = True
        while not self._closed:
            try:
                async with websockets.connect(self.url, max_size=None, open_timeout=5,
                                              ping_interval=20, ping_timeout=20, close_timeout=2) as ws:
                    hello = dbproto.decode_server(await asyncio.wait_for(ws.recv(), 5))
                    if isinstance(hello, Hello):
                        self.server_time_offset = hello.ts - int(time.time() * 1000)
                    self._ws, self._out = ws, asyncio.Queue()
                    writer = asyncio.create_task(self._writer(ws, self._out))
                    if not first:
                        self.reconnects += 1
                    first, delay = False, 0.05
                    self._restore()
                    self._up.set()
                    try:
                        async for text in ws:
                            self._receive(text)
                    finally:
                        writer.cancel()
            except (OSError, TimeoutError, websockets.ConnectionClosed, websockets.InvalidHandshake,
                    BadMessage):
                pass
            finally:
                self._ws, self._out = None, None
                self._up.clear()
                self._lost()
            if self._closed or not self.reconnect:
                break
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)
        self._closed = True

    def _send(self, action: Action, body: dict[str, Any]) -> tuple[int, asyncio.Future]:
        r = next(self._numbers)
        future = asyncio.get_running_loop().create_future()
        self._waiting[r] = future
        if self._ws is not None:
            self._out.put_nowait(dbproto.encode_request(r, action, body))
        else:  # offline: the caller waits for _lost/_restore; nothing to send now
            future.set_result(Reply(r, "disconnected"))
            self._waiting.pop(r)
        return r, future

    @staticmethod
    async def _writer(ws: Any, out: asyncio.Queue) -> None:
        # one writer per connection: frames leave in the order they were queued
        try:
            while True:
                await ws.send(await out.get())
        except websockets.ConnectionClosed:
            pass

    def _restore(self) -> None:
        # after (re)connecting, in order: auth, listens, onDisconnect, presence, pending writes
        if self.auth is not None:
            self._auth_reply = self._send(Action.AUTH, {"cred": self.auth})[1]
        for keys in list(self.listeners):
            self._send_listen(keys)
        for action, keys, data in self.on_disconnect:
            self._send(action, {"p": join_path(keys)} if data is ABORT else {"p": join_path(keys), "d": data})
        for keys, value in self.presences.items():
            self._queue_write(Action.PUT, keys, value)
        for write in self.pending:
            if write not in self._in_flight.values():
                self._transmit_write(write)

    def _lost(self) -> None:
        # the connection is gone: requests waiting for a reply learn it; pending writes stay
        waiting, self._waiting = self._waiting, {}
        for r, future in waiting.items():
            if not future.done():
                future.set_result(Reply(r, "disconnected"))
        self._in_flight.clear()

    def _receive(self, text: str) -> None:
        try:
            message = dbproto.decode_server(text)
        except BadMessage:
            return
        if isinstance(message, Reply):
            future = self._waiting.pop(message.r, None)
            if future is not None and not future.done():
                future.set_result(message)
        elif isinstance(message, Push):
            before = self.visible()
            if message.action == "d":
                self.server_cache = set_at(self.server_cache, message.path, message.data)
            else:
                self.server_cache = update(self.server_cache, message.path, message.data)
            self._fire(before)

    # ------------------------------------------------------------------ the local view

    def visible(self) -> Value:
        """The tree listeners see: the server cache with the pending writes on top."""
        tree = self.server_cache
        for write in self.pending:
            tree = _apply(tree, write.action, write.keys, write.data, self.now_ms())
        return tree

    def value(self, path: str = "/") -> Value:
        """The value at ``path`` as this client sees it now (no request)."""
        return get(self.visible(), path)

    def _fire(self, before: Value) -> None:
        after = self.visible()
        if before == after:
            return
        for keys, listeners in list(self.listeners.items()):
            events = events_for(join_path(keys), before, after)
            if events:
                for listener in list(listeners):
                    if listener.initialized:
                        listener.deliver(events)

    # ------------------------------------------------------------------ listeners

    def listen(self, path: str, callback: Callable[[DbEvent], Any] | None = None) -> Listener:
        """Listen at ``path``: ``callback(event)`` for every :class:`DbEvent`, or, without a
        callback, iterate the returned :class:`Listener` (``async for event in listener``).

        The first events are ``child_added`` for each child then ``value`` (once the
        server sent the data: ``await listener.ready.wait()``).

        Raises:
            TreeError: a bad path.
        """
        keys = parse_path(path)
        listener = Listener(self, keys, callback)
        first = keys not in self.listeners
        self.listeners[keys].append(listener)
        if first and self._ws is not None:
            self._send_listen(keys)
        elif not first and any(other.initialized for other in self.listeners[keys]):
            self._initialize(listener)
        return listener

    def _initialize(self, listener: Listener) -> None:
        listener.initialized = True
        listener.deliver(initial_events(listener.path, get(self.visible(), listener.keys)))
        listener.ready.set()

    def _send_listen(self, keys: tuple[str, ...]) -> None:
        _, future = self._send(Action.LISTEN, {"p": join_path(keys)})

        def done(future: asyncio.Future) -> None:
            reply = future.result()
            for listener in list(self.listeners.get(keys, ())):
                if reply.status == Status.OK.value and not listener.initialized:
                    self._initialize(listener)
                elif reply.status not in (Status.OK.value, "disconnected"):
                    self.callback_errors.append(DbError(reply.status, str(reply.data), join_path(keys)))
                    listener.ready.set()

        future.add_done_callback(done)

    def _remove_listener(self, listener: Listener) -> None:
        listeners = self.listeners.get(listener.keys, [])
        if listener in listeners:
            listeners.remove(listener)
        if not listeners and listener.keys in self.listeners:
            del self.listeners[listener.keys]
            if self._ws is not None:
                self._send(Action.UNLISTEN, {"p": listener.path})

    # ------------------------------------------------------------------ writes

    def set(self, path: str, value: Any) -> asyncio.Future:
        """Firebase's ``set``: listeners fire now; the future resolves when the server has
        written it (``None``), or raises :class:`DbError` after the rollback.

        Raises:
            TreeError: a bad path or value (at once, nothing is sent).
        """
        keys = parse_path(path)
        if has_server_values(value):  # checked now, resolved by the server (and locally, for show)
            normalize(resolve_server_values(value, None, 0), depth=len(keys))
            return self._queue_write(Action.PUT, keys, value)
        return self._queue_write(Action.PUT, keys, normalize(value, depth=len(keys)))

    def update(self, path: str, changes: dict[str, Any]) -> asyncio.Future:
        """Firebase's ``update``: several relative paths at once (``None`` deletes)."""
        keys = parse_path(path)
        update(None, keys, {rel: resolve_server_values(v, None, 0) for rel, v in changes.items()})  # checks
        return self._queue_write(Action.MERGE, keys, dict(changes))

    def remove(self, path: str) -> asyncio.Future:
        """Firebase's ``remove``."""
        return self.set(path, None)

    def push(self, path: str, value: Any = None) -> tuple[str, asyncio.Future]:
        """Firebase's ``push``: a child with a fresh push id; returns ``(key, future)``."""
        key = self.push_ids(self.now_ms())
        return key, self.set(f"{path.rstrip('/')}/{key}", value)

    def _queue_write(self, action: Action, keys: tuple[str, ...], data: Any) -> asyncio.Future:
        if self._closed:
            raise ConnectionError("this client is closed")
        before = self.visible()
        future = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # never "not retrieved"
        write = _Write(action, keys, data, future)
        self.pending.append(write)
        self._fire(before)
        if self._ws is not None:
            self._transmit_write(write)
        return future

    def _transmit_write(self, write: _Write) -> None:
        r, reply = self._send(write.action, {"p": join_path(write.keys), "d": write.data})
        self._in_flight[r] = write
        reply.add_done_callback(lambda f, write=write, r=r: self._settle(write, r, f.result()))

    def _settle(self, write: _Write, r: int, reply: Reply) -> None:
        self._in_flight.pop(r, None)
        if reply.status == "disconnected" or write not in self.pending:
            return  # stays pending: sent again after reconnecting
        before = self.visible()
        self.pending.remove(write)
        if reply.status == Status.OK.value:
            if not has_server_values(write.data):  # else only the server knows the value: its push tells
                self.server_cache = _apply(self.server_cache, write.action, write.keys, write.data)
            self._fire(before)
            if not write.future.done():
                write.future.set_result(None)
        else:
            self._fire(before)  # the rollback: listeners see the data without this write
            if not write.future.done():
                write.future.set_exception(DbError(reply.status, str(reply.data), join_path(write.keys)))

    async def _request(self, action: Action, body: dict[str, Any], timeout: float = 10.0) -> Reply:
        # one request, sent again after a reconnect if the connection dropped meanwhile
        async with asyncio.timeout(timeout):
            while True:
                await self._up.wait()
                reply = await self._send(action, body)[1]
                if reply.status != "disconnected":
                    return reply

    async def get(self, path: str) -> Value:
        """The value at ``path`` on the server (one round trip).

        Raises:
            DbError: the rules refuse the read.
        """
        reply = await self._request(Action.GET, {"p": join_path(parse_path(path))})
        if reply.status != Status.OK.value:
            raise DbError(reply.status, str(reply.data), path)
        return reply.data

    async def transaction(self, path: str, function: Callable[[Value], Any], *,
                          max_retries: int = MAX_RETRIES) -> TransactionResult:
        """Compare-and-set: write ``function(current)`` only if ``current`` is still the
        server's value; else run it again on the server's value (see the module docstring).

        ``function`` may return :data:`ABORT` to stop without writing.  Transactions of
        this client on one path run one after the other.

        Raises:
            DbError: refused by the rules, or a bad value.
        """
        keys = parse_path(path)
        where = join_path(keys)
        async with self._tx_locks[keys]:
            if any(is_prefix(k, keys) and any(l.initialized for l in ls) for k, ls in self.listeners.items()):
                current = get(self.server_cache, keys)
            else:
                current = await self.get(where)

            async def put(new: Value, digest: str) -> tuple[str, Any]:
                new = normalize(new, depth=len(keys))
                attempt = f"{self._session}-{next(self._attempts)}"  # the same if sent again
                reply = await self._request(Action.PUT, {"p": where, "d": new, "h": digest, "i": attempt})
                if reply.status == Status.OK.value:
                    before = self.visible()
                    self.server_cache = set_at(self.server_cache, keys, new)
                    self._fire(before)
                elif reply.status != Status.DATASTALE.value:
                    raise DbError(reply.status, str(reply.data), where)
                return reply.status, reply.data

            return await run_transaction(put, function, current, max_retries=max_retries, rng=self.rng)

    # ------------------------------------------------------------------ onDisconnect, presence

    async def _disconnect_op(self, action: Action, path: str, data: Any) -> None:
        keys = parse_path(path)
        body = {"p": join_path(keys)} if data is ABORT else {"p": join_path(keys), "d": data}
        reply = await self._request(action, body)
        if reply.status != Status.OK.value:
            raise DbError(reply.status, str(reply.data), path)
        if action is Action.DISCONNECT_CANCEL:
            self.on_disconnect = [op for op in self.on_disconnect if not is_prefix(keys, op[1])]
        else:
            self.on_disconnect.append((action, keys, data))

    async def on_disconnect_set(self, path: str, value: Any) -> None:
        """The server sets ``path`` to ``value`` when this connection drops.

        Raises:
            DbError: the rules refuse it now (it is checked when registered).
        """
        await self._disconnect_op(Action.DISCONNECT_PUT, path, value)

    async def on_disconnect_update(self, path: str, changes: dict[str, Any]) -> None:
        """The server applies ``update(path, changes)`` when this connection drops."""
        await self._disconnect_op(Action.DISCONNECT_MERGE, path, changes)

    async def on_disconnect_remove(self, path: str) -> None:
        """The server removes ``path`` when this connection drops."""
        await self._disconnect_op(Action.DISCONNECT_PUT, path, None)

    async def on_disconnect_cancel(self, path: str) -> None:
        """Forget the onDisconnect writes at ``path`` and below."""
        await self._disconnect_op(Action.DISCONNECT_CANCEL, path, ABORT)

    async def presence(self, path: str, value: Any = True) -> None:
        """Be present at ``path``: removed by the server when this connection drops, set
        again after every reconnect (Firebase's pattern on ``.info/connected``)."""
        keys = parse_path(path)
        await self.on_disconnect_remove(path)
        self.presences[keys] = value
        await self.set(path, value)

    # ------------------------------------------------------------------ the end

    async def close(self) -> None:
        """Close the connection; writes still pending fail with ``ConnectionError``."""
        self._closed = True
        ws = self._ws
        if ws is not None:
            await ws.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for write in self.pending:
            if not write.future.done():
                write.future.set_exception(ConnectionError("the client was closed before the server confirmed"))
        self.pending.clear()


def _apply(tree: Value, action: Action, keys: tuple[str, ...], data: Any, now_ms: int = 0) -> Value:
    # one write on a tree; server values are resolved with this client's estimate of the time
    if action is Action.MERGE:
        return update(tree, keys, {rel: resolve_server_values(v, get(tree, keys + parse_path(rel)), now_ms)
                                   for rel, v in data.items()})
    return set_at(tree, keys, resolve_server_values(data, get(tree, keys), now_ms))
