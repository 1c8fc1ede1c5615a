"""Self-checks of chapter 1's exercise (``solutions/01_long_polling_client.ipynb``).

* :func:`check_header_bytes` — ``header_bytes(message: bytes) -> int``, the size of an
  HTTP message's head (start line + headers + the blank line).
* :func:`check_long_poll` — ``async long_poll(session, url, since, count) -> list[dict]``,
  run against a real :class:`course.measure.transports.server.EventServer` on 127.0.0.1.

Each case prints one ✅/❌ line and never raises (see :mod:`course.checks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp

from course.checks import acheck, check, expect, expect_equal, summary
from course.demo.news import NewsSource
from course.measure.transports.server import EventServer
from course.net.lifecycle import shutdown

__all__ = ["check_header_bytes", "check_long_poll"]

_REQUEST = (b"GET /events?since=0 HTTP/1.1\r\n"
            b"Host: 127.0.0.1:41234\r\n"
            b"Accept: */*\r\n"
            b"Accept-Encoding: gzip, deflate\r\n"
            b"User-Agent: Python/3.11 aiohttp/3.14.5\r\n"
            b"\r\n")
_RESPONSE_HEAD = (b"HTTP/1.1 200 OK\r\n"
                  b"Content-Type: application/json; charset=utf-8\r\n"
                  b"Content-Length: 2\r\n"
                  b"Date: Fri, 27 Nov 2026 15:45:46 GMT\r\n"
                  b"Server: Python/3.11 aiohttp/3.14.5\r\n"
                  b"\r\n")


def check_header_bytes(header_bytes: Callable[[bytes], int]) -> bool:
    """Check ``header_bytes(message) -> int`` on requests and responses, with edge cases."""
    results: list[bool] = []

    def request_without_body() -> None:
        expect_equal(header_bytes(_REQUEST), len(_REQUEST), "header_bytes(a GET request)")

    def response_with_body() -> None:
        expect_equal(header_bytes(_RESPONSE_HEAD + b"[]"), len(_RESPONSE_HEAD),
                     "header_bytes(a response with body b'[]')")

    def body_with_blank_line() -> None:
        body = b"line one\r\n\r\nline two"
        head = (b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        expect_equal(header_bytes(head + body), len(head),
                     "header_bytes(a response whose body itself contains CRLF CRLF)")

    def returns_int() -> None:
        result = header_bytes(_REQUEST)
        expect(type(result) is int, f"expected an int, got {type(result).__name__}")

    def incomplete_head() -> None:
        try:
            result = header_bytes(_REQUEST[:-2])  # the blank line has not arrived yet
        except ValueError:
            return
        except NotImplementedError:
            raise
        except Exception as error:
            raise AssertionError(f"raised {type(error).__name__}, expected ValueError") from None
        raise AssertionError(f"returned {result!r} for a head without its blank line; "
                             "expected ValueError")

    results.append(check("a request with no body: the whole message is head", request_without_body,
                         "the head ends with the first b'\\r\\n\\r\\n'; count those 4 bytes too."))
    results.append(check("a response with a body: the body is not counted", response_with_body,
                         "find the first b'\\r\\n\\r\\n' and count up to its end."))
    results.append(check("only the FIRST blank line ends the head", body_with_blank_line,
                         "bytes.find / bytes.index return the first occurrence."))
    results.append(check("returns an int", returns_int, "return a number of bytes, e.g. len(...)."))
    results.append(check("an incomplete head raises ValueError", incomplete_head,
                         "bytes.index raises ValueError when it finds nothing; or raise it yourself."))
    return summary(results, "header_bytes")


@contextlib.asynccontextmanager
async def _scenario(plan: list[tuple[float, str]], *, before: int = 0, max_wait: float = 30.0,
                    run_for: float = 3.0) -> AsyncIterator[tuple[EventServer, NewsSource, aiohttp.ClientSession]]:
    """A real EventServer fed by ``plan`` (``before`` events published up front)."""
    source = NewsSource()
    for number in range(before):
        source.publish(f"Old headline {number + 1}")
    server = await EventServer(source, max_wait=max_wait).start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=35))
    runner = asyncio.create_task(source.run(run_for, plan))
    try:
        yield server, source, session
    finally:
        await shutdown(tasks=[runner], clients=[session], servers=[server])
        source.close()


def _plan(count: int, start: float, gap: float, prefix: str = "Headline") -> list[tuple[float, str]]:
    return [(start + i * gap, f"{prefix} {i + 1}") for i in range(count)]


def _ids(events: Any) -> list[Any]:
    expect(isinstance(events, list), f"expected a list of events, got {type(events).__name__}")
    expect(all(isinstance(e, dict) and "id" in e for e in events),
           "expected a list of event dicts like {'id': 1, 'text': ..., 't': ...}")
    return [e["id"] for e in events]


async def check_long_poll(long_poll: Callable[..., Awaitable[list[dict]]]) -> bool:
    """Check ``await long_poll(session, url, since, count)`` against a real server."""
    results: list[bool] = []

    async def in_order() -> None:
        async with _scenario(_plan(10, 0.05, 0.05)) as (server, _, session):
            events = await long_poll(session, server.url + "/events", 0, 10)
            expect_equal(_ids(events), list(range(1, 11)), "event ids")
            expect_equal([e["text"] for e in events], [f"Headline {i}" for i in range(1, 11)],
                         "event texts")

    async def after_since() -> None:
        async with _scenario(_plan(5, 0.1, 0.05), before=5) as (server, _, session):
            events = await long_poll(session, server.url + "/events", 3, 4)
            expect_equal(_ids(events), [4, 5, 6, 7], "ids received with since=3, count=4")

    async def not_busy() -> None:
        async with _scenario(_plan(6, 0.2, 0.2)) as (server, _, session):
            events = await long_poll(session, server.url + "/events", 0, 6)
            expect_equal(_ids(events), list(range(1, 7)), "event ids")
            requests = server.stats.by_path["/events"]
            expect(requests <= 6 + 3, f"{requests} requests for 6 events spread over 1.2 s: "
                   "that is polling, not long polling")
            waits = [q.get("wait") for q in server.stats.queries]
            expect(all(w not in (None, "", "0") for w in waits),
                   f"some requests did not ask the server to wait (wait values sent: {waits[:5]}…)")

    async def after_empty() -> None:
        async with _scenario(_plan(3, 1.0, 0.05), max_wait=0.3) as (server, _, session):
            events = await long_poll(session, server.url + "/events", 0, 3)
            expect_equal(_ids(events), [1, 2, 3], "ids after the server answered [] (its wait ran out)")
            empties = server.stats.by_path["/events"] - 1
            expect(empties >= 2, f"only {empties + 1} requests: did the server really time out?")

    async def at_most_count() -> None:
        # 8 events are waiting: the server's first answer carries all of them.
        async with _scenario([], before=8) as (server, _, session):
            events = await long_poll(session, server.url + "/events", 0, 3)
            ids = _ids(events)
            expect(len(ids) <= 3, f"returned {len(ids)} events for count=3 (ids {ids}): one answer "
                   "can carry more events than you still need")
            expect_equal(ids, [1, 2, 3], "ids with since=0, count=3")

    async def prompt() -> None:
        delays = []
        async with _scenario([], run_for=0) as (server, source, session):
            for round_ in range(3):
                task = asyncio.create_task(long_poll(session, server.url + "/events", round_, 1))
                try:
                    await asyncio.sleep(0.3)
                    if task.done():
                        await task  # re-raises what the student's code raised, if anything
                        raise AssertionError("returned before any event was published")
                    event = source.publish(f"Breaking {round_ + 1}")
                    events = await task
                finally:
                    task.cancel()
                delays.append((time.perf_counter_ns() - event.t) / 1e6)
                expect_equal(_ids(events), [round_ + 1], f"ids of round {round_ + 1}")
        median = statistics.median(delays)
        expect(median < 300, f"events arrived {median:.0f} ms after they were published (median): "
               "the server answers at once, so should you")

    async def http_error() -> None:
        async with _scenario([]) as (server, _, session):
            try:
                result = await long_poll(session, server.url + "/events", -1, 1)
            except NotImplementedError:
                raise
            except Exception:
                return
            raise AssertionError(f"returned {result!r} although the server answered "
                                 "400 Bad Request (since=-1)")

    results.append(await acheck("receives 10 events in order, no duplicates", in_order,
                                "send since=<id of the last event you got>; stop at `count`."))
    results.append(await acheck("starts after `since`", after_since,
                                "the first request must carry the `since` you were given."))
    results.append(await acheck("returns exactly `count` events, even when an answer brings more",
                                at_most_count,
                                "keep only the events you still need: the last answer may "
                                "overshoot `count`."))
    results.append(await acheck("one request per answer, each asking the server to wait", not_busy,
                                "pass wait=<seconds> (e.g. 10) so the server holds the request; "
                                "do not sleep between requests."))
    results.append(await acheck("keeps asking after an empty answer (server timeout)", after_empty,
                                "an answer [] only means 'nothing yet': ask again."))
    results.append(await acheck("delivers each event within milliseconds", prompt,
                                "re-request at once after each answer, with wait > 0."))
    results.append(await acheck("an HTTP error (400) raises instead of looping or returning",
                                http_error, "aiohttp does not raise on a 4xx/5xx answer by itself: "
                                "check the response's status before reading its body."))
    return summary(results, "long_poll")
