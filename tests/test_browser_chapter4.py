"""Chapter 4 in a real JupyterLab driven by a real Chromium.

The notebook's widget (course.browser.BrowserClient) must open a WebSocket *from the page*
to the server the notebook starts in the kernel, show the kernel's pushes, send what is typed
in the page and show the echo; the page's state must reach Python; the chat page shown twice
in the notebook must carry a message from one frame to the other.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "notebooks/04_the_browser_side.ipynb"
TIMEOUT_MS = 60_000

def cell_number(fragment: str) -> int:
    """1-based index (as in JupyterLab's status bar) of the first cell containing ``fragment``."""
    nb = nbformat.read(ROOT / NOTEBOOK, as_version=4)
    for i, cell in enumerate(nb.cells, start=1):
        if fragment in cell.source:
            return i
    raise AssertionError(f"no cell contains {fragment!r}")


def cleanup_cell() -> int:
    """1-based index of the last code cell: the one that stops everything (navigation follows it)."""
    nb = nbformat.read(ROOT / NOTEBOOK, as_version=4)
    return max(i for i, cell in enumerate(nb.cells, start=1) if cell.cell_type == "code")


def selected_cell(page) -> tuple[int, int]:
    text = page.get_by_text(re.compile(r"^Cell \d+/\d+$")).text_content()
    current, total = text.split()[1].split("/")
    return int(current), int(total)


def select_cell(page, number: int) -> None:
    """Select cell ``number`` in command mode with the arrow keys (works with windowed notebooks)."""
    # Take the keyboard back from whatever has it (the widget's text box, a chat frame).
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.locator(".jp-Notebook .jp-Cell.jp-mod-selected .jp-InputPrompt").first.click()
    page.keyboard.press("Escape")
    for _ in range(200):
        current, _total = selected_cell(page)
        if current == number:
            return
        page.keyboard.press("ArrowDown" if current < number else "ArrowUp")
    raise AssertionError(f"could not select cell {number}; at {selected_cell(page)}")


def run_menu(page, item: str) -> None:
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_text(item, exact=True).click()


def log_lines(page) -> list[str]:
    return page.locator(".ws-browser-log li").all_text_contents()


def wait_log_line(page, text: str) -> None:
    page.wait_for_function(
        "t => [...document.querySelectorAll('.ws-browser-log li')].some(e => e.textContent === t)",
        arg=text, timeout=TIMEOUT_MS)


@pytest.mark.browser
@pytest.mark.slow
def test_browser_client_talks_to_the_kernel(chromium, jupyterlab):
    cleanup = cleanup_cell()
    summary_cell = cell_number("print(client.summary())")
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(jupyterlab.notebook_url(NOTEBOOK))
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=TIMEOUT_MS)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=TIMEOUT_MS)

        # Everything above the cleanup cell, which stops the servers.
        select_cell(page, cleanup)
        run_menu(page, "Run All Above Selected Cell")

        # The kernel's pushes arrive in the page, over the page's own WebSocket.
        page.wait_for_function(
            "document.querySelectorAll('.ws-browser-log li.ws-browser-received').length >= 3",
            timeout=TIMEOUT_MS)
        lines = log_lines(page)
        assert lines[0].startswith("open: ws://127.0.0.1:"), lines
        received = page.locator(".ws-browser-log li.ws-browser-received").all_text_contents()
        assert received[:3] == ["← hello from the kernel (1/3)", "← hello from the kernel (2/3)",
                                "← [binary, 4 bytes]"], received

        # The page sends; the kernel's handler echoes.
        page.locator(".ws-browser-input").fill("ping from the page")
        page.locator(".ws-browser-input").press("Enter")
        wait_log_line(page, "→ ping from the page")
        wait_log_line(page, "← echo: ping from the page")
        assert page.locator(".ws-browser-input").input_value() == ""
        status = page.locator(".ws-browser-state").text_content()
        assert status.startswith("readyState 1 (OPEN) · ws://127.0.0.1:"), status
        assert "sent 1" in status and not page.locator(".ws-browser .ws-browser-error").is_visible()

        # The page's state reached Python: re-run the summary cell.
        select_cell(page, summary_cell)
        page.keyboard.press("Shift+Enter")
        output = page.locator(".jp-Notebook .jp-Cell").filter(has_text="print(client.summary())") \
            .locator(".jp-OutputArea-output")
        page.wait_for_function(
            "el => el.textContent.includes('readyState 1 (OPEN)')",
            arg=output.element_handle(timeout=TIMEOUT_MS), timeout=TIMEOUT_MS)
        text = output.text_content()
        assert re.search(r"readyState 1 \(OPEN\), received [4-9]\d*, sent 1", text), text

        # The chat shown twice in the notebook: frame A -> frame B, live.
        page.wait_for_function(
            "() => document.querySelectorAll('iframe').length >= 2", timeout=TIMEOUT_MS)
        frames = [f for f in page.frames if re.fullmatch(r"http://127\.0\.0\.1:\d+/", f.url)]
        assert len(frames) == 2, [f.url for f in page.frames]
        for frame in frames:
            frame.wait_for_selector("#status.open", timeout=TIMEOUT_MS)
        frames[0].fill("#name", "tab A")
        frames[0].fill("#text", "hello tab B")
        frames[0].press("#text", "Enter")
        frames[1].wait_for_function(
            "[...document.querySelectorAll('#log li.chat-message')].some(e => e.textContent === 'tab Ahello tab B')",
            timeout=TIMEOUT_MS)

        # Last cell: everything stops.
        select_cell(page, cleanup)
        page.keyboard.press("Shift+Enter")
        page.get_by_text("kernel server, chat server and widget stopped").first.wait_for(timeout=TIMEOUT_MS)
        page.wait_for_selector(".ws-browser-log", state="detached", timeout=TIMEOUT_MS)
    except Exception:
        page.screenshot(path=str(jupyterlab.root.parent / "failure.png"), full_page=True)
        raise
    finally:
        page.close()


