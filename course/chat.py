"""A standalone chat: one aiohttp server serves the page (HTTP) and the WebSocket.

Run it from a shell::

    python -m course.chat --host 127.0.0.1 --port 0

It prints ``serving on http://HOST:PORT/`` and serves until SIGTERM or Ctrl-C.
Open that URL in two tabs: every message typed in one tab appears live in every
tab, without reloading.  The page uses only relative URLs (its WebSocket is ``ws``
next to it), so it also works behind a path prefix such as jupyter-server-proxy's
``…/proxy/PORT/`` (JupyterHub, Binder); ``course.browser.LocalPage`` shows it in a
notebook with the right address.  In a notebook, use the async API instead::

    server = await course.chat.start("127.0.0.1", 0)
    print(server.url)
    ...
    await server.stop()

Wire format (JSON text messages on ``/ws``):

* client → server: ``{"type": "message", "text": "hi", "name": "ada"}``
  (``name`` optional);
* server → client: ``{"type": "welcome", "history": [...]}`` on connect,
  ``{"type": "message", "id": 7, "name": "ada", "text": "hi"}`` for every message,
  ``{"type": "error", "code": "bad-json", "error": "..."}`` when a client sends
  something invalid (the connection stays open).

A frame larger than :data:`MAX_FRAME_BYTES` is refused by aiohttp with close code
1009 (message too big).  Layering: :func:`parse_client_message` is pure (no I/O);
:class:`ChatServer` owns the sockets and knows no widgets; it broadcasts through
:class:`course.fanout.Fanout`, the same bounded queues as ``course.live.Hub``: one tab
that stops reading is dropped with close code 1008 ("too slow: ...") instead of
holding up every other tab, and stopping never waits for it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections import deque
from enum import Enum
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from course.fanout import Fanout
from course.protocol import CloseCode

__all__ = [
    "MAX_TEXT_CHARS", "MAX_NAME_CHARS", "MAX_FRAME_BYTES", "HISTORY_SIZE",
    "ErrorCode", "ChatError", "parse_client_message", "ChatServer", "start", "main",
]

MAX_TEXT_CHARS = 500          #: longest accepted message text
MAX_NAME_CHARS = 32           #: longest accepted name
MAX_FRAME_BYTES = 64 * 1024   #: larger frames are refused with close code 1009
HISTORY_SIZE = 50             #: messages replayed to a page that (re)connects


class ErrorCode(str, Enum):
    """Why a client message was refused (sent back as ``{"type": "error", "code": ...}``)."""

    BAD_JSON = "bad-json"
    BAD_SHAPE = "bad-shape"
    EMPTY = "empty"
    TOO_LONG = "too-long"
    BINARY = "binary"


class ChatError(ValueError):
    """A client message the chat refuses; ``code`` is an :class:`ErrorCode`."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code

    def as_payload(self) -> dict[str, str]:
        """The JSON object sent back to the client."""
        return {"type": "error", "code": self.code.value, "error": str(self)}


def parse_client_message(data: str) -> dict[str, str]:
    """Validate one text message from a client.

    Args:
        data: the text of a WebSocket message, expected to be a JSON object
            ``{"type": "message", "text": str, "name": str (optional)}``.

    Returns:
        ``{"name": ..., "text": ...}`` with surrounding whitespace stripped and
        ``name`` defaulting to ``"anonymous"``.

    Raises:
        ChatError: not JSON, not an object of type ``"message"``, a text or name
            that is not a string, an empty text, or a text/name that is too long.
    """
    try:
        obj = json.loads(data)
    except (json.JSONDecodeError, RecursionError) as error:
        raise ChatError(ErrorCode.BAD_JSON, f"message is not valid JSON ({error})") from None
    if not isinstance(obj, dict) or obj.get("type") != "message":
        raise ChatError(ErrorCode.BAD_SHAPE, 'expected a JSON object {"type": "message", "text": ...}')
    text, name = obj.get("text"), obj.get("name", "anonymous")
    if not isinstance(text, str) or not isinstance(name, str):
        raise ChatError(ErrorCode.BAD_SHAPE, '"text" and "name" must be strings')
    text, name = text.strip(), name.strip() or "anonymous"
    if not text:
        raise ChatError(ErrorCode.EMPTY, "empty message")
    if len(text) > MAX_TEXT_CHARS:
        raise ChatError(ErrorCode.TOO_LONG,
                        f"message too long: {len(text)} characters, at most {MAX_TEXT_CHARS}")
    if len(name) > MAX_NAME_CHARS:
        raise ChatError(ErrorCode.TOO_LONG,
                        f"name too long: {len(name)} characters, at most {MAX_NAME_CHARS}")
    return {"name": name, "text": text}


