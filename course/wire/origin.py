"""Who may open a WebSocket from a browser: the course's ``Origin`` rule, sans-I/O.

A browser sends the page's origin with every WebSocket handshake, and the user's cookies
with it: without a check, any web site the user visits can open a socket to your server
in the user's name (cross-site WebSocket hijacking).  Every server of the course applies
the same rule:

- a client that sends no ``Origin`` is not a browser (a script, a test) and is let in
  (it cannot carry a victim's cookies; it can forge any header anyway);
- a browser page is let in when its origin is listed in ``allowed``;
- or when it comes from the server itself: same host and port as the request's ``Host``
  header, **and** either that host is an address (``127.0.0.1``, ``[::1]``, a LAN IP) or
  ``localhost``, or the request came through a proxy: it says so (jupyter-server-proxy
  adds ``X-Forwarded-Context`` to HTTP requests; a page cannot set that header on a
  WebSocket), or its ``Host`` names another port than the server's own (the browser
  talked to something else, e.g. JupyterLab's ``/proxy/PORT/``, which forwarded it).

The last condition stops DNS rebinding: a page on ``http://attacker.example:PORT`` whose
name the attacker re-points at ``127.0.0.1`` to reach the server on ``PORT`` sends
``Origin`` and ``Host`` that match, but its host is a name, not an address, and its port is
the server's own, so it is refused unless listed.  (Re-pointing the name at the proxy's
port instead lands on the proxy, which must check its own users: Jupyter asks for its
token or cookie, which the attacker's name does not carry.)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping
from urllib.parse import urlsplit

__all__ = ["origin_allowed", "host_is_address", "request_origin_allowed", "PROXY_HEADER"]

#: The header jupyter-server-proxy adds to what it forwards (``/proxy/PORT`` routes).
PROXY_HEADER = "X-Forwarded-Context"


def host_is_address(host: str | None) -> bool:
    """Whether a ``Host`` value (``name[:port]``) names an IP address or ``localhost``.

    Such a host cannot be re-pointed by someone else's DNS (rebinding).
    """
    if not host:
        return False
    try:
        name = urlsplit(f"//{host}").hostname or ""
    except ValueError:
        return False
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _port(host: str, scheme: str) -> int | None:
    try:
        return urlsplit(f"//{host}").port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        return None


def origin_allowed(origin: str | None, host: str | None, allowed: str | Collection[str] = (), *,
                   proxied: bool = False, own_port: int | None = None) -> bool:
    """Whether a handshake with this ``Origin`` may open a WebSocket.

    Args:
        origin: the ``Origin`` header (``None``: absent, not a browser).
        host: the request's ``Host`` header.
        allowed: ``"*"`` (any origin), or the origins let in besides the server's own.
        proxied: the request came through a trusted proxy (e.g. it carries
            :data:`PROXY_HEADER`): then the same-host rule holds for a named host too.
        own_port: the port the server listens on; a ``Host`` naming another port means
            the request came through a proxy (``None``: unknown, not used).

    Returns:
        ``True`` to accept the handshake, ``False`` to refuse it (HTTP 403).
    """
    if origin is None or allowed == "*" or origin in allowed:
        return True
    try:
        parts = urlsplit(origin)
        same_host = parts.netloc == host
    except ValueError:
        return False
    if not same_host or not host:
        return False
    if own_port is not None and _port(host, parts.scheme) != own_port:
        proxied = True
    return proxied or host_is_address(host)


def request_origin_allowed(headers: Mapping[str, str], allowed: str | Collection[str] = (),
                           own_port: int | None = None) -> bool:
    """:func:`origin_allowed` for a request's headers (``Origin``, ``Host``, :data:`PROXY_HEADER`).

    Args:
        headers: a case-insensitive mapping (aiohttp's ``request.headers``,
            ``websockets``' ``request.headers``, :class:`course.protocol.Request`).
        allowed: see :func:`origin_allowed`.
        own_port: the port the server listens on (see :func:`origin_allowed`).
    """
    try:
        return origin_allowed(headers.get("Origin"), headers.get("Host"), allowed,
                              proxied=headers.get(PROXY_HEADER) is not None, own_port=own_port)
    except LookupError:  # a header given twice (``websockets`` raises): refused
        return False