# --------------------------------------------------------------------------- the widget's JS alone
# The same ES module, loaded in a plain page with a minimal stand-in for the widget model,
# to test what the notebook run cannot show: failures, parity with Python, custom handlers.

import asyncio  # noqa: E402
import threading  # noqa: E402

from websockets.asyncio.server import serve  # noqa: E402

from course.browser import BrowserClient, candidate_urls  # noqa: E402

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
    // the kernel side answers the page's hello with "go" (course.browser.BrowserClient)
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


def model_values(**overrides) -> dict:
    """The synced traitlets' defaults, as the page would receive them."""
    client = BrowserClient(overrides.pop("port", 1), **overrides)
    try:
        return {name: getattr(client, name) for name in BrowserClient.class_own_traits(sync=True)}
    finally:
        client.close()


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


def harness(chromium, url, kernel=True, **values):
    page = chromium.new_page()
    page.goto(url)
    page.evaluate(HARNESS, {"esm": BrowserClient._esm, "values": model_values(**values), "kernel": kernel})
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
def test_widget_js_explains_when_nothing_answers(chromium, blank_page_url):
    import socket
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    page = harness(chromium, blank_page_url, port=dead)
    try:
        page.wait_for_function("window.values.error !== ''", timeout=TIMEOUT_MS)
        error = page.locator(".ws-browser-error").first.text_content()
        assert error.startswith(f"Could not connect to ws://127.0.0.1:{dead}/ or ws://127.0.0.1:"), error
        assert "jupyter-server-proxy" in error and page.locator(".ws-browser-error").first.is_visible()
        assert page.evaluate("window.values.ready_state") == 3
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
@pytest.mark.parametrize("page_url, base", [
    ("http://localhost:8888/lab/tree/x.ipynb", "/"),
    ("http://127.0.0.1:8888/lab", "/"),
    ("https://hub.example.org/user/ada/lab/tree/x.ipynb", "/user/ada/"),
    ("http://[::1]:8888/lab", "/"),
    ("http://hub.example.org/jupyter/lab", "/jupyter/"),
])
def test_candidate_urls_js_and_python_agree(chromium, blank_page_url, echo_port, page_url, base):
    from urllib.parse import urlsplit
    page = harness(chromium, blank_page_url, port=echo_port)
    try:
        parts = urlsplit(page_url)
        loc = {"protocol": parts.scheme + ":", "host": parts.netloc,
               "hostname": f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname}
        js = page.evaluate("([loc, base]) => window.widgetModule.candidateUrls(8765, '/ws', '', loc, base)",
                           [loc, base])
        assert js == candidate_urls(page_url, 8765, "/ws", base_url=base) == \
            candidate_urls(page_url, 8765, "/ws")
    finally:
        page.close()


# --------------------------------------------------------------------------- Python side, no browser

@pytest.mark.parametrize("kwargs", [{"port": 0}, {"port": 70000}, {"url": "http://x/"},
                                    {"port": 80, "path": "ws"}])
def test_browser_client_refuses_bad_targets(kwargs):
    with pytest.raises(ValueError):
        BrowserClient(**kwargs)


def test_browser_client_headless_summary_and_commands():
    client = BrowserClient(8765, path="/ws")
    try:
        assert repr(client) == "BrowserClient(127.0.0.1:8765/ws)"
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


@pytest.mark.parametrize("page_url, port", [("ftp://x/lab", 80), ("localhost:8888", 80),
                                            ("http://localhost:8888/lab", 0)])
def test_candidate_urls_refuses_bad_input(page_url, port):
    with pytest.raises(ValueError):
        candidate_urls(page_url, port)
