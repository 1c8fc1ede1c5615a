"""The chapter 3 self-checks: ❌ on stubs and on wrong handlers, ✅ only on correct ones.

Each check starts real servers and clients, so these tests take a few seconds each.
"""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.server import broadcast
from websockets.exceptions import ConnectionClosed

from course.checks import FAIL, PASS
from course.checks.ch03 import check_broadcast_handler, check_push_news, stop_all


def run(coro, capsys) -> tuple[bool, dict[str, str]]:
    """Run a check; return its result and {case name: its ✅/❌ line}."""
    ok = asyncio.run(coro)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    cases = {}
    for line in lines:
        name = line[2:].split(" — ")[0].strip()
        cases[name] = line
    return ok, cases


def passed(cases: dict[str, str], name: str) -> bool:
    line = cases[name]
    assert line.startswith((PASS, FAIL)), line
    return line.startswith(PASS)


# --------------------------------------------------------------------------- push_news

PUSH_CASES = [
    "pushes every item, in order",
    "no items: sends nothing and returns",
    "any text: empty, non-ASCII, 70 000 characters",
    "waits `interval` seconds between two messages",
    "stops when the client leaves",
]


async def push_ok(websocket, items, interval):
    for index, item in enumerate(items):
        if index:
            await asyncio.sleep(interval)
        await websocket.send(item)


async def push_stub(websocket, items, interval):
    raise NotImplementedError()


async def push_reversed(websocket, items, interval):
    await push_ok(websocket, list(reversed(items)), interval)


async def push_no_pause(websocket, items, interval):
    for item in items:
        await websocket.send(item)


async def push_bytes(websocket, items, interval):
    await push_ok(websocket, [item.encode() for item in items], interval)


async def push_swallows_close(websocket, items, interval):
    for item in items:
        try:
            await websocket.send(item)
        except ConnectionClosed:
            pass
        await asyncio.sleep(interval)


def push_not_async(websocket, items, interval):
    for item in items:
        websocket.send(item)


async def push_time_sleep(websocket, items, interval):  # the trap the exercise names first
    import time
    for index, item in enumerate(items):
        if index:
            time.sleep(interval)
        await websocket.send(item)


async def push_sleeps_after_each(websocket, items, interval):  # also after the last item
    for item in items:
        await websocket.send(item)
        await asyncio.sleep(interval)


async def push_sleeps_before_each(websocket, items, interval):  # also before the first item
    for item in items:
        await asyncio.sleep(interval)
        await websocket.send(item)


async def push_joined(websocket, items, interval):  # one message with every item
    if items:
        await websocket.send("\n".join(items))


async def push_list_repr(websocket, items, interval):
    await websocket.send(str(items))


def test_push_news_passes_on_a_correct_solution(capsys):
    ok, cases = run(check_push_news(push_ok), capsys)
    assert ok, cases
    assert all(passed(cases, name) for name in PUSH_CASES), cases
    assert cases["push_news: all 5 checks pass"]


def test_push_news_says_not_implemented_on_the_stub(capsys):
    ok, cases = run(check_push_news(push_stub), capsys)
    assert not ok
    for name in PUSH_CASES:
        assert "not implemented yet" in cases[name], cases[name]
        assert "Hint" not in cases[name], "no hint before a real attempt: " + cases[name]
    assert "Traceback" not in "".join(cases.values())


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
@pytest.mark.parametrize("wrong, failing", [
    (push_reversed, "pushes every item, in order"),
    (push_no_pause, "waits `interval` seconds between two messages"),
    (push_bytes, "any text: empty, non-ASCII, 70 000 characters"),
    (push_swallows_close, "stops when the client leaves"),
    (push_not_async, "pushes every item, in order"),
    (push_time_sleep, "waits `interval` seconds between two messages"),
    (push_sleeps_after_each, "waits `interval` seconds between two messages"),
    (push_sleeps_before_each, "waits `interval` seconds between two messages"),
    (push_joined, "pushes every item, in order"),
    (push_list_repr, "pushes every item, in order"),
])
def test_push_news_fails_on_a_wrong_solution(wrong, failing, capsys):
    ok, cases = run(check_push_news(wrong), capsys)
    assert not ok
    assert not passed(cases, failing), cases[failing]


