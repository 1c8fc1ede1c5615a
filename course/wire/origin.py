"""Who may open a WebSocket from a browser: the course's ``Origin`` rule, sans-I/O.

A browser sends the page's origin with every WebSocket handshake, and the user's cookies
with it: without a check, any web site the user visits can open a socket to your server
in the user's name (cross-site WebSocket hijacking).  Every server of the course applies
the same rule: a client that sends no ``Origin`` is not a browser (a script, a test) and
is let in; a browser page is let in when its origin is listed, or when it comes from the
server itself (same host and port as the request's ``Host`` header, which is also what a
page served through jupyter-server-proxy sends).
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

__all__ = ["origin_allowed"]


def origin_allowed(origin: str | None, host: str | None, allowed: str | Collection[str] = ()) -> bool:
    """Whether a handshake with this ``Origin`` may open a WebSocket.

    Args:
        origin: the ``Origin`` header (``None``: absent, not a browser).
        host: the request's ``Host`` header.
        allowed: ``"*"`` (any origin), or the origins let in besides the server's own.

    Returns:
        ``True`` to accept the handshake, ``False`` to refuse it (HTTP 403).
    """
    if origin is None or allowed == "*" or origin in allowed:
        return True
    return urlsplit(origin).netloc == host
