"""The Exemple (course.net.messenger): two real Chromium pages on Phoenix's official client,
plus the kernel's ChatWidget, in one room; the widget alone; the command line; the vendored
client is the pinned npm package, byte for byte.

The servers and the widget run in an event loop on a thread of their own: while the
module's Chromium is open, Playwright's sync API owns this thread's loop.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

from loop_thread import LoopThread
from course.net.channels_client import ChannelClient
from course.net.lifecycle import shutdown
from course.net.messenger import VENDOR_PHOENIX, start_messenger
from course.ui.chat_widget import ChatWidget

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "course" / "ui" / "static"
TIMEOUT_MS = 10_000
HEARTBEAT_TIMEOUT = 1.5  # the test server's; the page then beats every 0.5 s


@pytest.fixture(scope="module")
def loop():
    thread = LoopThread()
    try:
        yield thread
    finally:
        thread.stop()


@pytest.fixture
def server(loop):
    server = loop.run(start_messenger("127.0.0.1", 0, heartbeat_timeout=HEARTBEAT_TIMEOUT))
    try:
        yield server
    finally:
        async def stop():
            server.close()
            await server.wait_closed()
        loop.run(stop())


@pytest.fixture
def widgets(loop):
    """Widgets a test opened; closed at the end even if the test fails."""
    opened: list[ChatWidget] = []
    try:
        yield opened
    finally:
        loop.run(shutdown(clients=opened))


def join_widget(loop, server, opened, room="lobby", name="kernel", **options) -> ChatWidget:
    widget = loop.run(ChatWidget.connect(server.socket_url, room, name,
                                         heartbeat_interval=HEARTBEAT_TIMEOUT / 3, **options))
    opened.append(widget)
    return widget


# --- the vendored client ------------------------------------------------------------------

def test_vendored_phoenix_is_the_pinned_npm_package_byte_for_byte(node_modules):
    package = node_modules / "phoenix"
    assert json.loads((package / "package.json").read_text())["version"] == "1.8.16"
    lock = json.loads((ROOT / "js" / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/phoenix"]["version"] == "1.8.16"
    vendored = (STATIC / VENDOR_PHOENIX).read_bytes()
    assert vendored == (package / "priv" / "static" / "phoenix.mjs").read_bytes()
    assert (STATIC / "vendor" / "LICENSE-phoenix.md").read_bytes() == (package / "LICENSE.md").read_bytes()


def test_page_uses_only_relative_urls_and_no_html_sinks():
    page = (STATIC / "messenger.html").read_text() + (STATIC / "messenger.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
        assert sink not in page, sink
    assert 'script.src = "messenger.js"' in page and '"./vendor/phoenix-1.8.16.mjs"' in page
    assert not re.search(r"[\"'`](https?|wss?)://", page), "an absolute URL in the page"


# --- the widget, without a browser ----------------------------------------------------------

def test_widget_repr_messages_from_a_task_typing_send_and_close(loop, server, widgets):
    widget = ChatWidget(room="lobby", name="kernel", typing_ttl=0.3)
    assert repr(widget) == "ChatWidget(room='lobby', name='kernel', messages=0, online=[])"
    loop.call(server.post, "lobby", "<b>earlier</b>", "script")

    async def scenario():
        await widget.join(server.socket_url, heartbeat_interval=0.5)
        widgets.append(widget)
        assert [m["body"] for m in widget.messages] == ["<b>earlier</b>"]  # history on join
        ada = await ChannelClient.connect(server.socket_url)
        await ada.join("room:lobby", {"name": "ada"})
        for body in ("one", "two"):
            assert (await ada.push("room:lobby", "new_msg", {"body": body}))["status"] == "ok"
        async with asyncio.timeout(5):  # appended by the widget's background task
            while len(widget.messages) < 3 or widget.online != ["ada", "kernel"]:
                await asyncio.sleep(0.02)
        assert repr(widget) == ("ChatWidget(room='lobby', name='kernel', messages=3, "
                                "online=['ada', 'kernel'])")
        listing = widget.children[1].value
        assert "&lt;b&gt;earlier&lt;/b&gt;" in listing and "<b>earlier</b>" not in listing
        assert widget.children[2].value == "online: ada, kernel"

        await ada.cast("room:lobby", "typing", {"typing": True})
        async with asyncio.timeout(5):
            while widget.typing_names != ["ada"]:
                await asyncio.sleep(0.02)
        assert widget.children[3].value == "ada is typing…"
        started = time.monotonic()
        async with asyncio.timeout(5):  # expires by itself (typing_ttl), no "stop" was sent
            while widget.typing_names:
                await asyncio.sleep(0.02)
        assert time.monotonic() - started > 0.15 and widget.children[3].value == ""

        message_id = await widget.send("from the kernel")
        assert isinstance(message_id, int)
        async with asyncio.timeout(5):
            while widget.messages[-1]["id"] != message_id:
                await asyncio.sleep(0.02)
        assert "from the kernel ✓" in widget.children[1].value  # the delivered mark

        widget.text.value = "via the box"  # typing, then the Send button
        widget.button.click()
        seen = []
        async with asyncio.timeout(5):
            while not any(m.event == "new_msg" and m.payload["body"] == "via the box" for m in seen):
                seen.append(await ada.next_event())
        assert {"name": "kernel", "typing": True} in [m.payload for m in seen if m.event == "typing"]
        assert widget.text.value == ""

        reader = widget._reader
        assert await shutdown(clients=[widget]) == "stopped 0 tasks, 1 client, 0 servers"
        assert reader.done() and not widget.joined and widget.client is None
        assert repr(widget) == ("ChatWidget(room='lobby', name='kernel', messages=5, online=[])")
        assert widget.status.endswith("closed")
        assert widget.close() is None  # idempotent: nothing left to stop
        with pytest.raises(RuntimeError):
            await widget.send("after close")
        async with asyncio.timeout(5):  # the server saw the kernel leave
            while server.rooms.room("lobby").names() != ["ada"]:
                await asyncio.sleep(0.02)
        await ada.close()
    loop.run(scenario(), timeout=20)


def test_widget_close_from_another_thread_as_ipywidgets_close_all_does(loop, server, widgets):
    widget = join_widget(loop, server, widgets, name="kernel")
    loop.until(lambda: widget.online == ["kernel"], what="joined")
    reader = widget._reader
    assert widget.close() is None  # not on the widget's loop: scheduled there, returns at once
    loop.until(lambda: reader.done() and server.rooms.room("lobby").names() == [],
               what="the stop ran on the widget's loop")
    loop.until(lambda: widget.status.endswith("closed"), what="status closed")
    assert loop.run(shutdown(clients=[widget])) == "stopped 0 tasks, 1 client, 0 servers"


def test_widget_join_refused_is_an_error_and_leaves_nothing_open(loop, server):
    widget = ChatWidget(room="no spaces", name="kernel")
    with pytest.raises(RuntimeError, match="cannot join room:no spaces"):
        loop.run(widget.join(server.socket_url))
    assert widget.client is None and not widget.joined
    with pytest.raises(ValueError):
        ChatWidget(max_messages=0)


# --- the command line -------------------------------------------------------------------

def test_command_line_serves_page_config_and_client_until_sigterm():
    proc = subprocess.Popen([sys.executable, "-m", "course.net.messenger", "--host", "127.0.0.1",
                             "--port", "0", "--heartbeat-timeout", "9", "--rooms", "a,b"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving on http://127.0.0.1:") and line.endswith("/\n"), \
            (line, proc.stderr.read() if proc.poll() is not None else "")
        url = line.split()[-1]
        with urllib.request.urlopen(url, timeout=5) as response:
            page = response.read().decode()
        assert 'aria-label="online"' in page and 'role="status"' in page
        with urllib.request.urlopen(url + "config.json", timeout=5) as response:
            assert json.load(response) == {"rooms": ["a", "b"], "history": 50,
                                           "heartbeat_interval_ms": 3000}
        with urllib.request.urlopen(url + VENDOR_PHOENIX, timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/javascript")
            assert response.read() == (STATIC / VENDOR_PHOENIX).read_bytes()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0 and out.strip() == "stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


# --- two Chromium pages and the kernel ----------------------------------------------------

def open_page(browser, url, name, room="lobby"):
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(f"{url}?name={quote(name)}&room={room}")
    expect(page.locator("#status")).to_have_text(f"connected · #{room} as {name}", timeout=TIMEOUT_MS)
    return page


def online(page):
    return page.get_by_role("list", name="online", exact=True).get_by_role("listitem")


def bodies(page):
    return page.locator("#messages li.message .body")


def say(page, text):
    box = page.get_by_role("textbox", name="message")
    box.fill(text)
    box.press("Enter")


@pytest.mark.browser
def test_two_pages_and_the_kernel_presence_typing_history_delivered_and_leaving(
        chromium, loop, server, widgets):
    from playwright.sync_api import expect

    loop.call(server.post, "lobby", "before anyone came", "script")
    kernel = join_widget(loop, server, widgets, typing_ttl=1.0)
    ada = open_page(chromium, server.url, "ada")
    bob = open_page(chromium, server.url, "bob")
    try:
        for page in (ada, bob):
            expect(online(page)).to_have_text(["ada", "bob", "kernel"], timeout=TIMEOUT_MS)
            expect(bodies(page)).to_have_text(["before anyone came"])       # history on join
            expect(page.locator("#messages li.message .name")).to_have_text(["script"])
        loop.until(lambda: kernel.online == ["ada", "bob", "kernel"], what="the widget sees 3")
        # the accessible names the course promises
        expect(ada.get_by_role("textbox", name="name")).to_have_value("ada")
        expect(ada.get_by_label("room", exact=True)).to_have_value("lobby")

        # typing shows on the other page and in the kernel, and clears with the message
        ada.get_by_role("textbox", name="message").press_sequentially("hel")
        expect(bob.get_by_role("status")).to_have_text("ada is typing…", timeout=TIMEOUT_MS)
        loop.until(lambda: kernel.typing_names == ["ada"], what="the widget sees ada typing")
        expect(ada.get_by_role("status")).to_have_text("")                  # not to the sender
        ada.get_by_role("textbox", name="message").press_sequentially("lo bob")
        ada.get_by_role("textbox", name="message").press("Enter")
        expect(bob.get_by_role("status")).to_have_text("", timeout=TIMEOUT_MS)
        mine = ada.locator("#messages li.message").filter(has_text="hello bob")
        expect(mine.locator(".delivered")).to_have_text("✓ delivered", timeout=TIMEOUT_MS)
        expect(bodies(bob)).to_have_text(["before anyone came", "hello bob"], timeout=TIMEOUT_MS)
        expect(bob.locator("#messages .delivered")).to_have_count(0)       # not bob's message
        loop.until(lambda: kernel.messages[-1]["body"] == "hello bob", what="the widget gets it")

        # typing also expires by itself: bob types and stops without sending
        bob.get_by_role("textbox", name="message").press_sequentially("x")
        expect(ada.get_by_role("status")).to_have_text("bob is typing…", timeout=TIMEOUT_MS)
        started = time.monotonic()
        expect(ada.get_by_role("status")).to_have_text("", timeout=TIMEOUT_MS)
        assert time.monotonic() - started > 1.5  # the page's expiry (3 s), not a stop message

        # the kernel speaks; both pages hear it
        loop.run(kernel.send("hello from the kernel"))
        for page in (ada, bob):
            expect(bodies(page).last).to_have_text("hello from the kernel", timeout=TIMEOUT_MS)

        # a closed tab leaves, within the heartbeat timeout
        bob.close()
        started = time.monotonic()
        expect(online(ada)).to_have_text(["ada", "kernel"],
                                         timeout=int((HEARTBEAT_TIMEOUT + 1.5) * 1000))
        loop.until(lambda: kernel.online == ["ada", "kernel"], timeout=2, what="the widget sees bob go")
        assert time.monotonic() - started < HEARTBEAT_TIMEOUT + 1.5
    finally:
        ada.close()
        if not bob.is_closed():
            bob.close()


@pytest.mark.browser
def test_network_text_is_shown_as_text(chromium, loop, server, widgets):
    from playwright.sync_api import expect

    evil_name = "<b>mallory</b>"
    evil = '<img src=x onerror="window.__pwned=1">'
    kernel = join_widget(loop, server, widgets, room="xss", name="<i>kernel</i>")
    page = open_page(chromium, server.url, evil_name, room="xss")
    try:
        say(page, evil)
        # the server has it (the page shows its own message at once, then marks it delivered);
        # only then the kernel speaks, so that the order is known
        expect(page.locator("#messages .delivered")).to_have_count(1, timeout=TIMEOUT_MS)
        loop.run(kernel.send("<script>window.__pwned=2</script>"))
        expect(bodies(page)).to_have_text([evil, "<script>window.__pwned=2</script>"],
                                          timeout=TIMEOUT_MS)
        expect(online(page)).to_have_text(["<b>mallory</b>", "<i>kernel</i>"], timeout=TIMEOUT_MS)
        loop.until(lambda: len(kernel.messages) == 2, what="the widget gets both")
        assert "<img" not in kernel.children[1].value and "&lt;img" in kernel.children[1].value
        page.get_by_role("textbox", name="message").press_sequentially("x")
        loop.until(lambda: kernel.typing_names == ["<b>mallory</b>"], what="typing from mallory")
        assert page.evaluate("document.querySelectorAll('img, b, i, main script').length") == 0
        assert page.evaluate("window.__pwned") is None
    finally:
        page.close()


@pytest.mark.browser
def test_rooms_switch_and_free_names(chromium, loop, server, widgets):
    from playwright.sync_api import expect

    kernel = join_widget(loop, server, widgets)
    loop.run(kernel.send("lobby talk"))
    page = open_page(chromium, server.url, "ada")
    try:
        expect(online(page)).to_have_text(["ada", "kernel"], timeout=TIMEOUT_MS)
        rooms = page.get_by_role("list", name="Rooms")
        expect(rooms.get_by_role("button")).to_have_text(["#lobby", "#random", "#help"])
        # a free room name: type it, join
        page.get_by_label("room", exact=True).fill("den")
        page.get_by_role("button", name="Join").click()
        expect(page.locator("#status")).to_have_text("connected · #den as ada", timeout=TIMEOUT_MS)
        expect(online(page)).to_have_text(["ada"], timeout=TIMEOUT_MS)
        expect(bodies(page)).to_have_count(0)
        loop.until(lambda: kernel.online == ["kernel"], what="ada left the lobby")
        say(page, "in the den")
        expect(bodies(page)).to_have_text(["in the den"], timeout=TIMEOUT_MS)
        expect(rooms.locator("button[aria-current=true]")).to_have_text("#den")
        # switch back from the list: the lobby's history and presence come again
        rooms.get_by_role("button", name="#lobby").click()
        expect(online(page)).to_have_text(["ada", "kernel"], timeout=TIMEOUT_MS)
        expect(bodies(page)).to_have_text(["lobby talk"], timeout=TIMEOUT_MS)
        assert [m["body"] for m in kernel.messages] == ["lobby talk"]      # the den stayed there
        # a new nickname: rejoin under it
        page.get_by_role("textbox", name="name").fill("ada2")
        page.get_by_role("button", name="Join").click()
        expect(online(page)).to_have_text(["ada2", "kernel"], timeout=TIMEOUT_MS)
    finally:
        page.close()


@pytest.mark.browser
def test_a_frozen_tab_leaves_within_the_heartbeat_timeout(chromium, loop, server, widgets):
    """A tab that stops running (its socket still open, no close frame) is dropped by the
    server's heartbeat timeout, and its presence leaves."""
    from playwright.sync_api import expect

    kernel = join_widget(loop, server, widgets, room="ghost")
    page = open_page(chromium, server.url, "zed", room="ghost")
    cdp = page.context.new_cdp_session(page)
    try:
        loop.until(lambda: kernel.online == ["kernel", "zed"], what="zed joined")
        expect(online(page)).to_have_text(["kernel", "zed"], timeout=TIMEOUT_MS)
        cdp.send("Debugger.enable")
        cdp.send("Debugger.pause")  # no more heartbeats; the TCP connection stays open
        started = time.monotonic()
        loop.until(lambda: kernel.online == ["kernel"], timeout=HEARTBEAT_TIMEOUT + 2,
                   what="the frozen tab left")
        waited = time.monotonic() - started
        assert 0.5 < waited < HEARTBEAT_TIMEOUT + 1.0, waited
        assert server.timed_out == 1
    finally:
        try:
            cdp.send("Debugger.resume")
        finally:
            page.close()


