"""Chapter 8 in a real browser: two Chromium pages run ``minibase.js`` (the shared to-do page
the server serves) and the kernel's ``DbClient`` works on the same list."""

from __future__ import annotations

import asyncio
import json
import random
import threading

import pytest

from course.net.dbclient import DbClient
from course.net.minibase import start_minibase
from course.wire.dbevents import Kind, child_events
from course.wire.pushid import PUSH_CHARS, next_push_id

OLD = {"a": 1, "b": 2, "10": 3, "x": {"y": 1}}
NEW = {"b": 5, "c": 1, "9": 0, "10": 3, "x": {"y": 2}}


def push_id_digits(push_id: str) -> int:
    """The 72 random bits of a push id as one number."""
    number = 0
    for char in push_id[8:]:
        number = number * 64 + PUSH_CHARS.index(char)
    return number

pytestmark = pytest.mark.browser

RULES = {"rules": {
    ".read": True,
    "counter": {".write": True},
    "todos": {".write": "auth != null", "$id": {
        ".validate": "newData.hasChildren(['text']) && newData.child('text').isString()"
                     " && newData.child('text').val().length <= 100"}},
}}


class Kernel:
    """The server and the kernel's client, on an event loop in a thread (Playwright's sync
    API owns the test's own thread)."""

    def __init__(self, database) -> None:
        self.database = database
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.todos: dict = {}

    def call(self, make_awaitable, timeout: float = 10):
        """Run ``await make_awaitable()`` on the kernel's loop (it is called there too)."""
        async def inside():
            return await make_awaitable()
        return asyncio.run_coroutine_threadsafe(asyncio.wait_for(inside(), timeout), self.loop).result(timeout + 1)

    async def start(self) -> None:
        self.server = await start_minibase(rules=RULES, database=self.database)
        self.db = await DbClient.connect(self.server.url, auth={"uid": "kernel"})

        def seen(event):
            if event.kind is Kind.VALUE:
                self.todos = event.value or {}

        listener = self.db.listen("todos", seen)
        await listener.ready.wait()

    async def stop_server(self) -> int:
        self.server.close()
        await self.server.wait_closed()
        return self.server.port

    async def restart_server(self, port: int) -> None:
        self.server = await start_minibase(port=port, rules=RULES, database=self.database)

    async def stop(self) -> None:
        await self.db.close()
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
def kernel(tmp_path):
    kernel = Kernel(tmp_path / "todo.sqlite")
    kernel.call(kernel.start)
    try:
        yield kernel
    finally:
        kernel.call(kernel.stop)
        kernel.loop.call_soon_threadsafe(kernel.loop.stop)
        kernel.thread.join(5)


def wait_kernel(kernel: Kernel, condition, timeout: float = 5.0) -> None:
    async def wait():
        while not condition():
            await asyncio.sleep(0.02)
    kernel.call(wait, timeout)


def texts(page) -> list[str]:
    return page.eval_on_selector_all("#todos li span", "spans => spans.map(s => s.textContent)")


def test_two_pages_and_the_kernel_share_one_list(chromium, kernel):
    url = f"http://127.0.0.1:{kernel.server.port}/todo.html"
    pages = [chromium.new_page(), chromium.new_page()]
    try:
        for n, page in enumerate(pages):
            page.goto(f"{url}?uid=page{n}")
            page.wait_for_selector("#status.online", timeout=5000)
        one, two = pages
        # the kernel writes, both pages show it
        key, written = kernel.call(lambda: _push(kernel, {"text": "from the kernel", "done": False}))
        for page in pages:
            page.wait_for_selector(f'li[data-key="{key}"]', timeout=5000)
        # a page writes (text that looks like HTML stays text), the kernel and the other page see it
        one.fill("#text", "<b>bold?</b> milk")
        one.click("button[type=submit]")
        wait_kernel(kernel, lambda: any(t.get("text") == "<b>bold?</b> milk" for t in kernel.todos.values()))
        two.wait_for_function("() => document.querySelectorAll('#todos li').length === 2", timeout=5000)
        assert "<b>bold?</b> milk" in texts(two) and two.query_selector("#todos b") is None
        # the other page ticks the kernel's item
        two.check(f'li[data-key="{key}"] input')
        wait_kernel(kernel, lambda: kernel.todos.get(key, {}).get("done") is True)
        one.wait_for_selector(f'li.done[data-key="{key}"]', timeout=5000)
        # a write the rules refuse shows at once, then is rolled back with the reason
        one.fill("#text", "x" * 150)
        one.click("button[type=submit]")
        one.wait_for_function("() => document.getElementById('error').textContent.includes('permission_denied')",
                              timeout=5000)
        assert "x" * 150 not in texts(one) and len(texts(one)) == 2
        assert all(len(t.get("text", "")) <= 100 for t in kernel.todos.values())
        # the kernel removes; both pages drop the row
        kernel.call(lambda: kernel.db.remove(f"todos/{key}"))
        for page in pages:
            page.wait_for_function("() => document.querySelectorAll('#todos li').length === 1", timeout=5000)
        # the server stops; a page writes offline; the server restarts on its file and port
        before = kernel.server.tree
        port = kernel.call(kernel.stop_server)
        for page in pages:
            page.wait_for_selector("#status.offline", timeout=5000)
        two.fill("#text", "written offline")
        two.click("button[type=submit]")
        assert "written offline" in texts(two), "the offline write shows at once"
        kernel.call(lambda: kernel.restart_server(port))
        assert kernel.server.tree == before, "the restart lost data"
        wait_kernel(kernel, lambda: any(t.get("text") == "written offline" for t in kernel.todos.values()))
        one.wait_for_function("() => document.querySelectorAll('#todos li').length === 2", timeout=5000)
        # transactions from both pages and the kernel on one counter
        script = """async () => { const out = [];
            for (let i = 0; i < 10; i++) out.push((await window.db.transaction('counter', n => (n || 0) + 1)).committed);
            return out; }"""
        futures = [asyncio.run_coroutine_threadsafe(_increments(kernel, 10), kernel.loop)]
        results = [page.evaluate(script) for page in pages]  # one after the other (sync API), the kernel meanwhile
        assert all(all(r) for r in results) and futures[0].result(10) == 10
        assert kernel.server.tree["counter"] == 30
        # the JavaScript port agrees with the Python one (push ids, child events)
        js = one.evaluate("""async () => { const m = await import('/minibase.js');
            const state = { lastMs: null, lastRandom: [] };
            const ids = [m.nextPushId(1700000000000, state), m.nextPushId(1700000000000, state)];
            return { ids, events: m.childEvents('/', OLD, NEW) }; }""".replace("OLD", json.dumps(OLD))
                          .replace("NEW", json.dumps(NEW)))
        first, second = js["ids"]
        assert first[:8] == next_push_id(1700000000000, None, [0] * 12, random.Random(0))[0][:8]
        assert second[:8] == first[:8] and second > first
        assert push_id_digits(second) == push_id_digits(first) + 1
        assert [(e["kind"], e["key"], e["value"], e["previous"]) for e in js["events"]] == [
            (e.kind.value, e.key, e.value, e.previous) for e in child_events("/", OLD, NEW)]
    finally:
        for page in pages:
            page.close()


async def _push(kernel: Kernel, value):
    key, written = kernel.db.push("todos", value)
    await written
    return key, None


async def _increments(kernel: Kernel, n: int) -> int:
    done = 0
    for _ in range(n):
        result = await kernel.db.transaction("counter", lambda v: (v or 0) + 1)
        done += result.committed
    return done
