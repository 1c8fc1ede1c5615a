"""Chapter 4 in a real JupyterLab driven by a real Chromium, directly and through the proxy.

The notebook's widget (course.ui.browser.BrowserClient) must open a WebSocket *from the page*
to the server the notebook starts in the kernel, show the kernel's pushes, send what is typed
in the page and show the echo; the page's state must reach Python; the chat page shown twice
in the notebook (course.ui.browser.LocalPage frames) must carry a message from one frame to the
other.  The same run is done twice on one JupyterLab (with jupyter-server-proxy installed):

* ``direct``: the page is ``http://127.0.0.1:LAB/``: the widgets reach ``127.0.0.1:PORT``;
* ``proxy``: the page is ``http://jupyter.test:LAB/`` (Chromium maps the name to 127.0.0.1,
  but to the page it is a remote host, as on JupyterHub or Binder): the widgets must go
  through the Lab server's ``/proxy/PORT/``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import urllib.request
from pathlib import Path

import nbformat
import pytest

from conftest import REMOTE_HOSTNAME

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "notebooks/04_the_browser_side.ipynb"
TIMEOUT_MS = 60_000
LOAD_MS = 120_000   # JupyterLab's first load on a busy 2-core machine
RUN_MS = 180_000    # every cell of the notebook


def cleanup_source() -> str:
    """First line of the last code cell: the one that stops everything (navigation follows it)."""
    nb = nbformat.read(ROOT / NOTEBOOK, as_version=4)
    return [c for c in nb.cells if c.cell_type == "code"][-1].source.splitlines()[0]


def _shutdown_sessions(lab) -> None:
    """Stop the kernels the test started (the next test opens the notebook afresh)."""
    with urllib.request.urlopen(f"{lab.url}/api/sessions", timeout=30) as response:
        sessions = json.load(response)
    for session in sessions:
        request = urllib.request.Request(f"{lab.url}/api/sessions/{session['id']}", method="DELETE")
        urllib.request.urlopen(request, timeout=30).close()


def _menu(page, top: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(rf"^{re.escape(top)}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{re.escape(item)}$")).click()


def _code_cell(page, snippet: str):
    return page.locator(".jp-CodeCell").filter(has=page.locator(".jp-InputArea", has_text=snippet))


def _output(page, snippet: str, pattern: str) -> re.Match:
    """Wait for the output of the cell containing ``snippet`` to match ``pattern``."""
    output = _code_cell(page, snippet).locator(".jp-OutputArea-output").first
    output.wait_for(timeout=RUN_MS)
    page.wait_for_function("([el, p]) => new RegExp(p).test(el.textContent)",
                           arg=[output.element_handle(timeout=RUN_MS), pattern], timeout=RUN_MS)
    return re.search(pattern, output.text_content())


def _select(page, cell) -> None:
    """Select ``cell`` in command mode; take the keyboard back from widgets and frames first."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    cell.scroll_into_view_if_needed()
    cell.locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")


def wait_log_line(page, text: str) -> None:
    page.wait_for_function(
        "t => [...document.querySelectorAll('.ws-browser-log li')].some(e => e.textContent === t)",
        arg=text, timeout=TIMEOUT_MS)


