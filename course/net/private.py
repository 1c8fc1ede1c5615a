"""Chapter 6's private rooms: sign-in, tickets, per-room rights, and the attacks on them.

Run it from a shell::

    python -m course.net.private --host 127.0.0.1 --port 0

It prints ``serving on http://HOST:PORT/``.  The page (``course/ui/static/private.html``)
signs in (``POST /login``: a signed, ``HttpOnly``, ``SameSite=Lax`` session cookie; a
demo, so the name alone signs in), fetches a ticket (``POST /ticket``) and opens
``socket?ticket=T``.  The socket speaks the course's envelope::

    → {"type": "join", "room": "payroll"}
    ← {"type": "joined", "room": "payroll", "history": [{"user": ..., "text": ...}, ...]}
    ← {"type": "error", "code": "forbidden", "error": "'bob' may not join ..."}
    → {"type": "message", "room": "payroll", "text": "..."}
    ← {"type": "message", "room": "payroll", "user": "ada", "text": "..."}   (to the room)

The handshake is checked in this order, each refusal an HTTP status before any
WebSocket exists:

1. ``Origin`` (:func:`course.wire.origin.origin_allowed`): a browser page from another
   origin gets **403**.  ``check_origin=False`` turns the check off, which is the
   vulnerable server of the cross-site WebSocket hijacking demo;
2. who: ``?ticket=`` (redeemed once, :class:`course.wire.auth.TicketBook`) or, if
   ``cookie_auth``, the session cookie (:class:`course.wire.auth.SessionSigner`);
   neither gives **401** with the error envelope as body.

Connections are under a :class:`course.net.guard.ConnectionGuard` (caps, and a deadline for
the handshake, the TLS one included when the server speaks ``https``).

Every request is written to :attr:`PrivateServer.access_log` in the Common Log Format,
the request line with its query string, as nginx and aiohttp write it: a ticket shows
up there, and is spent by then.  :class:`AttackerSite` serves the attacker's page of
the demo (``course/ui/static/attacker.html``) from another origin and records what the
page steals.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import ssl
import sys
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from importlib import resources
from typing import Any

from aiohttp import WSMsgType, web

from course.net.fanout import Fanout, join_aiohttp
from course.net.guard import ConnectionGuard
from course.net.lifecycle import AppService, run_until_signal
from course.net.tls import TLSAppService
from course.protocol import CloseCode
from course.wire.auth import AuthError, Denied, RoomPolicy, SessionSigner, TicketBook
from course.wire.envelope import BadMessage, ErrorCode, decode, encode
from course.wire.origin import request_origin_allowed

__all__ = ["COOKIE", "DEFAULT_USERS", "DEFAULT_POLICY", "DEFAULT_SEED", "MAX_TEXT_CHARS",
           "PrivateServer", "AttackerSite", "start_private", "main"]

COOKIE = "session"                      #: the session cookie's name
DEFAULT_USERS = ("ada", "bob", "eve")   #: who may sign in (a demo: the name is enough)
DEFAULT_POLICY = RoomPolicy(public=("lobby",), private={"payroll": ("ada",)})
#: What the rooms hold before anyone speaks: the secret the attacker is after.
DEFAULT_SEED = {"lobby": [("ada", "welcome to the lobby")],
                "payroll": [("ada", "SECRET: salaries are paid on the 25th")]}
MAX_TEXT_CHARS = 2000                   #: longest message text
_HISTORY = 50                           #: messages a room keeps
_LOG_LINES = 200                        #: access log lines kept
_USER = web.RequestKey("user", str)      # who made a request, for the access log


def _static(name: str) -> bytes:
    return resources.files("course.ui").joinpath(f"static/{name}").read_bytes()


def _page(name: str) -> Callable[[web.Request], Any]:
    """An aiohttp handler that serves ``course/ui/static/NAME`` as HTML."""
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=_static(name), content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store",
                                     # no other site may frame the page (clickjacking)
                                     "Content-Security-Policy": "frame-ancestors 'none'",
                                     "X-Content-Type-Options": "nosniff"})
    return handler


def _clf(request: web.Request, status: int, user: str) -> str:
    """One access log line, Common Log Format: the request line with its query string."""
    when = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    version = f"{request.version.major}.{request.version.minor}"
    return (f'{request.remote} - {user} [{when}] '
            f'"{request.method} {request.raw_path} HTTP/{version}" {status}')


class PrivateServer(TLSAppService):
    """Sign-in, tickets and rooms some users may not read (see the module docstring).

    Args:
        check_origin: refuse browser pages from other origins with 403 (``False``: the
            vulnerable server of the hijacking demo).
        allowed_origins: origins let in besides the server's own.
        cookie_auth: accept the session cookie on the socket (``False``: tickets only).
        users: who may sign in.
        policy: which user may join which room.
        seed: room → ``(user, text)`` messages the room starts with.
        ticket_ttl: seconds a ticket stays valid.
        secret: the session signing key (default: a random one per server).
        clock: seconds now (wall clock; a test passes its own).
        guard: connection caps and handshake deadline, for plain and TLS connections
            (default: a :class:`course.net.guard.ConnectionGuard` with its defaults).
    """

    scheme = "http"  # url: the page to open in a browser
    path = "/"
    shutdown_timeout = 2.0

    def __init__(self, *, check_origin: bool = True, allowed_origins: Collection[str] = (),
                 cookie_auth: bool = True, users: Collection[str] = DEFAULT_USERS,
                 policy: RoomPolicy = DEFAULT_POLICY,
                 seed: Mapping[str, list[tuple[str, str]]] = DEFAULT_SEED,
                 ticket_ttl: float = 10.0, secret: bytes | None = None,
                 clock: Callable[[], float] = time.time, guard: ConnectionGuard | None = None) -> None:
        self.check_origin = check_origin
        self.allowed_origins = set(allowed_origins)
        self.cookie_auth = cookie_auth
        self.users = frozenset(users)
        self.policy = policy
        self.sessions = SessionSigner(secret or secrets.token_bytes(32))
        self.tickets = TicketBook(ticket_ttl)
        self.clock = clock
        self.history: dict[str, deque[dict[str, str]]] = {
            room: deque(({"user": u, "text": t} for u, t in seed.get(room, ())), maxlen=_HISTORY)
            for room in policy.rooms}
        self.access_log: deque[str] = deque(maxlen=_LOG_LINES)
        self.clients = Fanout(16, close_timeout=1.0)
        self._joined: dict[Any, set[str]] = {}  # ws -> its rooms
        self.guard = guard if guard is not None else ConnectionGuard()
        self.app = web.Application(middlewares=[self.guard.middleware, self._log])
        self.app.router.add_get("/", _page("private.html"))
        self.app.router.add_post("/login", self._login)
        self.app.router.add_post("/ticket", self._ticket)
        self.app.router.add_get("/socket", self._socket)

    @property
    def socket_url(self) -> str:
        """``ws://HOST:PORT/socket`` (``wss://`` with TLS)."""
        return self.url.replace("http", "ws", 1) + "socket"

    async def _stop(self) -> None:
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        await self.clients.stop(CloseCode.GOING_AWAY, "server stopping")
        await runner.cleanup()

    def session_for(self, user: str) -> str:
        """A valid session cookie value for ``user`` (what ``POST /login`` sets)."""
        return self.sessions.sign(user, self.clock())

    @web.middleware
    async def _log(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        response = await handler(request)
        self.access_log.append(_clf(request, response.status, request.get(_USER, "-")))
        return response

    async def _login(self, request: web.Request) -> web.Response:
        form = await request.post()
        user = str(form.get("user", ""))
        if user not in self.users:
            return web.json_response({"type": "error", "code": Denied.UNAUTHENTICATED.value,
                                      "error": "unknown user"}, status=401)
        response = web.json_response({"type": "welcome", "user": user})
        response.set_cookie(COOKIE, self.session_for(user), httponly=True, samesite="Lax",
                            path="/", secure=self.ssl_context is not None)
        return response

    def _who(self, request: web.Request) -> str:
        """The user of an HTTP request: its session cookie, verified (raises AuthError)."""
        return self.sessions.verify(request.cookies.get(COOKIE), self.clock())

    async def _ticket(self, request: web.Request) -> web.Response:
        try:
            request[_USER] = user = self._who(request)
        except AuthError as error:
            return web.Response(status=401, text=error.encode(), content_type="application/json")
        ticket = self.tickets.issue(user, self.clock())
        return web.json_response({"ticket": ticket.value, "expires_in": self.tickets.ttl})

    def _authenticate(self, request: web.Request) -> str:
        ticket = request.query.get("ticket")
        if ticket is not None or not self.cookie_auth:
            return self.tickets.redeem(ticket, self.clock())
        return self._who(request)

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        if self.check_origin and not request_origin_allowed(request.headers, self.allowed_origins,
                                                            self.port):
            return web.Response(status=403, text="origin not allowed\n")
        try:
            request[_USER] = user = self._authenticate(request)
        except AuthError as error:
            return web.Response(status=401, text=error.encode(), content_type="application/json")
        ws = web.WebSocketResponse(max_msg_size=16 * 1024, heartbeat=30)
        if not await join_aiohttp(self.clients, request, ws, prefix=f"{user}@"):
            return ws
        self._joined[ws] = set()
        self.clients.send(ws, encode("welcome", user=user, rooms=self.policy.rooms))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._receive(ws, user, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    self.clients.send(ws, BadMessage(ErrorCode.NOT_TEXT, "send JSON text").encode())
        except (ConnectionError, RuntimeError):
            pass
        finally:
            self.clients.leave(ws)
            self._joined.pop(ws, None)
        return ws

    def _receive(self, ws: Any, user: str, data: str) -> None:
        try:
            message = decode(data, types=("join", "message"))
            room = message.get("room")
            if not isinstance(room, str):
                raise BadMessage(ErrorCode.BAD_SHAPE, 'expected a "room" string')
            if message["type"] == "join":
                self.policy.check(user, room)
                self._joined[ws].add(room)
                self.clients.send(ws, encode("joined", room=room, history=list(self.history[room])))
                return
            if room not in self._joined[ws]:
                raise AuthError(Denied.FORBIDDEN, f"join {room!r} before you speak in it")
            text = message.get("text")
            if not isinstance(text, str) or not text.strip():
                raise BadMessage(ErrorCode.EMPTY, 'expected a non-empty "text" string')
            if len(text) > MAX_TEXT_CHARS:
                raise BadMessage(ErrorCode.TOO_LONG, f"text longer than {MAX_TEXT_CHARS} characters")
        except (BadMessage, AuthError) as error:
            self.clients.send(ws, error.encode())
            return
        self.post(room, user, text)

    def post(self, room: str, user: str, text: str) -> int:
        """Add a message to ``room`` and send it to every connection in it.

        Returns:
            How many connections it was queued for.

        Raises:
            KeyError: no such room.
        """
        entry = {"user": user, "text": text}
        self.history[room].append(entry)
        frame = encode("message", room=room, **entry)
        return sum(self.clients.send(ws, frame) for ws, rooms in list(self._joined.items())
                   if room in rooms)


class AttackerSite(AppService):
    """The attacker's web site: ``/`` serves ``attacker.html``, ``POST /loot`` records.

    The page opens ``new WebSocket(target)`` (``?target=ws://HOST:PORT/socket`` in its
    URL), asks for the private room and posts every frame it receives, and whether it
    could read a ticket from the target's ``POST /ticket``, back to ``/loot`` on its own
    origin; :attr:`loot` keeps them (at most 100).
    """

    scheme = "http"
    path = "/"
    shutdown_timeout = 2.0

    def __init__(self) -> None:
        self.loot: deque[dict[str, Any]] = deque(maxlen=100)
        self.app = web.Application(client_max_size=64 * 1024)
        self.app.router.add_get("/", _page("attacker.html"))
        self.app.router.add_post("/loot", self._loot)

    async def _stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _loot(self, request: web.Request) -> web.Response:
        try:
            self.loot.append(json.loads(await request.text()))
        except ValueError:
            return web.Response(status=400, text="expected JSON\n")
        return web.Response(status=204)

    async def wait_for(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """The first loot entry whose ``kind`` is ``kind``, waiting at most ``timeout`` s.

        Raises:
            TimeoutError: none arrived in time.
        """
        async with asyncio.timeout(timeout):
            while True:
                for entry in self.loot:
                    if entry.get("kind") == kind:
                        return entry
                await asyncio.sleep(0.02)


async def start_private(host: str = "127.0.0.1", port: int = 0, *,
                        ssl_context: ssl.SSLContext | None = None, **options: Any) -> PrivateServer:
    """Start a :class:`PrivateServer` (``options`` are its arguments) in the running loop.

    Raises:
        OSError: the address is in use or cannot be bound.
    """
    return await PrivateServer(**options).start(host, port, ssl_context=ssl_context)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: ``python -m course.net.private --host H --port P``."""
    parser = argparse.ArgumentParser(prog="python -m course.net.private",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8766, help="TCP port, 0 for any free one")
    args = parser.parse_args(argv)
    try:
        return run_until_signal(lambda: start_private(args.host, args.port), "serving on {url}")
    except OSError as error:
        print(f"cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
