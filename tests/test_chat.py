"""The standalone chat (course.net.chat): two real Chromium pages talk live; bad input is refused."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import connect

from course.net.chat import start_chat
from course.wire.chat import MAX_FRAME_BYTES, MAX_NAME_CHARS, MAX_TEXT_CHARS, parse_client_message
from course.wire.envelope import BadMessage, ErrorCode
from course.net.fanout import stalled_reader

ROOT = Path(__file__).resolve().parent.parent

TIMEOUT_MS = 10_000


def run_async(make_coro, timeout: float = 20):
    """Run a coroutine in a fresh loop in another thread (Playwright's sync API owns this one)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(asyncio.wait_for(make_coro(), timeout))).result()


# --- pure validation -------------------------------------------------------------------------

@pytest.mark.parametrize("data, code", [
    ("not json", ErrorCode.BAD_JSON),
    ("[1, 2]", ErrorCode.BAD_SHAPE),
    ('{"type": "hello", "text": "x"}', ErrorCode.BAD_SHAPE),
    ('{"type": "message", "text": 5}', ErrorCode.BAD_SHAPE),
    ('{"type": "message", "text": "hi", "name": ["x"]}', ErrorCode.BAD_SHAPE),
    ('{"type": "message", "text": "   "}', ErrorCode.EMPTY),
    (json.dumps({"type": "message", "text": "x" * (MAX_TEXT_CHARS + 1)}), ErrorCode.TOO_LONG),
    (json.dumps({"type": "message", "text": "x", "name": "n" * (MAX_NAME_CHARS + 1)}),
     ErrorCode.TOO_LONG),
    ("[" * 100_000, ErrorCode.BAD_JSON),
])
def test_parse_refuses_bad_messages(data, code):
    with pytest.raises(BadMessage) as info:
        parse_client_message(data)
    assert info.value.code is code
    assert info.value.as_payload()["type"] == "error"


def test_parse_accepts_and_normalises():
    assert parse_client_message('{"type": "message", "text": " hi "}') == {"name": "anonymous", "text": "hi"}
    assert parse_client_message(json.dumps({"type": "message", "text": "x" * MAX_TEXT_CHARS,
                                            "name": "ada"}))["name"] == "ada"


# --- the process -----------------------------------------------------------------------------

class ChatProcess:
    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "course.net.chat", "--host", "127.0.0.1", "--port", "0"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # bounded by the test timeout; the server prints at once
        assert line.startswith("serving on http://127.0.0.1:"), (line, self.proc.stderr.read())
        self.url = line.split()[-1]
        self.ws_url = self.url.replace("http://", "ws://") + "ws"


@pytest.fixture
def chat_process():
    process = ChatProcess()
    try:
        yield process
    finally:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(timeout=5)


def open_chat(browser, url, name):
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector("#status.open", timeout=TIMEOUT_MS)
    page.fill("#name", name)
    page.evaluate("window.__marker = 'no reload'")
    return page


def say(page, text):
    page.fill("#text", text)
    page.press("#text", "Enter")


def lines(page):
    return page.eval_on_selector_all("#log li.chat-message", "els => els.map(e => e.textContent)")


def wait_line(page, text):
    page.wait_for_function(
        "t => [...document.querySelectorAll('#log li.chat-message')].some(e => e.textContent === t)",
        arg=text, timeout=TIMEOUT_MS)


@pytest.mark.browser
def test_two_pages_chat_live_without_reload(chromium, chat_process):
    a = open_chat(chromium, chat_process.url, "alice")
    b = open_chat(chromium, chat_process.url, "bob")
    try:
        say(a, "hello from A")
        wait_line(b, "alicehello from A")
        wait_line(a, "alicehello from A")
        say(b, "hi A, B here")
        wait_line(a, "bobhi A, B here")
        assert lines(a) == lines(b) == ["alicehello from A", "bobhi A, B here"]
        for page in (a, b):  # the pages were never reloaded
            assert page.evaluate("window.__marker") == "no reload"
            assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
            assert page.input_value("#text") == ""
    finally:
        a.close()
        b.close()


@pytest.mark.browser
def test_xss_payload_is_shown_as_text(chromium, chat_process):
    page = open_chat(chromium, chat_process.url, "<b>mallory</b>")
    try:
        payload = '<img src=x onerror="window.__pwned=1">'
        say(page, payload)
        wait_line(page, "<b>mallory</b>" + payload)
        assert page.evaluate("document.querySelectorAll('#log img, #log b').length") == 0
        assert page.evaluate("window.__pwned") is None
    finally:
        page.close()


@pytest.mark.browser
def test_history_and_server_error_shown_in_page(chromium, chat_process):
    async def raw():
        async with connect(chat_process.ws_url) as ws:
            await ws.recv()  # welcome
            await ws.send(json.dumps({"type": "message", "text": "earlier", "name": "script"}))
            await ws.recv()
    run_async(raw)
    page = open_chat(chromium, chat_process.url, "late")
    try:
        wait_line(page, "scriptearlier")  # replayed from the history on connect
        page.evaluate("document.getElementById('text').removeAttribute('maxlength')")
        say(page, "x" * (MAX_TEXT_CHARS + 1))
        page.wait_for_selector("#log li.chat-error", timeout=TIMEOUT_MS)
        assert "too long" in page.text_content("#log li.chat-error")
    finally:
        page.close()


def test_bad_input_gets_error_replies_and_server_survives(chat_process):
    async def scenario():
        async with connect(chat_process.ws_url) as ws:
            assert json.loads(await ws.recv()) == {"type": "welcome", "history": []}
            for data, code in [("{oops", "bad-json"), (b"\x00\x01", "not-text"),
                               (json.dumps({"type": "message", "text": "x" * 10_000}), "too-long"),
                               ('{"type": "message"}', "bad-shape")]:
                await ws.send(data)
                reply = json.loads(await ws.recv())
                assert reply["type"] == "error" and reply["code"] == code, reply
                assert reply["error"]
            await ws.send(json.dumps({"type": "message", "text": "still here"}))
            assert json.loads(await ws.recv())["text"] == "still here"
            # a frame above the limit: refused with close code 1009, not a crash
            await ws.send("x" * (MAX_FRAME_BYTES + 1))
            with pytest.raises(websockets.ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd.code == 1009
        async with connect(chat_process.ws_url) as ws:  # the server still serves
            await ws.recv()
            await ws.send(json.dumps({"type": "message", "text": "after"}))
            assert json.loads(await ws.recv())["text"] == "after"
    run_async(scenario)
    assert chat_process.proc.poll() is None


def test_foreign_origin_is_refused(chat_process):
    async def scenario():
        with pytest.raises(websockets.InvalidStatus) as info:
            async with connect(chat_process.ws_url, origin="http://evil.example"):
                pass
        assert info.value.response.status_code == 403
        same = chat_process.url.rstrip("/")
        async with connect(chat_process.ws_url, origin=same) as ws:
            await ws.recv()
    run_async(scenario)


def test_sigterm_exits_cleanly_and_closes_clients(chat_process):
    async def scenario():
        async with connect(chat_process.ws_url) as ws:
            await ws.recv()
            chat_process.proc.send_signal(signal.SIGTERM)
            with pytest.raises(websockets.ConnectionClosed) as info:
                await ws.recv()
            return info.value.rcvd.code
    code = run_async(scenario)
    assert code == 1001
    assert chat_process.proc.wait(timeout=10) == 0  # one SIGTERM is enough: no second signal
    assert chat_process.proc.stdout.read().strip() == "stopped"


def test_port_in_use_is_a_clear_error():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "course.net.chat", "--port", str(port)],
                                cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_async_api_post_and_stop():
    async def scenario():
        server = await start_chat("127.0.0.1", 0)
        try:
            assert server.url == f"http://127.0.0.1:{server.port}/" and server.port > 0
            async with connect(server.ws_url) as ws:
                await ws.recv()
                sent = await server.post("from the kernel")
                assert json.loads(await ws.recv()) == sent
                assert sent["name"] == "kernel"
                with pytest.raises(BadMessage):
                    await server.post("")
        finally:
            server.close()
            await server.wait_closed()
            server.close()  # idempotent
            await server.wait_closed()
        with pytest.raises(OSError):
            async with connect(server.ws_url, open_timeout=2):
                pass
    run_async(scenario)


def test_page_uses_only_relative_urls():
    """Served at http://127.0.0.1:PORT/ or behind jupyter-server-proxy at …/proxy/PORT/, the page
    must find its WebSocket next to itself (tests/test_browser_chapter4.py runs it both ways)."""
    import re
    page = (ROOT / "course" / "ui" / "static" / "chat.html").read_text(encoding="utf-8")
    assert 'new URL("ws", here)' in page
    # no asset or address written in full: no src=/href=, no "ws://..." or "http://..." literal
    assert not re.search(r"\b(?:src|href)=|[\"'`](?:wss?|https?)://|[\"'`][^\"'`]*127\.0\.0\.1", page)


# --- slow clients: the chat broadcasts through course.net.fanout's bounded queues ------------------

BIG = "€" * (MAX_TEXT_CHARS - 10)  # ~3 kB once JSON-escaped (json.dumps escapes non-ASCII)


def chat_message(i: int, text: str = BIG) -> str:
    return json.dumps({"type": "message", "text": f"{i}:{text}", "name": "bob"})


async def until(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def chat_readers(url: str, n: int):
    """``n`` clients, each with a task logging (arrival time, number) of every chat message."""
    clients = [await connect(url, compression=None) for _ in range(n)]
    logs = [[] for _ in clients]

    async def read(ws, log):
        async for frame in ws:
            message = json.loads(frame)
            if message["type"] == "message":
                log.append((time.perf_counter(), int(message["text"].split(":")[0])))

    tasks = [asyncio.create_task(read(ws, log)) for ws, log in zip(clients, logs)]
    return clients, logs, tasks


async def close_codes(clients) -> list:
    for ws in clients:
        with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
            await asyncio.wait_for(ws.wait_closed(), 2)
    return [ws.close_code for ws in clients]


def test_chat_stalled_reader_beside_healthy_chatters():
    """One page stops reading: dropped after the grace period; the others get every message,
    having waited about that long once; stop() does not wait for the dropped page."""
    grace = 0.3

    async def scenario():
        # close_timeout=30: without cutting the dropped page's close, stop() would take 30 s
        server = await start_chat("127.0.0.1", 0, queue_size=8, grace=grace, close_timeout=30)
        clients, logs, tasks = await chat_readers(server.ws_url, 3)
        stalled = await stalled_reader("127.0.0.1", server.port, "/ws")
        await until(lambda: len(server.room) == 4)
        start, sent = time.perf_counter(), 0
        async with asyncio.timeout(15):
            while not server.room.dropped or sent < 300:
                await clients[1].send(chat_message(sent))
                sent += 1
                while sent - len(logs[1]) > 64:  # a sender the readers keep up with: its own
                    await asyncio.sleep(0)         # echo is at most 64 messages behind
        await until(lambda: all(len(log) == sent for log in logs))
        t0 = time.perf_counter()
        server.close()
        await server.wait_closed()
        stop_s = time.perf_counter() - t0
        stalled.close()
        codes = await close_codes(clients)
        for task in tasks:
            task.cancel()
        return server, logs, sent, start, stop_s, codes

    server, logs, sent, start, stop_s, codes = run_async(scenario)
    assert len(server.room.dropped) == 1
    assert 1000 < sent < 20_000  # the kernel's buffers took megabytes before the stall showed
    for log in logs:
        assert [n for _, n in log] == list(range(sent))
        times = [start] + [t for t, _ in log]
        assert max(b - a for a, b in zip(times, times[1:])) < grace + 1.0
    assert stop_s < 2.0
    assert codes == [1001, 1001, 1001]


def test_chat_absorbs_a_burst_of_100_with_nobody_dropped():
    async def scenario():
        server = await start_chat("127.0.0.1", 0, queue_size=8, grace=0.5)
        clients, logs, tasks = await chat_readers(server.ws_url, 3)
        idle = [await connect(server.ws_url) for _ in range(30)]  # they never read
        await until(lambda: len(server.room) == 33)
        for i in range(100):
            await clients[0].send(chat_message(i, "hi"))
        await until(lambda: all(len(log) == 100 for log in logs))
        await asyncio.sleep(0.6)  # longer than the grace: a late verdict would show
        dropped = list(server.room.dropped)
        server.close()
        await server.wait_closed()
        for ws in idle:  # paused (16 frames queued): they would not notice the close
            ws.transport.abort()
        await close_codes(clients)
        for task in tasks:
            task.cancel()
        return dropped, logs

    dropped, logs = run_async(scenario)
    assert dropped == []
    assert all([n for _, n in log] == list(range(100)) for log in logs)


def test_chat_stop_is_bounded_with_a_stalled_member():
    """A page that stopped reading and is not dropped yet (long grace, large bound), buffers
    full: stop() ends within close_timeout and the healthy pages get 1001."""
    async def scenario():
        server = await start_chat("127.0.0.1", 0, queue_size=8, grace=60, max_bytes=256 << 20,
                                  close_timeout=0.5)
        clients, logs, tasks = await chat_readers(server.ws_url, 2)
        stalled = await stalled_reader("127.0.0.1", server.port, "/ws")
        await until(lambda: len(server.room) == 3)

        async def flood():
            with contextlib.suppress(websockets.ConnectionClosed):
                for i in range(100_000):
                    await clients[0].send(chat_message(i))

        sender = asyncio.create_task(flood())
        await until(lambda: any(o.backlog.full_since is not None for o in server.room.clients.values()),
                    timeout=8)
        t0 = time.perf_counter()
        server.close()
        await server.wait_closed()
        stop_s = time.perf_counter() - t0
        codes = await close_codes(clients)
        await asyncio.wait_for(sender, 2)
        stalled.close()
        for task in tasks:
            task.cancel()
        return server, stop_s, codes

    server, stop_s, codes = run_async(scenario)
    assert server.room.dropped == []
    assert stop_s < 1.5
    assert codes == [1001, 1001]


def test_sigterm_stops_promptly_with_a_stalled_reader(chat_process):
    """The process's defaults: a stalled page (dropped, or still closing) and a reader that
    saw every message; one SIGTERM stops the server at once."""
    port = int(chat_process.url.rsplit(":", 1)[1].strip("/"))
    n = 2000  # 6 MB: more than the kernel's buffers and the queue's bound take

    async def scenario():
        stalled = await stalled_reader("127.0.0.1", port, "/ws")
        async with connect(chat_process.ws_url, compression=None) as ws:
            await ws.recv()  # welcome
            async with asyncio.timeout(10):
                for i in range(n):
                    await ws.send(chat_message(i))
                got = [json.loads(await ws.recv())["text"].split(":")[0] for _ in range(n)]
            t0 = time.perf_counter()
            chat_process.proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(chat_process.proc.wait, 10)
            stalled.close()
            return got, time.perf_counter() - t0

    got, exit_s = run_async(scenario)
    assert got == [str(i) for i in range(n)]
    assert chat_process.proc.returncode == 0
    assert exit_s < 3