def _shot(page, name: str) -> None:
    """Save a screenshot when ``LAB_SCREENSHOTS=/some/dir`` is set (debugging)."""
    folder = os.environ.get("LAB_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))


@pytest.fixture(scope="module")
def lab4(jupyterlab_remote):
    if importlib.util.find_spec("jupyter_server_proxy") is None:
        pytest.fail("jupyter-server-proxy is not installed: pip install -r requirements.txt")
    # Render every cell (JupyterLab 4 skips off-screen cells by default); no news pop-up.
    jupyterlab_remote.put_setting("@jupyterlab/notebook-extension:tracker", {"windowingMode": "none"})
    jupyterlab_remote.put_setting("@jupyterlab/apputils-extension:notification", {"fetchNews": "false"})
    return jupyterlab_remote


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("route", ["direct", "proxy"])
def test_chapter4_in_jupyterlab(chromium, lab4, route):
    host = "127.0.0.1" if route == "direct" else REMOTE_HOSTNAME
    lab_port = lab4.url.rsplit(":", 1)[1]
    origin = f"http://{host}:{lab_port}"

    def reach(port: int, kind: str) -> str:
        """What the page must use to reach the kernel's 127.0.0.1:port on this route."""
        return f"{kind}://127.0.0.1:{port}/" if route == "direct" else f"{kind}://{host}:{lab_port}/proxy/{port}/"

    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        page.goto(lab4.notebook_url(NOTEBOOK, host=host), timeout=LOAD_MS)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=LOAD_MS)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=LOAD_MS)
        assert page.evaluate("location.origin") == origin
        # Saved outputs (and their saved widgets) must not be mistaken for live ones.
        _menu(page, "Edit", "Clear Outputs of All Cells")
        assert page.locator(".ws-browser, .ws-local-page").count() == 0

        # Everything above the cleanup cell, which stops the servers.
        _select(page, _code_cell(page, cleanup_source()))
        _menu(page, "Run", "Run All Above Selected Cell")
        kernel_port = int(_output(page, "server = await serve(", r"listening on ws://127\.0\.0\.1:(\d+)/")[1])
        chat_port = int(_output(page, "chat_server = await start_chat(", r"chat page, on the kernel's machine: http://127\.0\.0\.1:(\d+)/")[1])
        _output(page, "bad_inputs = [", r"broadcast -> ")

        # The kernel's pushes arrive in the page, over the page's own WebSocket.
        widget = page.locator(".ws-browser").first
        widget.scroll_into_view_if_needed()
        page.wait_for_function(
            "document.querySelectorAll('.ws-browser-log li.ws-browser-received').length >= 3",
            timeout=TIMEOUT_MS)
        lines = widget.locator(".ws-browser-log li").all_text_contents()
        assert lines[0] == f"open: {reach(kernel_port, 'ws')}", lines
        received = widget.locator(".ws-browser-log li.ws-browser-received").all_text_contents()
        assert received[:3] == ["← hello from the kernel (1/3)", "← hello from the kernel (2/3)",
                                "← [binary, 4 bytes]"], received

        # The page sends; the kernel's handler echoes.
        widget.locator(".ws-browser-input").fill(f"ping from the page ({route})")
        widget.locator(".ws-browser-input").press("Enter")
        wait_log_line(page, f"→ ping from the page ({route})")
        wait_log_line(page, f"← echo: ping from the page ({route})")
        assert widget.locator(".ws-browser-input").input_value() == ""
        status = widget.locator(".ws-browser-state").text_content()
        assert status.startswith(f"readyState 1 (OPEN) · {reach(kernel_port, 'ws')} · "), status
        assert "sent 1" in status and not widget.locator(".ws-browser-error").is_visible()
        _shot(page, f"client-{route}")

        # The page's state reached Python: re-run the summary cell.
        summary = _code_cell(page, "print(client.summary())")
        _select(page, summary)
        page.keyboard.press("Shift+Enter")
        match = _output(page, "print(client.summary())", r"readyState 1 \(OPEN\), received ([4-9]|\d\d+), sent 1")
        assert match, summary.text_content()

        # The chat: a link and two frames, all through the same route as the WebSocket.
        chat_url = reach(chat_port, "http")
        link = page.locator(".ws-local-page a")
        link.scroll_into_view_if_needed()
        assert link.get_attribute("href") == chat_url
        assert link.text_content() == "open the chat page in a new tab"
        page.wait_for_function("() => document.querySelectorAll('.ws-local-page iframe').length === 2",
                               timeout=TIMEOUT_MS)
        assert page.locator(".ws-local-page iframe").evaluate_all("fs => fs.map(f => f.src)") == [chat_url] * 2
        page.locator(".ws-local-page iframe").first.scroll_into_view_if_needed()
        frames = [f for f in page.frames if f.url == chat_url]
        assert len(frames) == 2, [f.url for f in page.frames]
        for frame in frames:
            frame.wait_for_selector("#status.open", timeout=TIMEOUT_MS)
        # The chat page's own WebSocket URL is relative: it follows the page through the proxy.
        assert frames[0].text_content("#status") == "connected"
        frames[0].fill("#name", "tab A")
        frames[0].fill("#text", f"hello tab B ({route})")
        frames[0].press("#text", "Enter")
        frames[1].wait_for_function(
            "t => [...document.querySelectorAll('#log li.chat-message')].some(e => e.textContent === t)",
            arg=f"tab Ahello tab B ({route})", timeout=TIMEOUT_MS)
        _shot(page, f"chat-{route}")
        # The link's page in a tab of its own, even typed without the final slash (…/proxy/PORT).
        tab = context.new_page()
        tab.goto(chat_url.rstrip("/"))
        tab.wait_for_selector("#status.open", timeout=TIMEOUT_MS)
        tab.wait_for_function(
            "t => [...document.querySelectorAll('#log li.chat-message')].some(e => e.textContent === t)",
            arg=f"tab Ahello tab B ({route})", timeout=TIMEOUT_MS)  # the history, replayed
        tab.close()

        # Last cell: everything stops.
        _select(page, _code_cell(page, cleanup_source()))
        page.keyboard.press("Shift+Enter")
        _output(page, cleanup_source(), r"stopped 0 tasks, 0 clients, 2 servers")
        page.wait_for_selector(".ws-browser-log", state="detached", timeout=TIMEOUT_MS)
        page.wait_for_selector(".ws-local-page iframe", state="detached", timeout=TIMEOUT_MS)
    except Exception:
        page.screenshot(path=str(lab4.root.parent / f"failure-{route}.png"), full_page=True)
        raise
    finally:
        context.close()
        _shutdown_sessions(lab4)


