"""course.measure.transports (and course.wire.sse): the CLI, the servers' answers to bad input, byte counting, clean shutdown.

Latency ratios are not asserted here (the machine is shared and noisy); the CLI test
prints them so that a run shows what was measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import subprocess
import sys
import time
import warnings

import aiohttp
import pytest
from websockets.asyncio.client import connect as ws_connect

from websockets.asyncio.server import serve as ws_serve

from course.demo.news import Event, NewsSource, schedule
from course.measure.stats import percentile
from course.measure.transports.clients import Collector, websocket_client
from course.measure.transports.config import STRATEGIES, Settings
from course.measure.transports.page import parse_page, render_page
from course.measure.transports.report import Result, table
from course.measure.transports.server import EventServer
from course.measure.transports.trial import capture_empty_poll, measure_all, run_strategy
from course.net.relay import start_relay
from course.wire.envelope import ErrorCode, error_message
from course.wire.sse import SSEParser, format_sse

def run(coro, timeout: float = 30):
    """Run one coroutine in a fresh event loop, bounded by ``timeout`` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


REQUIRED = {"strategy", "p50_ms", "p95_ms", "http_requests", "bytes_per_event", "events"}


@pytest.fixture(scope="module")
def cli_run():
    """One run of ``python -m course.measure.transports --json`` (about 13 s), shared by the tests below."""
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-X", "dev", "-m", "course.measure.transports", "--json"],
                          capture_output=True, text=True, timeout=90)
    return proc, time.monotonic() - start


def test_cli_json_has_the_five_strategies_with_sane_values(cli_run):
    proc, wall = cli_run
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["strategy"] for r in rows] == list(STRATEGIES)
    by = {r["strategy"]: r for r in rows}
    for row in rows:
        assert REQUIRED <= row.keys()
        assert row["events"] > 0 and row["events"] <= row["emitted"]
        assert row["http_requests"] >= 1
        assert 0 < row["p50_ms"] <= row["p95_ms"]
        assert row["bytes_per_event"] > 0
    # every strategy but the page reload sees every event
    for name in ("polling", "long-polling", "sse", "websocket"):
        assert by[name]["events"] == by[name]["emitted"], name
    assert by["websocket"]["http_requests"] == 1
    assert by["sse"]["http_requests"] == 1
    assert by["polling"]["http_requests"] > 5          # ~ one per second
    assert by["long-polling"]["http_requests"] > by["polling"]["http_requests"]
    assert by["websocket"]["upstream_messages"] > 0     # acks streamed up the same socket
    assert by["reload"]["bytes_per_event"] > by["websocket"]["bytes_per_event"]
    assert wall < 60, f"the CLI took {wall:.1f} s"
    # no "unclosed session/transport" ResourceWarning, no unhandled task exception
    for word in ("Unclosed", "unclosed", "Task exception was never retrieved", "Traceback"):
        assert word not in proc.stderr, proc.stderr
    ratio = by["polling"]["p50_ms"] / by["websocket"]["p50_ms"]
    print(f"\nmeasured: polling p50 / websocket p50 = {ratio:.0f}x; bytes/event polling "
          f"{by['polling']['bytes_per_event']} vs websocket {by['websocket']['bytes_per_event']}; "
          f"wall {wall:.1f} s")


