"""Chapter 7 in a real browser: the official ``laravel-echo`` + ``pusher-js`` in Chromium.

Two ``python -m course.net.pusher_server`` processes share one real Redis; the page
(served by the application, ``course.net.pusher_app.EchoApp``, from 127.0.0.1, with the
browser builds of ``js/node_modules`` unchanged) connects to process *two*; the kernel
publishes through Redis and connects its own client to process *one*.  The servers run in
an event loop on a thread of their own (Playwright's sync API owns this thread's loop).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from loop_thread import LoopThread
from course.net.pusher_app import start_echo_app
from course.net.pusher_client import PusherClient
from course.net.pusher_server import KEY, SECRET, spawn_pusher
from course.net.redis_server import start_redis
from course.wire.pusher import Member, authorize

ROOT = Path(__file__).resolve().parent.parent
TTL = "1.0"


@pytest.fixture(scope="module")
def stack(redis_server, node_modules):
    """Redis, two server processes, the app (serving the page) — and a stop for all."""
    loop = LoopThread()
    files = {
        "/": ROOT / "tests/js/echo_page.html",
        "/echo_page.js": ROOT / "tests/js/echo_page.js",
        "/pusher.js": node_modules / "pusher-js/dist/web/pusher.js",
        "/echo.js": node_modules / "laravel-echo/dist/echo.iife.js",
    }

    async def start():
        redis = await start_redis(redis_server)
        one, two = await asyncio.gather(spawn_pusher(redis.url, "--presence-ttl", TTL),
                                        spawn_pusher(redis.url, "--presence-ttl", TTL))
        app = await start_echo_app(redis.url, files=files,
                                   can_join=lambda user, channel: user != "eve")
        return redis, one, two, app

    redis, one, two, app = loop.run(start())
    try:
        yield loop, one, two, app
    finally:
        async def stop():
            for service in (app, one, two, redis):
                service.close()
                await service.wait_closed()
        loop.run(stop())
        loop.stop()


def wait_for(page, predicate: str, timeout: float = 8.0):
    """Wait until ``predicate`` (a JS expression over ``window.echoLog``) is true; the log on failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if page.evaluate(predicate):
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"timed out on {predicate}; page log: {page.evaluate('window.echoLog')}")


def has(what: str, detail: str = "true") -> str:
    return f"window.echoLog.some(e => e.what === {what!r} && ({detail}))"


def test_echo_in_chromium_gets_events_published_through_redis_to_the_other_process(chromium, stack):
    loop, one, two, app = stack
    page = chromium.new_page()
    try:
        page.goto(app.url + "/")
        page.evaluate("options => window.run(options)", {
            "key": KEY, "wsPort": two.port, "user": "ada",
            "steps": [{"kind": "public", "channel": "orders", "event": "OrderShipped"},
                      {"kind": "private", "channel": "orders.1", "event": "OrderShipped"},
                      {"kind": "presence", "channel": "room.1"}]})
        wait_for(page, has("subscribed", "e.detail === 'orders'"))
        wait_for(page, has("subscribed", "e.detail === 'private-orders.1'"))
        wait_for(page, has("here", "e.detail.join() === 'ada'"))

        async def kernel_side():
            # the kernel's client on process ONE; the page is on process TWO
            bob = await PusherClient.connect(one.url)
            await bob.subscribe("presence-room.1", **authorize(KEY, SECRET, bob.socket_id, "presence-room.1",
                                                               Member("bob", {"name": "bob"})))
            await bob.subscribe("orders")
            shipped = await app.broadcast("orders", "OrderShipped", {"id": 1, "text": "<b>not html</b>"})
            await app.broadcast("private-orders.1", "OrderShipped", {"id": 2})
            got = await bob.next_event("OrderShipped")
            await bob.close()
            return shipped.receivers, got.data

        receivers, kernel_got = loop.run(kernel_side())
        assert receivers == 2 and kernel_got == {"id": 1, "text": "<b>not html</b>"}
        wait_for(page, has("event", "e.detail.channel === 'orders' && e.detail.data.id === 1"))
        wait_for(page, has("event", "e.detail.channel === 'private-orders.1' && e.detail.data.id === 2"))
        wait_for(page, has("joining", "e.detail === 'bob'"))
        wait_for(page, has("leaving", "e.detail === 'bob'"))
    finally:
        page.close()


def test_echo_presence_sees_a_killed_process_users_leave(chromium, stack):
    loop, one, two, app = stack
    page = chromium.new_page()
    try:
        page.goto(app.url + "/")
        page.evaluate("options => window.run(options)", {
            "key": KEY, "wsPort": two.port, "user": "ada", "steps": [{"kind": "presence", "channel": "room.2"}]})
        wait_for(page, has("here"))

        async def join_on_one():
            carol = await PusherClient.connect(one.url)
            await carol.subscribe("presence-room.2", **authorize(KEY, SECRET, carol.socket_id, "presence-room.2",
                                                                 Member("carol", {"name": "carol"})))
            return carol

        carol = loop.run(join_on_one())
        wait_for(page, has("joining", "e.detail === 'carol'"))
        one.kill()   # SIGKILL: process one never says goodbye
        wait_for(page, has("leaving", "e.detail === 'carol'"), timeout=8)
        loop.run(carol.close())
    finally:
        page.close()


def test_private_channels_refuse_a_forged_signature_and_an_unauthorized_user(chromium, stack):
    loop, one, two, app = stack
    forged, refused = chromium.new_page(), chromium.new_page()
    try:
        for page, user, forge in ((forged, "mallory", True), (refused, "eve", False)):
            page.goto(app.url + "/")
            page.evaluate("options => window.run(options)", {
                "key": KEY, "wsPort": two.port, "user": user, "forge": forge,
                "steps": [{"kind": "private", "channel": "orders.1", "event": "OrderShipped"},
                          {"kind": "public", "channel": "orders", "event": "OrderShipped"}]})
        # the server checks the HMAC: pusher:error 4009, the connection lives
        wait_for(forged, has("connection-error", "e.detail && e.detail.code === 4009"))
        # the app refuses eve (HTTP 403): Echo's error callback
        wait_for(refused, has("subscription-error", "e.detail.status === 403"))
        for page in (forged, refused):
            wait_for(page, has("subscribed", "e.detail === 'orders'"))
        loop.run(app.broadcast("private-orders.1", "OrderShipped", {"id": 3}))
        loop.run(app.broadcast("orders", "OrderShipped", {"id": 4}))
        for page in (forged, refused):
            wait_for(page, has("event", "e.detail.data.id === 4"))
            assert not page.evaluate(has("event", "e.detail.data.id === 3"))
            assert not page.evaluate(has("subscribed", "e.detail === 'private-orders.1'"))
    finally:
        forged.close()
        refused.close()
