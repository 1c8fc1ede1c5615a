"""Cross-site WebSocket hijacking in real Chromium, then blocked (course.net.private).

The victim signs in to the private-rooms server on ``http://127.0.0.1:B`` (a session
cookie, ``HttpOnly``, ``SameSite=Lax``).  In the same browser, the attacker's page
(course.net.private.AttackerSite) opens ``new WebSocket("ws://127.0.0.1:B/socket")``.

What Chromium really does (checked here):

* attacker on ``http://127.0.0.1:A``: another origin (the port differs) but the **same
  site** (cookies are per host, not per port), so the Lax cookie goes with the
  handshake: without an Origin check, the page reads the private room;
* attacker on ``http://localhost:A``: another site, so the Lax cookie is **not** sent:
  the server sees nobody (401).  (Checked by hand in Chromium 156: ``SameSite=None``
  without ``Secure`` is not even stored; ``SameSite=None; Secure`` is stored on
  ``http://127.0.0.1``, a trustworthy origin, and goes with same-site handshakes, but
  not with this cross-site one either: Chromium sends no third-party cookies here.
  A cross-*site* attack needs a browser or a cookie that still allows third-party
  cookies; a same-site one, below, needs nothing);
* in both cases the page cannot read the answer of ``POST /ticket`` (same-origin
  policy), so a tickets-only server is not hijacked either;
* the fix, an ``Origin`` allow-list, refuses both pages with 403 while the victim's own
  page keeps working; and ``Origin`` is only a header: a script forges it (raw bytes
  below), so it protects browsers' users and never replaces authentication.
"""

from __future__ import annotations

import asyncio

import pytest

from course.net.private import COOKIE, AttackerSite, PrivateServer
from test_messenger import LoopThread

TIMEOUT_MS = 10_000
SECRET = "SECRET: salaries are paid on the 25th"


@pytest.fixture(scope="module")
def loop():
    thread = LoopThread()
    try:
        yield thread
    finally:
        thread.stop()


@pytest.fixture(scope="module")
def sites(loop):
    """Three servers (vulnerable, Origin-checked, tickets only) and the attacker's site."""
    async def start():
        return {"vulnerable": await PrivateServer(check_origin=False).start(),
                "fixed": await PrivateServer().start(),
                "tickets-only": await PrivateServer(check_origin=False, cookie_auth=False).start(),
                "attacker": await AttackerSite().start()}
    started = loop.run(start())
    try:
        yield started
    finally:
        async def stop():
            for service in started.values():
                service.close()
            await asyncio.gather(*(service.wait_closed() for service in started.values()))
        loop.run(stop())


def signed_in_victim(chromium, server, room: str = "payroll"):
    """A fresh browser context whose page signed in as ada and joined ``room``."""
    context = chromium.new_context()
    page = context.new_page()
    page.goto(server.url)
    page.fill("#user", "ada")
    page.click("#login button")
    page.wait_for_function("document.getElementById('status').textContent.endsWith('connected')",
                           timeout=TIMEOUT_MS)
    page.fill("#room", room)
    page.click("#rooms button")
    page.wait_for_function("t => document.getElementById('log').textContent.includes(t)",
                           arg=SECRET, timeout=TIMEOUT_MS)
    assert context.cookies()[0]["sameSite"] == "Lax" and context.cookies()[0]["httpOnly"]
    return context


def attack(loop, context, attacker, server, host: str, until: str) -> list[dict]:
    """Open the attacker's page on ``http://HOST:A/`` in the victim's browser; its loot."""
    loop.call(attacker.loot.clear)
    page = context.new_page()
    try:
        page.goto(f"http://{host}:{attacker.port}/?target={server.socket_url}")
        assert page.evaluate("location.origin") == f"http://{host}:{attacker.port}"
        loop.until(lambda: {"ticket", until} <= {e["kind"] for e in attacker.loot},
                   what=f"the attacker page reports {until!r}")
    finally:
        page.close()
    return loop.call(lambda: list(attacker.loot))


def frames(loot: list[dict]) -> str:
    return "\n".join(entry["data"] for entry in loot if entry["kind"] == "frame")