# --------------------------------------------------------------------------- the widget's JS alone
# The same ES module, loaded in a plain page with a minimal stand-in for the widget model,
# to test what the notebook run cannot show: failures, parity with Python, custom handlers.

import asyncio  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

from websockets.asyncio.server import serve  # noqa: E402

from course.ui.browser import (BrowserClient, LocalPage, is_loopback_host, resolve_mode,  # noqa: E402
                            url_from_page)

HARNESS = """async ({esm, values, kernel}) => {
  const url = URL.createObjectURL(new Blob([esm], {type: "text/javascript"}));
  const mod = await import(url);
  const listeners = {};
  const model = {
    get: (k) => values[k],
    set: (k, v) => { values[k] = v; (listeners["change:" + k] || []).forEach((f) => f()); },
    save_changes: () => {},
    on: (ev, f) => { (listeners[ev] ||= []).push(f); },
    off: (ev, f) => { listeners[ev] = (listeners[ev] || []).filter((g) => g !== f); },
    // the kernel side answers the page's hello with "go" (course.ui.browser._KernelHeld)
    send: (msg) => { if (msg.event === "hello" && kernel) setTimeout(() => window.emit("msg:custom", {command: "go"}), 0); },
  };
  window.values = values;
  window.emit = (ev, arg) => (listeners[ev] || []).forEach((f) => f(arg));
  window.widgetModule = mod;
  await mod.default.initialize({ model });
  const el = document.createElement("div");
  document.body.append(el);
  await mod.default.render({ model, el });
}"""


def model_values(cls=BrowserClient, **overrides) -> dict:
    """The synced traitlets' values, as the page would receive them."""
    widget = cls(overrides.pop("port", 1), **overrides)
    try:
        ours = [k for k in cls.__mro__ if k.__module__ == "course.ui.browser"]
        return {name: getattr(widget, name) for k in ours for name in k.class_own_traits(sync=True)}
    finally:
        widget.close()


