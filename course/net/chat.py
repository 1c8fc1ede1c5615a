"""A standalone chat: one aiohttp server serves the page (HTTP) and the WebSocket.

Run it from a shell::

    python -m course.net.chat --host 127.0.0.1 --port 0

It prints ``serving on http://HOST:PORT/`` and serves until SIGTERM or Ctrl-C.
Open that URL in two tabs: every message typed in one tab appears live in every
tab, without reloading.  The page uses only relative URLs (its WebSocket is ``ws``
next to it), so it also works behind a path prefix such as jupyter-server-proxy's
``…/proxy/PORT/`` (JupyterHub, Binder); ``course.ui.browser.LocalPage`` shows it in a
notebook with the right address.  In a notebook, use the async API instead::

    server = await start_chat("127.0.0.1", 0)
    print(server.url)
    ...
    server.close()
    await server.wait_closed()

The messages are in :mod:`course.wire.chat` (pure, no I/O).  A frame larger than
``MAX_FRAME_BYTES`` is refused by aiohttp with close code 1009 (message too big).
:class:`ChatServer` owns the sockets and knows no widgets; it broadcasts through
:class:`course.net.fanout.Fanout`, the same bounded queues as the hub of chapter 3: one
tab that stops reading is dropped with close code 1008 ("too slow: ...") instead of
holding up every other tab, and stopping never waits for it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import re
import sys
import time
from collections import deque
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from course.net.fanout import Fanout, join_aiohttp
from course.net.guard import ConnectionGuard, flushed
from course.net.lifecycle import AppService, run_until_signal
from course.protocol import CloseCode
from course.wire.chat import HISTORY_SIZE, MAX_FRAME_BYTES, parse_client_message
from course.wire.envelope import BadMessage, ErrorCode
from course.wire.limits import MESSAGE_BURST, MESSAGE_RATE, RATE_STRIKES, RateLimit, Verdict
from course.wire.origin import request_origin_allowed

__all__ = ["ChatServer", "content_security_policy", "start_chat", "main"]


def _page() -> bytes:
    return resources.files("course.ui").joinpath("static/chat.html").read_bytes()


def _hashes(page: bytes, tag: str) -> str:
    """CSP source list allowing exactly the page's inline ``<script>``s or ``<style>``s."""
    blocks = re.findall(rb"<%s>(.*?)</%s>" % (tag.encode(), tag.encode()), page, re.S)
    return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b).digest()).decode()}'"
                    for b in blocks) or "'none'"


def _jupyter_origins() -> list[str]:
    """Origins of the Jupyter servers running on this machine (they show the chat in a frame)."""
    try:
        from jupyter_server.serverapp import list_running_servers
        servers = list(list_running_servers())
    except Exception:  # no Jupyter here, or an unreadable runtime directory
        return []
    origins = []
    for info in servers:
        url = urlsplit(str(info.get("url", "")))
        if url.scheme in ("http", "https") and url.port:
            hosts = {url.hostname, "127.0.0.1", "localhost"} if url.hostname in (
                "localhost", "127.0.0.1") else {url.hostname}
            origins += [f"{url.scheme}://{host}:{url.port}" for host in sorted(hosts)]
    return origins


def content_security_policy(page: bytes, frame_ancestors: list[str]) -> str:
    """The chat page's ``Content-Security-Policy``.

    Only the page's own inline script and style run (by hash; an injected ``<script>``
    or ``onerror=`` attribute does not), it connects only to its own origin (its
    WebSocket), and only its own origin and ``frame_ancestors`` may show it in a frame
    (clickjacking).
    """
    ancestors = " ".join(["'self'", *frame_ancestors])
    return (f"default-src 'none'; script-src {_hashes(page, 'script')}; "
            f"style-src {_hashes(page, 'style')}; connect-src 'self'; img-src 'self'; "
            f"base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}")


