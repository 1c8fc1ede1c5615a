"""Minibase: a realtime database in the style of Firebase, on aiohttp, stored in SQLite.

Run it from a shell::

    python -m course.net.minibase --port 0 --db minibase.sqlite

It prints ``serving on ws://HOST:PORT/.ws`` and serves until SIGTERM or Ctrl-C.  In a notebook::

    server = await start_minibase(database="todo.sqlite", rules=my_rules)
    ...
    server.close()
    await server.wait_closed()

**What it serves.**

* ``/.ws``: the WebSocket protocol of :mod:`course.wire.dbproto` (listen, get, put with an
  optional transaction hash, merge, onDisconnect, auth).  The kernel's client is
  :class:`course.net.dbclient.DbClient`, the browser's ``course/ui/static/minibase.js``.
* ``/PATH.json``: Firebase's REST API.  ``GET`` returns the JSON at PATH; with
  ``Accept: text/event-stream`` it streams it as Server-Sent Events (chapter 1's format):
  ``event: put`` with ``data: {"path": "/", "data": …}`` first, then ``put`` and ``patch``
  events whose ``path`` is relative to PATH, and ``keep-alive`` every 30 s.  ``PUT`` sets,
  ``PATCH`` updates, ``POST`` pushes (returns ``{"name": PUSH_ID}``), ``DELETE`` removes.
  ``?auth=UID`` signs the request in as ``{"uid": UID}``.
* ``/todo.html``, ``/minibase.js``: the shared to-do page and the browser client.

**Layers.**  Paths and values are :mod:`course.wire.tree`, the rules
:mod:`course.wire.rules`, transactions :mod:`course.wire.transaction`, frames
:mod:`course.wire.dbproto` (all pure).  This module keeps the tree in memory, writes every
change to SQLite *before* it acknowledges it, and pushes changes to listeners through the
bounded queues of :mod:`course.net.fanout` (a listener that stops reading is dropped with
1008 and holds nobody up).  Handlers run on one event loop, so writes are applied one at a
time in arrival order: a transaction's compare-and-set needs no lock.

**Durability.**  SQLite in WAL mode with ``synchronous=FULL``: the WAL is synced to disk at
every commit, so an acknowledged write survives a crash of the process *and* of the
machine.  ``synchronous="NORMAL"`` syncs only at checkpoints: an acknowledged write survives
the process dying but may be lost if the machine loses power.  Writes are applied in memory
at once (so the next write, its rules and its transaction hash see them) and committed
together at the end of the event loop's turn: one commit, one fsync, for every write that
arrived meanwhile (a *group commit*); only then are listeners told and writers answered.
The commit runs on the event loop (a few ms): simple, ordered, and measured by
``benchmarks/minibase.py``.

**Server values.**  ``{".sv": "timestamp"}`` is replaced by the server's clock and
``{".sv": {"increment": n}}`` by the number there plus ``n``, when the write is applied
(:func:`course.wire.tree.resolve_server_values`): a counter that every client increments
this way counts exactly, with no transaction and no retry.

**Auth.**  By default a teaching shortcut: a client *claims* its identity (``auth`` with
``{"cred": {"uid": "ada"}}``, or ``?auth=ada`` over REST) and the server believes it
(:func:`trust_claims`), so anybody may claim to be anybody.  Firebase verifies a signed ID
token instead; :func:`verified_sessions` does the same with chapter 6's signed sessions
(``authenticate=verified_sessions(signer)``: only a value the server signed gets in).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sqlite3
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from course.net.fanout import Fanout, join_aiohttp
from course.net.lifecycle import AppService, run_until_signal
from course.protocol import CloseCode
from course.wire.auth import AuthError, SessionSigner
from course.wire.origin import request_origin_allowed
from course.wire import dbproto
from course.wire.dbproto import Action, BadRequest, Request, Status
from course.wire.envelope import ErrorCode
from course.wire.pushid import PushIds
from course.wire.rules import OPEN_RULES, RuleNode, RulesError, can_read, can_write, compile_rules
from course.wire.sse import format_sse
from course.wire.transaction import matches
from course.wire.tree import (MAX_VALUE_BYTES, TreeError, Value, check_size, get, is_prefix, join_path,
                              leaves, normalize, parse_path, resolve_server_values, set_at, update)

__all__ = ["Store", "Subscriber", "MinibaseServer", "start_minibase", "trust_claims",
           "verified_sessions", "main", "MAX_FRAME_BYTES", "REMEMBERED_ATTEMPTS"]

REMEMBERED_ATTEMPTS = 10_000  #: transaction attempt ids the server remembers
MAX_FRAME_BYTES = 64 * 1024  #: frames may hold twice ``max_value_bytes``, and at least this
_KEEPALIVE = 30.0


def trust_claims(cred: Any) -> dict[str, Any] | None:
    """The teaching ``authenticate``: ``{"uid": "ada", ...}`` or ``"ada"`` is believed as is."""
    if isinstance(cred, str) and cred:
        return {"uid": cred}
    if isinstance(cred, Mapping) and isinstance(cred.get("uid"), str) and cred["uid"]:
        return dict(cred)
    return None


def verified_sessions(signer: SessionSigner,
                      clock: Callable[[], float] = time.time) -> Callable[[Any], dict[str, Any] | None]:
    """An ``authenticate`` that believes only session values ``signer`` made (chapter 6).

    The application signs a user in by its own means (a password, a login provider), then
    gives the client ``signer.sign(user, time.time())``; the client signs in to the
    database with that value, as a Firebase client sends its ID token.  A claim such as
    ``{"uid": "ada"}``, a forged or altered value, or one older than ``signer.max_age``
    is refused (``permission_denied``).

    Args:
        signer: the application's :class:`course.wire.auth.SessionSigner`.
        clock: the time in seconds, to check a value's age (default ``time.time``).

    Returns:
        ``authenticate(cred)``: ``{"uid": user}``, or ``None`` for anything else.
    """
    def authenticate(cred: Any) -> dict[str, Any] | None:
        if not isinstance(cred, str):
            return None
        try:
            return {"uid": signer.verify(cred, clock())}
        except AuthError:
            return None

    return authenticate


class Store:
    """The tree in SQLite, one row per leaf: ``leaves(path TEXT PRIMARY KEY, value TEXT)``.

    ``"/todos/-Nd…/text" → '"milk"'``.  A write replaces the rows at and below each written
    path (a range scan: the paths below ``/a`` are those in ``["/a/", "/a0")``, since ``0``
    follows ``/``), removes a leaf above it, and inserts the new leaves; all the paths of
    one write commit together.

    Args:
        filename: the database file (``":memory:"``: no file, nothing survives).
        synchronous: ``"FULL"`` (every commit is on disk) or ``"NORMAL"`` (see the
            module docstring).

    Raises:
        ValueError: another ``synchronous``.
        sqlite3.Error: the file cannot be opened.
    """

    def __init__(self, filename: str | Path = ":memory:", *, synchronous: str = "FULL") -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, got {synchronous!r}")
        self.filename = str(filename)
        self.synchronous = synchronous
        self.db = sqlite3.connect(self.filename, isolation_level=None, check_same_thread=False)
        self.journal_mode = self.db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        self.db.execute(f"PRAGMA synchronous={synchronous}")
        self.db.execute("CREATE TABLE IF NOT EXISTS leaves (path TEXT PRIMARY KEY, value TEXT NOT NULL)"
                        " WITHOUT ROWID")
        self.commits = 0

    def load(self) -> Value:
        """The whole tree, read from the file (one pass: dicts are built in place)."""
        root: dict[str, Any] = {}
        for path, text in self.db.execute("SELECT path, value FROM leaves"):
            value = json.loads(text)
            if path == "/":
                return value
            node = root
            *parents, last = path.split("/")[1:]
            for key in parents:
                node = node.setdefault(key, {})
            node[last] = value
        return root or None

    def write(self, writes: list[tuple[tuple[str, ...], Value]]) -> None:
        """Replace the subtree at each path with its value (normalized; ``None`` deletes),
        in one transaction, committed (and synced, per ``synchronous``) on return."""
        cursor = self.db.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            for keys, value in writes:
                path = join_path(keys)
                if keys:
                    cursor.execute("DELETE FROM leaves WHERE path = ? OR (path >= ? AND path < ?)",
                                   (path, path + "/", path + "0"))
                    cursor.executemany("DELETE FROM leaves WHERE path = ?",
                                       [(join_path(keys[:i]),) for i in range(len(keys))])
                else:
                    cursor.execute("DELETE FROM leaves")
                cursor.executemany("INSERT INTO leaves (path, value) VALUES (?, ?)",
                                   [(join_path(k), json.dumps(v)) for k, v in leaves(value, keys)])
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        self.commits += 1

    def close(self) -> None:
        """Close the file (a checkpoint folds the WAL back into it)."""
        self.db.close()


@dataclass
class _Accepted:
    # a write applied in memory, waiting for its commit
    action: Action
    keys: tuple[str, ...]
    writes: list[tuple[tuple[str, ...], Value]]
    old_tree: Value
    new_tree: Value
    done: Callable[[Status, Any], None]
    attempt: str | None = None


@dataclass(eq=False)
class Subscriber:
    """Something listening: one WebSocket connection, or one SSE stream.

    Attributes:
        deliver: ``deliver(kind, keys, data)``, ``kind`` ``"d"`` (the value at ``keys`` is
            now ``data``) or ``"m"`` (``data`` maps relative paths below ``keys`` to values).
        auth: the claims the rules see (``None``: signed out).
        listens: the paths it listens to.
        on_disconnect: the writes to run when it goes (``(action, keys, data)``).
    """

    deliver: Callable[[str, tuple[str, ...], Any], None]
    auth: dict[str, Any] | None = None
    listens: set[tuple[str, ...]] = field(default_factory=set)
    on_disconnect: list[tuple[Action, tuple[str, ...], Any]] = field(default_factory=list)

    def covering(self) -> list[tuple[str, ...]]:
        """Its listen paths that are not below another of its listen paths."""
        return [p for p in self.listens if not any(q != p and is_prefix(q, p) for q in self.listens)]


class MinibaseServer(AppService):
    """The database server; see the module docstring.

    Args:
        database: the SQLite file (default ``":memory:"``), loaded at start.
        rules: the security rules (``{"rules": {...}}``, default: everyone reads and writes).
        synchronous: ``"FULL"`` or ``"NORMAL"`` (see :class:`Store`).
        max_value_bytes: the largest value one write may carry (canonical JSON bytes); a
            WebSocket frame above twice that (and above 64 KiB) closes the connection
            with 1009 (message too big) before it is even parsed.
        authenticate: ``authenticate(cred) -> claims or None`` (default :func:`trust_claims`).
        clock: milliseconds since 1970 (``now`` in rules, push ids of REST ``POST``).
        queue_size, grace, max_bytes, close_timeout: the fanout bounds (slow listeners).
        heartbeat: seconds between the server's pings; a connection that does not answer
            within half of it is closed and its onDisconnect writes run (a client whose
            cable was pulled sends no FIN: without pings it would stay "online" forever).
        allowed_origins: the browser pages that may open ``/.ws`` besides the server's own
            (:func:`course.wire.origin.origin_allowed`; ``"*"``: any), against cross-site
            WebSocket hijacking (chapter 6).

    Attributes:
        tree: the current data.
        store: the :class:`Store`.
        disconnect_writes: onDisconnect writes run so far.

    Raises:
        RulesError: rules that do not compile.
        ValueError: a bad ``heartbeat`` or ``synchronous``.
    """

    scheme = "ws"
    path = "/.ws"

    def __init__(self, database: str | Path = ":memory:", *, rules: Mapping[str, Any] = OPEN_RULES,
                 synchronous: str = "FULL", max_value_bytes: int = MAX_VALUE_BYTES,
                 authenticate: Callable[[Any], dict[str, Any] | None] = trust_claims,
                 clock: Callable[[], int] = lambda: int(time.time() * 1000),
                 queue_size: int = 256, grace: float = 2.0, max_bytes: int = 8 * 1024 * 1024,
                 close_timeout: float = 2.0, heartbeat: float | None = 20.0,
                 allowed_origins: str | set[str] | None = None) -> None:
        if heartbeat is not None and not heartbeat > 0:
            raise ValueError(f"heartbeat must be > 0 seconds or None, got {heartbeat}")
        self.heartbeat = heartbeat
        self.allowed_origins = allowed_origins if allowed_origins == "*" else set(allowed_origins or ())
        self.rules: RuleNode = compile_rules(rules)
        self.store = Store(database, synchronous=synchronous)
        self.tree: Value = self.store.load()
        self.max_value_bytes = max_value_bytes
        self.max_frame_bytes = max(MAX_FRAME_BYTES, 2 * max_value_bytes)  #: beyond: closed with 1009
        self.authenticate = authenticate
        self.clock = clock
        self.push_ids = PushIds()
        self.fanout = Fanout(queue_size, grace=grace, max_bytes=max_bytes, close_timeout=close_timeout)
        self.subscribers: set[Subscriber] = set()
        self.disconnect_writes = 0
        self.commits = 0  #: SQLite commits (one per group of writes)
        self._batch: list[_Accepted] = []
        self._attempts: OrderedDict[str, None] = OrderedDict()
        self._sessions = itertools.count(1)
        self._streams: set[asyncio.Queue] = set()
        self.app = web.Application()
        self.app.router.add_get("/.ws", self._websocket)
        self.app.router.add_get("/todo.html", self._page("todo.html", "text/html"))
        self.app.router.add_get("/minibase.js", self._page("minibase.js", "text/javascript"))
        self.app.router.add_route("*", "/{tail:.*}", self._rest)

    @property
    def shutdown_timeout(self) -> float:
        return self.fanout.close_timeout or 60.0

    async def _stop(self) -> None:
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        for queue in list(self._streams):
            queue.put_nowait(None)
        await self.fanout.stop(CloseCode.GOING_AWAY, "server stopping")
        await runner.cleanup()
        self._flush()
        self.store.close()

    # ------------------------------------------------------------------ the one way to write

    def submit(self, action: Action, keys: tuple[str, ...], data: Any, *,
               done: Callable[[Status, Any], None], auth: Mapping[str, Any] | None = None,
               expected_hash: str | None = None, check_rules: bool = True,
               attempt: str | None = None) -> None:
        """Check one write and apply it to the tree in memory now; store it with the other
        writes of this turn of the event loop (one SQLite commit for all: a *group commit*),
        then tell the listeners and call ``done(status, data)``.

        Args:
            action: :data:`Action.PUT` (set ``keys`` to ``data``) or :data:`Action.MERGE`
                (``data`` maps relative paths below ``keys`` to values).
            keys: where (``parse_path`` output).
            data: the value or the changes.
            done: called once: ``(Status.OK, None)`` after the commit, or at once with a
                refusal: ``(Status.DATASTALE, current value)``, ``(Status.PERMISSION_DENIED,
                reason)``, ``(Status.INVALID_PATH | INVALID_DATA | TOO_BIG, reason)``;
                ``(Status.UNAVAILABLE, reason)`` if SQLite failed (the writes of that
                commit are undone in memory too).
            auth: the writer's claims, for the rules.
            expected_hash: a transaction's hash of the value at ``keys`` it was based on.
            check_rules: ``False`` for the server's own writes (the kernel's admin access).
            attempt: a transaction attempt's id; one already applied is answered ``ok``
                and not applied again (the last :data:`REMEMBERED_ATTEMPTS` ids, in memory).
        """
        if attempt is not None and attempt in self._attempts:
            done(Status.OK, None)  # sent again after a reconnect: it was applied already
            return
        if expected_hash is not None and not matches(get(self.tree, keys), expected_hash):
            done(Status.DATASTALE, get(self.tree, keys))
            return
        status, reason, writes, new_tree = self._prepare(action, keys, data, auth, check_rules)
        if status is not Status.OK:
            done(status, reason)
            return
        self._batch.append(_Accepted(action, keys, writes, self.tree, new_tree, done, attempt))
        self.tree = new_tree
        if attempt is not None:
            self._attempts[attempt] = None
            while len(self._attempts) > REMEMBERED_ATTEMPTS:
                self._attempts.popitem(last=False)
        if len(self._batch) == 1:
            asyncio.get_running_loop().call_soon(self._flush)

    def write(self, action: Action, keys: tuple[str, ...], data: Any, *,
              auth: Mapping[str, Any] | None = None, expected_hash: str | None = None,
              check_rules: bool = True) -> tuple[Status, Any]:
        """:meth:`submit`, committed before it returns (with the writes waiting for their
        group commit, if any); returns what ``done`` would receive."""
        result: list[tuple[Status, Any]] = []
        self.submit(action, keys, data, auth=auth, expected_hash=expected_hash, check_rules=check_rules,
                    done=lambda status, data: result.append((status, data)))
        self._flush()
        return result[0]

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        try:
            self.store.write([w for accepted in batch for w in accepted.writes])
        except sqlite3.Error as error:
            self.tree = batch[0].old_tree
            for accepted in batch:
                self._attempts.pop(accepted.attempt, None)
                accepted.done(Status.UNAVAILABLE, f"the write could not be stored: {error}")
            return
        self.commits += 1
        for accepted in batch:
            self._notify(accepted)
            accepted.done(Status.OK, None)

    def read(self, keys: tuple[str, ...] | str, auth: Mapping[str, Any] | None = None) -> tuple[Status, Any]:
        """``(Status.OK, value)`` if the rules let ``auth`` read there, else the refusal."""
        keys = parse_path(keys)
        decision = can_read(self.rules, keys, root=self.tree, auth=auth, now=self.clock())
        if not decision:
            return Status.PERMISSION_DENIED, decision.reason
        return Status.OK, get(self.tree, keys)

    def _notify(self, accepted: "_Accepted") -> None:
        action, base, writes = accepted.action, accepted.keys, accepted.writes
        old_tree, new_tree = accepted.old_tree, accepted.new_tree
        for subscriber in list(self.subscribers):
            for listen in subscriber.covering():
                if action is Action.MERGE and is_prefix(listen, base):
                    subscriber.deliver("m", base, {"/".join(k[len(base):]): v for k, v in writes})
                    continue
                above = False
                for keys, value in writes:
                    if is_prefix(listen, keys):
                        subscriber.deliver("d", keys, value)
                    elif is_prefix(keys, listen):
                        above = True
                if above and get(old_tree, listen) != get(new_tree, listen):
                    subscriber.deliver("d", listen, get(new_tree, listen))

    # ------------------------------------------------------------------ WebSocket

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if not request_origin_allowed(request.headers, self.allowed_origins, self.port):
            return web.Response(status=403, text="origin not allowed\n")
        ws = web.WebSocketResponse(max_msg_size=self.max_frame_bytes, heartbeat=self.heartbeat)
        if not await join_aiohttp(self.fanout, request, ws):
            return ws
        send = lambda text: self.fanout.send(ws, text)  # noqa: E731
        subscriber = Subscriber(lambda kind, keys, data: send(
            dbproto.data_push(keys, data) if kind == "d" else dbproto.merge_push(keys, data)))
        self.subscribers.add(subscriber)
        send(dbproto.hello(self.clock(), f"s{next(self._sessions)}"))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        answer = self._answer(subscriber, dbproto.decode_request(msg.data), send)
                        if answer is not None:
                            send(answer)
                    except BadRequest as error:
                        send(error.answer())
                elif msg.type == WSMsgType.BINARY:
                    send(BadRequest("binary frames are not accepted; send JSON text",
                                    code=ErrorCode.NOT_TEXT).answer())
        except (ConnectionError, RuntimeError):
            pass
        finally:
            self.subscribers.discard(subscriber)
            self.fanout.leave(ws)
            self._run_on_disconnect(subscriber)
        return ws

    def _run_on_disconnect(self, subscriber: Subscriber) -> None:
        for action, keys, data in subscriber.on_disconnect:
            status, _ = self.write(action, keys, data, auth=subscriber.auth)
            self.disconnect_writes += status is Status.OK
        subscriber.on_disconnect.clear()

    def _answer(self, sub: Subscriber, request: Request, send: Callable[[str], Any]) -> str | None:
        # the reply to send now, or None when a write will reply after its commit
        action, keys = request.action, request.path
        if action is Action.AUTH:
            claims = self.authenticate(request.cred)
            if claims is None:
                return dbproto.reply(request.r, Status.PERMISSION_DENIED, "invalid credentials")
            sub.auth = claims
            return dbproto.reply(request.r, Status.OK, {"auth": claims})
        if action is Action.UNAUTH:
            sub.auth = None
            return dbproto.reply(request.r, Status.OK)
        if action in (Action.LISTEN, Action.GET):
            status, value = self.read(keys, sub.auth)
            if status is not Status.OK:
                return dbproto.reply(request.r, status, value)
            if action is Action.GET:
                return dbproto.reply(request.r, Status.OK, value)
            sub.listens.add(keys)
            sub.deliver("d", keys, value)  # the data first, then the ok (as Firebase)
            return dbproto.reply(request.r, Status.OK)
        if action is Action.UNLISTEN:
            sub.listens.discard(keys)
            return dbproto.reply(request.r, Status.OK)
        if action in (Action.PUT, Action.MERGE):
            self.submit(action, keys, request.data, auth=sub.auth, expected_hash=request.hash,
                        attempt=request.id, done=lambda status, data, r=request.r: send(dbproto.reply(r, status, data)))
            return None
        if action is Action.DISCONNECT_CANCEL:
            sub.on_disconnect[:] = [op for op in sub.on_disconnect if not is_prefix(keys, op[1])]
            return dbproto.reply(request.r, Status.OK)
        # DISCONNECT_PUT / DISCONNECT_MERGE: checked now as if written now, kept, run at the end
        real = Action.PUT if action is Action.DISCONNECT_PUT else Action.MERGE
        status, reason, _, _ = self._prepare(real, keys, request.data, sub.auth)
        if status is Status.OK:
            sub.on_disconnect.append((real, keys, request.data))
        return dbproto.reply(request.r, status, reason)

    def _prepare(self, action: Action, keys: tuple[str, ...], data: Any,
                 auth: Mapping[str, Any] | None, check_rules: bool = True) -> tuple[Status, Any, list, Value]:
        # (status, reason, writes, new tree): the checks of a write, without doing it
        now = self.clock()
        try:
            if action is Action.MERGE:
                if not isinstance(data, Mapping):
                    return Status.BAD_REQUEST, "a merge needs an object of relative paths", [], None
                writes = []
                for rel, value in data.items():
                    path = keys + parse_path(rel)
                    value = resolve_server_values(value, get(self.tree, path), now)
                    writes.append((path, normalize(value, depth=len(path))))
                check_size({join_path(k): v for k, v in writes}, self.max_value_bytes)
                new_tree = update(self.tree, keys, {join_path(k[len(keys):]): v for k, v in writes})
            else:
                value = normalize(resolve_server_values(data, get(self.tree, keys), now), depth=len(keys))
                check_size(value, self.max_value_bytes)
                writes, new_tree = [(keys, value)], set_at(self.tree, keys, value)
        except TreeError as error:
            return dbproto.status_of(error), str(error), [], None
        if check_rules:
            for written, _ in writes:
                decision = can_write(self.rules, written, old_root=self.tree, new_root=new_tree,
                                     auth=auth, now=now)
                if not decision:
                    return Status.PERMISSION_DENIED, decision.reason, [], None
        return Status.OK, None, writes, new_tree

    # ------------------------------------------------------------------ REST and SSE

    @staticmethod
    def _page(name: str, content_type: str):
        async def handler(request: web.Request) -> web.Response:
            body = resources.files("course.ui").joinpath("static", name).read_bytes()
            return web.Response(body=body, content_type=content_type, charset="utf-8",
                                headers={"Cache-Control": "no-store"})
        return handler

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        if not tail.endswith(".json"):
            return web.json_response({"error": "not found: database paths end in .json"}, status=404)
        try:
            keys = parse_path(tail[: -len(".json")])
        except TreeError as error:
            return web.json_response({"error": str(error)}, status=400)
        auth = self.authenticate(request.query["auth"]) if "auth" in request.query else None
        if request.method == "GET":
            if "text/event-stream" in request.headers.get("Accept", ""):
                return await self._stream(request, keys, auth)
            status, value = self.read(keys, auth)
            return self._rest_answer(status, value, value)
        if request.method not in ("PUT", "PATCH", "POST", "DELETE"):
            return web.json_response({"error": f"method {request.method} not allowed"}, status=405)
        data = None
        if request.method != "DELETE":
            try:
                data = json.loads(await request.read() or b"null")
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                return web.json_response({"error": "the body is not JSON"}, status=400)
        if request.method == "POST":
            name = self.push_ids(self.clock())
            status, why = await self._committed(Action.PUT, keys + (name,), data, auth)
            return self._rest_answer(status, why, {"name": name})
        if request.method == "PATCH":
            status, why = await self._committed(Action.MERGE, keys, data, auth)
            return self._rest_answer(status, why, data)
        status, why = await self._committed(Action.PUT, keys, data, auth)
        return self._rest_answer(status, why, data if request.method == "PUT" else None)

    async def _committed(self, action: Action, keys: tuple[str, ...], data: Any, auth: Any) -> tuple[Status, Any]:
        future = asyncio.get_running_loop().create_future()
        self.submit(action, keys, data, auth=auth,
                    done=lambda status, why: future.done() or future.set_result((status, why)))
        return await future

    @staticmethod
    def _rest_answer(status: Status, why: Any, body: Any) -> web.Response:
        if status is Status.OK:
            return web.json_response(body, dumps=lambda v: json.dumps(v, ensure_ascii=False))
        code = {Status.PERMISSION_DENIED: 401, Status.TOO_BIG: 413, Status.UNAVAILABLE: 503}.get(status, 400)
        return web.json_response({"error": f"{status.value}: {why}"}, status=code)

    async def _stream(self, request: web.Request, keys: tuple[str, ...], auth: Any) -> web.StreamResponse:
        status, value = self.read(keys, auth)
        if status is not Status.OK:
            return self._rest_answer(status, value, None)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-store"})
        await response.prepare(request)
        queue: asyncio.Queue = asyncio.Queue(maxsize=self.fanout.queue_size)

        def deliver(kind: str, at: tuple[str, ...], data: Any) -> None:
            event = "put" if kind == "d" else "patch"
            try:
                queue.put_nowait(format_sse(json.dumps({"path": join_path(at[len(keys):]), "data": data},
                                                       ensure_ascii=False), event=event))
            except asyncio.QueueFull:  # a stream that does not keep up is ended
                self.subscribers.discard(subscriber)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)

        subscriber = Subscriber(deliver, auth, {keys})
        self._streams.add(queue)
        self.subscribers.add(subscriber)  # before the first await: no write falls in between
        try:
            await response.write(format_sse(json.dumps({"path": "/", "data": value}, ensure_ascii=False),
                                            event="put").encode())
            while True:
                try:
                    async with asyncio.timeout(_KEEPALIVE):
                        text = await queue.get()
                except TimeoutError:
                    text = format_sse("null", event="keep-alive")
                if text is None:
                    break
                await response.write(text.encode())
        except (ConnectionError, RuntimeError):
            pass
        finally:
            self.subscribers.discard(subscriber)
            self._streams.discard(queue)
        return response


async def start_minibase(host: str = "127.0.0.1", port: int = 0, **options: Any) -> MinibaseServer:
    """Start a :class:`MinibaseServer` on ``host:port`` (port 0: any free one).

    Raises:
        OSError: the address cannot be bound.
        RulesError: rules that do not compile.
        sqlite3.Error: the database file cannot be opened.
    """
    server = MinibaseServer(**options)
    try:
        return await server.start(host, port)
    except BaseException:
        server.store.close()
        raise


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m course.net.minibase --host H --port P --db FILE [--rules R.json]
    [--synchronous FULL|NORMAL]``."""
    parser = argparse.ArgumentParser(prog="python -m course.net.minibase", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--db", default="minibase.sqlite", help="SQLite file (default minibase.sqlite)")
    parser.add_argument("--rules", help="a JSON file of rules (default: open to all)")
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL",
                        help="SQLite's synchronous pragma (default FULL: every ack is on disk)")
    args = parser.parse_args(argv)
    try:
        rules = json.loads(Path(args.rules).read_text()) if args.rules else OPEN_RULES
        compile_rules(rules)
    except (OSError, ValueError, RulesError) as problem:
        print(f"cannot load the rules: {problem}", file=sys.stderr)
        return 1
    try:
        return run_until_signal(lambda: start_minibase(args.host, args.port, database=args.db, rules=rules,
                                                                synchronous=args.synchronous),
                                "serving on {url}")
    except (OSError, sqlite3.Error) as problem:
        print(f"cannot serve: {problem}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