async def start_prefix_proxy(upstream_port: int):
    """A small reverse proxy serving the messenger at ``/proxy/PORT/``, as
    jupyter-server-proxy does (HTTP GET and WebSocket, text frames)."""
    from aiohttp import ClientSession, WSMsgType, web

    carried = {"http": 0, "ws": 0}

    async def handle(request):
        target = f"127.0.0.1:{upstream_port}/{request.match_info.get('tail', '')}"
        if request.query_string:
            target += "?" + request.query_string
        async with ClientSession() as session:
            if request.headers.get("Upgrade", "").lower() != "websocket":
                carried["http"] += 1
                async with session.get("http://" + target) as response:
                    return web.Response(body=await response.read(), status=response.status,
                                        content_type=response.content_type)
            carried["ws"] += 1
            browser_side = web.WebSocketResponse()
            await browser_side.prepare(request)
            async with session.ws_connect("ws://" + target) as server_side:
                async def pump(source, sink):
                    async for message in source:
                        if message.type != WSMsgType.TEXT:
                            break
                        await sink.send_str(message.data)
                pumps = [asyncio.create_task(pump(browser_side, server_side)),
                         asyncio.create_task(pump(server_side, browser_side))]
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
                for task in pumps:
                    task.cancel()
            await browser_side.close()
            return browser_side

    app = web.Application()
    app.router.add_get("/proxy/{port}/{tail:.*}", handle)
    app.router.add_get("/proxy/{port}", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1], carried


