"""Browser-side widgets: a WebSocket client and local pages, shown in the notebook's page.

:class:`BrowserClient` is an `anywidget <https://anywidget.dev>`_: its JavaScript
(``course/ui/static/browser_client.js``) runs in JupyterLab's page and calls
``new WebSocket(url)`` there, exactly like a web site's script.  The server it
talks to usually runs in the kernel (``127.0.0.1:PORT``).  What the page sees
comes back to Python through synced traitlets (``ready_state``, ``received``,
``last_message``, ``close_code``, ``error``...).  :class:`LocalPage` shows a page
served on the kernel's machine (the chat) as a frame or as a link.

When the notebook runs headless (nbclient, CI) there is no page: the JavaScript
never runs and ``ready_state`` stays ``-1``.  Code in the kernel must therefore
never *wait* for the page without a bound.

Which URL? Only the browser knows where it is, so the page decides, with one rule
(:func:`url_from_page`, mirrored in ``course/ui/static/kernel_url.js``): a page whose
host is a loopback name (``localhost``, ``127.0.0.1``...) is on the kernel's machine
and connects directly to ``127.0.0.1:PORT``; any other page (JupyterHub, Binder)
goes through `jupyter-server-proxy` on its own origin, ``BASE/proxy/PORT/``.
``mode="direct"`` or ``mode="proxy"`` overrides the rule.
"""

from __future__ import annotations

import ipaddress
import uuid
from enum import IntEnum
from pathlib import Path
from urllib.parse import urlsplit

import anywidget
import traitlets

__all__ = ["ReadyState", "MODES", "is_loopback_host", "resolve_mode", "url_from_page",
           "BrowserClient", "LocalPage"]

_STATIC = Path(__file__).parent / "static"
#: How a widget reaches the kernel's 127.0.0.1: decided by the page, or forced.
MODES = ("auto", "direct", "proxy")


class ReadyState(IntEnum):
    """``WebSocket.readyState`` in the browser (``NO_PAGE`` is ours: no page ran the widget)."""

    NO_PAGE = -1
    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


def is_loopback_host(hostname: str) -> bool:
    """Is ``hostname`` (as in ``location.hostname``) this machine's loopback?

    ``localhost`` and ``*.localhost``, ``127.x.x.x`` and ``::1`` (with or without brackets).
    """
    host = hostname.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_mode(hostname: str, mode: str = "auto") -> str:
    """``"direct"`` or ``"proxy"``: how a page on ``hostname`` reaches the kernel's 127.0.0.1.

    Raises:
        ValueError: ``mode`` is not one of :data:`MODES`.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode != "auto":
        return mode
    return "direct" if is_loopback_host(hostname) else "proxy"


def _check_port_and_path(port: int, path: str) -> None:
    if not 0 < port < 65536:
        raise ValueError(f"give a port between 1 and 65535 (got {port!r})")
    if not path.startswith("/"):
        raise ValueError(f"path must start with '/' (got {path!r})")


def url_from_page(page_url: str, port: int, path: str = "/", *, mode: str = "auto",
                  kind: str = "ws", base_url: str | None = None) -> str:
    """The URL a page at ``page_url`` uses to reach a server on the kernel's ``127.0.0.1:port``.

    Args:
        page_url: the address of the JupyterLab page (``location.href``).
        port: the port the kernel's server listens on.
        path: the request path on that server (starts with ``/``).
        mode: ``"auto"`` (direct from a loopback page, else proxy), ``"direct"`` or ``"proxy"``.
        kind: ``"ws"`` for a WebSocket, ``"http"`` for a page (frame, link).
        base_url: Jupyter's base URL (``/user/NAME/`` behind JupyterHub); by default
            everything before ``/lab`` in the page's path.

    Returns:
        direct: ``ws://127.0.0.1:PORT/path``; proxy: ``ws://HOST/BASE/proxy/PORT/path``
        on the page's origin (``wss:``/``https:`` when the page is ``https:``).

    Raises:
        ValueError: a page URL that is not http(s), a port out of range, a path without
            its leading ``/``, an unknown mode or kind.
    """
    page = urlsplit(page_url)
    if page.scheme not in ("http", "https") or not page.hostname:
        raise ValueError(f"expected an http(s) page URL, got {page_url!r}")
    _check_port_and_path(port, path)
    if kind not in ("ws", "http"):
        raise ValueError(f"kind must be 'ws' or 'http', got {kind!r}")
    if resolve_mode(page.hostname, mode) == "direct":
        return f"{kind}://127.0.0.1:{port}{path}"
    if base_url is None:
        cut = page.path.find("/lab")
        base_url = page.path[: cut + 1] if cut >= 0 else "/"
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    scheme = kind + ("s" if page.scheme == "https" else "")
    return f"{scheme}://{page.netloc}{base_url}proxy/{port}{path}"


def _module_source(name: str) -> str:
    """The module of a widget: the shared URL rule, then the widget's own code."""
    return "\n".join((_STATIC / f).read_text(encoding="utf-8") for f in ("kernel_url.js", name))