def dead_port() -> int:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def echo_port():
    """A websockets server in a background loop: pushes 'hi', then echoes."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder = {}

    async def handler(ws):
        await ws.send("hi")
        async for message in ws:
            await ws.send(f"echo: {message}")

    async def main():
        holder["server"] = await serve(handler, "127.0.0.1", 0)
        holder["stop"] = asyncio.Event()
        ready.set()
        await holder["stop"].wait()
        holder["server"].close()
        await holder["server"].wait_closed()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield holder["server"].sockets[0].getsockname()[1]
    finally:
        loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(10)


def harness(chromium, url, kernel=True, cls=BrowserClient, **values):
    page = chromium.new_page()
    page.goto(url)
    page.evaluate(HARNESS, {"esm": cls._esm, "values": model_values(cls, **values), "kernel": kernel})
    return page


@pytest.mark.browser
def test_widget_js_connects_sends_and_closes(chromium, blank_page_url, echo_port):
    page = harness(chromium, blank_page_url, port=echo_port)
    try:
        page.wait_for_function("window.values.received === 1", timeout=TIMEOUT_MS)
        assert page.evaluate("window.values.ready_state") == 1
        assert page.evaluate("window.values.url_in_use") == f"ws://127.0.0.1:{echo_port}/"
        assert page.evaluate("window.values.last_message") == "hi"
        page.evaluate("window.emit('msg:custom', {command: 'send', text: 'from python'})")
        page.wait_for_function("window.values.received === 2", timeout=TIMEOUT_MS)
        assert page.evaluate("window.values.last_message") == "echo: from python"
        assert page.evaluate("window.values.sent") == 1
        page.evaluate("window.emit('msg:custom', {command: 'close', code: 4000, reason: 'bye'})")
        page.wait_for_function("window.values.ready_state === 3", timeout=TIMEOUT_MS)
        assert page.evaluate("[window.values.close_code, window.values.close_reason]") == [4000, "bye"]
        assert page.locator(".ws-browser-log li").all_text_contents()[-1].startswith("closed: code 4000")
    finally:
        page.close()


@pytest.mark.browser
def test_widget_js_restored_without_kernel_stays_idle(chromium, blank_page_url, echo_port):
    page = harness(chromium, blank_page_url, kernel=False, port=echo_port)
    try:
        page.wait_for_timeout(500)
        assert page.evaluate("[window.values.ready_state, window.values.received]") == [-1, 0]
        assert page.locator(".ws-browser-state").text_content().startswith("waiting for the kernel")
        page.evaluate("window.emit('msg:custom', {command: 'go'})")  # the kernel answers late
        page.wait_for_function("window.values.received === 1", timeout=TIMEOUT_MS)
    finally:
        page.close()


@pytest.mark.browser
@pytest.mark.parametrize("mode", ["auto", "direct", "proxy"])
def test_widget_js_explains_when_nothing_answers(chromium, blank_page_url, mode):
    dead = dead_port()
    page = harness(chromium, blank_page_url, port=dead, mode=mode)
    try:
        page.wait_for_function("window.values.error !== ''", timeout=TIMEOUT_MS)
        error = page.locator(".ws-browser-error").first.text_content()
        assert page.locator(".ws-browser-error").first.is_visible()
        assert page.evaluate("window.values.ready_state") == 3
        if mode == "proxy":  # the blank page's server has no /proxy/: nothing answers there
            assert error.startswith(f"Nothing answered at {blank_page_url.replace('http', 'ws')}proxy/{dead}/."), error
            assert "is it installed where the Jupyter server runs" in error
        else:
            assert error.startswith(f"Nothing answered at ws://127.0.0.1:{dead}/."), error
            assert 'use mode="proxy" (jupyter-server-proxy)' in error
    finally:
        page.close()


@pytest.mark.browser
def test_widget_js_custom_handler_and_compile_error(chromium, blank_page_url, echo_port):
    handler = "(event, log) => { const li = document.createElement('li'); " \
              "li.className = 'custom'; li.textContent = 'got ' + event.data; log.append(li); }"
    page = harness(chromium, blank_page_url, port=echo_port, handler_js=handler)
    try:
        page.wait_for_selector(".ws-browser-log li.custom", timeout=TIMEOUT_MS)
        assert page.locator(".ws-browser-log li.custom").first.text_content() == "got hi"
    finally:
        page.close()
    page = harness(chromium, blank_page_url, port=echo_port, handler_js="(event, log) => {")
    try:
        page.wait_for_function("window.values.handler_error !== ''", timeout=TIMEOUT_MS)
        assert "does not compile" in page.locator(".ws-browser-error").first.text_content()
        page.wait_for_function("window.values.received === 1", timeout=TIMEOUT_MS)  # default handler
        assert page.locator(".ws-browser-log li.ws-browser-received").first.text_content() == "← hi"
    finally:
        page.close()


@pytest.mark.browser
def test_local_page_js_frame_link_and_idle(chromium, blank_page_url, echo_port):
    blank = urlsplit(blank_page_url)
    # A saved copy (no kernel answers): no frame knocks on a dead port.
    page = harness(chromium, blank_page_url, kernel=False, cls=LocalPage, port=echo_port)
    try:
        page.wait_for_timeout(500)
        assert page.locator(".ws-local-page iframe").count() == 0
        assert page.locator(".ws-local-page-note").text_content().startswith("waiting for the kernel")
        assert page.evaluate("window.values.url_in_use") == ""
    finally:
        page.close()
    # A frame, from a loopback page: direct.
    page = harness(chromium, blank_page_url, cls=LocalPage, port=echo_port, path="/x", height=200)
    try:
        page.wait_for_selector(".ws-local-page iframe", timeout=TIMEOUT_MS)
        frame = page.locator(".ws-local-page iframe")
        assert frame.get_attribute("src") == f"http://127.0.0.1:{echo_port}/x"
        assert frame.evaluate("f => f.style.height") == "200px"
        assert page.evaluate("window.values.url_in_use") == f"http://127.0.0.1:{echo_port}/x"
    finally:
        page.close()
    # A link, forced through the proxy; its label is text, never markup.
    page = harness(chromium, blank_page_url, cls=LocalPage, port=echo_port, kind="link",
                   mode="proxy", label="<b>chat</b>")
    try:
        link = page.locator(".ws-local-page a")
        link.wait_for(timeout=TIMEOUT_MS)
        assert link.get_attribute("href") == f"http://{blank.netloc}/proxy/{echo_port}/"
        assert link.text_content() == "<b>chat</b>" and page.locator(".ws-local-page b").count() == 0
        assert [link.get_attribute("target"), link.get_attribute("rel")] == ["_blank", "noopener"]
    finally:
        page.close()


PAGES = [
    ("http://localhost:8888/lab/tree/x.ipynb", "/"),
    ("http://127.0.0.1:8888/lab", "/"),
    ("https://hub.example.org/user/ada/lab/tree/x.ipynb", "/user/ada/"),
    ("http://[::1]:8888/lab", "/"),
    ("http://hub.example.org/jupyter/lab", "/jupyter/"),
    ("https://app.localhost/lab", "/"),
    ("http://127.0.0.2:8888/user/x/lab/tree/a/lab.ipynb", "/user/x/"),
    ("http://192.168.1.20:8888/lab", "/"),
    ("http://jupyter.test:8888/lab", "/"),
]


@pytest.mark.browser
def test_url_rule_js_and_python_agree(chromium, blank_page_url):
    """The page's rule (kernel_url.js) and its Python mirror give the same URL, every case."""
    page = harness(chromium, blank_page_url, port=1)
    try:
        for page_url, base in PAGES:
            parts = urlsplit(page_url)
            loc = {"protocol": parts.scheme + ":", "host": parts.netloc, "pathname": parts.path,
                   "hostname": f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname}
            # no jupyter-config-data in the blank page: the base comes from the path
            assert page.evaluate("loc => window.widgetModule.jupyterBaseUrl(document, loc)", loc) == base
            for mode in ("auto", "direct", "proxy"):
                for kind in ("ws", "http"):
                    js = page.evaluate(
                        "([loc, base, mode, kind]) => window.widgetModule.urlFromPage("
                        "8765, '/ws', {mode, kind, loc, baseUrl: base})", [loc, base, mode, kind])
                    py = url_from_page(page_url, 8765, "/ws", mode=mode, kind=kind)
                    assert js == py == url_from_page(page_url, 8765, "/ws", mode=mode, kind=kind,
                                                     base_url=base), (page_url, mode, kind)
            assert page.evaluate("h => window.widgetModule.isLoopbackHost(h)", loc["hostname"]) == \
                is_loopback_host(parts.hostname)
        # JupyterLab's page config wins over the path (JupyterHub's /user/NAME/).
        page.evaluate("""() => { const s = document.createElement('script');
            s.id = 'jupyter-config-data'; s.type = 'application/json';
            s.textContent = JSON.stringify({baseUrl: '/user/ada'}); document.head.append(s); }""")
        assert page.evaluate("window.widgetModule.jupyterBaseUrl()") == "/user/ada/"
        assert page.evaluate("() => { try { window.widgetModule.resolveMode('x', 'tunnel') } "
                             "catch (e) { return e.name } }") == "RangeError"
    finally:
        page.close()


