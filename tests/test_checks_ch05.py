"""The chapter 5 self-checks: ❌ on stubs and on plausible wrong answers, ✅ only on correct ones."""

from __future__ import annotations

import asyncio
import copy
import itertools
import json

import pytest

from course.checks import FAIL, PASS
from course.checks.ch05 import check_apply_diff, check_correlator, check_decode_frame, check_route
from course.wire import presence
from course.wire.phoenix import BadFrame, Message, decode, encode, error, ok, push


def run(result, capsys) -> tuple[bool, dict[str, str]]:
    """A check's result (awaited if needed) and {case name: its ✅/❌ line}."""
    ok_ = asyncio.run(result) if asyncio.iscoroutine(result) else result
    cases = {}
    for line in capsys.readouterr().out.splitlines():
        if line.startswith((PASS, FAIL)) and not line.endswith("checks pass"):  # not the summary
            cases[line[2:].split(" — ")[0].strip()] = line
    return ok_, cases


def failing(cases: dict[str, str]) -> list[str]:
    return [name for name, line in cases.items() if line.startswith(FAIL)]


# --------------------------------------------------------------------------- (a) route

def route_ok(message, joined):
    if message.topic == "phoenix":
        if message.event == "heartbeat":
            return [("sender", ok(message))]
        return [("sender", error(message, "unknown event"))]
    if message.topic not in joined:
        return [("sender", error(message, "unmatched topic"))]
    join_ref = joined[message.topic]
    if message.join_ref != join_ref:
        return [("sender", error(message, "stale join_ref"))]
    if message.event == "new_msg":
        body = message.payload.get("body")
        if not isinstance(body, str) or not body.strip():
            return [("sender", error(message, "bad payload"))]
        return [("room", push(message.topic, "new_msg", {"body": body}, join_ref)),
                ("sender", ok(message))]
    if message.event == "typing":
        return [("others", push(message.topic, "typing", message.payload, join_ref))]
    return [("sender", error(message, "unknown event"))]


def route_stub(message, joined):
    raise NotImplementedError()


def route_ignores_join_ref(message, joined):
    return route_ok(Message(joined.get(message.topic), message.ref, message.topic, message.event,
                            message.payload), joined)


def route_typing_to_room(message, joined):
    return [("room", m) if target == "others" else (target, m) for target, m in route_ok(message, joined)]


def route_broadcast_keeps_ref(message, joined):
    return [(t, Message(m.join_ref, message.ref, m.topic, m.event, m.payload)) for t, m in
            route_ok(message, joined)]


def route_reply_first(message, joined):
    return sorted(route_ok(message, joined), key=lambda pair: pair[0] != "sender")


def route_adds_joins(message, joined):
    joined[message.topic] = message.join_ref  # "remembers" every topic it sees
    return route_ok(message, joined)


def route_empty_body_ok(message, joined):
    if message.event == "new_msg" and message.payload.get("body") == "":
        return [("room", push(message.topic, "new_msg", {"body": ""}, message.join_ref)),
                ("sender", ok(message))]
    return route_ok(message, joined)


def test_route_solution_passes(capsys):
    ok_, cases = run(check_route(route_ok), capsys)
    assert ok_ and not failing(cases) and len(cases) == 8


def test_route_stub_fails_without_hints(capsys):
    ok_, cases = run(check_route(route_stub), capsys)
    assert not ok_ and len(failing(cases)) == 8
    assert all("not implemented yet" in line and "Hint" not in line for line in cases.values())


@pytest.mark.parametrize("wrong, case", [
    (route_ignores_join_ref, "the join_ref of an older join: error 'stale join_ref'"),
    (route_typing_to_room, "typing: to the others only, no reply"),
    (route_broadcast_keeps_ref, "new_msg on a joined topic: broadcast to the room, then ok to the sender"),
    (route_reply_first, "new_msg on a joined topic: broadcast to the room, then ok to the sender"),
    (route_adds_joins, "a topic not joined: error 'unmatched topic'"),
    (route_empty_body_ok, "new_msg without a non-empty string body: error 'bad payload'"),
])
def test_route_wrong_answers_fail(wrong, case, capsys):
    ok_, cases = run(check_route(wrong), capsys)
    assert not ok_
    assert case in failing(cases), cases
    assert "Hint:" in cases[case]


# --------------------------------------------------------------------------- (b) correlator

class CorrelatorOk:
    def __init__(self, send, timeout=5.0):
        self.send, self.timeout = send, timeout
        self.pending: dict[str, asyncio.Future] = {}
        self.refs = itertools.count(1)

    async def request(self, topic, event, payload, join_ref=None):
        ref = str(next(self.refs))
        future = asyncio.get_running_loop().create_future()
        self.pending[ref] = future
        try:
            await self.send(encode(Message(join_ref, ref, topic, event, payload)))
            async with asyncio.timeout(self.timeout):
                return await future
        finally:
            self.pending.pop(ref, None)

    def receive(self, text):
        try:
            message = decode(text)
        except BadFrame:
            return False
        if message.event != "phx_reply":
            return False
        future = self.pending.pop(message.ref, None)
        if future is None or future.done():
            return False
        future.set_result(message.payload)
        return True