class _KernelHeld(anywidget.AnyWidget):
    """Answers the page's ``hello`` with ``go``: only a widget the kernel holds comes alive.

    A copy restored from a saved notebook gets no answer (its kernel and servers are gone)
    and stays idle instead of knocking on a dead port.
    """

    _instance = traitlets.Unicode().tag(sync=True)  # keys the page-side state of this widget
    mode = traitlets.Unicode("auto").tag(sync=True)
    # reported by the page, page -> Python
    url_in_use = traitlets.Unicode("").tag(sync=True)

    def __init__(self, **kwargs):
        if kwargs.get("mode", "auto") not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {kwargs['mode']!r}")
        super().__init__(_instance=uuid.uuid4().hex, **kwargs)
        self.on_msg(self._on_page_message)

    def _on_page_message(self, _widget, content, _buffers) -> None:
        if isinstance(content, dict) and content.get("event") == "hello":
            self.send({"command": "go"})


class BrowserClient(_KernelHeld):
    """A WebSocket client living in the browser page; its state is mirrored in Python.

    Args:
        port: port of a server listening on the kernel's ``127.0.0.1``.
        path: request path on that server (default ``"/"``).
        url: a full ``ws://`` / ``wss://`` URL instead of ``port``/``path``.
        handler_js: optional source of a JavaScript function expression
            ``(event, log) => { ... }`` replacing the default ``onmessage`` display;
            ``log`` is the ``<ul class="ws-browser-log">`` element.
        mode: ``"auto"`` (the page decides, see :func:`url_from_page`), ``"direct"``
            or ``"proxy"``.

    Raises:
        ValueError: neither ``port`` nor ``url`` given, or a port out of range,
            a ``url`` that is not ``ws://`` / ``wss://``, a bad path or mode.
    """

    _esm = _module_source("browser_client.js")
    _css = """
    .ws-browser { font: 13px/1.4 var(--jp-code-font-family, monospace); }
    .ws-browser-state { color: var(--jp-ui-font-color2, #555); margin-bottom: 4px; }
    .ws-browser-log { list-style: none; margin: 0; padding: 4px 6px; max-height: 14em;
                      overflow-y: auto; border: 1px solid var(--jp-border-color1, #ccc); }
    .ws-browser-log li { overflow-wrap: anywhere; }
    .ws-browser-sent { color: var(--jp-info-color0, #0b61a4); }
    .ws-browser-note { color: var(--jp-ui-font-color2, #777); font-style: italic; }
    .ws-browser-error { color: var(--jp-error-color1, #b42318); }
    .ws-browser-form { display: flex; gap: 4px; margin-top: 4px; }
    .ws-browser-input { flex: 1; }
    """

    # configuration, Python -> page
    port = traitlets.Int(0).tag(sync=True)
    path = traitlets.Unicode("/").tag(sync=True)
    url = traitlets.Unicode("").tag(sync=True)
    handler_js = traitlets.Unicode("").tag(sync=True)
    # state reported by the page, page -> Python
    ready_state = traitlets.Int(int(ReadyState.NO_PAGE)).tag(sync=True)
    received = traitlets.Int(0).tag(sync=True)
    sent = traitlets.Int(0).tag(sync=True)
    buffered_amount = traitlets.Int(0).tag(sync=True)
    last_message = traitlets.Unicode("").tag(sync=True)
    close_code = traitlets.Int(0).tag(sync=True)
    close_reason = traitlets.Unicode("").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    handler_error = traitlets.Unicode("").tag(sync=True)

    def __init__(self, port: int = 0, *, path: str = "/", url: str = "", handler_js: str = "",
                 mode: str = "auto", **kwargs):
        if not url and not 0 < port < 65536:
            raise ValueError(f"give a port between 1 and 65535 (got {port!r}) or a ws:// url")
        if url and not url.startswith(("ws://", "wss://")):
            raise ValueError(f"a WebSocket URL starts with ws:// or wss:// (got {url!r})")
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/' (got {path!r})")
        super().__init__(port=port, path=path, url=url, handler_js=handler_js, mode=mode, **kwargs)

    def __repr__(self) -> str:
        target = self.url or f"127.0.0.1:{self.port}{self.path}"
        return f"BrowserClient({target})" if self.mode == "auto" else \
            f"BrowserClient({target}, mode={self.mode!r})"

    @property
    def state(self) -> ReadyState:
        """The page's ``readyState`` as a :class:`ReadyState` (``NO_PAGE`` when headless)."""
        return ReadyState(self.ready_state)

    def summary(self) -> str:
        """One line describing what the page reported so far."""
        if self.state is ReadyState.NO_PAGE:
            return "no browser page has run this widget (headless run?): nothing to report"
        text = (f"readyState {self.ready_state} ({self.state.name}), received {self.received}, "
                f"sent {self.sent}")
        if self.close_code:
            text += f", close code {self.close_code}"
        if self.error:
            text += f", error: {self.error}"
        return text

    def send_from_page(self, text: str) -> None:
        """Ask the page to send ``text`` on its WebSocket (does nothing without a page)."""
        self.send({"command": "send", "text": str(text)})

    def reconnect(self) -> None:
        """Ask the page to open a fresh connection."""
        self.send({"command": "reconnect"})

    def close_from_page(self, code: int = 1000, reason: str = "") -> None:
        """Ask the page to call ``ws.close(code, reason)``.

        Raises:
            ValueError: ``code`` is not 1000 or in 3000–4999 (what a page may send).
        """
        if code != 1000 and not 3000 <= code <= 4999:
            raise ValueError("a page may only close with 1000 or a code in 3000-4999")
        if len(reason.encode()) > 123:
            raise ValueError("a close reason is at most 123 bytes of UTF-8")
        self.send({"command": "close", "code": code, "reason": reason})


