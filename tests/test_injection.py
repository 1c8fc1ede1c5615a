"""Text from the network never becomes HTML: every demo page, in one real Chromium.

Script payloads travel through the real servers (the chat, the messenger, the private
rooms and their attacker page, chapter 1's event page) and through the widgets' own
front-end code (BrowserClient's module; LiveFeed's HTML as ipywidgets' ``HTML`` view sets
it).  Each page must show them as text, run none of them (no ``window.__xss``) and hold
no element they would create.  A control first proves the detector: the same payloads
inserted *as HTML* do run within the same wait.

Not in JupyterLab itself (too slow for the budget): BrowserClient's module runs on a page
with a minimal model (``get``/``set``/``on``/``send``, as anywidget hands it), and
LiveFeed's value is put where ipywidgets' HTML view puts it (``innerHTML``).
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import pytest
from aiohttp import web
from websockets.asyncio.server import serve

from course.demo.news import NewsSource
from course.measure.transports.server import EventServer
from course.net.channels_client import ChannelClient
from course.net.chat import start_chat
from course.net.messenger import start_messenger
from course.net.private import COOKIE, AttackerSite, PrivateServer
from course.ui.browser import BrowserClient
from course.ui.widgets import LiveFeed
from test_messenger import LoopThread

TIMEOUT_MS = 10_000
PAYLOADS = [
    '<img src=x onerror="window.__xss=1">',
    "<script>window.__xss=2</script>",
    '<a href="javascript:window.__xss=3">click</a>',
    '<svg onload="window.__xss=4"></svg>',
    '<iframe srcdoc="<script>parent.__xss=5</script>"></iframe>',
    '"><img src=x onerror=window.__xss=6>',
]
#: Elements a payload would create if it were parsed as HTML.
CREATED = "img, svg, iframe, a[href^='javascript:'], body script:not([src]):not([data-page])"


@pytest.fixture(scope="module")
def loop():
    thread = LoopThread()
    try:
        yield thread
    finally:
        thread.stop()


def stop(loop, *services) -> None:
    async def stop_all():
        for service in services:
            service.close()
        await asyncio.gather(*(service.wait_closed() for service in services))
    loop.run(stop_all())


def scripts_before(page) -> None:
    """Mark the page's own inline scripts, so that only new ones count."""
    page.evaluate("document.querySelectorAll('script').forEach(s => s.dataset.page = '1')")


def settle(page) -> None:
    """Wait until an image requested now has failed: an injected ``<img src=x>`` asked
    earlier has failed by then too (the control proves the wait is long enough)."""
    page.evaluate("""() => new Promise(done => {
        const img = new Image(); img.onerror = img.onload = done; img.src = "x?settle=" + Math.random();
    })""")
    page.wait_for_timeout(50)


def assert_inert(page, within: str, texts: list[str]) -> None:
    """Every text is shown inside ``within`` as text; nothing ran; nothing was created."""
    page.wait_for_function(
        "([sel, texts]) => { const t = document.querySelector(sel)?.textContent || '';"
        " return texts.every(x => t.includes(x)); }", arg=[within, texts], timeout=TIMEOUT_MS)
    settle(page)
    assert page.evaluate("window.__xss") is None
    assert page.evaluate(f"document.querySelectorAll({json.dumps(CREATED)}).length") == 0


@pytest.mark.browser
def test_the_detector_catches_payloads_parsed_as_html(chromium, blank_page_url):
    page = chromium.new_page()
    try:
        page.goto(blank_page_url)
        page.evaluate("html => document.body.insertAdjacentHTML('beforeend', html)", "".join(PAYLOADS))
        settle(page)
        assert page.evaluate("window.__xss") in (1, 4, 5, 6)  # onerror, onload, srcdoc ran (not <script>)
        assert page.evaluate(f"document.querySelectorAll({json.dumps(CREATED)}).length") >= 4
    finally:
        page.close()


@pytest.mark.browser
def test_chat_page(chromium, loop):
    server = loop.run(start_chat())
    page = chromium.new_page()
    try:
        for text in PAYLOADS[:3]:  # in the welcome's history
            loop.run(server.post(text, name="<b>x</b>"))
        page.goto(server.url)
        page.wait_for_selector("#status.open", timeout=TIMEOUT_MS)
        scripts_before(page)
        for text in PAYLOADS[3:]:  # live
            loop.run(server.post(text, name="<img src=x onerror=__xss=7>"))
        assert_inert(page, "#log", PAYLOADS + ["<b>x</b>"])
    finally:
        page.close()
        stop(loop, server)


@pytest.mark.browser
def test_messenger_page(chromium, loop):
    server = loop.run(start_messenger())
    page = chromium.new_page()

    async def kernel_says():
        client = await ChannelClient.connect(server.socket_url, heartbeat_interval=None)
        try:
            await client.join("room:xss", {"name": "<i>k</i>"})
            for text in PAYLOADS:
                await client.push("room:xss", "new_msg", {"body": text})
        finally:
            await client.close()
    try:
        page.goto(f"{server.url}?name={quote('<b>m</b>')}&room=xss")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('connected')",
                               timeout=TIMEOUT_MS)
        scripts_before(page)
        loop.run(kernel_says())
        assert_inert(page, "#messages", PAYLOADS)
    finally:
        page.close()
        stop(loop, server)