# --------------------------------------------------------------------------- Python side, no browser

@pytest.mark.parametrize("kwargs", [{"port": 0}, {"port": 70000}, {"url": "http://x/"},
                                    {"port": 80, "path": "ws"}, {"port": 80, "mode": "tunnel"}])
def test_browser_client_refuses_bad_targets(kwargs):
    with pytest.raises(ValueError):
        BrowserClient(**kwargs)


@pytest.mark.parametrize("kwargs", [{"port": 0}, {"port": 80, "path": "x"}, {"port": 80, "kind": "tab"},
                                    {"port": 80, "height": 0}, {"port": 80, "mode": "Proxy"}])
def test_local_page_refuses_bad_input(kwargs):
    with pytest.raises(ValueError):
        LocalPage(**kwargs)


def test_reprs_are_stable_text():
    widgets = [BrowserClient(8765, path="/ws"), BrowserClient(8765, mode="proxy"),
               LocalPage(8000), LocalPage(8000, kind="link", mode="direct")]
    try:
        assert [repr(w) for w in widgets] == [
            "BrowserClient(127.0.0.1:8765/ws)", "BrowserClient(127.0.0.1:8765/, mode='proxy')",
            "LocalPage(frame of 127.0.0.1:8000/)", "LocalPage(link of 127.0.0.1:8000/, mode='direct')"]
        bundle = widgets[2]._repr_mimebundle_()
        bundle = bundle[0] if isinstance(bundle, tuple) else bundle
        assert bundle["text/plain"] == "LocalPage(frame of 127.0.0.1:8000/)"
    finally:
        for w in widgets:
            w.close()


