"""The course page's Exemple: a messenger on chapter 5's channel server.

Run it from a shell::

    python -m course.net.messenger --host 127.0.0.1 --port 0

It prints ``serving on http://HOST:PORT/`` and serves until SIGTERM or Ctrl-C.  Open that
URL in two tabs: rooms to choose from (or any other name), a nickname, who is online in the
room, "X is typing…", the last 50 messages on join, and a delivered mark on your own
messages once the server's reply arrives.

The page (``course/ui/static/messenger.html`` and ``messenger.js``) runs Phoenix's
**official JavaScript client**, vendored unchanged as ``vendor/phoenix-1.8.16.mjs``.  It
speaks Phoenix Channels V2 to the :class:`course.net.channels.ChannelServer` below it
(``/socket/websocket``): topics ``room:<name>``, ``new_msg`` with an ok reply, ``typing``,
Presence.  The kernel joins the same rooms with :class:`course.ui.chat_widget.ChatWidget`
or :class:`course.net.channels_client.ChannelClient`.  In a notebook::

    server = await start_messenger("127.0.0.1", 0)
    print(server.url)          # http://127.0.0.1:PORT/  (the page)
    print(server.socket_url)   # ws://127.0.0.1:PORT/socket/websocket
    ...
    server.close()
    await server.wait_closed()

Every URL the page uses is relative (``socket``, ``config.json``, ``vendor/...``), so it
also works behind a path prefix such as jupyter-server-proxy's ``…/proxy/PORT/``.  The
page asks ``config.json`` for the room list and for its heartbeat interval, a third of
the server's ``heartbeat_timeout`` (at most Phoenix's 30 s): a tab that dies without
closing its socket leaves the presence list within ``heartbeat_timeout`` seconds.

This module only adds HTTP routes to the channel server's ``app.router``; the protocol is
:mod:`course.net.channels`'s.  Chapter 4's simpler chat (:mod:`course.net.chat`) is
unchanged.
"""

from __future__ import annotations

import sys
from importlib import resources
from typing import Any

from aiohttp import web

from course.net.channels import ChannelServer, command_line, serve_command
from course.wire.channels import room_of
from course.wire.chat import HISTORY_SIZE

__all__ = ["VENDOR_PHOENIX", "DEFAULT_ROOMS", "MessengerServer", "start_messenger", "main"]

VENDOR_PHOENIX = "vendor/phoenix-1.8.16.mjs"  #: the official client, under ``course/ui/static``
DEFAULT_ROOMS = ("lobby", "random", "help")   #: the rooms the page offers first

_FILES = {  # URL path -> (file under course/ui/static, content type)
    "/": ("messenger.html", "text/html"),
    "/messenger.js": ("messenger.js", "text/javascript"),
    "/" + VENDOR_PHOENIX: (VENDOR_PHOENIX, "text/javascript"),
}


def _static(name: str) -> bytes:
    return resources.files("course.ui").joinpath("static", *name.split("/")).read_bytes()


class MessengerServer(ChannelServer):
    """A :class:`course.net.channels.ChannelServer` that also serves the messenger page.

    Its :attr:`url` is the page's (``http://HOST:PORT/``); :attr:`socket_url` is the
    Phoenix endpoint for the kernel's clients.

    Args:
        rooms: the rooms the page lists (any other valid name can still be joined).
        **options: as :class:`course.net.channels.ChannelServer` (``heartbeat_timeout``...).

    Raises:
        ValueError: no rooms, a bad room name, or a bad channel-server option.
    """

    scheme = "http"
    path = "/"

    def __init__(self, *, rooms: tuple[str, ...] | list[str] = DEFAULT_ROOMS, **options: Any) -> None:
        super().__init__(**options)
        if not rooms:
            raise ValueError("the messenger needs at least one room")
        bad = [r for r in rooms if room_of(f"room:{r}") is None]
        if bad:
            raise ValueError(f"room names are 1 to 32 letters, digits, _ or -: {bad}")
        self.room_names = list(rooms)
        for route, (name, content_type) in _FILES.items():
            self.app.router.add_get(route, self._file_handler(name, content_type))
        self.app.router.add_get("/config.json", self._config)

    @property
    def socket_url(self) -> str:
        """``ws://HOST:PORT/socket/websocket``, for :class:`ChannelClient` and the widget."""
        return f"ws://{self.host}:{self.port}{ChannelServer.path}"

    def page_config(self) -> dict[str, Any]:
        """What the page reads from ``config.json``."""
        return {"rooms": self.room_names, "history": HISTORY_SIZE,
                "heartbeat_interval_ms": int(min(30.0, self.heartbeat_timeout / 3) * 1000)}

    @staticmethod
    def _file_handler(name: str, content_type: str):
        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=_static(name), content_type=content_type, charset="utf-8",
                                headers={"Cache-Control": "no-cache"})
        return handler

    async def _config(self, request: web.Request) -> web.Response:
        return web.json_response(self.page_config(), headers={"Cache-Control": "no-cache"})


async def start_messenger(host: str = "127.0.0.1", port: int = 0, **options: Any) -> MessengerServer:
    """Start a :class:`MessengerServer` on ``host:port`` in the running event loop.

    Args:
        host: interface to listen on.
        port: TCP port; 0 picks a free one (read it from ``server.port``).
        **options: see :class:`MessengerServer`.

    Raises:
        OSError: the address is in use or cannot be bound.
        ValueError: a bad option value.
    """
    return await MessengerServer(**options).start(host, port)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m course.net.messenger --host H --port P``."""
    parser = command_line("python -m course.net.messenger", __doc__.split("\n")[0])
    parser.add_argument("--rooms", default=",".join(DEFAULT_ROOMS),
                        help=f"comma-separated rooms the page lists (default {','.join(DEFAULT_ROOMS)})")
    args = parser.parse_args(argv)
    rooms = [r.strip() for r in args.rooms.split(",") if r.strip()]
    return serve_command(lambda: start_messenger(args.host, args.port, rooms=rooms,
                                                 heartbeat_timeout=args.heartbeat_timeout), args)


if __name__ == "__main__":
    sys.exit(main())