@pytest.mark.browser
def test_the_page_works_behind_a_path_prefix(chromium, loop, server, widgets):
    from playwright.sync_api import expect

    runner, port, carried = loop.run(start_prefix_proxy(server.port))
    kernel = join_widget(loop, server, widgets)
    base = f"http://127.0.0.1:{port}/proxy/{server.port}/"
    page = chromium.new_page()
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("websocket", lambda ws: requested.append(ws.url))
    try:
        page.goto(base.rstrip("/") + "?name=ada")  # without the final slash: the page adds it
        expect(page.locator("#status")).to_have_text("connected · #lobby as ada", timeout=TIMEOUT_MS)
        assert page.url == base + "?name=ada"
        expect(online(page)).to_have_text(["ada", "kernel"], timeout=TIMEOUT_MS)
        say(page, "through the proxy")
        mine = page.locator("#messages li.message").filter(has_text="through the proxy")
        expect(mine.locator(".delivered")).to_have_count(1, timeout=TIMEOUT_MS)
        loop.until(lambda: kernel.messages and kernel.messages[-1]["body"] == "through the proxy",
                   what="the kernel hears the proxied page")
        assert carried["ws"] == 1 and carried["http"] >= 4, carried  # page, js, client, config
        ws_base = base.replace("http://", "ws://")
        assert all(url.startswith((base, ws_base)) for url in requested[1:]), requested
    finally:
        page.close()
        loop.run(runner.cleanup())