class LocalPage(_KernelHeld):
    """A page served on the kernel's ``127.0.0.1:port``, shown as a frame or as a link.

    The page picks the URL with the same rule as :class:`BrowserClient`
    (:func:`url_from_page` with ``kind="http"``): ``http://127.0.0.1:PORT/`` from a local
    JupyterLab, ``BASE/proxy/PORT/`` behind a hub.  The served page must therefore use
    relative URLs (for its WebSocket too) so that it works under both.

    Args:
        port: port of an HTTP server listening on the kernel's ``127.0.0.1``.
        path: path of the page on that server (default ``"/"``).
        kind: ``"frame"`` (an ``<iframe>``) or ``"link"`` (opens in a new tab).
        label: text of the link (default: the URL).
        height: height of the frame in CSS pixels.
        mode: ``"auto"``, ``"direct"`` or ``"proxy"`` (see :func:`url_from_page`).

    Raises:
        ValueError: a port out of range, a path without its leading ``/``, a bad kind,
            height or mode.
    """

    _esm = _module_source("local_page.js")
    _css = """
    .ws-local-page iframe { width: 100%; border: 1px solid var(--jp-border-color1, #ccc); }
    .ws-local-page a { color: var(--jp-content-link-color, #1976d2); text-decoration: underline; }
    .ws-local-page-note { color: var(--jp-ui-font-color2, #777); font-style: italic; }
    """

    port = traitlets.Int(0).tag(sync=True)
    path = traitlets.Unicode("/").tag(sync=True)
    kind = traitlets.Unicode("frame").tag(sync=True)
    label = traitlets.Unicode("").tag(sync=True)
    height = traitlets.Int(380).tag(sync=True)

    def __init__(self, port: int, *, path: str = "/", kind: str = "frame", label: str = "",
                 height: int = 380, mode: str = "auto", **kwargs):
        _check_port_and_path(port, path)
        if kind not in ("frame", "link"):
            raise ValueError(f"kind must be 'frame' or 'link' (got {kind!r})")
        if not 0 < height <= 5000:
            raise ValueError(f"height must be between 1 and 5000 pixels (got {height!r})")
        super().__init__(port=port, path=path, kind=kind, label=label, height=height, mode=mode,
                         **kwargs)

    def __repr__(self) -> str:
        extra = "" if self.mode == "auto" else f", mode={self.mode!r}"
        return f"LocalPage({self.kind} of 127.0.0.1:{self.port}{self.path}{extra})"
