"""Authentication and per-room authorization (course.wire.auth, course.net.private), real bytes.

The rules alone (signed sessions, single-use tickets, the room policy), then the server
through the real ``websockets`` client and aiohttp's HTTP client: a ticket works once and
expires; the cookie session works; a private room refuses a join with the error envelope;
a ticket in the query string shows in the access log, and replaying it from there fails.
"""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import pytest
from yarl import URL
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from course.net.private import COOKIE, start_private
from course.wire.auth import AuthError, Denied, RoomPolicy, SessionSigner, TicketBook, denial

SECRET = b"0123456789abcdef-test-secret"


# --- the rules -----------------------------------------------------------------------------

def test_session_round_trip_and_tampering():
    signer = SessionSigner(SECRET, max_age=60)
    value = signer.sign("ada", now=1000.0)
    assert signer.verify(value, now=1030.0) == "ada"
    body, mac = value.split(".")
    cases = {
        "altered body": SessionSigner(SECRET).sign("eve", 1000.0).split(".")[0] + "." + mac,
        "altered mac": body + "." + ("A" if mac[0] != "A" else "B") + mac[1:],
        "other secret": SessionSigner(b"another-secret-of-16+").sign("ada", 1000.0),
        "no dot": body,
        "not ascii": "é." + mac,
    }
    for what, forged in cases.items():
        with pytest.raises(AuthError) as info:
            signer.verify(forged, now=1001.0)
        assert info.value.code is Denied.BAD_SESSION, what
    with pytest.raises(AuthError, match="expired") as info:
        signer.verify(value, now=1061.0)
    assert info.value.code is Denied.BAD_SESSION
    with pytest.raises(AuthError) as info:
        signer.verify(None, now=0)
    assert info.value.code is Denied.UNAUTHENTICATED
    with pytest.raises(ValueError):
        SessionSigner(b"short")
    with pytest.raises(ValueError):
        signer.sign("", 0)


def test_ticket_is_single_use_and_short_lived():
    book = TicketBook(ttl=5)
    first, second = book.issue("ada", now=100.0), book.issue("bob", now=100.0)
    assert first.value != second.value and len(first.value) >= 22  # 128 random bits
    assert book.redeem(first.value, now=104.9) == "ada"
    for value, now, code in [(first.value, 101.0, Denied.TICKET_USED),
                             (second.value, 105.1, Denied.TICKET_EXPIRED),
                             ("made-up", 101.0, Denied.TICKET_UNKNOWN),
                             ("", 101.0, Denied.UNAUTHENTICATED)]:
        with pytest.raises(AuthError) as info:
            book.redeem(value, now)
        assert info.value.code is code


def test_ticket_book_memory_is_bounded():
    book = TicketBook(ttl=5, capacity=100, per_user=1000)
    tickets = [book.issue("ada", now=float(i) / 1000) for i in range(1000)]
    assert len(book) <= 100
    assert book.redeem(tickets[-1].value, now=1.0) == "ada"
    with pytest.raises(AuthError) as info:  # forgotten to keep the bound: refused, not crashed
        book.redeem(tickets[0].value, now=1.0)
    assert info.value.code is Denied.TICKET_UNKNOWN
    book.issue("ada", now=100.0)  # every earlier ticket has expired: all pruned
    assert len(book) == 1


def test_one_user_cannot_push_the_others_tickets_out():
    book = TicketBook(ttl=5, capacity=20, per_user=4)
    bob = book.issue("bob", now=0.0)
    flood = [book.issue("eve", now=0.001 * i) for i in range(1000)]
    assert len(book) == 5
    assert book.redeem(bob.value, now=1.0) == "bob"
    assert book.redeem(flood[-1].value, now=1.0) == "eve"
    with pytest.raises(AuthError) as info:
        book.redeem(flood[-5].value, now=1.0)
    assert info.value.code is Denied.TICKET_UNKNOWN


def test_room_policy_and_error_envelope():
    policy = RoomPolicy(public=("lobby",), private={"payroll": ["ada"]})
    policy.check("bob", "lobby")
    policy.check("ada", "payroll")
    with pytest.raises(AuthError) as info:
        policy.check("bob", "payroll")
    assert json.loads(info.value.encode()) == {
        "type": "error", "code": "forbidden", "error": "'bob' may not join the private room 'payroll'"}
    with pytest.raises(AuthError) as info:
        policy.check("ada", "nowhere")
    assert info.value.code is Denied.NO_SUCH_ROOM
    assert json.loads(denial(Denied.TICKET_USED, "x"))["code"] == "ticket-used"
    with pytest.raises(ValueError):
        RoomPolicy(public=["a"], private={"a": []})


# --- the server, real bytes ------------------------------------------------------------------