def test_browser_client_headless_summary_and_commands():
    client = BrowserClient(8765, path="/ws")
    try:
        assert client.state.name == "NO_PAGE" and "no browser page" in client.summary()
        client.ready_state, client.received, client.close_code = 3, 2, 1006
        assert client.summary() == "readyState 3 (CLOSED), received 2, sent 0, close code 1006"
        for bad in ({"code": 1001}, {"code": 2999}, {"code": 1000, "reason": "é" * 62}):
            with pytest.raises(ValueError):
                client.close_from_page(**bad)
        client.close_from_page(4000, "bye")  # no page: nothing happens, no error
        client.send_from_page("x")
    finally:
        client.close()
    assert BrowserClient(url="wss://example.org/ws").url == "wss://example.org/ws"


@pytest.mark.parametrize("host, loopback", [
    ("localhost", True), ("LOCALHOST.", True), ("app.localhost", True), ("127.0.0.1", True),
    ("127.1.2.3", True), ("[::1]", True), ("::1", True), ("localhost.example.org", False),
    ("128.0.0.1", False), ("jupyter.test", False), ("10.0.0.1", False), ("", False),
])
def test_loopback_hosts(host, loopback):
    assert is_loopback_host(host) is loopback
    assert resolve_mode(host) == ("direct" if loopback else "proxy")
    assert resolve_mode(host, "proxy") == "proxy" and resolve_mode(host, "direct") == "direct"


@pytest.mark.parametrize("page_url, port, kwargs", [
    ("ftp://x/lab", 80, {}), ("localhost:8888", 80, {}), ("http://localhost:8888/lab", 0, {}),
    ("http://localhost:8888/lab", 80, {"path": "ws"}), ("http://x/lab", 80, {"kind": "wss"}),
    ("http://x/lab", 80, {"mode": "auto-proxy"}),
])
def test_url_from_page_refuses_bad_input(page_url, port, kwargs):
    with pytest.raises(ValueError):
        url_from_page(page_url, port, **kwargs)