class CorrelatorStub(CorrelatorOk):
    async def request(self, topic, event, payload, join_ref=None):
        raise NotImplementedError()

    def receive(self, text):
        raise NotImplementedError()


class CorrelatorFifo(CorrelatorOk):
    """Resolves the oldest pending request, whatever the reply's ref."""

    def receive(self, text):
        try:
            message = decode(text)
        except BadFrame:
            return False
        if message.event != "phx_reply" or not self.pending:
            return False
        ref = next(iter(self.pending))
        future = self.pending.pop(ref)
        future.set_result(message.payload)
        return True


class CorrelatorLeaks(CorrelatorOk):
    """No finally: a timed-out ref stays pending forever."""

    async def request(self, topic, event, payload, join_ref=None):
        ref = str(next(self.refs))
        future = asyncio.get_running_loop().create_future()
        self.pending[ref] = future
        await self.send(encode(Message(join_ref, ref, topic, event, payload)))
        async with asyncio.timeout(self.timeout):
            result = await future
        self.pending.pop(ref, None)
        return result


class CorrelatorSameRef(CorrelatorOk):
    async def request(self, topic, event, payload, join_ref=None):
        self.refs = itertools.count(1)  # restarts the counter every time
        return await super().request(topic, event, payload, join_ref)


class CorrelatorNoTimeout(CorrelatorOk):
    async def request(self, topic, event, payload, join_ref=None):
        ref = str(next(self.refs))
        future = asyncio.get_running_loop().create_future()
        self.pending[ref] = future
        try:
            await self.send(encode(Message(join_ref, ref, topic, event, payload)))
            return await future
        finally:
            self.pending.pop(ref, None)


class CorrelatorRaisesOnJunk(CorrelatorOk):
    def receive(self, text):
        message = decode(text)  # BadFrame escapes
        return super().receive(encode(message))


class CorrelatorResponseOnly(CorrelatorOk):
    async def request(self, topic, event, payload, join_ref=None):
        return (await super().request(topic, event, payload, join_ref))["response"]


def test_correlator_solution_passes(capsys):
    ok_, cases = run(check_correlator(CorrelatorOk), capsys)
    assert ok_ and not failing(cases) and len(cases) == 6


def test_correlator_stub_fails_fast_and_quietly(capsys):
    loop = asyncio.new_event_loop()
    try:
        start = loop.time()
        ok_ = loop.run_until_complete(check_correlator(CorrelatorStub))
        took = loop.time() - start
    finally:
        loop.close()
    out = capsys.readouterr()
    assert not ok_ and took < 2, took
    lines = [line for line in out.out.splitlines() if line.startswith(FAIL)]
    assert len(lines) == 7 and all("not implemented yet" in line for line in lines[:-1])
    assert lines[-1].endswith("0/6 checks pass")
    assert "never retrieved" not in out.err


@pytest.mark.parametrize("wrong, case", [
    (CorrelatorFifo, "replies are matched by ref, not by order"),
    (CorrelatorLeaks, "no reply: TimeoutError after `timeout`, nothing left pending"),
    (CorrelatorSameRef, "every request gets a fresh ref"),
    (CorrelatorNoTimeout, "no reply: TimeoutError after `timeout`, nothing left pending"),
    (CorrelatorRaisesOnJunk, "receive() ignores unknown refs, broadcasts and malformed frames"),
    (CorrelatorResponseOnly, "a request sends one push with a ref and returns its reply"),
])
def test_correlator_wrong_answers_fail(wrong, case, capsys):
    ok_, cases = run(check_correlator(wrong), capsys)
    assert not ok_
    assert case in failing(cases), cases


# --------------------------------------------------------------------------- (c) presence

def diff_stub(state, diff):
    raise NotImplementedError()


def diff_leave_drops_user(state, diff):
    result = presence.apply_diff(state, {"joins": diff.get("joins", {}), "leaves": {}})
    for key in diff.get("leaves", {}):
        result.pop(key, None)
    return result


def diff_join_replaces(state, diff):
    result = copy.deepcopy(state)
    for key, entry in diff.get("joins", {}).items():
        result[key] = copy.deepcopy(entry)
    return presence.apply_diff(result, {"joins": {}, "leaves": diff.get("leaves", {})})


def diff_mutates(state, diff):
    result = presence.apply_diff(state, diff)
    state.clear()
    state.update(result)
    return state


