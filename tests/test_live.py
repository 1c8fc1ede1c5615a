"""The live chapter's code: handlers, the hub, the feeds, and course.ui.widgets (feed, control).

The envelope itself is tested in tests/test_envelope.py.

Real servers on 127.0.0.1 port 0 and real ``websockets`` clients; every wait bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import time

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from course.demo.feeds import clock_feed, demo_events, format_event, noise, price_feed
from course.measure.stats import LatencyRecorder, percentile
from course.net.handlers import PushServer, echo_handler, push_events, read_messages
from course.net.hub import Hub, serve_hub
from course.net.lifecycle import shutdown, url_of
from course.wire.envelope import Kind, decode, encode
from course.net import fanout
from course.ui.widgets import LiveFeed, UpstreamControl

T = 10  # seconds: bound for every test's async part


def arun(coro):
    async def bounded():
        async with asyncio.timeout(T):
            return await coro
    return asyncio.run(bounded())


# --------------------------------------------------------------------------- messages


def test_format_event_lines_are_stable_and_leave_timing_out():
    assert format_event({"type": "news", "seq": 1, "text": "hi", "sent_ns": 5}) == "#01 news   hi"
    assert format_event({"type": "clock", "seq": 12, "time": "09:00:01"}) == "#12 clock  09:00:01"
    assert format_event({"type": "price", "symbol": "ACME", "price": 1.5}) == "price  ACME 1.50"
    assert format_event({"type": "ack", "text": "got slider=1"}) == "server: got slider=1"
    assert format_event({"type": "error", "code": "bad-json", "error": "bad"}) == "server error (bad-json): bad"
    long = format_event({"type": "chat", "text": "x" * 1000})
    assert long.startswith("chat: xxx") and long.endswith("(1000 chars)") and len(long) < 60


def test_feeds_are_seeded_and_numbered():
    events = demo_events(30, seed=3)
    assert events == demo_events(30, seed=3)
    assert events != demo_events(30, seed=4)
    assert [e["seq"] for e in events] == list(range(1, 31))
    assert {e["type"] for e in events} == {"news", "clock", "price"}
    assert all(decode(encode(e["type"], **{k: v for k, v in e.items() if k != "type"}))
               for e in events)


def test_clock_feed_wraps_at_midnight():
    ticks = [t["time"] for t in clock_feed(3, start=86399)]
    assert ticks == ["23:59:59", "00:00:00", "00:00:01"]


def test_price_feed_stays_positive_with_cents():
    prices = [p["price"] for p in price_feed(500, seed=1)]
    assert all(p > 0 and round(p, 2) == p for p in prices)


def test_noise_is_seeded_and_sized():
    assert len(noise(1000, seed=1)) == 1000
    assert noise(50, seed=1) == noise(50, seed=1) != noise(50, seed=2)
    with pytest.raises(ValueError):
        noise(-1)


def test_percentile_nearest_rank():
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 100) == 5.0
    assert percentile(values, 0) == 1.0
    assert percentile(list(range(1, 101)), 95) == 95
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_recorder_uses_sent_ns():
    recorder = LatencyRecorder()
    assert recorder.record({"type": "ack"}) is None
    assert recorder.record({"sent_ns": 1_000_000}, now_ns=3_500_000) == 2.5
    assert recorder.p(50) == 2.5


# --------------------------------------------------------------------------- servers


def test_echo_server_echoes_text_and_bytes():
    async def main():
        server = await serve(echo_handler, "127.0.0.1", 0)
        try:
            assert url_of(server).startswith("ws://127.0.0.1:")
            async with connect(url_of(server)) as ws:
                for message in ["hello", b"\x00\x01", "é" * 1000]:
                    await ws.send(message)
                    assert await ws.recv() == message
        finally:
            server.close()
            await server.wait_closed()
    arun(main())


async def _push_server(events, interval=0.0, **kwargs):
    push = PushServer(events, interval=interval, **kwargs)
    server = await serve(push.handler, "127.0.0.1", 0)
    return push, server


def test_push_server_pushes_the_sequence_in_order_with_timestamps():
    events = demo_events(15, seed=7)

    async def main():
        push, server = await _push_server(events, interval=0.001)
        got = []
        async with connect(url_of(server)) as ws:
            while len(got) < len(events):
                got.append(decode(await ws.recv()))
        server.close()
        await server.wait_closed()
        return got

    got = arun(main())
    assert [{k: v for k, v in m.items() if k != "sent_ns"} for m in got] == events
    stamps = [m["sent_ns"] for m in got]
    assert stamps == sorted(stamps)


def test_push_events_rejects_a_negative_interval():
    with pytest.raises(ValueError, match="interval"):
        arun(push_events(None, [], -1))


def test_push_server_is_full_duplex_and_survives_bad_frames():
    received = []

    async def main():
        push, server = await _push_server(demo_events(40, seed=1), interval=0.01,
                                          on_control=received.append)
        answers = []
        async with connect(url_of(server)) as ws:
            await ws.send(encode("control", name="slider", value=42))
            await ws.send("{oops")
            await ws.send(encode("news", text="not for you"))
            await ws.send(encode("control", name="slider"))
            await ws.send(encode("control", name="text", value="hi"))
            pushes = 0
            while len(answers) < 5:
                message = decode(await ws.recv())
                if message["type"] in (Kind.ACK, Kind.ERROR):
                    answers.append(format_event(message))
                else:
                    pushes += 1
        server.close()
        await server.wait_closed()
        return push, answers, pushes

    push, answers, pushes = arun(main())
    assert answers[0] == "server: got slider=42"
    assert answers[1].startswith("server error (bad-json): bad JSON")
    assert answers[2] == "server error (unknown-type): unknown message type 'news'"
    assert answers[3] == "server error (bad-shape): a control message needs 'name' and 'value'"
    assert answers[4] == "server: got text=hi"
    assert pushes < 40  # the answers came while the pushes were still flowing
    assert [m["value"] for m in received] == [42, "hi"]
    assert len(push.errors) == 3


def test_read_messages_hands_bad_frames_to_on_error_and_keeps_reading():
    async def handler(ws):
        await ws.send(encode("news", text="one"))
        await ws.send("not json")
        await ws.send(encode("news", text="two"))

    async def main():
        server = await serve(handler, "127.0.0.1", 0)
        got, errors = [], []
        async with connect(url_of(server)) as ws:
            delivered = await read_messages(ws, got.append, errors.append)
        server.close()
        await server.wait_closed()
        return delivered, got, errors

    delivered, got, errors = arun(main())
    assert delivered == 2
    assert [m["text"] for m in got] == ["one", "two"]
    assert len(errors) == 1 and errors[0].startswith("bad JSON")


# --------------------------------------------------------------------------- hub


def test_hub_rejects_an_empty_queue():
    with pytest.raises(ValueError, match="queue_size"):
        Hub(queue_size=0)


def test_hub_broadcasts_to_every_client_in_order():
    events = []

    async def main():
        hub = Hub(queue_size=64, on_event=lambda kind, who: events.append(kind))
        server = await serve_hub(hub)
        clients = [await connect(url_of(server)) for _ in range(3)]
        while len(hub) < 3:
            await asyncio.sleep(0.01)
        for i in range(20):
            await clients[i % 2].send(encode("chat", text=f"m{i}"))
        got = [[decode(await c.recv())["text"] for _ in range(20)] for c in clients]
        await clients[2].send("{bad")
        error = decode(await clients[2].recv())
        await clients[0].close()
        while len(hub) > 2:
            await asyncio.sleep(0.01)
        await shutdown(clients=clients[1:], servers=[server])
        return hub, got, error

    hub, got, error = arun(main())
    # everybody (the senders too) sees one and the same order, each sender's order kept
    assert got[0] == got[1] == got[2]
    assert [m for m in got[0] if int(m[1:]) % 2 == 0] == [f"m{i}" for i in range(0, 20, 2)]
    assert sorted(got[0], key=lambda m: int(m[1:])) == [f"m{i}" for i in range(20)]
    assert error["type"] == "error" and error["code"] == "bad-json" and error["error"].startswith("bad JSON")
    assert hub.errors and hub.dropped == [] and hub.relayed == 20
    assert events[:4] == ["join", "join", "join", "leave"]


def test_hub_drops_a_slow_client_instead_of_stalling_the_others():
    async def main():
        hub = Hub(queue_size=4)
        server = await serve_hub(hub, close_timeout=1)
        url = url_of(server)
        fast = [await connect(url) for _ in range(2)]
        slow = await connect(url, max_queue=1, compression=None)  # never reads
        while len(hub) < 3:
            await asyncio.sleep(0.01)
        counts = [0, 0]

        async def read(i):
            async for _ in fast[i]:
                counts[i] += 1

        readers = [asyncio.create_task(read(i)) for i in range(2)]
        big = encode("chat", text=noise(32 * 1024, seed=2))
        sent = 0
        while not hub.dropped and sent < 5000:
            await fast[0].send(big)
            sent += 1
            await asyncio.sleep(0)
        while counts != [sent, sent]:
            await asyncio.sleep(0.01)
        try:
            while True:
                await slow.recv()
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
        summary = await shutdown(tasks=readers, clients=fast, servers=[server])
        return hub, sent, counts, code, summary

    hub, sent, counts, code, summary = arun(main())
    assert len(hub.dropped) == 1
    assert sent < 5000
    assert counts == [sent, sent]  # the fast clients lost nothing
    assert code == Hub.SLOW_CLOSE_CODE == 1008
    assert len(hub) == 0
    assert summary == "stopped 2 tasks, 2 clients, 1 server"


@pytest.mark.parametrize("ping_interval, close_timeout, sent, received", [
    # chapter 3's slow client: reads the hub's 1008 and echoes it, if it reads within close_timeout
    (None, 3.0, 1008, 1008),
    # later than that, the hub has aborted the TCP connection: no close frame (1006)
    (None, 0.2, None, None),
    # with keepalive, its unread pongs make it give up on its own (1011)
    (0.1, 3.0, 1011, None),
])
def test_a_slow_client_survives_a_pause_only_without_keepalive(ping_interval, close_timeout,
                                                               sent, received):
    async def main():
        hub = Hub(queue_size=4, grace=0.2)
        server = await serve_hub(hub, close_timeout=close_timeout)
        url = url_of(server)
        sender = await connect(url)
        slow = await connect(url, max_queue=1, compression=None, ping_interval=ping_interval,
                             ping_timeout=ping_interval, close_timeout=0.2)
        while len(hub) < 2:
            await asyncio.sleep(0.01)
        reader = asyncio.create_task(read_messages(sender, lambda m: None))
        big = encode("chat", text=noise(32 * 1024, seed=3))
        while len(hub) > 1:  # until the hub drops it, or (keepalive) it gives up first
            await sender.send(big)
            await asyncio.sleep(0.001)
        await asyncio.sleep(1.0)  # a reading pause
        try:
            while True:
                await slow.recv()
        except ConnectionClosed as closed:
            result = (closed.sent and closed.sent.code, closed.rcvd and closed.rcvd.code)
        await shutdown(tasks=[reader], clients=[sender, slow], servers=[server])
        return result

    assert arun(main()) == (sent, received)


def test_hub_rejects_a_grace_that_is_not_positive():
    with pytest.raises(ValueError, match="grace"):
        Hub(grace=0)


async def _readers(url, n, **kwargs):
    """``n`` connected clients, each with a task recording (arrival time, text) of every chat."""
    clients = [await connect(url, max_size=None, compression=None, **kwargs) for _ in range(n)]
    logs = [[] for _ in clients]

    async def read(ws, log):
        async for frame in ws:
            message = decode(frame)
            if message["type"] == "chat":
                log.append((time.perf_counter(), message["text"]))

    tasks = [asyncio.create_task(read(ws, log)) for ws, log in zip(clients, logs)]
    return clients, logs, tasks


async def _until(condition, timeout=5.0):
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def close_frame(code, reason):
    """The bytes of an unmasked close frame (server to client) with a short reason."""
    payload = code.to_bytes(2, "big") + reason.encode()
    return bytes([0x88, len(payload)]) + payload


async def read_until(sock, end, timeout=5.0):
    """What a raw socket receives until it ends with ``end`` or the peer closes."""
    loop, data = asyncio.get_running_loop(), bytearray()
    async with asyncio.timeout(timeout):
        while not data.endswith(end) and (chunk := await loop.sock_recv(sock, 1 << 16)):
            data += chunk
    return bytes(data)


def _max_gap(log, start):
    times = [start] + [t for t, _ in log]
    return max(b - a for a, b in zip(times, times[1:]))


def test_hub_absorbs_a_burst_of_100_with_nobody_dropped():
    """Notebook 03's queue of 8; 100 frames back to back, 30 idle clients that never read."""
    async def main():
        hub = Hub(queue_size=8, grace=0.5)
        server = await serve_hub(hub, ping_interval=None)
        url = url_of(server)
        clients, logs, tasks = await _readers(url, 3)
        idle = [await connect(url, close_timeout=0.2) for _ in range(30)]  # paused: 16 frames queued
        await _until(lambda: len(hub) == 33)
        for i in range(100):
            await clients[0].send(encode("chat", text=f"m{i}"))
        await _until(lambda: all(len(log) == 100 for log in logs))
        await asyncio.sleep(0.6)  # longer than the grace: a late verdict would show
        summary = await shutdown(tasks=tasks, clients=clients + idle, servers=[server])
        return hub, logs, summary

    hub, logs, summary = arun(main())
    assert hub.dropped == []
    assert all([text for _, text in log] == [f"m{i}" for i in range(100)] for log in logs)
    assert summary == "stopped 3 tasks, 33 clients, 1 server"


