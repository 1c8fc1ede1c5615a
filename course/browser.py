"""A WebSocket client that runs in the browser page, shown as a notebook widget.

:class:`BrowserClient` is an `anywidget <https://anywidget.dev>`_: its JavaScript
(``course/static/browser_client.js``) runs in JupyterLab's page and calls
``new WebSocket(url)`` there, exactly like a web site's script.  The server it
talks to usually runs in the kernel (``127.0.0.1:PORT``).  What the page sees
comes back to Python through synced traitlets (``ready_state``, ``received``,
``last_message``, ``close_code``, ``error``...).

When the notebook runs headless (nbclient, CI) there is no page: the JavaScript
never runs and ``ready_state`` stays ``-1``.  Code in the kernel must therefore
never *wait* for the page without a bound.

Which URL? A page served from this machine connects to ``ws://127.0.0.1:PORT``.
A page served by JupyterHub or Binder cannot reach the kernel's loopback: the
widget then tries ``BASE/proxy/PORT/`` on the page's own origin (what
`jupyter-server-proxy` serves) and, if nothing answers, says so in the widget.
"""

from __future__ import annotations

import uuid
from enum import IntEnum
from pathlib import Path
from urllib.parse import urlsplit

import anywidget
import traitlets

__all__ = ["ReadyState", "BrowserClient", "candidate_urls"]


class ReadyState(IntEnum):
    """``WebSocket.readyState`` in the browser (``NO_PAGE`` is ours: no page ran the widget)."""

    NO_PAGE = -1
    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def candidate_urls(page_url: str, port: int, path: str = "/", base_url: str | None = None) -> list[str]:
    """The WebSocket URLs the widget's JavaScript tries, in order (a Python mirror of it).

    Args:
        page_url: the address of the JupyterLab page (``location.href``).
        port: the port the kernel's server listens on (on the kernel's 127.0.0.1).
        path: the request path on that server.
        base_url: Jupyter's base URL (``/user/NAME/`` behind JupyterHub); by default
            everything before ``/lab`` in the page's path.

    Returns:
        ``ws://127.0.0.1:PORT/...`` first when the page comes from this machine, then
        the same-origin ``jupyter-server-proxy`` URL ``BASE/proxy/PORT/...``
        (``wss:`` when the page is ``https:``).  A page from elsewhere gets only the
        proxy URL: its browser's 127.0.0.1 is not the kernel's.

    Raises:
        ValueError: ``page_url`` is not http(s), or the port is out of range.
    """
    page = urlsplit(page_url)
    if page.scheme not in ("http", "https") or not page.netloc:
        raise ValueError(f"expected an http(s) page URL, got {page_url!r}")
    if not 0 < port < 65536:
        raise ValueError(f"port out of range: {port!r}")
    if base_url is None:
        cut = page.path.find("/lab")
        base_url = page.path[: cut + 1] if cut >= 0 else "/"
    if not base_url.endswith("/"):
        base_url += "/"
    scheme = "wss" if page.scheme == "https" else "ws"
    proxied = f"{scheme}://{page.netloc}{base_url}proxy/{port}{path}"
    host = page.hostname or ""
    if f"[{host}]" in LOOPBACK_HOSTS or host in LOOPBACK_HOSTS:
        return [f"ws://127.0.0.1:{port}{path}", proxied]
    return [proxied]


class BrowserClient(anywidget.AnyWidget):
    """A WebSocket client living in the browser page; its state is mirrored in Python.

    Args:
        port: port of a server listening on the kernel's ``127.0.0.1``.
        path: request path on that server (default ``"/"``).
        url: a full ``ws://`` / ``wss://`` URL instead of ``port``/``path``.
        handler_js: optional source of a JavaScript function expression
            ``(event, log) => { ... }`` replacing the default ``onmessage`` display;
            ``log`` is the ``<ul class="ws-browser-log">`` element.

    Raises:
        ValueError: neither ``port`` nor ``url`` given, or a port out of range,
            or a ``url`` that is not ``ws://`` / ``wss://``.
    """

    _esm = (Path(__file__).parent / "static" / "browser_client.js").read_text(encoding="utf-8")
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
    _instance = traitlets.Unicode().tag(sync=True)  # keys the page-side state of this widget
    port = traitlets.Int(0).tag(sync=True)
    path = traitlets.Unicode("/").tag(sync=True)
    url = traitlets.Unicode("").tag(sync=True)
    handler_js = traitlets.Unicode("").tag(sync=True)
    # state reported by the page, page -> Python
    ready_state = traitlets.Int(int(ReadyState.NO_PAGE)).tag(sync=True)
    url_in_use = traitlets.Unicode("").tag(sync=True)
    received = traitlets.Int(0).tag(sync=True)
    sent = traitlets.Int(0).tag(sync=True)
    buffered_amount = traitlets.Int(0).tag(sync=True)
    last_message = traitlets.Unicode("").tag(sync=True)
    close_code = traitlets.Int(0).tag(sync=True)
    close_reason = traitlets.Unicode("").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    handler_error = traitlets.Unicode("").tag(sync=True)

    def __init__(self, port: int = 0, *, path: str = "/", url: str = "", handler_js: str = "",
                 **kwargs):
        if not url and not 0 < port < 65536:
            raise ValueError(f"give a port between 1 and 65535 (got {port!r}) or a ws:// url")
        if url and not url.startswith(("ws://", "wss://")):
            raise ValueError(f"a WebSocket URL starts with ws:// or wss:// (got {url!r})")
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/' (got {path!r})")
        super().__init__(port=port, path=path, url=url, handler_js=handler_js,
                         _instance=uuid.uuid4().hex, **kwargs)
        self.on_msg(self._on_page_message)

    def _on_page_message(self, _widget, content, _buffers) -> None:
        # The page says hello when it loads this widget; answering proves that the kernel
        # holds it (a copy restored from a saved notebook gets no answer and stays idle).
        if isinstance(content, dict) and content.get("event") == "hello":
            self.send({"command": "go"})

    def __repr__(self) -> str:
        target = self.url or f"127.0.0.1:{self.port}{self.path}"
        return f"BrowserClient({target})"

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
