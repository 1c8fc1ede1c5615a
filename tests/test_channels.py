"""Chapter 5's channel layer: the Phoenix V2 frames, presence and the router (pure), the
server with the course's client, and the official ``phoenix`` npm client in Node."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import websockets

from nodejs import NodeLines
from course.net.channels import Rooms, start_channels
from course.net.channels_client import ChannelClient
from course.net.fanout import stalled_reader
from course.protocol import Opcode, encode_frame
from course.wire import presence
from course.wire.channels import ChannelSession, JoinRoom, LeaveRoom, Say, Send, Typing, room_of
from course.wire.chat import HISTORY_SIZE, MAX_FRAME_BYTES, MAX_TEXT_CHARS
from course.wire.phoenix import BadFrame, Event, Message, decode, encode, error, ok, push

ROOT = Path(__file__).resolve().parent.parent


def run(make_coro, timeout: float = 10):
    """Run a test coroutine in a fresh loop, bounded."""
    return asyncio.run(asyncio.wait_for(make_coro(), timeout))


# --- the V2 serializer ------------------------------------------------------------------------

def test_serializer_round_trip_and_exact_bytes():
    join = Message("1", "1", "room:lobby", "phx_join", {"name": "adà"})
    assert decode(encode(join)) == join
    assert encode(join) == '["1","1","room:lobby","phx_join",{"name":"adà"}]'
    assert decode(encode(join).encode()) == join  # bytes are UTF-8
    beat = decode('[null,"3","phoenix","heartbeat",{}]')
    assert (beat.join_ref, beat.ref, beat.event) == (None, "3", Event.HEARTBEAT.value)
    assert encode(ok(beat)) == '[null,"3","phoenix","phx_reply",{"status":"ok","response":{}}]'
    assert encode(error(Message(None, "5", "x:y", "e"), "unmatched topic")) == (
        '[null,"5","x:y","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]')
    assert encode(push("room:lobby", Event.PRESENCE_DIFF, {"joins": {}, "leaves": {}})) == (
        '[null,null,"room:lobby","presence_diff",{"joins":{},"leaves":{}}]')


@pytest.mark.parametrize("data, why", [
    ("not json", "not JSON"),
    ("[" * 100_000, "not JSON"),
    (b"\xff\xfe", "not UTF-8"),
    ('{"topic": "room:lobby"}', "5 elements"),
    ('["1","1","room:lobby","phx_join"]', "5 elements"),
    ('["1","1","room:lobby","phx_join",{},6]', "5 elements"),
    ('[1,"1","room:lobby","phx_join",{}]', "join_ref must be a string or null"),
    ('["1",2,"room:lobby","phx_join",{}]', "ref must be a string or null"),
    ('["1","1","","phx_join",{}]', "topic must be a non-empty string"),
    ('["1","1",["room"],"phx_join",{}]', "topic must be a non-empty string"),
    ('["1","1","room:lobby",7,{}]', "event must be a non-empty string"),
    ('["1","1","room:lobby","phx_join","hi"]', "payload must be a JSON object"),
    ('["1","1","room:lobby","phx_join",null]', "payload must be a JSON object"),
])
def test_decode_refuses_malformed_frames(data, why):
    with pytest.raises(BadFrame, match=why):
        decode(data)


def test_encode_refuses_what_json_cannot_hold():
    with pytest.raises(BadFrame):
        encode(Message(None, None, "room:a", "x", {"bad": object()}))


# --- presence ----------------------------------------------------------------------------------

def test_presence_two_tabs_of_one_user_count_once():
    state: presence.State = {}
    steps = [("ada", "p1"), ("bob", "p2"), ("ada", "p3")]
    for key, ref in steps:
        diff = presence.join(state, key, presence.meta(ref))
        assert diff == {"joins": {key: {"metas": [{"phx_ref": ref}]}}, "leaves": {}}
        state = presence.apply_diff(state, diff)
    assert presence.keys(state) == ["ada", "bob"]
    assert presence.count(state) == {"ada": 2, "bob": 1}

    before = json.dumps(state, sort_keys=True)
    diff = presence.leave(state, "ada", "p1")       # one of ada's tabs closes
    assert diff == {"joins": {}, "leaves": {"ada": {"metas": [{"phx_ref": "p1"}]}}}
    after = presence.apply_diff(state, diff)
    assert json.dumps(state, sort_keys=True) == before  # arguments are never modified
    assert presence.count(after) == {"ada": 1, "bob": 1}
    after = presence.apply_diff(after, presence.leave(after, "ada", "p3"))
    assert presence.keys(after) == ["bob"]           # her last tab: she is gone


def test_presence_diff_rules_match_phoenix_js():
    state = {"ada": {"metas": [{"phx_ref": "p1", "online_at": 1}]}}
    # a join that repeats a ref replaces that meta (syncDiff dedupes by phx_ref)
    again = presence.apply_diff(state, {"joins": {"ada": {"metas": [{"phx_ref": "p1", "online_at": 2}]}},
                                        "leaves": {}})
    assert again == {"ada": {"metas": [{"phx_ref": "p1", "online_at": 2}]}}
    # joins apply before leaves in one diff; unknown leaves change nothing
    both = {"joins": {"bob": {"metas": [{"phx_ref": "p2"}]}},
            "leaves": {"bob": {"metas": [{"phx_ref": "p2"}]}, "zed": {"metas": [{"phx_ref": "p9"}]}}}
    assert presence.apply_diff(state, both) == state
    assert presence.leave(state, "ada", "nope") == {"joins": {}, "leaves": {}}
    with pytest.raises(ValueError, match="already has"):
        presence.join(state, "ada", {"phx_ref": "p1"})
    with pytest.raises(ValueError):
        presence.join(state, "ada", {"online_at": 3})
    for bad in ({"joins": []}, {"added": {}}, {"joins": {"ada": {"metas": "p1"}}}):
        with pytest.raises(ValueError):
            presence.apply_diff(state, bad)


# --- the router (pure) -------------------------------------------------------------------------

def frame(join_ref, ref, topic, event, payload) -> str:
    return json.dumps([join_ref, ref, topic, event, payload])


def only_reply(actions) -> dict:
    assert len(actions) == 1 and isinstance(actions[0], Send), actions
    message = actions[0].message
    assert message.event == "phx_reply"
    return {"ref": message.ref, "topic": message.topic, **message.payload}


def test_router_join_push_typing_leave():
    s = ChannelSession()
    [join] = s.receive(frame("1", "1", "room:lobby", "phx_join", {"name": " ada "}))
    assert isinstance(join, JoinRoom)
    assert (join.topic, join.room, join.name, join.join_ref) == ("room:lobby", "lobby", "ada", "1")
    [say] = s.receive(frame("1", "2", "room:lobby", "new_msg", {"body": "hi"}))
    assert isinstance(say, Say) and (say.room, say.body, say.request.ref) == ("lobby", "hi", "2")
    assert s.receive(frame("1", "3", "room:lobby", "typing", {})) == [Typing("room:lobby", "lobby", True)]
    assert s.receive(frame("1", "4", "room:lobby", "typing", {"typing": False})) == [
        Typing("room:lobby", "lobby", False)]
    leave, reply = s.receive(frame("1", "5", "room:lobby", "phx_leave", {}))
    assert leave == LeaveRoom("room:lobby", "lobby")
    assert reply.message == Message("1", "5", "room:lobby", "phx_reply", {"status": "ok", "response": {}})
    assert s.joined == {}


def test_router_heartbeat_and_rejoin_and_close():
    s = ChannelSession()
    assert only_reply(s.receive('[null,"9","phoenix","heartbeat",{}]')) == {
        "ref": "9", "topic": "phoenix", "status": "ok", "response": {}}
    assert only_reply(s.receive('[null,"10","phoenix","shout",{}]'))["response"]["reason"] == "unknown event"
    s.receive(frame("1", "1", "room:a", "phx_join", {"name": "ada"}))
    s.receive(frame("2", "2", "room:b", "phx_join", {"name": "ada"}))
    again = s.receive(frame("3", "3", "room:a", "phx_join", {"name": "ada"}))
    assert [type(a) for a in again] == [LeaveRoom, JoinRoom] and s.joined["room:a"] == "3"
    assert sorted(a.room for a in s.close()) == ["a", "b"] and s.joined == {}


@pytest.mark.parametrize("data, reason, detail", [
    (frame("1", "1", "lobby", "phx_join", {"name": "ada"}), "unmatched topic", "room:<name>"),
    (frame("1", "1", "room:has space", "phx_join", {"name": "ada"}), "unmatched topic", "no channel"),
    (frame(None, "2", "room:lobby", "new_msg", {"body": "hi"}), "unmatched topic", "join room:lobby"),
    (frame(None, "2", "users:1", "new_msg", {"body": "hi"}), "unmatched topic", "no channel"),
    (frame("1", "1", "room:lobby", "phx_join", {}), "bad payload", '"name" must be a string'),
    (frame("1", "1", "room:lobby", "phx_join", {"name": "  "}), "bad payload", "empty"),
    (frame("1", "1", "room:lobby", "phx_join", {"name": "n" * 33}), "bad payload", "too long"),
])
def test_router_refuses_joins_and_events_before_join(data, reason, detail):
    s = ChannelSession()
    reply = only_reply(s.receive(data))
    assert reply["status"] == "error" and reply["response"]["reason"] == reason
    assert detail in reply["response"]["detail"]
    assert reply["ref"] == json.loads(data)[1]
    assert s.joined == {}


@pytest.mark.parametrize("event, payload, reason, detail", [
    ("new_msg", {}, "bad payload", '"body" must be a string'),
    ("new_msg", {"body": 5}, "bad payload", '"body" must be a string'),
    ("new_msg", {"body": " \n"}, "bad payload", "empty"),
    ("new_msg", {"body": "x" * (MAX_TEXT_CHARS + 1)}, "bad payload", "too long"),
    ("typing", {"typing": "yes"}, "bad payload", "true or false"),
    ("shout", {}, "unknown event", "knows phx_leave"),
])
def test_router_refuses_bad_events_on_a_joined_topic(event, payload, reason, detail):
    s = ChannelSession()
    s.receive(frame("1", "1", "room:lobby", "phx_join", {"name": "ada"}))
    reply = only_reply(s.receive(frame("1", "2", "room:lobby", event, payload)))
    assert (reply["status"], reply["response"]["reason"], reply["ref"]) == ("error", reason, "2")
    assert detail in reply["response"]["detail"]
    assert s.joined == {"room:lobby": "1"}  # still joined
    [say] = s.receive(frame("1", "3", "room:lobby", "new_msg", {"body": "x" * MAX_TEXT_CHARS}))
    assert isinstance(say, Say)


def test_router_refuses_a_stale_join_ref():
    s = ChannelSession()
    s.receive(frame("1", "1", "room:lobby", "phx_join", {"name": "ada"}))
    s.receive(frame("4", "4", "room:lobby", "phx_join", {"name": "ada"}))
    reply = only_reply(s.receive(frame("1", "5", "room:lobby", "new_msg", {"body": "old"})))
    assert reply["response"]["reason"] == "stale join_ref"


def test_router_answers_malformed_frames():
    s = ChannelSession()
    # a 5-array with a usable ref and topic: an error reply to that ref
    reply = only_reply(s.receive('["1","7","room:lobby","new_msg","hi"]'))
    assert (reply["ref"], reply["status"], reply["response"]["reason"]) == ("7", "error", "malformed frame")
    assert "payload must be a JSON object" in reply["response"]["detail"]
    # nothing to reply to: phx_error on topic "phoenix"
    for data in ("not json", '{"a": 1}', '[1, 2]', "[" * 50_000):
        [send] = s.receive(data)
        m = send.message
        assert (m.join_ref, m.ref, m.topic, m.event) == (None, None, "phoenix", "phx_error")
        assert m.payload["reason"] == "malformed frame" and m.payload["detail"]


def test_room_of():
    assert room_of("room:lobby") == "lobby"
    assert [room_of(t) for t in ("room:", "room:a:b", "lobby", "room:" + "x" * 33)] == [None] * 4


# --- rooms, without the network ----------------------------------------------------------------

def test_rooms_history_broadcast_typing_and_presence_order():
    rooms = Rooms()
    got: dict[str, list] = {"a": [], "b": [], "c": []}

    def member(name):
        return lambda event, payload: got[name].append((event, payload))

    lobby = rooms.room("lobby")
    assert rooms.room("lobby") is lobby
    for i in range(HISTORY_SIZE + 5):
        lobby.say(None, f"m{i}", "kernel")
    welcomed = []
    history = lobby.join("a", "ada", member("a"), welcome=lambda h: welcomed.append(len(got["a"])))
    assert len(history) == HISTORY_SIZE and history[0]["body"] == "m5" and history[-1]["id"] == 55
    assert welcomed == [0]  # welcome comes before any presence
    assert [e for e, _ in got["a"]] == ["presence_state", "presence_diff"]
    lobby.join("b", "ada", member("b"))   # a second tab of ada
    lobby.join("c", "cy", member("c"))
    assert lobby.names() == ["ada", "cy"] and presence.count(lobby.presence) == {"ada": 2, "cy": 1}
    for name in got:
        got[name].clear()
    message = lobby.say("c", "hello")
    assert message == {"id": 56, "name": "cy", "body": "hello"}
    lobby.typing("c", True)
    assert got["c"] == [("new_msg", message)]                     # typing: not to the sender
    assert got["a"] == got["b"] == [("new_msg", message), ("typing", {"name": "cy", "typing": True})]
    assert rooms.room("other").say(None, "x")["id"] == 57         # ids increase across rooms
    assert lobby.leave("a") and not lobby.leave("a")
    assert lobby.names() == ["ada", "cy"]                         # her other tab is still here


# --- the server with the course's client -------------------------------------------------------

def lobby_events(client: ChannelClient, event: str, timeout: float = 3.0):
    """The next event named ``event`` (others skipped)."""
    async def wait():
        while True:
            message = await client.next_event(timeout)
            if message.event == event:
                return message
    return wait()


async def events_until(client: ChannelClient, event: str, timeout: float = 3.0) -> list:
    """Every event up to and including the next one named ``event``."""
    seen = []
    while not seen or seen[-1].event != event:
        seen.append(await client.next_event(timeout))
    return seen


def test_server_join_history_push_broadcast_typing():
    async def scenario():
        async with await start_channels() as server:
            assert server.url.endswith("/socket/websocket")
            server.post("lobby", "earlier")
            ada = await ChannelClient.connect(server.url)
            bob = await ChannelClient.connect(server.url)
            reply = await ada.join("room:lobby", {"name": "ada"})
            assert reply["status"] == "ok"
            assert [(m["name"], m["body"]) for m in reply["response"]["history"]] == [("kernel", "earlier")]
            assert (await bob.join("room:lobby", {"name": "bob"}))["status"] == "ok"
            reply = await ada.push("room:lobby", "new_msg", {"body": " hi "})
            assert reply == {"status": "ok", "response": {"id": 2}}
            for client in (ada, bob):  # everybody, the sender included
                message = await lobby_events(client, "new_msg")
                assert message.payload == {"id": 2, "name": "ada", "body": "hi"}
                assert message.topic == "room:lobby" and message.ref is None
            await bob.cast("room:lobby", "typing", {})
            assert (await lobby_events(ada, "typing")).payload == {"name": "bob", "typing": True}
            # bob, the sender, gets no typing: nothing arrives before his own next message
            await bob.push("room:lobby", "new_msg", {"body": "again"})
            before = await events_until(bob, "new_msg")
            assert [m.event for m in before] == ["new_msg"] and before[0].payload["body"] == "again"
            await ada.cast("room:lobby", "typing", {"typing": False})
            assert (await lobby_events(bob, "typing")).payload == {"name": "ada", "typing": False}
            await ada.close(), await bob.close()
    run(scenario)


def test_server_presence_two_tabs_count_once_and_leave():
    async def scenario():
        async with await start_channels() as server:
            watcher = await ChannelClient.connect(server.url)
            await watcher.join("room:lobby", {"name": "bob"})
            state = (await lobby_events(watcher, "presence_state")).payload
            tabs = [await ChannelClient.connect(server.url) for _ in range(2)]
            for tab in tabs:
                await tab.join("room:lobby", {"name": "ada"})
            seen = presence.apply_diff(state, (await lobby_events(watcher, "presence_diff")).payload)
            while presence.count(seen) != {"ada": 2, "bob": 1}:
                seen = presence.apply_diff(seen, (await lobby_events(watcher, "presence_diff")).payload)
            assert presence.keys(seen) == ["ada", "bob"]        # two tabs, one user
            third = await ChannelClient.connect(server.url)
            await third.join("room:lobby", {"name": "cy"})
            full = (await lobby_events(third, "presence_state")).payload
            assert presence.count(full) == {"ada": 2, "bob": 1, "cy": 1}
            await tabs[0].close()                                # one of ada's tabs closes
            diff = (await lobby_events(watcher, "presence_diff")).payload
            while not diff["leaves"]:
                seen = presence.apply_diff(seen, diff)
                diff = (await lobby_events(watcher, "presence_diff")).payload
            seen = presence.apply_diff(seen, diff)
            assert list(diff["leaves"]) == ["ada"] and "ada" in seen
            await tabs[1].close()
            seen = presence.apply_diff(seen, (await lobby_events(watcher, "presence_diff")).payload)
            assert presence.keys(seen) == ["bob", "cy"]
            assert server.rooms.room("lobby").names() == ["bob", "cy"]
            await watcher.close(), await third.close()
    run(scenario)


def test_server_drops_a_silent_client_and_its_presence_leaves():
    async def scenario():
        async with await start_channels(heartbeat_timeout=0.6) as server:
            silent = await ChannelClient.connect(server.url, heartbeat_interval=None)
            alive = await ChannelClient.connect(server.url, heartbeat_interval=0.15)
            await silent.join("room:lobby", {"name": "zed"})
            await alive.join("room:lobby", {"name": "bob"})
            start = asyncio.get_running_loop().time()
            await silent.wait_closed(3)
            waited = asyncio.get_running_loop().time() - start
            assert silent.close_code == 1000 and 0.3 < waited < 2.5, (silent.close_code, waited)
            assert server.timed_out == 1
            diff = (await lobby_events(alive, "presence_diff")).payload
            while "zed" not in diff["leaves"]:
                diff = (await lobby_events(alive, "presence_diff")).payload
            assert server.rooms.room("lobby").names() == ["bob"]
            await asyncio.sleep(0.5)  # past the timeout again: heartbeats keep bob in
            assert (await alive.push("room:lobby", "new_msg", {"body": "still here"}))["status"] == "ok"
            await alive.close(), await silent.close()
    run(scenario)


def test_server_errors_keep_the_connection_and_the_others():
    async def scenario():
        async with await start_channels() as server:
            ada = await ChannelClient.connect(server.url)
            bob = await ChannelClient.connect(server.url)
            await bob.join("room:lobby", {"name": "bob"})
            # unknown topic, event before join, bad payload: error replies to the ref
            for topic, event, payload, reason in [
                    ("users:1", "phx_join", {"name": "ada"}, "unmatched topic"),
                    ("room:lobby", "new_msg", {"body": "early"}, "unmatched topic"),
                    ("room:lobby", "phx_join", {"nick": "ada"}, "bad payload")]:
                reply = await ada.request(topic, event, payload)
                assert (reply["status"], reply["response"]["reason"]) == ("error", reason)
            await ada.join("room:lobby", {"name": "ada"})
            reply = await ada.push("room:lobby", "new_msg", {"body": ""})
            assert reply["response"]["reason"] == "bad payload"
            # bad JSON and binary frames: phx_error on topic "phoenix"
            for data in ("{not json", b"\x00\x01"):
                await ada.send_raw(data)
                message = await lobby_events(ada, "phx_error")
                assert (message.topic, message.payload["reason"]) == ("phoenix", "malformed frame")
            # a 5-array with a bad payload: an error reply to its ref
            await ada.send_raw('["%s","77","room:lobby","new_msg","hi"]' % ada.joined["room:lobby"])
            reply = await lobby_events(ada, "phx_reply")
            assert (reply.ref, reply.payload["status"], reply.payload["response"]["reason"]) == (
                "77", "error", "malformed frame")
            # still joined, and bob hears ada
            assert (await ada.push("room:lobby", "new_msg", {"body": "fine"}))["status"] == "ok"
            assert (await lobby_events(bob, "new_msg")).payload["body"] == "fine"
            # too big: 1009 for ada only
            await ada.send_raw(json.dumps([None, "99", "room:lobby", "new_msg",
                                           {"body": "x" * MAX_FRAME_BYTES}]))
            await ada.wait_closed(3)
            assert ada.close_code == 1009
            assert (await bob.push("room:lobby", "new_msg", {"body": "bob lives"}))["status"] == "ok"
            diff = (await lobby_events(bob, "presence_diff")).payload
            while "ada" not in diff["leaves"]:
                diff = (await lobby_events(bob, "presence_diff")).payload
            await bob.close(), await ada.close()
    run(scenario)


def test_client_queue_is_bounded_and_iterable():
    async def scenario():
        async with await start_channels() as server:
            client = await ChannelClient.connect(server.url, max_events=3, heartbeat_interval=0.05)
            await client.join("room:lobby", {"name": "ada"})   # presence_state + presence_diff
            for n in range(5):
                server.post("lobby", f"m{n}")
            await asyncio.sleep(0.3)                           # heartbeats: replies, not events
            assert client.dropped == 4                         # 7 events, the 3 newest kept
            bodies = []
            async with asyncio.timeout(3):
                async for message in client:
                    bodies.append(message.payload["body"])
                    if len(bodies) == 3:
                        break
            assert bodies == ["m2", "m3", "m4"] and not client.closed.is_set()
            await client.close()
    run(scenario)


def test_server_refuses_other_serializer_versions():
    async def scenario():
        async with await start_channels() as server:
            with pytest.raises(websockets.InvalidStatus) as info:
                await ChannelClient.connect(server.url + "?vsn=1.0.0")
            assert info.value.response.status_code == 400
    run(scenario)


def test_server_refuses_foreign_origins():
    async def scenario():
        async with await start_channels() as server:
            with pytest.raises(websockets.InvalidStatus) as info:
                await websockets.connect(server.url, origin="http://evil.example")
            assert info.value.response.status_code == 403
            own = f"http://127.0.0.1:{server.port}"
            async with websockets.connect(server.url, origin=own) as ws:
                await ws.send('[null,"1","phoenix","heartbeat",{}]')
                assert json.loads(await asyncio.wait_for(ws.recv(), 3))[3] == "phx_reply"
    run(scenario)



def test_server_rate_limit_answers_then_closes_1008_and_joins_are_bounded():
    async def scenario():
        async with await start_channels(rate=1, burst=3, strikes=3, max_joins=2) as server:
            async with websockets.connect(server.url) as ws:
                for ref in range(1, 7):
                    await ws.send(f'[null,"{ref}","phoenix","heartbeat",{{}}]')
                replies = []
                with pytest.raises(websockets.ConnectionClosedError):
                    while True:
                        replies.append(json.loads(await asyncio.wait_for(ws.recv(), 3)))
                statuses = [(r[1], r[4]["status"], r[4]["response"].get("reason")) for r in replies]
                assert statuses == [("1", "ok", None), ("2", "ok", None), ("3", "ok", None),
                                    ("4", "error", "rate limited"), ("5", "error", "rate limited")]
                assert ws.close_code == 1008 and ws.close_reason == "rate limit exceeded"
            async with websockets.connect(server.url) as ws:   # a new connection, a new bucket
                for ref, room in [("1", "a"), ("2", "b"), ("3", "c")]:
                    await ws.send(json.dumps([ref, ref, f"room:{room}", "phx_join", {"name": "ada"}]))
                    await asyncio.sleep(0.4)                        # stay under the rate
                answers = []
                async with asyncio.timeout(5):
                    while len(answers) < 3:
                        frame = json.loads(await ws.recv())
                        if frame[3] == "phx_reply":
                            answers.append(frame)
                assert [a[4]["status"] for a in answers] == ["ok", "ok", "error"]
                assert answers[2][4]["response"]["reason"] == "too many joins"
    run(scenario)

def test_a_member_that_stops_reading_is_dropped_and_the_room_goes_on():
    async def scenario():
        # queue_size above one burst (50) and a 1 s grace: only a reader that stays stuck is
        # slow, never bob on a loaded machine between two of his reads
        async with await start_channels(queue_size=64, grace=1.0) as server:
            bob = await ChannelClient.connect(server.url)
            await bob.join("room:lobby", {"name": "bob"})
            frozen = await stalled_reader("127.0.0.1", server.port, "/socket/websocket?vsn=2.0.0")
            try:
                join = b'["1","1","room:lobby","phx_join",{"name":"frozen"}]'
                frozen.sendall(encode_frame(Opcode.TEXT, join, mask=b"\x01\x02\x03\x04"))
                async with asyncio.timeout(3):
                    while server.rooms.room("lobby").names() != ["bob", "frozen"]:
                        await asyncio.sleep(0.01)
                # the kernel posts in bursts until the frozen member's buffers (kernel socket
                # buffers of a few MB, then its queue) are full and it is dropped
                body = "x" * MAX_TEXT_CHARS
                ids: list[int] = []
                i = 0
                async with asyncio.timeout(25):
                    while "frozen" in server.rooms.room("lobby").names():
                        for _ in range(50):
                            server.post("lobby", body)
                        i += 50
                        while len(ids) < i - 50:  # bob reads along, a burst behind
                            message = await bob.next_event()
                            if message.event == "new_msg":
                                ids.append(message.payload["id"])
                    assert server.fanout.dropped and len(server.fanout) == 1
                    # bob got every message, in order, and still talks
                    while len(ids) < i:
                        message = await bob.next_event()
                        if message.event == "new_msg":
                            ids.append(message.payload["id"])
                assert ids == list(range(1, i + 1)) and bob.dropped == 0
                assert (await bob.push("room:lobby", "new_msg", {"body": "on"}))["status"] == "ok"
            finally:
                frozen.close()
            await bob.close()
    run(scenario, timeout=40)


def test_command_line_serves_until_sigterm():
    process = subprocess.Popen([sys.executable, "-m", "course.net.channels", "--port", "0"],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("serving on ws://127.0.0.1:") and line.rstrip().endswith("/socket/websocket")
        url = line.split()[-1]

        async def join():
            async with await ChannelClient.connect(url) as client:
                return await client.join("room:cli", {"name": "ada"})
        assert run(join)["status"] == "ok"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read().strip() == "stopped"
    finally:
        process.kill()
        process.wait(timeout=5)


# --- the official phoenix client, in Node ------------------------------------------------------

def test_official_phoenix_client_joins_pushes_hears_presence_and_rejoins(node_modules):
    async def scenario():
        server = await start_channels()
        port = server.port
        server.post("lobby", "before you came")
        bob = await ChannelClient.connect(server.url, heartbeat_interval=1)
        await bob.join("room:lobby", {"name": "bob"})
        node = await NodeLines.start(node_modules, "phoenix_client.js",
                                     f"ws://127.0.0.1:{port}/socket", "ada")
        process = node.process
        try:
            joined = await node.expect("joined")
            assert [m["body"] for m in joined["response"]["history"]] == ["before you came"]
            both = [{"name": "ada", "tabs": 1}, {"name": "bob", "tabs": 1}]
            await node.expect("presence", lambda line: line["names"] == both)

            await node.send("push hello from node")
            pushed = await node.expect("push_ok")
            assert pushed["response"]["id"] == 2
            heard = await lobby_events(bob, "new_msg")
            assert heard.payload == {"id": 2, "name": "ada", "body": "hello from node"}

            await bob.push("room:lobby", "new_msg", {"body": "hi from python"})
            got = await node.expect("new_msg", lambda line: line["payload"]["name"] == "bob")
            assert got["payload"]["body"] == "hi from python" and got["payload"]["id"] == 3

            await bob.close()
            await node.expect("presence", lambda line: line["names"] == [{"name": "ada", "tabs": 1}])

            # the server restarts on the same port: the client reconnects and rejoins by itself
            server.close()
            await server.wait_closed()
            await node.expect("socket_close")
            server = await start_channels("127.0.0.1", port)
            rejoined = await node.expect("joined")
            assert rejoined["response"]["history"] == []        # a new server, a new room
            await node.expect("presence", lambda line: line["names"] == [{"name": "ada", "tabs": 1}])
            assert server.rooms.room("lobby").names() == ["ada"]
            await node.send("push after restart")
            assert (await node.expect("push_ok"))["response"]["id"] == 1
            await node.send("quit")
            await node.expect("left")
            assert await asyncio.wait_for(process.wait(), 5) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            server.close()
            await server.wait_closed()
    run(scenario, timeout=30)