@pytest.mark.parametrize("wrong, named", [
    (push_time_sleep, "the event loop ran nothing else"),
    (push_sleeps_after_each, "after sending the last item"),
    (push_sleeps_before_each, "not before the first"),
])
def test_push_news_names_the_pacing_mistake(wrong, named, capsys):
    ok, cases = run(check_push_news(wrong), capsys)
    line = cases["waits `interval` seconds between two messages"]
    assert not ok and named in line and "Hint:" in line, line


# --------------------------------------------------------------------------- broadcast

BROADCAST_CASES = [
    "registers each connected client in the set",
    "relays a message to the others, not to the sender",
    "keeps each sender's order; several senders",
    "removes clients that leave, cleanly or not",
    "clients vanishing mid-broadcast don't break the others",
]


def make_handler(kind: str):
    """A broadcasting handler, correct (``"ok"``) or wrong in one way, and its set."""
    clients: set = set()

    async def ok(websocket):
        clients.add(websocket)
        try:
            async for message in websocket:
                broadcast([c for c in clients if c is not websocket], message)
        finally:
            clients.discard(websocket)

    async def per_client_sends(websocket):  # correct too, without broadcast()
        clients.add(websocket)
        try:
            async for message in websocket:
                for client in list(clients):
                    if client is not websocket:
                        try:
                            await client.send(message)
                        except ConnectionClosed:
                            pass
        finally:
            clients.discard(websocket)

    async def stub(websocket):
        raise NotImplementedError()

    async def echoes_sender_too(websocket):
        clients.add(websocket)
        try:
            async for message in websocket:
                broadcast(clients, message)
        finally:
            clients.discard(websocket)

    async def never_removes(websocket):
        clients.add(websocket)
        async for message in websocket:
            broadcast([c for c in clients if c is not websocket], message)

    async def removes_only_on_clean_close(websocket):
        clients.add(websocket)
        async for message in websocket:  # raises ConnectionClosedError on a broken peer
            for client in list(clients):
                if client is not websocket:
                    await client.send(message)  # raises on a vanished peer
        clients.discard(websocket)

    async def relays_first_only(websocket):
        clients.add(websocket)
        relayed = False
        try:
            async for message in websocket:
                if not relayed:
                    broadcast([c for c in clients if c is not websocket], message)
                    relayed = True
        finally:
            clients.discard(websocket)

    async def unguarded_sends(websocket):  # one vanished peer ends the sender's handler
        clients.add(websocket)
        try:
            async for message in websocket:
                for client in list(clients):
                    if client is not websocket:
                        await client.send(message)
        finally:
            clients.discard(websocket)

    return locals()[kind], clients


@pytest.mark.parametrize("kind", ["ok", "per_client_sends"])
def test_broadcast_passes_on_a_correct_solution(kind, capsys):
    handler, clients = make_handler(kind)
    ok, cases = run(check_broadcast_handler(handler, clients), capsys)
    assert ok, cases
    assert all(passed(cases, name) for name in BROADCAST_CASES), cases
    assert not clients


def test_broadcast_says_not_implemented_on_the_stub(capsys):
    handler, clients = make_handler("stub")
    ok, cases = run(check_broadcast_handler(handler, clients), capsys)
    assert not ok
    for name in BROADCAST_CASES:
        assert "not implemented yet" in cases[name], cases[name]
        assert "Hint" not in cases[name], cases[name]


@pytest.mark.parametrize("kind, failing", [
    ("echoes_sender_too", "relays a message to the others, not to the sender"),
    ("never_removes", "removes clients that leave, cleanly or not"),
    ("removes_only_on_clean_close", "removes clients that leave, cleanly or not"),
    ("removes_only_on_clean_close", "clients vanishing mid-broadcast don't break the others"),
    ("relays_first_only", "keeps each sender's order; several senders"),
    ("unguarded_sends", "clients vanishing mid-broadcast don't break the others"),
])
def test_broadcast_fails_on_a_wrong_solution(kind, failing, capsys):
    handler, clients = make_handler(kind)
    ok, cases = run(check_broadcast_handler(handler, clients), capsys)
    assert not ok
    assert not passed(cases, failing), cases[failing]


def test_broadcast_rejects_something_that_is_not_a_set(capsys):
    handler, _ = make_handler("ok")
    ok, cases = run(check_broadcast_handler(handler, []), capsys)
    assert not ok
    assert "pass the set of clients" in cases[BROADCAST_CASES[0]]


def test_stop_all_leaves_nothing_running():
    assert asyncio.run(stop_all()) == "nothing left running by the checks: True"