@pytest.mark.browser
def test_same_site_page_on_another_port_reads_the_private_room(chromium, loop, sites):
    server, attacker = sites["vulnerable"], sites["attacker"]
    context = signed_in_victim(chromium, server)
    try:
        loot = attack(loop, context, attacker, server, "127.0.0.1", until="frame")
        loop.until(lambda: SECRET in frames(list(attacker.loot)), what="the secret reaches the attacker")
        loot = loop.call(lambda: list(attacker.loot))
        assert '"user":"ada"' in frames(loot)          # the socket was opened in ada's name
        ticket = next(e for e in loot if e["kind"] == "ticket")
        assert ticket == {"kind": "ticket", "readable": False, "error": "TypeError: Failed to fetch"}
    finally:
        context.close()


@pytest.mark.browser
def test_cross_site_page_gets_no_lax_cookie(chromium, loop, sites):
    server, attacker = sites["vulnerable"], sites["attacker"]
    context = signed_in_victim(chromium, server)
    try:
        loot = attack(loop, context, attacker, server, "localhost", until="close")
        assert [e["code"] for e in loot if e["kind"] == "close"] == [1006]
        assert frames(loot) == ""
        refused = [line for line in loop.call(lambda: list(server.access_log))
                   if '"GET /socket HTTP/1.1" 401' in line]
        assert refused and all(" - - [" in line for line in refused)  # nobody: no cookie came
    finally:
        context.close()


@pytest.mark.browser
def test_origin_allow_list_refuses_both_pages_with_403(chromium, loop, sites):
    server, attacker = sites["fixed"], sites["attacker"]
    context = signed_in_victim(chromium, server)  # the server's own page still works
    try:
        for host in ("127.0.0.1", "localhost"):
            before = loop.call(lambda: len(server.access_log))
            loot = attack(loop, context, attacker, server, host, until="close")
            assert [e["code"] for e in loot if e["kind"] == "close"] == [1006], host
            assert frames(loot) == "", host
            log = loop.call(lambda: list(server.access_log))[before:]
            assert any('"GET /socket HTTP/1.1" 403' in line for line in log), (host, log)
    finally:
        context.close()


@pytest.mark.browser
def test_tickets_only_server_is_not_hijacked(chromium, loop, sites):
    server, attacker = sites["tickets-only"], sites["attacker"]
    context = signed_in_victim(chromium, server)  # the page itself signs in with a ticket
    try:
        loot = attack(loop, context, attacker, server, "127.0.0.1", until="close")
        assert next(e for e in loot if e["kind"] == "ticket")["readable"] is False
        assert [e["code"] for e in loot if e["kind"] == "close"] == [1006]
        log = loop.call(lambda: list(server.access_log))
        # the cookie went with POST /ticket (same site): a ticket was issued, but unreadable
        assert any(' - ada [' in line and '"POST /ticket HTTP/1.1" 200' in line for line in log)
        assert any('"GET /socket HTTP/1.1" 401' in line for line in log)
    finally:
        context.close()


async def handshake(port: int, headers: dict[str, str]) -> str:
    """Send an upgrade request byte for byte; the status line that comes back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = ["GET /socket HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                 "Sec-WebSocket-Version: 13", *(f"{k}: {v}" for k, v in headers.items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        return (await reader.readline()).decode().strip()
    finally:
        writer.close()


def test_origin_is_a_header_anyone_can_forge(loop, sites):
    server = sites["fixed"]
    own, other = f"http://127.0.0.1:{server.port}", "http://127.0.0.1:1"
    cookie = f"{COOKIE}={server.session_for('ada')}"
    for origin in (other, "null", f"http://localhost:{server.port}"):  # null: file:// pages
        assert loop.run(handshake(server.port, {"Origin": origin, "Cookie": cookie})) == \
            "HTTP/1.1 403 Forbidden", origin
    # a script claims to be the server's own page: the Origin check lets it through...
    assert loop.run(handshake(server.port, {"Origin": own})) == "HTTP/1.1 401 Unauthorized"
    # ...so only the session decides: with ada's session it is ada
    assert loop.run(handshake(server.port, {"Origin": own, "Cookie": cookie})) == \
        "HTTP/1.1 101 Switching Protocols"
