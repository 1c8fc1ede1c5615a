"""Issue 10, item 7: the attacks a reviewer ran against the course's servers, replayed with real
bytes on loopback against the real servers (rawserver, hub, chat, transports EventServer).

Each test first states the attack, then checks that the server refuses it the documented way
AND keeps serving a legitimate client.  Counts are scaled down (dozens, not 1,020) and the
limits are set low so that the file stays fast; benchmarks/attack_lockout.py runs the full-size
lockout with the default limits.
"""
from __future__ import annotations

import asyncio
import json
import socket
import struct

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from course.demo.feeds import format_event
from course.demo.news import NewsSource
from course.measure.transports.server import EventServer
from course.net.chat import start_chat
from course.net.guard import ConnectionGuard
from course.net.handlers import read_messages
from course.net.hub import Hub, serve_hub
from course.net.rawserver import start_server
from course.protocol import CloseCode, FrameReader, Opcode, encode_close, encode_frame, upgrade_request
from course.wire.rfc import RFC_KEY

MASK = b"\x01\x02\x03\x04"
HUGE_INT = '{"type": "news", "text": "x", "n": ' + "9" * 5000 + "}"
DEEP = '{"type": "news", "text": "x", "n": ' + "[" * 5000 + "]" * 5000 + "}"


def run(coro, timeout: float = 20):
    async def bounded():
        async with asyncio.timeout(timeout):
            return await coro
    return asyncio.run(bounded())


def frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    return encode_frame(opcode, payload, fin=fin, mask=MASK)


async def raw_open(port: int, *, headers=(), host: str = "127.0.0.1", source: str | None = None):
    """A raw connection that completes the upgrade; returns (reader, writer, response head)."""
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0) if source else None)
    writer.write(upgrade_request(f"{host}:{port}", RFC_KEY, "/", list(headers)))
    head = await reader.readuntil(b"\r\n\r\n")
    return reader, writer, head


async def close_frame_of(reader: asyncio.StreamReader, timeout: float = 5.0) -> tuple[int, str]:
    """Read server frames until its close frame; return its (code, reason)."""
    parser = FrameReader(expect_masked=False)
    async with asyncio.timeout(timeout):
        while True:
            data = await reader.read(65536)
            if not data:
                return (1006, "")
            for f in parser.receive_frames(data):
                if f.opcode == Opcode.CLOSE:
                    code = struct.unpack("!H", f.payload[:2])[0]
                    return code, f.payload[2:].decode()


async def echo_ok(url: str, text: str = "still here") -> bool:
    async with connect(url, open_timeout=3) as ws:
        await ws.send(text)
        async with asyncio.timeout(3):
            return await ws.recv() == text


# -- rawserver --------------------------------------------------------------------------

def test_rawserver_half_open_upgrades_do_not_lock_out_a_client_and_expire():
    """Slowloris: many connections send half a request head and wait.  Newcomers evict the
    oldest half-open one; each is closed at the handshake deadline."""
    async def main():
        guard = ConnectionGuard(max_connections=30, max_pending=10, handshake_timeout=0.5)
        async with await start_server(guard=guard) as server:
            half = []
            for _ in range(40):
                r, w = await asyncio.open_connection("127.0.0.1", server.port)
                w.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never the end of the head
                half.append((r, w))
            ok = await echo_ok(server.url)
            ends = await asyncio.gather(*(r.read() for r, _ in half))  # all closed, none answered
            for _, w in half:
                w.close()
            return ok, ends, guard.stats, len(guard)
    ok, ends, stats, left = run(main())
    assert ok
    assert ends == [b""] * 40
    assert stats.evicted >= 29 and stats.expired >= 1 and stats.evicted + stats.expired == 40
    assert left == 0


