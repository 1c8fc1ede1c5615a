"""Self-checks for chapter 5: routing, request/reply, presence, Socket.IO packets.

Used by ``solutions/05_channels_exercises.ipynb``::

    check_route(route)
    await check_correlator(Correlator)
    check_apply_diff(apply_diff)
    await check_decode_frame(decode_frame)

Every student function runs inside :func:`course.checks.check` / :func:`acheck`: a stub or a
bug is a ❌ line with a hint, never a traceback.  :func:`check_decode_frame` compares the
student's decoder with :mod:`course.wire.socketio` on frames captured from the real
python-socketio (:func:`course.net.socketio_capture.capture_socketio`, run once and kept).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

from course.checks import acheck, check, expect, expect_equal, summary
from course.net.socketio_capture import Capture, capture_socketio
from course.wire import presence
from course.wire import socketio as sio
from course.wire.phoenix import Message, decode, encode

__all__ = ["check_route", "check_correlator", "check_apply_diff", "check_decode_frame",
           "reference_frame", "captured_frames"]


# --------------------------------------------------------------------------- (a) route

def _summary(out: Any) -> list[tuple]:
    """(target, join_ref, ref, topic, event, status, reason or payload) of each routed message."""
    expect(isinstance(out, list), f"route must return a list of (target, Message), got {type(out).__name__}")
    rows = []
    for item in out:
        expect(isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Message),
               f"each item must be a (target, Message) pair, got {item!r}")
        target, m = item
        if m.event == "phx_reply":
            status = m.payload.get("status")
            response = m.payload.get("response")
            expect(isinstance(response, dict), f"a phx_reply payload needs a response object, got {m.payload!r}")
            detail = response.get("reason") if status == "error" else response
            rows.append((target, m.join_ref, m.ref, m.topic, m.event, status, detail))
        else:
            rows.append((target, m.join_ref, m.ref, m.topic, m.event, None, m.payload))
    return rows


def _msg(join_ref, ref, topic, event, payload=None) -> Message:
    return Message(join_ref, ref, topic, event, payload or {})


def check_route(route: Callable[[Message, dict[str, str]], list]) -> bool:
    """Check ``route(message, joined) -> [(target, Message), ...]``."""
    joined = {"room:lobby": "1"}
    lobby = lambda ref, event, payload=None, join_ref="1": _msg(join_ref, ref, "room:lobby", event, payload)  # noqa: E731

    def case(message: Message, expected: list[tuple], what: str) -> Callable[[], None]:
        def test() -> None:
            before = dict(joined)
            got = _summary(route(message, joined))
            expect_equal(joined, before, "joined (route must not change it)")
            expect_equal(got, expected, what)
        return test

    results = [
        check("heartbeat on topic phoenix: an ok reply to the sender",
              case(_msg(None, "5", "phoenix", "heartbeat"),
                   [("sender", None, "5", "phoenix", "phx_reply", "ok", {})], "routed"),
              "reply on the same topic with the push's ref: phoenix.ok(message)."),
        check("other events on topic phoenix: error 'unknown event'",
              case(_msg(None, "6", "phoenix", "dance"),
                   [("sender", None, "6", "phoenix", "phx_reply", "error", "unknown event")], "routed"),
              "the topic phoenix knows only heartbeat."),
        check("new_msg on a joined topic: broadcast to the room, then ok to the sender",
              case(lobby("7", "new_msg", {"body": "hi"}),
                   [("room", "1", None, "room:lobby", "new_msg", None, {"body": "hi"}),
                    ("sender", "1", "7", "room:lobby", "phx_reply", "ok", {})], "routed"),
              "the broadcast is a push (ref None, the membership's join_ref), the reply "
              "answers the push's ref; broadcast first, as the server of the lesson does."),
        check("typing: to the others only, no reply",
              case(lobby("8", "typing", {"typing": True}),
                   [("others", "1", None, "room:lobby", "typing", None, {"typing": True})], "routed"),
              "typing is ephemeral: the sender does not need it back, and it gets no reply."),
        check("a topic not joined: error 'unmatched topic'",
              case(_msg("3", "9", "room:kitchen", "new_msg", {"body": "hi"}),
                   [("sender", "3", "9", "room:kitchen", "phx_reply", "error", "unmatched topic")], "routed"),
              "look the topic up in `joined` before anything else (but after the phoenix topic)."),
        check("the join_ref of an older join: error 'stale join_ref'",
              case(lobby("10", "new_msg", {"body": "hi"}, join_ref="0"),
                   [("sender", "0", "10", "room:lobby", "phx_reply", "error", "stale join_ref")], "routed"),
              "compare message.join_ref with joined[topic]: a late push from an earlier membership."),
        check("new_msg without a non-empty string body: error 'bad payload'",
              lambda: [case(lobby("11", "new_msg", payload),
                            [("sender", "1", "11", "room:lobby", "phx_reply", "error", "bad payload")],
                            f"routed for payload {payload!r}")()
                       for payload in ({}, {"body": ""}, {"body": 3}, {"body": "   "})],
              "check isinstance(body, str) and body.strip()."),
        check("an event the room does not know: error 'unknown event'",
              case(lobby("12", "dance"),
                   [("sender", "1", "12", "room:lobby", "phx_reply", "error", "unknown event")], "routed"),
              "anything but new_msg and typing on a joined room."),
    ]
    return summary(results, "route")


# --------------------------------------------------------------------------- (b) correlator

class _FakeServer:
    """Stands in for the socket: records what the client sends, answers as told."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.correlator: Any = None

    async def send(self, text: str) -> None:
        self.sent.append(decode(text))

    def reply(self, message: Message, response: dict | None = None, status: str = "ok") -> bool:
        frame = encode(Message(message.join_ref, message.ref, message.topic, "phx_reply",
                               {"status": status, "response": response or {}}))
        return self.correlator.receive(frame)