def diff_leaves_first(state, diff):
    result = presence.apply_diff(state, {"joins": {}, "leaves": diff.get("leaves", {})})
    return presence.apply_diff(result, {"joins": diff.get("joins", {}), "leaves": {}})


def diff_keeps_empty_users(state, diff):
    result = presence.apply_diff(state, {"joins": diff.get("joins", {}), "leaves": {}})
    for key, entry in diff.get("leaves", {}).items():
        if key in result:
            refs = {m["phx_ref"] for m in entry["metas"]}
            result[key] = {"metas": [m for m in result[key]["metas"] if m["phx_ref"] not in refs]}
    return result


def test_apply_diff_solution_passes(capsys):
    ok_, cases = run(check_apply_diff(presence.apply_diff), capsys)
    assert ok_ and not failing(cases) and len(cases) == 8


def test_apply_diff_stub_fails(capsys):
    ok_, cases = run(check_apply_diff(diff_stub), capsys)
    assert not ok_ and len(failing(cases)) == 8


@pytest.mark.parametrize("wrong, case", [
    (diff_leave_drops_user, "a leave removes one meta; the user stays while a meta is left"),
    (diff_join_replaces, "a second tab adds a meta: the user counts once"),
    (diff_mutates, "the state given is not modified"),
    (diff_leaves_first, "joins first, then leaves, in one diff"),
    (diff_keeps_empty_users, "the last meta leaves: the user is gone"),
])
def test_apply_diff_wrong_answers_fail(wrong, case, capsys):
    ok_, cases = run(check_apply_diff(wrong), capsys)
    assert not ok_
    assert case in failing(cases), cases


# --------------------------------------------------------------------------- (d) Socket.IO

def frame_ok(text):
    if not text or text[0] not in "0123456":
        raise ValueError("not an Engine.IO packet")
    eio, rest = int(text[0]), text[1:]
    if eio != 4:
        return eio, None, None, None, rest
    if not rest or rest[0] not in "0123456":
        raise ValueError("not a Socket.IO packet")
    kind, pos = int(rest[0]), 1
    if kind in (5, 6):
        pos = rest.index("-", pos) + 1
    namespace = "/"
    if rest.startswith("/", pos):
        comma = rest.find(",", pos)
        if comma < 0:
            if any(c in rest[pos:] for c in "[{"):
                raise ValueError("a namespace must end with ','")
            namespace, pos = rest[pos:], len(rest)
        else:
            namespace, pos = rest[pos:comma], comma + 1
    start = pos
    while pos < len(rest) and rest[pos].isdigit():
        pos += 1
    ack_id = int(rest[start:pos]) if pos > start else None
    data = json.loads(rest[pos:]) if rest[pos:] else None
    return 4, kind, namespace, ack_id, data


def frame_stub(text):
    raise NotImplementedError()


def frame_no_namespace(text):
    """Forgets namespaces: '/chat,...' then fails as JSON."""
    if text.startswith("4") and text[2:3] == "/":
        return 4, int(text[1]), "/", None, json.loads(text[2:])
    return frame_ok(text)


def frame_one_digit_id(text):
    result = frame_ok(text)
    if result[3] is not None and result[3] >= 10:
        digits = str(result[3])
        return result[:3] + (int(digits[0]), json.loads(digits[1:] + json.dumps(result[4])))
    return result


def frame_namespace_none(text):
    result = frame_ok(text)
    return result[:2] + ((None if result[2] == "/" else result[2]),) + result[3:]


def frame_accepts_any_type(text):
    try:
        return frame_ok(text)
    except ValueError:
        return (int(text[0]) if text[:1].isdigit() else None, None, None, None, text)


def frame_open_as_dict(text):
    if text.startswith("0"):
        return 0, None, None, None, json.loads(text[1:])
    return frame_ok(text)


def test_decode_frame_solution_passes(capsys):
    ok_, cases = run(check_decode_frame(frame_ok), capsys)
    assert ok_ and not failing(cases) and len(cases) == 10


def test_decode_frame_stub_fails(capsys):
    ok_, cases = run(check_decode_frame(frame_stub), capsys)
    assert not ok_ and len(failing(cases)) == 10


@pytest.mark.parametrize("wrong, case", [
    (frame_no_namespace, "a namespace and nothing else: 41/chat,"),
    (frame_one_digit_id, 'an ack id of several digits: 4212["x"]'),
    (frame_namespace_none, """no namespace means '/': 42["hello","world"]"""),
    (frame_accepts_any_type, "malformed frames raise ValueError"),
    (frame_open_as_dict, "every frame python-socketio exchanged in the lesson's capture"),
])
def test_decode_frame_wrong_answers_fail(wrong, case, capsys):
    ok_, cases = run(check_decode_frame(wrong), capsys)
    assert not ok_
    assert case in failing(cases), cases