class ChatServer(AppService):
    """The chat room: an aiohttp app serving ``/`` (the page) and ``/ws`` (the WebSocket).

    Each page gets a bounded send queue and a writer task (:attr:`room`, a
    :class:`course.net.fanout.Fanout`); a broadcast never waits for a page.  A burst is
    absorbed; a page whose queue stays full (``queue_size`` messages) for ``grace``
    seconds, or outgrows ``max_bytes``, is closed with 1008 ("too slow: send queue full").

    Args:
        allowed_origins: browsers send an ``Origin`` header; by default only pages
            served by this server (same host and port) may connect, which stops a
            random web site from using a visitor's browser to join the chat
            (cross-site WebSocket hijacking).  Pass extra origins such as
            ``{"http://127.0.0.1:8888"}``, or ``"*"`` to accept any.  Clients that
            send no Origin (scripts, not browsers) are always accepted.  Behind
            jupyter-server-proxy (``…/proxy/PORT/``) the page's origin is the Jupyter
            server's, and the proxy passes the browser's ``Host`` header on: the
            same-host rule still admits the chat's own page, and only it.
        queue_size: messages in a page's queue that count as full (at least 1).
        grace: seconds a page's queue may stay full before it is dropped.
        max_bytes: bytes a page's queue may hold; beyond, it is dropped at once.
        close_timeout: seconds a closing page has to answer the close frame before its
            TCP connection is aborted; stopping never takes much longer than this.
        guard: connection cap, per-address cap and handshake deadline (default: a
            :class:`course.net.guard.ConnectionGuard` with its defaults).
        rate: messages per second one page may send (``None``: no limit); over it the
            message is refused with ``rate-limited``, and ``strikes`` refusals in a row
            close the page with 1008 (:class:`course.wire.limits.RateLimit`).
        burst: messages one page may send at once.
        strikes: see ``rate``.

    The page is served with a ``Content-Security-Policy`` (:func:`content_security_policy`):
    its own script and style only, and framed only by itself, the allowed origins and the
    Jupyter servers running on this machine (how a notebook shows it).

    Raises:
        ValueError: ``queue_size`` below 1 or ``grace`` not positive.
    """

    scheme = "http"  # url: the page to open in a browser
    path = "/"

    def __init__(self, *, allowed_origins: str | set[str] | None = None, queue_size: int = 16,
                 grace: float = 1.0, max_bytes: int = 1024 * 1024, close_timeout: float = 2.0,
                 guard: ConnectionGuard | None = None, rate: float | None = MESSAGE_RATE,
                 burst: float = MESSAGE_BURST, strikes: int = RATE_STRIKES):
        self.allowed_origins = allowed_origins if allowed_origins == "*" else set(allowed_origins or ())
        self.guard = guard if guard is not None else ConnectionGuard()
        self.rate, self.burst, self.strikes = rate, burst, strikes
        self.room = Fanout(queue_size, grace=grace, max_bytes=max_bytes, close_timeout=close_timeout)
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY_SIZE)
        self.next_id = 1
        self.host = ""
        self.port = 0
        self._runner: web.AppRunner | None = None
        self.app = web.Application(middlewares=[self.guard.middleware])
        self.app.router.add_get("/", self._page)
        self.app.router.add_get("/ws", self._websocket)


    @property
    def ws_url(self) -> str:
        """``ws://HOST:PORT/ws``: the WebSocket endpoint."""
        return f"ws://{self.host}:{self.port}/ws"

    @property
    def shutdown_timeout(self) -> float:  # aiohttp's wait for handlers still running
        return self.room.close_timeout or 60.0

    async def _stop(self) -> None:
        """Close every client (code 1001, going away) and stop listening.

        Bounded: a client that does not answer its close frame within ``close_timeout``
        seconds is aborted, so this ends in about ``close_timeout`` whatever the peers do.
        """
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        await self.room.stop(CloseCode.GOING_AWAY, "server stopping")
        await runner.cleanup()

    async def post(self, text: str, name: str = "kernel") -> dict[str, Any]:
        """Broadcast a message as if a client had sent it; return what was sent.

        Raises:
            BadMessage: the text or name is invalid (same rules as for clients).
        """
        message = parse_client_message(json.dumps({"type": "message", "text": text, "name": name}),
                                       reserved=())
        return self._broadcast_message(message)

    def _broadcast_message(self, message: dict[str, str]) -> dict[str, Any]:
        payload = {"type": "message", "id": self.next_id, **message}
        self.next_id += 1
        self.history.append(payload)  # a page that joins later gets it in its welcome
        self.room.broadcast(json.dumps(payload))  # never waits for a slow page
        return payload

    def _origin_allowed(self, request: web.Request) -> bool:
        return request_origin_allowed(request.headers, self.allowed_origins, self.port)

    async def _page(self, request: web.Request) -> web.Response:
        page = _page()
        ancestors = [] if self.allowed_origins == "*" else sorted(self.allowed_origins)
        csp = content_security_policy(page, ancestors + _jupyter_origins())
        return web.Response(body=page, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store", "Content-Security-Policy": csp,
                                     "X-Content-Type-Options": "nosniff"})

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if not self._origin_allowed(request):
            return web.Response(status=403, text="origin not allowed\n")
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, heartbeat=30)
        if not await join_aiohttp(self.room, request, ws):
            return ws
        self.room.send(ws, json.dumps({"type": "welcome", "history": list(self.history)}))
        limit = None if self.rate is None else RateLimit(self.rate, self.burst, self.strikes)
        try:
            async for msg in ws:
                verdict = Verdict.ALLOW if limit is None else limit.check(time.monotonic())
                if verdict is Verdict.CLOSE:
                    await flushed(self.room.clients.get(ws))  # its error replies first
                    self.room.leave(ws)
                    with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
                        async with asyncio.timeout(self.room.close_timeout or 2.0):
                            await ws.close(code=CloseCode.POLICY_VIOLATION, message=b"too many messages")
                    if request.transport is not None:
                        request.transport.abort()
                    break
                if verdict is Verdict.REFUSE:
                    self.room.send(ws, BadMessage(
                        ErrorCode.RATE_LIMITED, f"too many messages: at most {self.rate:g} a second").encode())
                elif msg.type == WSMsgType.TEXT:
                    try:
                        message = parse_client_message(msg.data)
                    except BadMessage as error:
                        self.room.send(ws, error.encode())
                    else:
                        self._broadcast_message(message)
                elif msg.type == WSMsgType.BINARY:
                    self.room.send(ws, BadMessage(
                        ErrorCode.NOT_TEXT, "binary messages are not accepted; send JSON text").encode())
                # ERROR (e.g. frame too big): aiohttp closes the connection with
                # code 1009 by itself, and the loop ends.
        except (ConnectionError, RuntimeError):
            pass
        finally:
            self.room.leave(ws)
        return ws


async def start_chat(host: str = "127.0.0.1", port: int = 0, *,
                allowed_origins: str | set[str] | None = None, **options: Any) -> ChatServer:
    """Start a :class:`ChatServer` on ``host:port`` in the running event loop.

    Args:
        host: interface to listen on (keep ``127.0.0.1`` unless you mean to share it).
        port: TCP port; 0 picks a free one (read it from ``server.port``).
        allowed_origins: see :class:`ChatServer`.
        **options: ``queue_size``, ``grace``, ``max_bytes``, ``close_timeout`` (see
            :class:`ChatServer`).

    Raises:
        OSError: the address is already in use or cannot be bound.
        ValueError: a bad option value.
    """
    return await ChatServer(allowed_origins=allowed_origins, **options).start(host, port)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: ``python -m course.net.chat --host H --port P``."""
    parser = argparse.ArgumentParser(prog="python -m course.net.chat", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="TCP port, 0 for any free one (default 8765)")
    args = parser.parse_args(argv)
    try:
        return run_until_signal(lambda: start_chat(args.host, args.port), "serving on {url}")
    except OSError as error:
        print(f"cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