def test_hub_stalled_reader_beside_healthy_chatters():
    """A real client stops reading: it is dropped after the grace period, the others get every
    message and wait at most about that long, and stopping the server does not wait for it."""
    grace = 0.3
    events = []

    async def main():
        hub = Hub(queue_size=8, grace=grace, on_event=lambda kind, who: events.append(kind))
        # close_timeout=30: without cutting the dropped client's close, stopping would take 30 s
        server = await serve_hub(hub, ping_interval=None, close_timeout=30)
        url = url_of(server)
        clients, logs, tasks = await _readers(url, 3)
        stalled = await fanout.stalled_reader("127.0.0.1", server.port)
        await _until(lambda: len(hub) == 4)
        start = time.perf_counter()
        big = noise(32 * 1024, seed=4)
        sent = 0
        async with asyncio.timeout(10):
            while not hub.dropped or sent < 40:  # ~1.3 MB more once it is gone
                await clients[1].send(encode("chat", text=f"{sent}:{big}"))
                sent += 1
                while sent - len(logs[1]) > 16:  # a sender the readers keep up with
                    await asyncio.sleep(0)
        await _until(lambda: all(len(log) == sent for log in logs))
        t0 = time.perf_counter()
        server.close()
        await server.wait_closed()
        stop_s = time.perf_counter() - t0
        stalled.close()
        await shutdown(tasks=tasks, clients=clients)
        return hub, logs, sent, start, stop_s

    hub, logs, sent, start, stop_s = arun(main())
    assert sent < 1000
    assert len(hub.dropped) == 1 and events.count("drop") == 1
    for log in logs:
        assert [int(text.split(":")[0]) for _, text in log] == list(range(sent))
        assert _max_gap(log, start) < grace + 1.0   # the others waited about one grace period
    assert stop_s < 2.0