@pytest.mark.browser
def test_the_page_reconnects_and_rejoins_after_a_server_restart(chromium, loop):
    from playwright.sync_api import expect

    async def stop(server):
        server.close()
        await server.wait_closed()

    first = loop.run(start_messenger("127.0.0.1", 0, heartbeat_timeout=HEARTBEAT_TIMEOUT))
    second = None
    page = open_page(chromium, first.url, "ada")
    try:
        say(page, "before the restart")
        expect(page.locator("#messages .delivered")).to_have_count(1, timeout=TIMEOUT_MS)
        loop.run(stop(first))
        expect(page.locator("#status")).to_have_text("disconnected; reconnecting…", timeout=TIMEOUT_MS)
        second = loop.run(start_messenger("127.0.0.1", first.port, heartbeat_timeout=HEARTBEAT_TIMEOUT))
        loop.call(second.post, "lobby", "after the restart", "script")
        expect(page.locator("#status")).to_have_text("connected · #lobby as ada", timeout=TIMEOUT_MS)
        expect(bodies(page)).to_have_text(["after the restart"], timeout=TIMEOUT_MS)  # the new history
        expect(online(page)).to_have_text(["ada"], timeout=TIMEOUT_MS)
        loop.until(lambda: second.rooms.room("lobby").names() == ["ada"], what="rejoined")
    finally:
        page.close()
        if not first.closing:
            loop.run(stop(first))
        if second is not None:
            loop.run(stop(second))