class Clock:
    """The server's clock, moved by the test (tickets expire without sleeping)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def sign_in(http: aiohttp.ClientSession, server, user: str) -> str:
    async with http.post(server.url + "login", data={"user": user}) as response:
        assert response.status == 200, await response.text()
    return http.cookie_jar.filter_cookies(URL(server.url))[COOKIE].value


async def ticket(http: aiohttp.ClientSession, server) -> str:
    async with http.post(server.url + "ticket") as response:
        assert response.status == 200, await response.text()
        return (await response.json())["ticket"]


async def refused(url: str, **options) -> tuple[int, dict]:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, open_timeout=5, **options):
            pass
    response = info.value.response
    return response.status_code, json.loads(response.body or b"{}")


async def recv(ws) -> dict:
    async with asyncio.timeout(5):
        return json.loads(await ws.recv())


def test_ticket_flow_rooms_and_the_access_log():
    async def main():
        clock = Clock()
        server = await start_private(ticket_ttl=10, clock=clock)
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:  # IP hosts
                # no session: no ticket, no socket
                async with http.post(server.url + "ticket") as response:
                    assert response.status == 401
                    assert json.loads(await response.text())["code"] == "unauthenticated"
                assert await refused(server.socket_url) == (401, {
                    "type": "error", "code": "unauthenticated", "error": "not signed in: no session"})
                async with http.post(server.url + "login", data={"user": "mallory"}) as response:
                    assert response.status == 401

                await sign_in(http, server, "bob")
                value = await ticket(http, server)
                async with connect(f"{server.socket_url}?ticket={value}", open_timeout=5) as ws:
                    assert await recv(ws) == {"type": "welcome", "user": "bob", "rooms": ["lobby", "payroll"]}
                    await ws.send(json.dumps({"type": "join", "room": "payroll"}))
                    assert await recv(ws) == {"type": "error", "code": "forbidden",
                                              "error": "'bob' may not join the private room 'payroll'"}
                    await ws.send(json.dumps({"type": "message", "room": "payroll", "text": "hi"}))
                    assert (await recv(ws))["code"] == "forbidden"
                    await ws.send(json.dumps({"type": "join", "room": "lobby"}))
                    joined = await recv(ws)
                    assert joined["type"] == "joined" and joined["room"] == "lobby"
                    await ws.send(json.dumps({"type": "message", "room": "lobby", "text": "hello"}))
                    assert await recv(ws) == {"type": "message", "room": "lobby", "user": "bob", "text": "hello"}
                    await ws.send("{not json")
                    assert (await recv(ws))["code"] == "bad-json"
                # the ticket is in the access log, and spent: a replay from the log fails
                line = next(line for line in server.access_log if "ticket=" in line)
                assert re.fullmatch(r'127\.0\.0\.1 - bob \[.*\] "GET /socket\?ticket=\S+ HTTP/1\.1" 101', line), line
                logged = re.search(r"ticket=(\S+)", line)[1]
                assert logged == value
                assert await refused(f"{server.socket_url}?ticket={logged}") == (401, {
                    "type": "error", "code": "ticket-used", "error": "ticket already used"})
                # a ticket not used in time expires
                late = await ticket(http, server)
                clock.now += 10.5
                status, body = await refused(f"{server.socket_url}?ticket={late}")
                assert (status, body["code"]) == (401, "ticket-expired")
                # the session cookie never appears in the log: headers are not logged
                assert not any(http.cookie_jar.filter_cookies(URL(server.url))[COOKIE].value in line
                               for line in server.access_log)
        finally:
            server.close()
            await server.wait_closed()
    asyncio.run(main())


def test_cookie_session_and_a_private_room_for_its_member():
    async def main():
        server = await start_private()
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:  # IP hosts
                cookie = await sign_in(http, server, "ada")
            headers = {"Cookie": f"{COOKIE}={cookie}"}
            async with connect(server.socket_url, additional_headers=headers, open_timeout=5) as ada, \
                    connect(server.socket_url, open_timeout=5,
                            additional_headers={"Cookie": f"{COOKIE}={server.session_for('bob')}"}) as bob:
                assert (await recv(ada))["user"] == "ada" and (await recv(bob))["user"] == "bob"
                await ada.send(json.dumps({"type": "join", "room": "payroll"}))
                joined = await recv(ada)
                assert joined["history"] == [{"user": "ada", "text": "SECRET: salaries are paid on the 25th"}]
                for ws in (ada, bob):
                    await ws.send(json.dumps({"type": "join", "room": "lobby"}))
                    assert (await recv(ws))["type"] == "joined"
                await ada.send(json.dumps({"type": "message", "room": "payroll", "text": "raise!"}))
                assert (await recv(ada))["text"] == "raise!"
                await ada.send(json.dumps({"type": "message", "room": "lobby", "text": "hi all"}))
                assert (await recv(ada))["text"] == "hi all"
                assert (await recv(bob))["text"] == "hi all"  # bob never got "raise!"
            # an altered cookie is refused before any WebSocket exists
            forged = cookie.replace(cookie.split(".")[0], server.session_for("eve").split(".")[0])
            status, body = await refused(server.socket_url, additional_headers={"Cookie": f"{COOKIE}={forged}"})
            assert (status, body["code"]) == (401, "bad-session")
        finally:
            server.close()
            await server.wait_closed()
    asyncio.run(main())


def test_tickets_only_server_ignores_the_cookie():
    async def main():
        server = await start_private(cookie_auth=False)
        try:
            headers = {"Cookie": f"{COOKIE}={server.session_for('ada')}"}
            status, body = await refused(server.socket_url, additional_headers=headers)
            assert (status, body["code"]) == (401, "unauthenticated")
        finally:
            server.close()
            await server.wait_closed()
    asyncio.run(main())