def test_hub_drops_a_stalled_reader_whose_write_buffer_stays_full():
    """A quiet room (the queue never fills) but big messages stuck in front of a stalled reader:
    dropped with "too slow: write buffer full", which it finds after its backlog."""
    async def main():
        hub = Hub(queue_size=8, grace=0.3, max_bytes=64 << 20, max_buffered=64 * 1024)
        server = await serve_hub(hub, ping_interval=None, close_timeout=5, max_size=None)
        url = url_of(server)
        clients, logs, tasks = await _readers(url, 1)
        stalled = await fanout.stalled_reader("127.0.0.1", server.port)
        await _until(lambda: len(hub) == 2)
        for i in range(6):  # 6 MB: more than the kernel's buffers, 6 messages: less than the queue
            await clients[0].send(encode("chat", text=f"{i}:" + "x" * 1_000_000))
        await _until(lambda: hub.dropped and len(logs[0]) == 6)
        data = await read_until(stalled, close_frame(1008, "too slow: write buffer full"))
        stalled.close()
        await shutdown(tasks=tasks, clients=clients, servers=[server])
        return hub, data

    hub, data = arun(main())
    assert len(hub.dropped) == 1
    assert len(data) > 1_000_000  # what was already on its way (whole frames), then the reason
    assert data.endswith(close_frame(1008, "too slow: write buffer full"))