def test_cli_table_and_bad_arguments():
    proc = subprocess.run([sys.executable, "-m", "course.measure.transports", "--duration", "-3"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "--duration must be within" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_table_lists_every_strategy(cli_run):
    rows = [Result(**{k: v for k, v in r.items() if k != "missed"}) for r in json.loads(cli_run[0].stdout)]
    text = table(rows)
    for name in STRATEGIES:
        assert f"\n{name} " in text
    assert "bytes/event" in text.splitlines()[0]


def test_bytes_counted_include_headers():
    run(_test_bytes_counted_include_headers())


async def _test_bytes_counted_include_headers():
    exchange = await capture_empty_poll()
    assert exchange.request.startswith(b"GET /events?since=0 HTTP/1.1\r\n")
    assert exchange.response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert exchange.response_body == b"[]"
    # the headers dwarf the 2-byte body
    assert len(exchange.response_head) > 100 and len(exchange.request_head) > 50
    assert b"\r\nContent-Length: 2\r\n" in exchange.response_head


def test_polling_bytes_per_event_exceed_body_size():
    run(_test_polling_bytes_per_event_exceed_body_size())


async def _test_polling_bytes_per_event_exceed_body_size():
    result = await run_strategy("polling", duration=2.5, seed=3,
                                settings=Settings(poll_interval=0.5))
    body = sum(len(json.dumps(e)) for e in [{"id": 1, "text": "Markets rise", "t": 10**15}])
    assert result.events > 0
    assert result.bytes_per_event > body          # headers are in the count
    assert result.bytes_up > 0 and result.bytes_down > 0
    assert result.http_requests >= 5
    assert result.connections == 1               # keep-alive: one TCP connection


def test_relay_counts_exact_bytes_both_ways():
    run(_test_relay_counts_exact_bytes_both_ways())


async def _test_relay_counts_exact_bytes_both_ways():
    async def echo(reader, writer):
        writer.write(await reader.readexactly(5) + b"!")
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    proxy = await start_relay("127.0.0.1", server.sockets[0].getsockname()[1], keep=4)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"hello")
        async with asyncio.timeout(5):
            assert await reader.read() == b"hello!"
        writer.close()
        await writer.wait_closed()
        async with asyncio.timeout(5):
            while proxy.bytes_down < 6:
                await asyncio.sleep(0.01)
        assert (proxy.bytes_up, proxy.bytes_down, proxy.connections) == (5, 6, 1)
        link = proxy.links[0]  # keep=4: the first 4 bytes each way
        assert (bytes(link.to_server), bytes(link.to_client)) == (b"hell", b"hell")
    finally:
        proxy.close()
        await proxy.wait_closed()
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def event_server():
    """An EventServer holding events 1..3 (long polls capped at 0.2 s), and a client session."""
    source = NewsSource()
    for text in ("one", "two", "three"):
        source.publish(text)
    try:
        async with EventServer(source, max_wait=0.2) as server:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
                yield server, source, session
    finally:
        source.close()


@pytest.mark.parametrize("query, word", [
    ("since=abc", "since"), ("since=-1", "since"), ("since=1.5", "since"),
    ("wait=soon", "wait"), ("wait=-2", "wait"), ("wait=nan", "wait"), ("wait=inf", "wait"),
])
def test_bad_query_gets_400_with_the_error_envelope(query, word):
    run(_test_bad_query_gets_400_with_the_error_envelope(query, word))


async def _test_bad_query_gets_400_with_the_error_envelope(query, word):
    async with event_server() as (server, _, session):
        async with session.get(f"{server.url}/events?{query}") as response:
            assert response.status == 400
            assert response.content_type == "application/json"
            body = await response.json()
        assert (body["type"], body["code"]) == ("error", "bad-shape")
        assert word in body["error"] and "got" in body["error"]
        # the server is still fine afterwards
        async with session.get(f"{server.url}/events?since=1") as response:
            assert [e["id"] for e in await response.json()] == [2, 3]


def test_bad_last_event_id_gets_400():
    run(_test_bad_last_event_id_gets_400())


async def _test_bad_last_event_id_gets_400():
    async with event_server() as (server, _, session):
        async with session.get(f"{server.url}/stream", headers={"Last-Event-ID": "x"}) as response:
            assert response.status == 400
            body = await response.json()
            assert body["type"] == "error" and "Last-Event-ID" in body["error"]


def test_long_poll_timeout_answers_empty_list():
    run(_test_long_poll_timeout_answers_empty_list())


async def _test_long_poll_timeout_answers_empty_list():
    async with event_server() as (server, _, session):
        start = time.monotonic()
        async with session.get(f"{server.url}/events?since=3&wait=60") as response:  # capped to 0.2 s
            assert await response.json() == []
        assert time.monotonic() - start < 3


def test_sse_resumes_after_last_event_id():
    run(_test_sse_resumes_after_last_event_id())


async def _test_sse_resumes_after_last_event_id():
    async with event_server() as (server, source, session):
        parser = SSEParser()
        seen = []
        async with session.get(f"{server.url}/stream", headers={"Last-Event-ID": "1"}) as response:
            assert response.content_type == "text/event-stream"
            async with asyncio.timeout(5):
                async for raw in response.content:
                    message = parser.feed_line(raw.decode())
                    if message:
                        seen.append(json.loads(message.data)["id"])
                    if len(seen) == 2:
                        break
        assert seen == [2, 3] and parser.last_id == "3"


def test_websocket_push_post_ack_and_bad_message():
    run(_test_websocket_push_post_ack_and_bad_message())


async def _test_websocket_push_post_ack_and_bad_message():
    async with event_server() as (server, source, _):
        async with ws_connect(server.url.replace("http", "ws") + "/ws?since=3", compression=None,
                              open_timeout=5, close_timeout=2) as ws:
            await ws.send(json.dumps({"post": "hello from the client"}))
            async with asyncio.timeout(5):
                pushed = json.loads(await ws.recv())
            assert (pushed["id"], pushed["text"]) == (4, "hello from the client")
            await ws.send(json.dumps({"ack": 4, "t": time.perf_counter_ns()}))
            for bad, code in [("not json", "bad-json"), (json.dumps({"ack": "x"}), "bad-shape"),
                              ("[1]", "bad-shape"), (json.dumps({"post": ""}), "empty"),
                              (b"\x00binary", "not-text")]:
                await ws.send(bad)
                async with asyncio.timeout(5):
                    error = json.loads(await ws.recv())
                assert (error["type"], error["code"]) == ("error", code), (bad, error)
                assert error["error"]
            await ws.send(json.dumps({"post": "still open"}))
            async with asyncio.timeout(5):
                assert json.loads(await ws.recv())["text"] == "still open"
        assert server.stats.posts == 2 and server.stats.upstream_messages == 3
        assert server.stats.http_requests == 1


def test_server_close_releases_held_requests_quickly():
    run(_test_server_close_releases_held_requests_quickly())


async def _test_server_close_releases_held_requests_quickly():
    source = NewsSource()
    server = await EventServer(source, max_wait=30).start()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        held = asyncio.create_task(session.get(f"{server.url}/events?since=0&wait=30"))
        await asyncio.sleep(0.2)
        start = time.monotonic()
        assert server.close() is None  # returns at once; wait_closed() waits
        await server.wait_closed()
        try:  # the held request is answered [] (or cut), not left hanging for 30 s
            response = await held
            assert await response.json() == []
        except aiohttp.ClientError:
            pass
        assert time.monotonic() - start < 3
    source.close()


def test_measure_all_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown strategies"):
        asyncio.run(measure_all(1, strategies=["smoke-signals"]))
    with pytest.raises(ValueError, match="duration"):
        asyncio.run(measure_all(0))
    with pytest.raises(ValueError, match="poll_interval"):
        Settings(poll_interval=0)


def test_schedule_is_seeded_and_bounded():
    assert schedule(7, 5) == schedule(7, 5)
    assert schedule(7, 5) != schedule(8, 5)
    assert all(0 <= offset < 5 for offset, _ in schedule(7, 5))
    with pytest.raises(ValueError):
        schedule(1, 5, mean_interval=0)


def test_sse_parser_follows_the_spec():
    parser = SSEParser()
    lines = [": keep-alive", "id: 7", "event: news", "data: a", "data:b", "retry: 10", ""]
    messages = [parser.feed_line(line + "\n") for line in lines]
    assert messages[:-1] == [None] * 6
    assert (messages[-1].event, messages[-1].data, messages[-1].id) == ("news", "a\nb", "7")
    assert parser.feed_line("\n") is None      # a blank line alone dispatches nothing
    event = Event(3, "x", 5)
    parsed = [parser.feed_line(line)
              for line in format_sse(json.dumps(event.to_json()), event="news", id=3).splitlines()]
    assert json.loads(parsed[-1].data) == event.to_json()


def test_sse_format_splits_lines_and_refuses_line_breaks_in_fields():
    parser = SSEParser()
    text = format_sse("one\ntwo\r\nthree", id=9)
    assert text == "id: 9\ndata: one\ndata: two\ndata: three\n\n"
    messages = [parser.feed_line(line) for line in text.split("\n")[:-1]]
    assert (messages[-1].event, messages[-1].data, messages[-1].id) == ("message", "one\ntwo\nthree", "9")
    for bad in ({"id": "1\n2"}, {"id": "a\0"}, {"event": "x\ry"}):
        with pytest.raises(ValueError):
            format_sse("x", **bad)


def test_page_round_trip_and_event_validation():
    page = '<ol><li data-id="2" data-t="9">B &amp; C</li><li data-id="1" data-t="8">A</li></ol>'
    assert parse_page(page) == [Event(1, "A", 8), Event(2, "B & C", 9)]
    events = [Event(1, "<b>A</b>", 8), Event(2, "B & C", 9)]
    assert parse_page(render_page(events, refresh=2.5, count=2)) == events
    with pytest.raises(ValueError):
        Event.from_json({"id": 0, "text": "x", "t": 1})
    with pytest.raises(ValueError):
        Event.from_json(["not", "an", "object"])


def test_percentile_is_the_shared_one():
    with pytest.raises(ValueError):
        percentile([], 50)          # callers decide what "no value" means (a Result says None)
    assert percentile([3, 1, 2], 50) == 2
    assert percentile(list(range(1, 101)), 95) == 95
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_run_strategy_websocket_closes_cleanly():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = asyncio.run(run_strategy("websocket", duration=1.5, seed=2))
        gc.collect()
    assert result.events == result.emitted > 0
    assert result.http_requests == 1 and result.connections == 1
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], caught


def test_websocket_client_detects_the_error_envelope():
    run(_test_websocket_client_detects_the_error_envelope())


async def _test_websocket_client_detects_the_error_envelope():
    async def refuse(websocket):
        await websocket.send(error_message(ErrorCode.BAD_SHAPE, "no thanks"))
        await websocket.wait_closed()

    async with ws_serve(refuse, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(RuntimeError, match=r"bad-shape.*no thanks"):
            await websocket_client(f"http://127.0.0.1:{port}", Collector(), Settings())


def test_a_strategy_without_events_reports_none():
    """Nothing delivered: the percentiles are None (stats.percentile itself raises on empty)."""
    async def quiet():
        return await run_strategy("sse", duration=0.2, seed=1,
                                  settings=Settings(mean_interval=1000.0))
    result = run(quiet())
    assert result.events == result.emitted == 0
    assert result.p50_ms is None and result.p95_ms is None and result.bytes_per_event is None