def test_rawserver_connection_cap_refuses_with_503_then_lets_in_again():
    async def main():
        guard = ConnectionGuard(max_connections=5, handshake_timeout=5)
        async with await start_server(guard=guard) as server:
            held = [await raw_open(server.port) for _ in range(5)]
            r, w = await asyncio.open_connection("127.0.0.1", server.port)
            refused = await r.read()
            w.close()
            held[0][1].write(frame(Opcode.CLOSE, encode_close(1000)))
            await close_frame_of(held[0][0])
            while len(guard) > 4:
                await asyncio.sleep(0.01)
            ok = await echo_ok(server.url)
            for _, writer, _ in held:
                writer.close()
            return refused, ok
    refused, ok = run(main())
    assert refused.startswith(b"HTTP/1.1 503 ") and b"too many connections" in refused
    assert ok


def test_rawserver_per_address_cap_spares_other_addresses():
    async def main():
        guard = ConnectionGuard(max_per_address=3)
        async with await start_server(guard=guard) as server:
            held = [await raw_open(server.port, source="127.0.0.2") for _ in range(3)]
            r, w = await asyncio.open_connection("127.0.0.1", server.port, local_addr=("127.0.0.2", 0))
            refused = await r.read()
            w.close()
            ok = await echo_ok(server.url)  # from 127.0.0.1
            for _, writer, _ in held:
                writer.close()
            return refused, ok
    refused, ok = run(main())
    assert refused.startswith(b"HTTP/1.1 503 ") and b"from your address" in refused and ok


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_private_server_is_under_the_guard_with_and_without_tls(tls):
    """Chapter 6's signed-in server: a connection that never finishes its handshake (the TLS
    one, or the HTTP head) is closed at the deadline, and past the cap a newcomer gets 503."""
    from course.net.private import start_private
    from course.net.tls import client_context, local_ca, server_context

    async def main():
        ca = local_ca() if tls else None
        guard = ConnectionGuard(max_connections=3, handshake_timeout=0.5)
        server = await start_private(guard=guard, ssl_context=server_context(ca) if tls else None)
        client_tls = client_context(ca) if tls else None
        try:
            r, w = await asyncio.open_connection("127.0.0.1", server.port)  # says nothing at all
            async with asyncio.timeout(5):
                silent = await r.read()
            w.close()
            held = []
            for _ in range(3):  # a request answered, the connection kept alive: it counts
                r, w = await asyncio.open_connection("127.0.0.1", server.port, ssl=client_tls)
                w.write(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
                async with asyncio.timeout(5):
                    head = await r.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 404"), head
                held.append(w)
            r, w = await asyncio.open_connection("127.0.0.1", server.port, ssl=client_tls)
            async with asyncio.timeout(5):
                refused = await r.read()
            w.close()
            for writer in held:
                writer.close()
            return silent, refused, guard.stats
        finally:
            server.close()
            await server.wait_closed()

    silent, refused, stats = run(main())
    assert silent == b""
    assert refused.startswith(b"HTTP/1.1 503 ") and b"too many connections" in refused
    assert stats.refused >= 1


@pytest.mark.parametrize("origin, host, status", [
    ("http://localhost:9", None, b"403"),                       # another site (CSWSH)
    ("http://attacker.example:{port}", "attacker.example:{port}", b"403"),   # DNS rebinding
    ("null", None, b"403"),                                     # a file:// page
    ("http://127.0.0.1:{port}", None, b"101"),                  # its own origin
    (None, None, b"101"),                                       # not a browser
])
def test_rawserver_origin_rule(origin, host, status):
    async def main():
        async with await start_server() as server:
            headers = []
            if origin:
                headers.append(("Origin", origin.format(port=server.port)))
            r, w = await asyncio.open_connection("127.0.0.1", server.port)
            request = upgrade_request((host or "127.0.0.1:{port}").format(port=server.port), RFC_KEY, "/", headers)
            w.write(request)
            head = await r.readuntil(b"\r\n\r\n")
            w.close()
            return head
    assert run(main()).split()[1] == status


def test_rawserver_stalled_frame_is_closed_1008_at_the_message_deadline():
    async def main():
        async with await start_server(message_timeout=0.3) as server:
            r, w, _ = await raw_open(server.port)
            w.write(frame(Opcode.TEXT, b"x" * 1000)[:200])     # a frame that never ends
            stalled = await close_frame_of(r)
            r2, w2, _ = await raw_open(server.port)
            w2.write(frame(Opcode.TEXT, b"a", fin=False))       # a message that never ends
            fragmented = await close_frame_of(r2)
            ok = await echo_ok(server.url)
            w.close()
            w2.close()
            return stalled, fragmented, ok
    stalled, fragmented, ok = run(main())
    assert stalled[0] == fragmented[0] == CloseCode.POLICY_VIOLATION and "0.3 s" in stalled[1]
    assert ok


@pytest.mark.parametrize("flood, reason", [
    (frame(Opcode.TEXT, b"", fin=False) + frame(Opcode.CONTINUATION, b"", fin=False) * 20_000, "too many frames"),
    (frame(Opcode.PING, b"p") * 500, "too many pings"),
])
def test_rawserver_floods_are_closed_1008_and_others_keep_their_echo(flood, reason):
    async def main():
        async with await start_server(frame_burst=5_000, ping_burst=50) as server:
            r, w, _ = await raw_open(server.port)
            w.write(flood)
            code = await close_frame_of(r)
            ok = await echo_ok(server.url)
            w.close()
            return code, ok
    (code, why), ok = run(main())
    assert code == CloseCode.POLICY_VIOLATION and why == reason and ok


def test_rawserver_non_minimal_length_is_1002():
    async def main():
        async with await start_server() as server:
            r, w, _ = await raw_open(server.port)
            w.write(struct.pack("!BBH", 0x81, 0x80 | 126, 3) + MASK + bytes(b ^ m for b, m in zip(b"abc", MASK)))
            code = await close_frame_of(r)
            w.close()
            return code
    assert run(main())[0] == CloseCode.PROTOCOL_ERROR


def test_rawserver_drops_a_client_that_does_not_read_its_echo():
    async def main():
        async with await start_server(write_timeout=0.5) as server:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
            r, w = await asyncio.open_connection(sock=sock)
            w.write(upgrade_request(f"127.0.0.1:{server.port}", RFC_KEY))
            await r.readuntil(b"\r\n\r\n")
            big = frame(Opcode.BINARY, b"z" * (1 << 20))
            sent = 0
            with pytest.raises(ConnectionError):
                async with asyncio.timeout(10):
                    while True:  # never reads
                        w.write(big)
                        await w.drain()
                        sent += 1
            while server.connections:
                await asyncio.sleep(0.02)
            ok = await echo_ok(server.url)
            w.close()
            return sent, ok
    sent, ok = run(main())
    assert 1 <= sent < 200 and ok


# -- hub ----------------------------------------------------------------------------------

def test_hub_sets_sender_and_refuses_bad_input_with_an_error_reply():
    async def main():
        hub = Hub()
        async with await serve_hub(hub) as server:
            async with connect(server.url) as a, connect(server.url) as b:
                await a.send(json.dumps({"type": "chat", "text": "hi", "sender": "kernel"}))
                relayed = json.loads(await b.recv())
                await a.recv()
                replies = []
                for bad in (HUGE_INT, DEEP, '{"type": []}', "[" * 100_000):
                    await a.send(bad)
                    replies.append(json.loads(await a.recv()))
                await a.send(json.dumps({"type": "chat", "text": "after"}))
                after = json.loads(await b.recv())
                return relayed, replies, after, a.remote_address
    relayed, replies, after, _ = run(main())
    assert relayed["sender"] != "kernel" and relayed["sender"].startswith("127.0.0.1:")
    assert [r["code"] for r in replies] == ["bad-json", "bad-json", "bad-shape", "bad-json"]
    assert all(r["type"] == "error" for r in replies) and after["text"] == "after"


def test_hub_relayed_malformed_news_does_not_stop_the_feed_readers():
    async def main():
        hub = Hub()
        async with await serve_hub(hub) as server:
            async with connect(server.url) as sender, connect(server.url) as listener:
                lines, errors = [], []
                reader = asyncio.create_task(read_messages(listener, lambda m: lines.append(format_event(m)),
                                                           errors.append))
                await sender.send('{"type": "news"}')
                await sender.send('{"type": "price", "symbol": "X"}')
                await sender.send('{"type": "news", "text": "later"}')
                while len(lines) < 3:
                    await asyncio.sleep(0.01)
                reader.cancel()
                return lines, errors
    lines, errors = run(main())
    assert lines == ["news   (malformed: missing or invalid text)",
                     "price  (malformed: missing or invalid price)", "news   later"]
    assert errors == []


def test_hub_rate_limit_replies_then_closes_1008():
    async def main():
        async with await serve_hub(Hub(rate=1, burst=3, strikes=3)) as server:
            async with connect(server.url) as ws:
                for i in range(8):
                    await ws.send(json.dumps({"type": "chat", "text": str(i)}))
                got = []
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        got.append(json.loads(await ws.recv()))
                return got, closed.value.rcvd.code
    got, code = run(main())
    assert [m.get("text") for m in got if m["type"] == "chat"] == ["0", "1", "2"]
    assert [m["code"] for m in got if m["type"] == "error"] == ["rate-limited", "rate-limited"]
    assert code == CloseCode.POLICY_VIOLATION


@pytest.mark.parametrize("origin, host", [
    ("http://localhost:9", "127.0.0.1:{port}"),                      # another site (CSWSH)
    ("http://attacker.example:{port}", "attacker.example:{port}"),   # DNS rebinding
    ("http://127.0.0.1:{port}", "attacker.example:{port}"),          # Host does not match
])
def test_hub_refuses_foreign_and_rebinding_origins(origin, host):
    async def main():
        async with await serve_hub(Hub()) as server:
            r, w = await asyncio.open_connection("127.0.0.1", server.port)
            w.write(upgrade_request(host.format(port=server.port), RFC_KEY, "/",
                                    [("Origin", origin.format(port=server.port))]))
            head = await r.readuntil(b"\r\n\r\n")
            w.close()
            async with connect(server.url, origin=f"http://127.0.0.1:{server.port}") as ws:
                await ws.send('{"type": "chat", "text": "own page"}')
                own = json.loads(await ws.recv())
            return head, own
    head, own = run(main())
    assert head.split()[1] == b"403" and own["text"] == "own page"


def test_a_duplicated_host_header_is_refused():
    async def main():
        async with await serve_hub(Hub()) as server:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(server.url, origin=f"http://127.0.0.1:{server.port}",
                                   additional_headers={"Host": f"127.0.0.1:{server.port}"}):
                    pass
            return refused.value.response.status_code
    assert run(main()) == 403


def test_hub_idle_connections_from_one_address_do_not_lock_out_others():
    async def main():
        guard = ConnectionGuard(max_per_address=5)
        async with await serve_hub(Hub(), guard=guard) as server:
            idle = [await raw_open(server.port, source="127.0.0.2") for _ in range(5)]
            r, w = await asyncio.open_connection("127.0.0.1", server.port, local_addr=("127.0.0.2", 0))
            refused = await r.read()
            w.close()
            async with connect(server.url) as ws:
                await ws.send('{"type": "chat", "text": "in"}')
                ok = json.loads(await ws.recv())["text"] == "in"
            for _, writer, _ in idle:
                writer.close()
            return refused, ok
    refused, ok = run(main())
    assert refused.startswith(b"HTTP/1.1 503 ") and ok


# -- chat -----------------------------------------------------------------------------------

def test_chat_refuses_rebinding_and_sends_a_csp_with_frame_ancestors():
    async def main():
        async with await start_chat() as server:
            port = server.port
            async with aiohttp.ClientSession() as http:
                async with http.get(server.url) as page:
                    csp = page.headers["Content-Security-Policy"]
                async with http.get(server.ws_url.replace("ws:", "http:"), headers={
                        "Host": f"attacker.example:{port}", "Origin": f"http://attacker.example:{port}",
                        "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                        "Sec-WebSocket-Key": RFC_KEY}) as rebinding:
                    status = rebinding.status
            async with connect(server.ws_url, origin=f"http://127.0.0.1:{port}") as ws:
                welcome = json.loads(await ws.recv())
            return csp, status, welcome
    csp, status, welcome = run(main())
    assert "frame-ancestors 'self'" in csp and "script-src 'sha256-" in csp and "'unsafe-inline'" not in csp
    assert status == 403 and welcome["type"] == "welcome"


def test_chat_answers_bad_input_with_an_error_event_and_keeps_the_connection():
    async def main():
        async with await start_chat() as server:
            async with connect(server.ws_url) as ws:
                await ws.recv()  # welcome
                replies = []
                for bad in (json.dumps({"type": "message", "text": "x", "n": 0})[:-1] + ', "m": ' + "9" * 5000 + "}",
                            json.dumps({"type": "message", "text": "x", "name": "kernel"}),
                            json.dumps({"type": "message", "text": "x", "name": "eve\u202e"}),
                            '{"type": []}', DEEP):
                    await ws.send(bad)
                    replies.append(json.loads(await ws.recv()))
                await ws.send(json.dumps({"type": "message", "text": "fine", "name": "ada"}))
                last = json.loads(await ws.recv())
                return replies, last
    replies, last = run(main())
    assert [r["type"] for r in replies] == ["error"] * 5
    assert [r["code"] for r in replies] == ["bad-json", "bad-shape", "bad-shape", "bad-shape", "bad-json"]
    assert "reserved" in replies[1]["error"] and last["text"] == "fine" and last["name"] == "ada"


def test_chat_rate_limit_replies_then_closes_1008():
    async def main():
        async with await start_chat(rate=1, burst=2, strikes=2) as server:
            async with connect(server.ws_url) as ws:
                await ws.recv()
                for i in range(6):
                    await ws.send(json.dumps({"type": "message", "text": str(i)}))
                got = []
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        got.append(json.loads(await ws.recv()))
                return got, closed.value.rcvd.code
    got, code = run(main())
    assert [m["text"] for m in got if m["type"] == "message"] == ["0", "1"]
    assert [m["code"] for m in got if m["type"] == "error"] == ["rate-limited"]
    assert code == CloseCode.POLICY_VIOLATION


def test_chat_half_open_upgrades_expire_and_do_not_lock_out():
    async def main():
        guard = ConnectionGuard(max_connections=20, max_pending=8, handshake_timeout=0.5)
        async with await start_chat(guard=guard) as server:
            half = []
            for _ in range(30):
                r, w = await asyncio.open_connection("127.0.0.1", server.port)
                w.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                half.append((r, w))
            async with connect(server.ws_url, open_timeout=3) as ws:
                ok = json.loads(await ws.recv())["type"] == "welcome"
            ends = await asyncio.gather(*(r.read() for r, _ in half))
            for _, w in half:
                w.close()
            return ok, ends, guard.stats
    ok, ends, stats = run(main())
    assert ok and ends == [b""] * 30 and stats.evicted + stats.expired == 30


# -- transports EventServer ----------------------------------------------------------------

def test_event_server_bounds_its_state_and_refuses_cleanly():
    async def main():
        source = NewsSource(seed=1)
        async with EventServer(source, rate=None) as server:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{server.url}/events?since={'9' * 5000}") as huge:
                    huge_status, huge_body = huge.status, await huge.json()
                for i in range(300):
                    async with http.get(f"{server.url}/nothing-{i}") as missing:
                        assert missing.status == 404
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(f"{server.url}/ws", origin="http://localhost:9")
                async with http.ws_connect(f"{server.url}/ws") as ws:
                    await ws.send_str('{"post": ' + "9" * 5000 + "}")
                    error = json.loads((await ws.receive()).data)
            return huge_status, huge_body, dict(server.stats.by_path), refused.value.status, error
    huge_status, huge_body, by_path, ws_status, error = run(main())
    assert huge_status == 400 and huge_body["code"] == "bad-shape"
    assert set(by_path) <= {"/", "/events", "/stream", "/ws", "other"} and by_path["other"] == 300
    assert ws_status == 403 and error["type"] == "error" and error["code"] == "bad-json"


def test_silent_upgraded_connections_are_evicted_for_a_live_client_when_full():
    """1,020 idle upgrades, scaled down: every place taken by connections that upgraded and
    then said nothing; a newcomer evicts the one silent the longest (after idle_grace)."""
    async def main():
        guard = ConnectionGuard(max_connections=8, idle_grace=0.3)
        async with await serve_hub(Hub(), guard=guard) as server:
            idle = [await raw_open(server.port) for _ in range(8)]
            r, w = await asyncio.open_connection("127.0.0.1", server.port)
            refused = await r.read()  # all 8 silent for less than 0.3 s: full
            w.close()
            await asyncio.sleep(0.4)
            async with connect(server.url) as ws:
                await ws.send('{"type": "chat", "text": "in"}')
                ok = json.loads(await ws.recv())["text"] == "in"
            gone = await idle[0][0].read()  # the oldest silent one was evicted
            for _, writer, _ in idle:
                writer.close()
            return refused, ok, gone, guard.stats.evicted
    refused, ok, gone, evicted = run(main())
    assert refused.startswith(b"HTTP/1.1 503 ") and ok and evicted == 1


# -- in a real browser (last in this file: the module's Chromium owns the thread's loop) -----

class _Servers:
    """The hub, the chat and the EventServer, served from a thread of their own."""

    def __init__(self, trusted: str) -> None:
        import threading
        self.trusted = trusted
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.hub = Hub()
        self.hub_server, self.chat, self.events, self.chat2 = asyncio.run_coroutine_threadsafe(
            self._start(), self.loop).result(10)

    async def _start(self):
        return (await serve_hub(self.hub), await start_chat(),
                await EventServer(NewsSource(seed=1)).start(),
                await start_chat(allowed_origins={self.trusted}))  # this one trusts the page

    def stop(self) -> None:
        async def stop():
            for server in (self.hub_server, self.chat, self.events, self.chat2):
                server.close()
                await server.wait_closed()
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


OPEN_AND_SEND = """async (url) => new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.onopen = () => { ws.send(JSON.stringify({type: "chat", text: "from the attacker", post: "x"}));
                        setTimeout(() => resolve("open"), 300); };
    ws.onclose = (e) => resolve("closed " + e.code);
})"""


@pytest.mark.browser
def test_chromium_foreign_page_cannot_use_the_hub_or_the_event_server_nor_frame_the_chat(chromium, blank_page_url):
    """Cross-site WebSocket hijacking and clickjacking, from a real page on another origin."""
    servers = _Servers(trusted=blank_page_url.rstrip("/"))
    try:
        page = chromium.new_page()
        try:
            page.goto(blank_page_url)  # http://127.0.0.1:OTHER/: a foreign origin for every server
            hub = page.evaluate(OPEN_AND_SEND, servers.hub_server.url)
            events = page.evaluate(OPEN_AND_SEND, servers.events.url + "/ws")
            page.set_content(f'<iframe src="{servers.chat2.url}"></iframe><iframe src="{servers.chat.url}"></iframe>')
            trusted = next(f for f in page.frames if f.url == servers.chat2.url)
            trusted.wait_for_selector("#status.open", timeout=5000)  # framing by a listed origin works
            framed = [f for f in page.frames if f is not page.main_frame and f is not trusted]
            chat_loaded = any(f.url == servers.chat.url and f.query_selector("#status") for f in framed)
            own = chromium.new_page()
            own.goto(servers.chat.url)  # the chat's own page still works, its CSP lets its script run
            own.wait_for_selector("#status.open", timeout=5000)
            own.close()
        finally:
            page.close()
    finally:
        servers.stop()
    assert hub == "closed 1006" and events == "closed 1006"
    assert servers.hub.relayed == 0 and servers.events.stats.posts == 0
    assert not chat_loaded