def test_hub_stop_is_bounded_with_a_stalled_member():
    """A stalled reader that is not dropped yet (long grace, large bound), buffers full:
    server.close() ends within close_timeout and the healthy clients get 1001."""
    async def main():
        hub = Hub(queue_size=8, grace=60, max_bytes=256 << 20)
        server = await serve_hub(hub, ping_interval=None, close_timeout=0.5)
        url = url_of(server)
        clients, logs, tasks = await _readers(url, 2)
        stalled = await fanout.stalled_reader("127.0.0.1", server.port)
        await _until(lambda: len(hub) == 3)
        big = noise(32 * 1024, seed=5)

        async def flood():
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await clients[0].send(encode("chat", text=big))

        sender = asyncio.create_task(flood())
        outbox = next(o for o in hub.clients.values() if o.name == "%s:%d" % stalled.getsockname())
        await _until(lambda: outbox.backlog.full_since is not None, timeout=8)
        t0 = time.perf_counter()
        server.close()
        await server.wait_closed()
        stop_s = time.perf_counter() - t0
        codes = []
        for ws in clients:
            with contextlib.suppress(ConnectionClosed):
                await asyncio.wait_for(ws.wait_closed(), 2)
            codes.append(ws.close_code)
        await asyncio.wait_for(sender, 2)
        stalled.close()
        await shutdown(tasks=tasks, clients=clients)
        return hub, stop_s, codes

    hub, stop_s, codes = arun(main())
    assert hub.dropped == []
    assert stop_s < 1.5
    assert codes == [1001, 1001]