def _page() -> bytes:
    return resources.files("course").joinpath("static/chat.html").read_bytes()


class ChatServer:
    """The chat room: an aiohttp app serving ``/`` (the page) and ``/ws`` (the WebSocket).

    Each page gets a bounded send queue and a writer task (:attr:`room`, a
    :class:`course.fanout.Fanout`); a broadcast never waits for a page.  A burst is
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
            TCP connection is aborted; :meth:`stop` never takes much longer than this.

    Raises:
        ValueError: ``queue_size`` below 1 or ``grace`` not positive.
    """

    def __init__(self, *, allowed_origins: str | set[str] | None = None, queue_size: int = 16,
                 grace: float = 1.0, max_bytes: int = 1024 * 1024, close_timeout: float = 2.0):
        self.allowed_origins = allowed_origins if allowed_origins == "*" else set(allowed_origins or ())
        self.room = Fanout(queue_size, grace=grace, max_bytes=max_bytes, close_timeout=close_timeout)
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY_SIZE)
        self.next_id = 1
        self.host = ""
        self.port = 0
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        self.app.router.add_get("/", self._page)
        self.app.router.add_get("/ws", self._websocket)

    @property
    def url(self) -> str:
        """``http://HOST:PORT/``: the page to open in a browser."""
        return f"http://{self.host}:{self.port}/"

    @property
    def ws_url(self) -> str:
        """``ws://HOST:PORT/ws``: the WebSocket endpoint."""
        return f"ws://{self.host}:{self.port}/ws"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> "ChatServer":
        """Listen on ``host:port`` (port 0: any free port) and return ``self``."""
        if self._runner is not None:
            raise RuntimeError("this ChatServer is already started")
        runner = web.AppRunner(self.app, access_log=None,
                               shutdown_timeout=self.room.close_timeout or 60.0)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self._runner = runner
        self.host, self.port = runner.addresses[0][:2]
        return self

    async def stop(self) -> None:
        """Close every client (code 1001, going away) and stop listening. Idempotent.

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
            ChatError: the text or name is invalid (same rules as for clients).
        """
        message = parse_client_message(json.dumps({"type": "message", "text": text, "name": name}))
        return self._broadcast_message(message)

    def _broadcast_message(self, message: dict[str, str]) -> dict[str, Any]:
        payload = {"type": "message", "id": self.next_id, **message}
        self.next_id += 1
        self.history.append(payload)  # a page that joins later gets it in its welcome
        self.room.broadcast(json.dumps(payload))  # never waits for a slow page
        return payload

    def _origin_allowed(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None or self.allowed_origins == "*" or origin in self.allowed_origins:
            return True
        return urlsplit(origin).netloc == request.host

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(body=_page(), content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store"})

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if not self._origin_allowed(request):
            return web.Response(status=403, text="origin not allowed\n")
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, heartbeat=30)
        try:
            await ws.prepare(request)
        except ConnectionError:  # the client left during the handshake
            return ws
        transport = request.transport
        if transport is None:  # gone already
            return ws
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.room.join(
            ws, f"{peer[0]}:{peer[1]}", send=ws.send_str,
            close=lambda code, reason: ws.close(code=code, message=reason.encode()),
            abort=transport.abort, buffered=transport.get_write_buffer_size)
        self.room.send(ws, json.dumps({"type": "welcome", "history": list(self.history)}))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        message = parse_client_message(msg.data)
                    except ChatError as error:
                        self.room.send(ws, json.dumps(error.as_payload()))
                    else:
                        self._broadcast_message(message)
                elif msg.type == WSMsgType.BINARY:
                    self.room.send(ws, json.dumps(ChatError(
                        ErrorCode.BINARY, "binary messages are not accepted; send JSON text").as_payload()))
                # ERROR (e.g. frame too big): aiohttp closes the connection with
                # code 1009 by itself, and the loop ends.
        except (ConnectionError, RuntimeError):
            pass
        finally:
            self.room.leave(ws)
        return ws


async def start(host: str = "127.0.0.1", port: int = 0, *,
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


async def _serve(host: str, port: int) -> None:
    server = await start(host, port)
    print(f"serving on {server.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()
        print("stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: ``python -m course.chat --host H --port P``."""
    parser = argparse.ArgumentParser(prog="python -m course.chat", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="TCP port, 0 for any free one (default 8765)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args.host, args.port))
    except OSError as error:
        print(f"cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