def _make(Correlator: type, timeout: float) -> tuple[Any, _FakeServer]:
    server = _FakeServer()
    correlator = Correlator(server.send, timeout=timeout)
    server.correlator = correlator
    return correlator, server


async def _sent(server: _FakeServer, count: int, tasks: list[asyncio.Future]) -> None:
    """Wait until ``count`` frames were sent; a request that failed meanwhile raises here."""
    async with asyncio.timeout(1):
        while len(server.sent) < count:
            for task in tasks:
                if task.done() and task.exception() is not None:
                    raise task.exception()
            await asyncio.sleep(0.001)


async def _reap(tasks: list[asyncio.Future]) -> None:
    """Cancel what is left and retrieve every result (no "exception never retrieved")."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def check_correlator(Correlator: type) -> bool:
    """Check a ``Correlator(send, timeout)`` with ``request(topic, event, payload)`` and
    ``receive(text) -> bool`` against a fake server (every wait bounded)."""

    async def one_request() -> None:
        c, server = _make(Correlator, 1.0)
        task = asyncio.ensure_future(c.request("room:lobby", "new_msg", {"body": "hi"}))
        try:
            await _one_request(c, server, task)
        finally:
            await _reap([task])

    async def _one_request(c: Any, server: _FakeServer, task: asyncio.Future) -> None:
        await _sent(server, 1, [task])
        m = server.sent[0]
        expect((m.topic, m.event, m.payload) == ("room:lobby", "new_msg", {"body": "hi"}),
               f"the frame sent should be the push, got {encode(m)}")
        expect(isinstance(m.ref, str) and m.ref, f"the push needs a ref (a string), got {m.ref!r}")
        expect(server.reply(m, {"id": 1}) is True, "receive() should return True for the awaited reply")
        expect_equal(await task, {"status": "ok", "response": {"id": 1}}, "request() returned")
        expect_equal(len(c.pending), 0, "entries left in pending after the reply")

    async def unique_refs() -> None:
        c, server = _make(Correlator, 1.0)
        tasks = [asyncio.ensure_future(c.request("room:lobby", "new_msg", {"body": str(i)}))
                 for i in range(5)]
        try:
            await _sent(server, 5, tasks)
            refs = [m.ref for m in server.sent]
            expect(len(set(refs)) == 5, f"five requests need five different refs, got {refs}")
            for m in server.sent:
                server.reply(m)
            await asyncio.gather(*tasks)
        finally:
            await _reap(tasks)

    async def out_of_order() -> None:
        c, server = _make(Correlator, 1.0)
        tasks = [asyncio.ensure_future(c.request("room:lobby", "new_msg", {"body": str(i)}))
                 for i in range(3)]
        try:
            await _sent(server, 3, tasks)
            for m in reversed(server.sent):
                server.reply(m, {"body": m.payload["body"]})
            got = [(await t)["response"]["body"] for t in tasks]
            expect_equal(got, ["0", "1", "2"], "each request's reply (sent in reverse order)")
        finally:
            await _reap(tasks)

    async def error_reply() -> None:
        c, server = _make(Correlator, 1.0)
        task = asyncio.ensure_future(c.request("room:kitchen", "new_msg", {"body": "x"}))
        try:
            await _sent(server, 1, [task])
            server.reply(server.sent[0], {"reason": "unmatched topic"}, status="error")
            expect_equal(await task, {"status": "error", "response": {"reason": "unmatched topic"}},
                         "request() returned")
        finally:
            await _reap([task])

    async def times_out() -> None:
        c, server = _make(Correlator, 0.2)
        started = asyncio.get_running_loop().time()
        try:
            await c.request("room:lobby", "new_msg", {"body": "lost"})
        except TimeoutError:
            pass
        else:
            raise AssertionError("request() returned although no reply came; it should raise TimeoutError")
        waited = asyncio.get_running_loop().time() - started
        expect(waited < 1.0, f"it gave up after {waited:.1f} s; the timeout was 0.2 s")
        expect_equal(len(c.pending), 0, "entries left in pending after the timeout")
        expect(server.reply(server.sent[0]) is False,
               "a reply arriving after the timeout should be ignored (receive() returns False)")

    async def ignores_the_rest() -> None:
        c, server = _make(Correlator, 1.0)
        for text, what in [(encode(Message(None, "99", "room:lobby", "phx_reply",
                                           {"status": "ok", "response": {}})), "a reply nobody waits for"),
                           (encode(Message("1", None, "room:lobby", "new_msg", {"body": "hi"})), "a broadcast"),
                           ("not json", "a malformed frame")]:
            expect(c.receive(text) is False, f"receive() should return False for {what}")

    results = [
        await acheck("a request sends one push with a ref and returns its reply", one_request,
                     "send encode(Message(None, ref, topic, event, payload)), keep a future in "
                     "self.pending[ref], and let receive() resolve it."),
        await acheck("every request gets a fresh ref", unique_refs,
                     "a counter (itertools.count) turned into str."),
        await acheck("replies are matched by ref, not by order", out_of_order,
                     "look the reply's ref up in self.pending."),
        await acheck("an error reply is returned as it is", error_reply,
                     "return the reply's whole payload {status, response}."),
        await acheck("no reply: TimeoutError after `timeout`, nothing left pending", times_out,
                     "asyncio.timeout(self.timeout) around the wait, and a finally: that pops the ref."),
        await acheck("receive() ignores unknown refs, broadcasts and malformed frames", ignores_the_rest,
                     "catch BadFrame; only a phx_reply whose ref is pending counts."),
    ]
    return summary(results, "Correlator")


# --------------------------------------------------------------------------- (c) presence

def _m(ref: str) -> dict[str, str]:
    return {"phx_ref": ref}


_ADA = {"ada": {"metas": [_m("p1")]}}
_ADA_BOB = {"ada": {"metas": [_m("p1")]}, "bob": {"metas": [_m("p2")]}}
_PRESENCE_CASES = [
    ("a join adds a new user", _ADA, {"joins": {"bob": {"metas": [_m("p2")]}}, "leaves": {}},
     "a key not in the state gets the joined metas."),
    ("a second tab adds a meta: the user counts once", _ADA,
     {"joins": {"ada": {"metas": [_m("p3")]}}, "leaves": {}},
     "append the joined metas to the key's metas; do not replace them."),
    ("a leave removes one meta; the user stays while a meta is left",
     {"ada": {"metas": [_m("p1"), _m("p3")]}}, {"joins": {}, "leaves": {"ada": {"metas": [_m("p1")]}}},
     "remove the metas whose phx_ref is in the leave, not the whole key."),
    ("the last meta leaves: the user is gone", _ADA_BOB,
     {"joins": {}, "leaves": {"bob": {"metas": [_m("p2")]}}},
     "a key with no metas left is deleted."),
    ("a leave for someone unknown changes nothing", _ADA,
     {"joins": {}, "leaves": {"zoe": {"metas": [_m("p9")]}}},
     "skip keys that are not in the state."),
    ("joins first, then leaves, in one diff", _ADA,
     {"joins": {"bob": {"metas": [_m("p2")]}}, "leaves": {"bob": {"metas": [_m("p2")]}}},
     "apply all the joins, then all the leaves (Phoenix's order)."),
    ("a join with a phx_ref already present replaces that meta", {"ada": {"metas": [{"phx_ref": "p1", "away": True}]}},
     {"joins": {"ada": {"metas": [{"phx_ref": "p1", "away": False}]}}, "leaves": {}},
     "drop the old meta with the same phx_ref before adding the new one."),
]


def check_apply_diff(apply_diff: Callable[[dict, dict], dict]) -> bool:
    """Check ``apply_diff(state, diff) -> new state`` against :func:`course.wire.presence.apply_diff`."""
    results = []
    for name, state, diff, hint in _PRESENCE_CASES:
        def test(state=state, diff=diff) -> None:
            state_copy, diff_copy = copy.deepcopy(state), copy.deepcopy(diff)
            got = apply_diff(state_copy, diff_copy)
            expect_equal(got, presence.apply_diff(state, diff), "new state")
            expect(state_copy == state and diff_copy == diff,
                   "the state or the diff passed in was modified")
        results.append(check(name, test, hint))

    def no_mutation() -> None:
        state = {"ada": {"metas": [_m("p1"), _m("p3")]}}
        before = copy.deepcopy(state)
        apply_diff(state, {"joins": {"ada": {"metas": [_m("p4")]}}, "leaves": {"ada": {"metas": [_m("p1")]}}})
        expect(state == before, "apply_diff changed the state it was given; return a new one")

    results.append(check("the state given is not modified", no_mutation,
                         "work on copy.deepcopy(state): other code still holds the old state."))
    return summary(results, "apply_diff")


# --------------------------------------------------------------------------- (d) Socket.IO

_captured: Capture | None = None


async def captured_frames() -> list[str]:
    """The WebSocket text frames of one real python-socketio exchange (captured once)."""
    global _captured
    if _captured is None:
        _captured = await capture_socketio(ping_interval=1)
    return [unit.text for unit in _captured.packets if unit.transport == "websocket"]


def reference_frame(text: str) -> tuple:
    """What ``decode_frame`` must return, computed with :mod:`course.wire.socketio`."""
    outer = sio.decode_engine(text)
    if outer.type != sio.EngineType.MESSAGE:
        return int(outer.type), None, None, None, outer.data if outer.type != sio.EngineType.OPEN else text[1:]
    inner = sio.decode(outer.data)
    return 4, int(inner.type), inner.namespace, inner.id, inner.data


_HANDMADE = [
    ('42["hello","world"]', "no namespace means '/'"),
    ("41/chat,", "a namespace and nothing else"),
    ('4212["x"]', "an ack id of several digits"),
    ('43/chat,7[{"ok":true}]', "an ack on a namespace"),
    ('451-/chat,["file",{"_placeholder":true,"num":0}]', "a binary event: attachment count, then '-'"),
    ('44/chat,{"message":"bad token"}', "a connect error"),
    ("3probe", "the pong of the upgrade probe"),
    ("6", "a noop"),
]
_MALFORMED = ["", "9", '42["x"', "47", '4/chat["x"]']


async def check_decode_frame(decode_frame: Callable[[str], tuple]) -> bool:
    """Check ``decode_frame(text) -> (eio, sio, namespace, ack_id, data)`` on real frames."""
    frames = await captured_frames()

    def same(text: str) -> None:
        got = decode_frame(text)
        expect_equal(tuple(got) if isinstance(got, (tuple, list)) else got, reference_frame(text),
                     f"decode_frame({text!r})")

    def real() -> None:
        expect(len(frames) > 10, "the capture of python-socketio found too few frames")
        for text in frames:
            same(text)

    def refuses() -> None:
        for text in _MALFORMED:
            try:
                result = decode_frame(text)
            except ValueError:
                continue
            raise AssertionError(f"decode_frame({text!r}) returned {result!r}; it should raise ValueError")

    results = [check("every frame python-socketio exchanged in the lesson's capture", real,
                     "Engine.IO type first (1 character), then for 4 the Socket.IO type, the "
                     "namespace up to ',', the ack id digits, the JSON rest.")]
    for text, what in _HANDMADE:
        results.append(check(f"{what}: {text}", lambda text=text: same(text),
                             "the namespace defaults to '/'; the id is every digit before the JSON."))
    results.append(check("malformed frames raise ValueError", refuses,
                         "unknown types (7, 9), an empty frame, bad JSON, and a namespace "
                         "without its ',' before the payload."))
    return summary(results, "decode_frame")