def test_hub_ping_deadline_closes_a_frozen_client():
    events = []

    async def main():
        hub = Hub(on_event=lambda kind, who: events.append(kind))
        server = await serve_hub(hub, ping_interval=0.2, ping_timeout=0.2, close_timeout=0.5)
        frozen = await connect(url_of(server), ping_interval=None)
        alive = await connect(url_of(server), ping_interval=None)
        while len(hub) < 2:
            await asyncio.sleep(0.01)
        frozen.transport.pause_reading()  # a frozen peer: it will never answer a ping
        while len(hub) > 1:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # a few more ping periods: the live client stays
        remaining = len(hub)
        frozen.transport.abort()
        await shutdown(clients=[alive], servers=[server])
        return remaining

    assert arun(main()) == 1
    assert events[:3] == ["join", "join", "leave"]


def test_shutdown_skips_none_and_is_bounded():
    async def main():
        task = asyncio.create_task(asyncio.sleep(60))
        return await shutdown(tasks=[task, None], clients=[None], servers=[None])

    assert arun(main()) == "stopped 1 task, 0 clients, 0 servers"


# --------------------------------------------------------------------------- widgets


def test_live_feed_is_bounded_and_carries_its_css_classes():
    feed = LiveFeed("news", max_lines=3)
    assert "ws-feed" in feed._dom_classes
    assert repr(feed) == "LiveFeed(title='news', lines=0, max_lines=3)"
    for i in range(5):
        feed.append(f"line {i}")
    assert feed.lines == ["line 2", "line 3", "line 4"]
    assert (feed.received, feed.dropped) == (5, 2)
    assert feed.status == "news · 5 received · showing 3"
    assert feed._html.value.count('class="ws-line"') == 3
    assert len(feed.children) == 2  # a status line and one HTML widget, however many lines
    assert repr(feed) == "LiveFeed(title='news', lines=3, max_lines=3)"
    feed.set_status("connected")
    assert feed.status.endswith("· connected")
    feed.clear()
    assert feed.lines == [] and feed.received == 0 and "ws-line" not in feed._html.value


def test_live_feed_escapes_html_and_rejects_non_text():
    feed = LiveFeed()
    feed.append("<script>alert(1)</script> & co")
    assert "<script>" not in feed._html.value
    assert html.escape("<script>alert(1)</script> & co") in feed._html.value
    assert feed.lines == ["<script>alert(1)</script> & co"]
    with pytest.raises(TypeError, match="str"):
        feed.append(42)
    with pytest.raises(ValueError, match="max_lines"):
        LiveFeed(max_lines=0)


def test_upstream_control_calls_back_and_schedules_awaitables():
    calls = []

    async def send(name, value):
        await asyncio.sleep(0)
        calls.append((name, value))

    async def main():
        control = UpstreamControl(send)
        assert "ws-upstream" in control._dom_classes
        control.slider.value = 42
        control.text.value = "hi"
        while len(calls) < 2:
            await asyncio.sleep(0.01)
        return control

    control = arun(main())
    assert calls == [("slider", 42), ("text", "hi")]
    assert control.sent == 2
    assert repr(control) == "UpstreamControl(slider=42, text='hi')"
    control.show_answer("server: got slider=42")
    assert control.answer.value == "server: got slider=42"


def test_upstream_control_shows_failures_instead_of_raising():
    def broken(name, value):
        raise RuntimeError("socket is closed")

    control = UpstreamControl(broken)
    control.slider.value = 5
    assert control.answer.value == "send failed: RuntimeError: socket is closed"

    async def failing(name, value):
        raise ConnectionError("gone")

    async def main():
        control = UpstreamControl(failing)
        control.slider.value = 7
        while not control.answer.value.startswith("send failed"):
            await asyncio.sleep(0.01)
        return control.answer.value

    assert arun(main()) == "send failed: ConnectionError: gone"