@pytest.mark.browser
def test_private_page_and_the_attacker_page(chromium, loop):
    seed = {"lobby": [(p, p) for p in PAYLOADS[:3]], "payroll": [(p, p) for p in PAYLOADS[3:]]}
    server = loop.run(PrivateServer(check_origin=False, seed=seed).start())
    attacker = loop.run(AttackerSite().start())
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.goto(server.url)
        scripts_before(page)
        page.fill("#user", "ada")
        page.click("#login button")
        page.wait_for_function("document.getElementById('status').textContent.endsWith('connected')",
                               timeout=TIMEOUT_MS)
        page.click("#rooms button")  # lobby: the history
        loop.until(lambda: len(server._joined) == 1 and any(server._joined.values()), what="joined")
        for text in PAYLOADS[3:]:  # live
            loop.call(server.post, "lobby", text, text)
        assert_inert(page, "#log", PAYLOADS)
        # the attacker page shows what it steals (payroll's history) as text too
        evil = context.new_page()
        evil.goto(f"http://127.0.0.1:{attacker.port}/?target={server.socket_url}&room=lobby")
        scripts_before(evil)
        assert_inert(evil, "#log", [p for p in PAYLOADS if '"' not in p])  # the rest is JSON-escaped
    finally:
        context.close()
        stop(loop, server, attacker)


@pytest.mark.browser
def test_event_page_of_chapter_1(chromium, loop):
    async def start():
        source = NewsSource(seed=1)
        for text in PAYLOADS:
            source.publish(text)
        return await EventServer(source).start()
    server = loop.run(start())
    page = chromium.new_page()
    try:
        page.goto(server.url)
        assert_inert(page, "main", PAYLOADS)
    finally:
        page.close()
        stop(loop, server)


class WidgetPage:
    """127.0.0.1 serves a page that runs BrowserClient's module with a minimal anywidget
    model, and a WebSocket that sends the payloads (text and one binary frame)."""

    PAGE = """<!doctype html><div id="widget"></div><script type="module">
const values = {_instance: "w1", port: 0, path: "/", url: %s, mode: "direct", handler_js: "",
  ready_state: -1, received: 0, sent: 0, error: "", handler_error: "", url_in_use: ""};
const handlers = {};
const model = {
  get: (k) => values[k], set: (k, v) => { values[k] = v; },
  on: (name, f) => { (handlers[name] ||= []).push(f); }, off: () => {},
  save_changes: () => {},
  send: (msg) => { if (msg.event === "hello") setTimeout(() => (handlers["msg:custom"] || []).forEach(f => f({command: "go"}))); },
};
const widget = (await import("/widget.js")).default;
widget.initialize({model});
widget.render({model, el: document.getElementById("widget")});
</script>"""

    async def start(self):
        async def push(ws):
            for text in PAYLOADS:
                await ws.send(text)
            await ws.send(PAYLOADS[0].encode())
            await ws.wait_closed()
        self.ws_server = await serve(push, "127.0.0.1", 0)
        ws_url = f"ws://127.0.0.1:{self.ws_server.sockets[0].getsockname()[1]}/"
        app = web.Application()
        page = self.PAGE % json.dumps(ws_url)

        async def index(request):
            return web.Response(text=page, content_type="text/html")

        async def module(request):
            return web.Response(text=BrowserClient._esm, content_type="text/javascript")
        app.router.add_get("/", index)
        app.router.add_get("/widget.js", module)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/"
        return self

    async def stop(self):
        self.ws_server.close()
        await self.ws_server.wait_closed()
        await self.runner.cleanup()


@pytest.mark.browser
def test_browser_client_widget_module(chromium, loop):
    widget = loop.run(WidgetPage().start())
    page = chromium.new_page()
    try:
        page.goto(widget.url)
        page.wait_for_selector(".ws-browser-log", timeout=TIMEOUT_MS)
        scripts_before(page)
        assert_inert(page, ".ws-browser-log", ["← " + p for p in PAYLOADS] + ["[binary, 36 bytes]"])
    finally:
        page.close()
        loop.run(widget.stop())


@pytest.mark.browser
def test_live_feed_widget_html(chromium, blank_page_url):
    feed = LiveFeed("<b>feed</b>", max_lines=len(PAYLOADS))
    for text in PAYLOADS:
        feed.append(text)
    feed.set_status('<img src=x onerror="window.__xss=8">')
    page = chromium.new_page()
    try:
        page.goto(blank_page_url)
        # ipywidgets' HTML view sets its value as innerHTML; a Label sets textContent
        page.evaluate("""([lines, status]) => {
            const box = document.createElement('div'); box.id = 'feed';
            const label = document.createElement('div'); label.textContent = status;
            const html = document.createElement('div'); html.innerHTML = lines;
            box.append(label, html); document.body.append(box);
        }""", [feed.children[1].value, feed.status])
        assert_inert(page, "#feed", PAYLOADS + ["<b>feed</b>"])
        assert page.eval_on_selector_all("#feed .ws-line", "els => els.map(e => e.textContent)") == PAYLOADS
    finally:
        page.close()
