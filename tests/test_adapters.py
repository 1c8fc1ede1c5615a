"""Chapter 5's protocol adapters: Action Cable's frames (pure), the ``/cable`` endpoint with a
raw ``websockets`` client, the Socket.IO bridge with python-socketio's client, the official
``@rails/actioncable`` and ``socket.io-client`` in Node, and one message crossing Phoenix,
Action Cable and Socket.IO."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import socketio
import websockets

from nodejs import NodeLines
from course.net.channels import ChannelServer, start_channels
from course.net.channels_client import ChannelClient
from course.net.fanout import stalled_reader
from course.protocol import Opcode, encode_frame
from course.wire import actioncable as cable
from course.wire.actioncable import (BadCommand, CableSession, Send, Speak, Subscribe, Typing,
                                     Unsubscribe, decode)
from course.wire.chat import MAX_FRAME_BYTES, MAX_TEXT_CHARS

ROOT = Path(__file__).resolve().parent.parent


def run(make_coro, timeout: float = 10):
    """Run a test coroutine in a fresh loop, bounded."""
    return asyncio.run(asyncio.wait_for(make_coro(), timeout))


def ident(room: str = "lobby", name: str = "ada", channel: str = "RoomChannel") -> str:
    """An identifier as ``@rails/actioncable`` spells it (``JSON.stringify``: no spaces)."""
    return json.dumps({"channel": channel, "room": room, "name": name}, separators=(",", ":"))


def command(command: str, identifier: str, data: dict | None = None) -> str:
    frame = {"command": command, "identifier": identifier}
    if data is not None:
        frame["data"] = json.dumps(data)
    return json.dumps(frame)


# --- Action Cable's frames (pure) ----------------------------------------------------------------

def test_server_frames_are_byte_exact():
    i = ident()
    assert cable.welcome() == '{"type":"welcome"}'
    assert cable.ping(1795839214.9) == '{"type":"ping","message":1795839214}'
    assert cable.confirm(i) == json.dumps({"identifier": i, "type": "confirm_subscription"},
                                          separators=(",", ":"))
    assert cable.confirm(i).startswith('{"identifier":"{\\"channel\\":\\"RoomChannel\\",')
    assert cable.reject("x") == '{"identifier":"x","type":"reject_subscription"}'
    assert cable.transmit("x", {"body": "hé"}) == '{"identifier":"x","message":{"body":"hé"}}'
    assert cable.disconnect("server_restart", True) == (
        '{"type":"disconnect","reason":"server_restart","reconnect":true}')
    assert json.loads(cable.error("invalid command", "why")) == {
        "type": "error", "identifier": "", "reason": "invalid command", "detail": "why"}
    assert json.loads(cable.error_message("x", "bad payload", "why")) == {
        "identifier": "x", "message": {"event": "error", "reason": "bad payload", "detail": "why"}}


def test_decode_double_encoded_identifier_and_data():
    i = ident()
    # what @rails/actioncable sends for perform("speak", {body: "hi"})
    got = decode(json.dumps({"command": "message", "identifier": i,
                             "data": '{"body":"hi","action":"speak"}'}))
    assert got == cable.Command("message", i, {"channel": "RoomChannel", "room": "lobby", "name": "ada"},
                                {"body": "hi", "action": "speak"})
    sub = decode(command("subscribe", i).encode())  # bytes are UTF-8
    assert (sub.command, sub.identifier, sub.data) == ("subscribe", i, {})


@pytest.mark.parametrize("data, why", [
    ("not json", "the frame is not JSON"),
    ("[" * 100_000, "nested too deeply"),
    (b"\xff", "not UTF-8"),
    ('["subscribe"]', "the frame must hold a JSON object, got list"),
    ('{"identifier": "{}"}', "command must be one of subscribe, unsubscribe, message, got None"),
    ('{"command": "publish", "identifier": "{}"}', "got 'publish'"),
    ('{"command": "subscribe"}', "identifier must be a string holding a JSON object, got NoneType"),
    ('{"command": "subscribe", "identifier": {"channel": "RoomChannel"}}', "got dict"),
    ('{"command": "subscribe", "identifier": "{\\"channel\\""}', "identifier is not JSON"),
    ('{"command": "subscribe", "identifier": "[1]"}', "identifier must hold a JSON object, got list"),
    ('{"command": "message", "identifier": "{}"}', "data must be a string holding a JSON object"),
    ('{"command": "message", "identifier": "{}", "data": {"action": "speak"}}', "data must be a string"),
    ('{"command": "message", "identifier": "{}", "data": "speak"}', "data is not JSON"),
])
def test_decode_refuses_malformed_commands(data, why):
    with pytest.raises(BadCommand, match=why) as caught:
        decode(data)
    assert caught.value.reason == "invalid command"


def sent(actions) -> dict:
    assert len(actions) == 1 and isinstance(actions[0], Send), actions
    return json.loads(actions[0].text)


def test_session_subscribe_speak_typing_unsubscribe_close():
    s, i = CableSession(), ident(name=" ada ")
    assert s.receive(command("subscribe", i)) == [Subscribe(i, "lobby", "ada")]
    assert s.receive(command("subscribe", i)) == []              # Rails ignores a repeat too
    assert s.receive(command("message", i, {"body": " hi ", "action": "speak"})) == [Speak(i, "lobby", "hi")]
    assert s.receive(command("message", i, {"action": "typing"})) == [Typing(i, "lobby", True)]
    assert s.receive(command("message", i, {"action": "typing", "typing": False})) == [
        Typing(i, "lobby", False)]
    other = ident("kitchen")
    assert s.receive(command("subscribe", other)) == [Subscribe(other, "kitchen", "ada")]
    assert s.receive(command("unsubscribe", i)) == [Unsubscribe(i, "lobby")]   # no reply frame
    assert s.subscribed == {other: "kitchen"}
    assert s.close() == [Unsubscribe(other, "kitchen")] and s.subscribed == {}


@pytest.mark.parametrize("identifier", [
    ident(channel="ChatChannel"),
    json.dumps({"room": "lobby", "name": "ada"}),
    ident(room="no spaces"), ident(room=""), ident(room="x" * 33),
    json.dumps({"channel": "RoomChannel", "room": 7, "name": "ada"}),
    ident(name=""), ident(name="   "), ident(name="n" * 33),
    json.dumps({"channel": "RoomChannel", "room": "lobby"}),
])
def test_session_rejects_other_channels_and_bad_rooms_or_names(identifier):
    s = CableSession()
    assert sent(s.receive(command("subscribe", identifier))) == {
        "identifier": identifier, "type": "reject_subscription"}
    assert s.subscribed == {}


def test_session_errors_name_the_subscription_or_none():
    s, i = CableSession(), ident()
    # nothing subscribed: an error frame (type "error"), with the identifier as sent or ""
    frame = sent(s.receive(command("message", i, {"action": "speak", "body": "hi"})))
    assert frame == {"type": "error", "identifier": i, "reason": "not subscribed",
                     "detail": f"subscribe to {i} before sending 'message'"}
    assert sent(s.receive(command("unsubscribe", i)))["reason"] == "not subscribed"
    frame = sent(s.receive("{oops"))
    assert (frame["type"], frame["identifier"], frame["reason"]) == ("error", "", "invalid command")
    s.receive(command("subscribe", i))
    # subscribed: an error *message* on that subscription
    for data, reason, detail in [
        ({"action": "shout"}, "unknown action", "not 'shout'"),
        ({"body": "hi"}, "unknown action", "not None"),
        ({"action": "speak"}, "bad payload", '"body" must be a string'),
        ({"action": "speak", "body": "  "}, "bad payload", "is empty"),
        ({"action": "speak", "body": 5}, "bad payload", "must be a string"),
        ({"action": "speak", "body": "x" * (MAX_TEXT_CHARS + 1)}, "bad payload", "too long"),
        ({"action": "typing", "typing": "yes"}, "bad payload", "true or false"),
    ]:
        frame = sent(s.receive(command("message", i, data)))
        assert frame["identifier"] == i and frame["message"]["event"] == "error", frame
        assert frame["message"]["reason"] == reason and detail in frame["message"]["detail"], frame
    bad_data = json.dumps({"command": "message", "identifier": i, "data": "not json"})
    assert sent(s.receive(bad_data))["message"]["reason"] == "invalid command"
    assert s.subscribed == {i: "lobby"}                           # still subscribed


# --- /cable with a raw websockets client ---------------------------------------------------------

class RawCable:
    """An Action Cable connection by hand: JSON frames over ``websockets``."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.pings: list[int] = []

    @classmethod
    async def connect(cls, server: ChannelServer) -> "RawCable":
        ws = await websockets.connect(f"ws://127.0.0.1:{server.port}/cable",
                                      subprotocols=[cable.PROTOCOL, cable.UNSUPPORTED], open_timeout=5)
        assert ws.subprotocol == cable.PROTOCOL
        self = cls(ws)
        assert await self.next() == {"type": "welcome"}
        return self

    async def next(self, timeout: float = 3.0) -> dict:
        """The next frame that is not a ping (pings are recorded)."""
        async with asyncio.timeout(timeout):
            while True:
                frame = json.loads(await self.ws.recv())
                if frame.get("type") != "ping":
                    return frame
                self.pings.append(frame["message"])

    async def until(self, where, timeout: float = 3.0) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.next()
                if where(frame):
                    return frame

    async def send(self, text: str) -> None:
        await self.ws.send(text)

    async def subscribe(self, identifier: str) -> list[dict]:
        """Subscribe; returns the confirmation and the history message."""
        await self.send(command("subscribe", identifier))
        return [await self.next(), await self.next()]


def new_msg(frame: dict) -> bool:
    return frame.get("message", {}).get("event") == "new_msg"


def test_cable_subscribe_history_speak_typing_presence_and_pings():
    async def scenario():
        server = ChannelServer()
        server.cable.ping_interval = 0.2
        async with await server.start():
            server.post("lobby", "earlier")
            ada, bob = await RawCable.connect(server), await RawCable.connect(server)
            a, b = ident(name="ada"), ident(name="bob")
            confirm, history = await ada.subscribe(a)
            assert confirm == {"identifier": a, "type": "confirm_subscription"}
            assert history == {"identifier": a, "message": {"event": "history", "messages": [
                {"id": 1, "name": "kernel", "body": "earlier"}]}}
            assert (await ada.next())["message"] == {"event": "presence", "names": ["ada"]}
            await bob.subscribe(b)
            assert (await ada.next())["message"] == {"event": "presence", "names": ["ada", "bob"]}
            await ada.send(command("message", a, {"body": " hi ", "action": "speak"}))
            for client, identifier in ((ada, a), (bob, b)):   # the sender too
                frame = await client.until(new_msg)
                assert frame == {"identifier": identifier,
                                 "message": {"event": "new_msg", "id": 2, "name": "ada", "body": "hi"}}
            await bob.send(command("message", b, {"action": "typing"}))
            frame = await ada.until(lambda f: f["message"]["event"] == "typing")
            assert frame["message"] == {"event": "typing", "name": "bob", "typing": True}
            await bob.send(command("unsubscribe", b))
            assert (await ada.next())["message"] == {"event": "presence", "names": ["ada"]}
            assert server.rooms.room("lobby").names() == ["ada"]
            await asyncio.sleep(0.5)
            with pytest.raises(TimeoutError):   # bob unsubscribed: only pings arrive
                await bob.next(timeout=0.3)
            assert len(bob.pings) >= 2 and all(isinstance(p, int) for p in bob.pings)
            await ada.ws.close(), await bob.ws.close()
    run(scenario)


def test_cable_handshake_needs_the_subprotocol_and_a_good_origin():
    async def scenario():
        async with await start_channels() as server:
            url = f"ws://127.0.0.1:{server.port}/cable"
            for protocols in (None, ["actioncable-unsupported"], ["graphql-ws"]):
                with pytest.raises(websockets.InvalidStatus) as refused:
                    await websockets.connect(url, subprotocols=protocols, open_timeout=5)
                assert refused.value.response.status_code == 400
                assert b"actioncable-v1-json" in refused.value.response.body
            with pytest.raises(websockets.InvalidStatus) as refused:
                await websockets.connect(url, subprotocols=[cable.PROTOCOL], open_timeout=5,
                                         origin="http://evil.example")
            assert refused.value.response.status_code == 403
    run(scenario)


def test_cable_bad_input_gets_errors_and_nobody_is_disturbed():
    async def scenario():
        async with await start_channels() as server:
            ada, bob = await RawCable.connect(server), await RawCable.connect(server)
            a, b = ident(name="ada"), ident(name="bob")
            await ada.subscribe(a), await bob.subscribe(b)
            for bad, reason in [("not json", "invalid command"),
                                ('{"command":"explode","identifier":"{}"}', "invalid command"),
                                (command("message", ident(room="nope")), "invalid command"),
                                (command("message", ident(room="other"), {"action": "speak"}), "not subscribed")]:
                await ada.send(bad)
                frame = await ada.until(lambda f: f.get("type") == "error")
                assert frame["reason"] == reason, frame
            await ada.ws.send(b"\x00\x01")
            assert (await ada.until(lambda f: f.get("type") == "error"))["detail"].startswith("binary")
            await ada.send(command("subscribe", ident(channel="AdminChannel")))
            assert (await ada.until(lambda f: "type" in f))["type"] == "reject_subscription"
            await ada.send(command("message", a, {"action": "speak", "body": ""}))
            frame = await ada.until(lambda f: f.get("message", {}).get("event") == "error")
            assert frame["identifier"] == a and frame["message"]["reason"] == "bad payload"
            # ada's connection and subscription still work, and bob heard none of it
            await ada.send(command("message", a, {"action": "speak", "body": "still here"}))
            frame = await bob.until(lambda f: f.get("message", {}).get("event") != "presence")
            assert frame["message"]["body"] == "still here"
            # a frame above 64 KiB closes that connection with 1009, and only that one
            await ada.send(command("message", a, {"action": "speak", "body": "x" * MAX_FRAME_BYTES}))
            with pytest.raises(websockets.ConnectionClosed):
                await ada.until(lambda f: False)     # ada's own echo of "still here", then the close
            assert ada.ws.close_code == 1009
            assert (await bob.until(lambda f: f.get("message", {}).get("event") == "presence")
                    )["message"]["names"] == ["bob"]
            assert server.rooms.room("lobby").names() == ["bob"]
            await bob.ws.close()
    run(scenario)


def test_cable_member_that_stops_reading_is_dropped_and_the_room_goes_on():
    async def scenario():
        # queue_size above one burst (50) and a 1 s grace: only a reader that stays stuck is
        # slow, never bob on a loaded machine between two of his reads
        async with await start_channels(queue_size=64, grace=1.0) as server:
            bob = await RawCable.connect(server)
            await bob.subscribe(ident(name="bob"))
            frozen = await stalled_reader("127.0.0.1", server.port, "/cable",
                                          headers=[("Sec-WebSocket-Protocol", cable.PROTOCOL)])
            try:
                frozen.sendall(encode_frame(Opcode.TEXT, command("subscribe", ident(name="frozen")).encode(),
                                            mask=b"\x01\x02\x03\x04"))
                async with asyncio.timeout(3):
                    while server.rooms.room("lobby").names() != ["bob", "frozen"]:
                        await asyncio.sleep(0.01)
                body, ids, sent, peak = "x" * MAX_TEXT_CHARS, [], 0, 0
                async with asyncio.timeout(25):
                    while "frozen" in server.rooms.room("lobby").names():
                        for _ in range(50):
                            sent = server.post("lobby", body)["id"]
                        peak = max([peak, *(o.load().queued for o in server.fanout.clients.values())])
                        while not ids or ids[-1] < sent - 50:   # bob reads along, a burst behind
                            ids.append((await bob.until(new_msg))["message"]["id"])
                    assert len(server.fanout.dropped) == 1 and len(server.fanout) == 1
                    assert peak >= 64    # frames waited in the fanout's queue, not in the socket
                    while ids[-1] < sent:
                        ids.append((await bob.until(new_msg))["message"]["id"])
                assert ids == list(range(1, sent + 1))          # every message, in order
            finally:
                frozen.close()
            await bob.ws.close()
    run(scenario, timeout=40)


# --- Socket.IO with python-socketio's client -----------------------------------------------------

async def sio_client(server: ChannelServer, events: list | None = None) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    if events is not None:
        for name in ("new_msg", "typing", "presence"):
            client.on(name, lambda payload, name=name: events.append((name, payload)))
    await client.connect(f"http://127.0.0.1:{server.port}", wait_timeout=5)
    return client


async def wait_for(events: list, where, timeout: float = 3.0, since: int = 0):
    """The first of ``events[since:]`` that matches ``where`` (the list grows meanwhile)."""
    async with asyncio.timeout(timeout):
        while True:
            for event in events[since:]:
                if where(event):
                    return event
            await asyncio.sleep(0.01)


def test_socketio_join_ack_history_messages_typing_and_leave_on_disconnect():
    async def scenario():
        async with await start_channels() as server:
            server.post("lobby", "earlier")
            seen_a, seen_b = [], []
            ada, bob = await sio_client(server, seen_a), await sio_client(server, seen_b)
            ack = await ada.call("join", {"room": "lobby", "name": "ada"}, timeout=5)
            assert ack == {"ok": True, "room": "lobby",
                           "history": [{"id": 1, "name": "kernel", "body": "earlier"}]}
            assert (await bob.call("join", {"room": "lobby", "name": "bob"}, timeout=5))["ok"]
            await wait_for(seen_a, lambda e: e == ("presence", {"names": ["ada", "bob"]}))
            assert await ada.call("new_msg", {"body": " hi "}, timeout=5) == {"ok": True, "id": 2}
            for seen in (seen_a, seen_b):
                assert await wait_for(seen, lambda e: e[0] == "new_msg") == (
                    "new_msg", {"id": 2, "name": "ada", "body": "hi"})
            bodies = [f"burst {n}" for n in range(20)]
            for body in bodies:
                await bob.emit("new_msg", {"body": body})
            await wait_for(seen_a, lambda e: e[1].get("body") == bodies[-1])
            assert [e[1]["body"] for e in seen_a if e[0] == "new_msg"][1:] == bodies  # in order
            assert await bob.call("typing", {}, timeout=5) == {"ok": True}
            assert await wait_for(seen_a, lambda e: e[0] == "typing") == (
                "typing", {"name": "bob", "typing": True})
            assert not [e for e in seen_b if e[0] == "typing"]          # not to the typist
            mark = len(seen_a)
            await bob.disconnect()
            await wait_for(seen_a, lambda e: e == ("presence", {"names": ["ada"]}), since=mark)
            assert server.rooms.room("lobby").names() == ["ada"]
            await ada.disconnect()
    run(scenario)


def test_socketio_bad_payloads_get_an_error_ack_and_nobody_is_disturbed():
    async def scenario():
        async with await start_channels() as server:
            seen_b = []
            ada, bob = await sio_client(server), await sio_client(server, seen_b)
            await bob.call("join", {"room": "lobby", "name": "bob"}, timeout=5)
            assert await ada.call("new_msg", {"body": "hi"}, timeout=5) == {
                "ok": False, "reason": "not joined", "detail": "send join before new_msg"}
            for event, payload, reason, detail in [
                ("join", "lobby", "bad payload", "must be an object, got str"),
                ("join", None, "bad payload", "must be an object, got NoneType"),
                ("join", {"room": "a b", "name": "ada"}, "bad payload", '"room" must be 1 to 32'),
                ("join", {"room": "lobby"}, "bad payload", '"name" must be a string'),
                ("typing", {}, "not joined", "before typing"),
                ("shout", {}, "unknown event", "not 'shout'"),
            ]:
                ack = await ada.call(event, payload, timeout=5)
                assert ack["ok"] is False and ack["reason"] == reason and detail in ack["detail"], ack
            await ada.call("join", {"room": "lobby", "name": "ada"}, timeout=5)
            for payload, detail in [({"text": "hi"}, '"body" must be'), ([1], "got list"),
                                    ({"body": "x" * (MAX_TEXT_CHARS + 1)}, "too long")]:
                ack = await ada.call("new_msg", payload, timeout=5)
                assert ack["reason"] == "bad payload" and detail in ack["detail"], ack
            assert (await ada.call("typing", {"typing": "yes"}, timeout=5))["reason"] == "bad payload"
            assert (await ada.call("new_msg", {"body": "fine"}, timeout=5))["ok"]
            message = await wait_for(seen_b, lambda e: e[0] == "new_msg")
            assert [e for e in seen_b if e[0] == "new_msg"] == [message]  # only the good one
            assert message[1]["body"] == "fine"
            await ada.disconnect(), await bob.disconnect()
    run(scenario)


def test_socketio_oversized_message_closes_only_that_socket_and_foreign_origins_are_refused():
    async def scenario():
        async with await start_channels() as server:
            seen_b = []
            big, bob = await sio_client(server), await sio_client(server, seen_b)
            await big.call("join", {"room": "lobby", "name": "big"}, timeout=5)
            await bob.call("join", {"room": "lobby", "name": "bob"}, timeout=5)
            mark = len(seen_b)
            # above max_http_buffer_size (64 KiB): Engine.IO closes that socket, no ack
            with pytest.raises(socketio.exceptions.TimeoutError):
                await big.call("new_msg", {"body": "x" * MAX_FRAME_BYTES}, timeout=2)
            await wait_for(seen_b, lambda e: e == ("presence", {"names": ["bob"]}), since=mark)
            assert (await bob.call("new_msg", {"body": "still here"}, timeout=5))["ok"]
            assert not [e for e in seen_b if e[0] == "new_msg" and e[1]["body"] != "still here"]
            evil = socketio.AsyncClient(reconnection=False)
            with pytest.raises(socketio.exceptions.ConnectionError, match="400"):
                await evil.connect(f"http://127.0.0.1:{server.port}", wait_timeout=3,
                                   headers={"Origin": "http://evil.example"})
            same = socketio.AsyncClient(reconnection=False)
            await same.connect(f"http://127.0.0.1:{server.port}", wait_timeout=3,
                               headers={"Origin": f"http://127.0.0.1:{server.port}"})
            await same.disconnect(), await bob.disconnect()
            if big.connected:
                await big.disconnect()
    run(scenario)


def test_close_is_bounded_with_clients_of_all_three_protocols():
    async def scenario():
        server = await start_channels()
        phoenix = await ChannelClient.connect(server.url)
        await phoenix.join("room:lobby", {"name": "phx"})
        raw = await RawCable.connect(server)
        await raw.subscribe(ident(name="cable"))
        sio = await sio_client(server)
        await sio.call("join", {"room": "lobby", "name": "sio"}, timeout=5)
        assert server.rooms.room("lobby").names() == ["cable", "phx", "sio"]
        started = asyncio.get_running_loop().time()
        server.close()
        await asyncio.wait_for(server.wait_closed(), 6)
        assert asyncio.get_running_loop().time() - started < 1.5   # nobody waits for a timeout
        frame = await raw.until(lambda f: f.get("type") == "disconnect")
        assert frame == {"type": "disconnect", "reason": "server_restart", "reconnect": True}
        with pytest.raises(websockets.ConnectionClosed):
            await raw.next()
        assert raw.ws.close_code == 1001
        await phoenix.wait_closed(3)
        async with asyncio.timeout(3):
            while sio.connected:
                await asyncio.sleep(0.05)
        assert server.rooms.room("lobby").names() == []
        await phoenix.close(), await sio.disconnect()
    run(scenario)


def test_adapters_can_be_turned_off():
    async def scenario():
        async with await start_channels(action_cable=False, socket_io=False) as server:
            assert server.cable is None and server.socketio is None
            with pytest.raises(websockets.InvalidStatus) as refused:
                await websockets.connect(f"ws://127.0.0.1:{server.port}/cable",
                                         subprotocols=[cable.PROTOCOL], open_timeout=5)
            assert refused.value.response.status_code == 404
            client = socketio.AsyncClient(reconnection=False)
            with pytest.raises(socketio.exceptions.ConnectionError):
                await client.connect(f"http://127.0.0.1:{server.port}", wait_timeout=3)
    run(scenario)


# --- the official clients, in Node (tests/nodejs.py) ---------------------------------------------

def received(event: str, body: str | None = None):
    """A predicate on the actioncable script's ``received`` lines."""
    return lambda line: (line["message"].get("event") == event
                         and (body is None or line["message"].get("body") == body))


def test_official_actioncable_client_subscribes_speaks_and_survives_bad_commands(node_modules):
    async def scenario():
        async with await start_channels() as server:
            server.post("lobby", "before you came")
            url = f"ws://127.0.0.1:{server.port}/cable"
            node = await NodeLines.start(node_modules, "actioncable_client.js", url, "ada")
            refused = await NodeLines.start(node_modules, "actioncable_client.js", url, "eve", "lobby",
                                             "AdminChannel")
            try:
                assert (await node.expect("connected"))["protocol"] == "actioncable-v1-json"
                history = await node.expect("received", received("history"))
                assert [m["body"] for m in history["message"]["messages"]] == ["before you came"]
                await refused.expect("rejected")
                bob = await RawCable.connect(server)
                await bob.subscribe(ident(name="bob"))
                await node.expect("received", lambda l: l["message"] == {"event": "presence",
                                                                         "names": ["ada", "bob"]})
                await node.send("speak hello from rails")
                heard = await bob.until(new_msg)
                assert heard["message"] == {"event": "new_msg", "id": 2, "name": "ada",
                                            "body": "hello from rails"}
                got = await node.expect("received", received("new_msg"))
                assert got["message"] == heard["message"]
                # bad commands through the official consumer: error frames it ignores
                subscribed = ident(name="ada")
                for raw in [{"command": "explode"},
                            {"command": "message", "identifier": subscribed, "data": "not json"},
                            {"command": "message", "identifier": ident(room="other"), "data": "{}"},
                            {"command": "message", "identifier": subscribed,
                             "data": json.dumps({"action": "shout"})}]:
                    await node.send("raw " + json.dumps(raw))
                error = await node.expect("received", received("error"))
                assert error["message"]["reason"] == "invalid command"
                error = await node.expect("received", received("error"))
                assert error["message"]["reason"] == "unknown action"
                await bob.send(command("message", ident(name="bob"), {"action": "speak", "body": "still?"}))
                await node.expect("received", received("new_msg", "still?"))
                await node.send("typing")
                frame = await bob.until(lambda f: f.get("message", {}).get("event") == "typing")
                assert frame["message"] == {"event": "typing", "name": "ada", "typing": True}
                await node.send("quit")
                await node.expect("left")
                assert await asyncio.wait_for(node.process.wait(), 5) == 0
                await bob.until(lambda f: f.get("message") == {"event": "presence", "names": ["bob"]})
                await bob.ws.close()
            finally:
                await node.stop(), await refused.stop()
    run(scenario, timeout=25)


def test_official_actioncable_client_throws_on_an_error_frame_without_identifier(node_modules):
    """Why our error frames always carry an identifier (see course.wire.actioncable)."""
    async def scenario():
        async def handler(ws):
            await ws.send(cable.welcome())
            async for text in ws:
                frame = json.loads(text)
                if frame["command"] == "subscribe":
                    await ws.send(cable.confirm(frame["identifier"]))
                    await ws.send(cable.error("invalid command", "with an identifier: ignored"))
                    await ws.send(cable.transmit(frame["identifier"], {"event": "new_msg", "body": "ok"}))
                    await ws.send('{"type":"error","reason":"no identifier"}')

        async with websockets.serve(handler, "127.0.0.1", 0, subprotocols=[cable.PROTOCOL]) as stub:
            port = stub.sockets[0].getsockname()[1]
            node = await NodeLines.start(node_modules, "actioncable_client.js", f"ws://127.0.0.1:{port}", "ada")
            try:
                await node.expect("connected")
                await node.expect("received", received("new_msg", "ok"))
                with pytest.raises(AssertionError, match="TypeError"):
                    await node.expect("never")
                assert await asyncio.wait_for(node.process.wait(), 5) != 0
            finally:
                await node.stop()
    run(scenario, timeout=20)


def test_official_socketio_client_joins_with_ack_and_exchanges_messages(node_modules):
    async def scenario():
        async with await start_channels() as server:
            server.post("lobby", "before you came")
            node = await NodeLines.start(node_modules, "socketio_client.js",
                                         f"http://127.0.0.1:{server.port}", "ada")
            try:
                await node.expect("upgraded")             # polling first, then WebSocket
                joined = await node.expect("joined")
                assert joined["ack"]["ok"] is True
                assert [m["body"] for m in joined["ack"]["history"]] == ["before you came"]
                seen = []
                bob = await sio_client(server, seen)
                await bob.call("join", {"room": "lobby", "name": "bob"}, timeout=5)
                await node.expect("presence", lambda l: l["payload"] == {"names": ["ada", "bob"]})
                await node.send("say hello from node")
                assert (await node.expect("ack"))["ack"] == {"ok": True, "id": 2}
                assert await wait_for(seen, lambda e: e[0] == "new_msg") == (
                    "new_msg", {"id": 2, "name": "ada", "body": "hello from node"})
                await bob.call("new_msg", {"body": "hi from python"}, timeout=5)
                got = await node.expect("new_msg", lambda l: l["payload"]["name"] == "bob")
                assert got["payload"] == {"id": 3, "name": "bob", "body": "hi from python"}
                await node.send('emit new_msg "just a string"')
                assert (await node.expect("ack"))["ack"]["reason"] == "bad payload"
                await node.send("emit join {}")
                assert (await node.expect("ack"))["ack"]["reason"] == "bad payload"
                await node.send("emit nope")
                assert (await node.expect("ack"))["ack"]["reason"] == "unknown event"
                await node.send("say still here")
                assert (await node.expect("ack"))["ack"] == {"ok": True, "id": 4}
                await wait_for(seen, lambda e: e[1].get("body") == "still here")
                mark = len(seen)
                await node.send("quit")
                await node.expect("left")
                await wait_for(seen, lambda e: e == ("presence", {"names": ["bob"]}), since=mark)
                await bob.disconnect()
            finally:
                await node.stop()
    run(scenario, timeout=20)


def test_one_message_crosses_phoenix_action_cable_and_socketio(node_modules):
    async def scenario():
        async with await start_channels() as server:
            port = server.port
            phoenix = await NodeLines.start(node_modules, "phoenix_client.js", f"ws://127.0.0.1:{port}/socket", "phx")
            rails = await NodeLines.start(node_modules, "actioncable_client.js", f"ws://127.0.0.1:{port}/cable", "rails")
            sio = await NodeLines.start(node_modules, "socketio_client.js", f"http://127.0.0.1:{port}", "sio")
            try:
                await asyncio.gather(phoenix.expect("joined"), rails.expect("connected"), sio.expect("joined"))
                everyone = ["phx", "rails", "sio"]
                await phoenix.expect("presence", lambda l: [n["name"] for n in l["names"]] == everyone)
                await rails.expect("received", lambda l: l["message"] == {"event": "presence", "names": everyone})
                await sio.expect("presence", lambda l: l["payload"] == {"names": everyone})

                async def heard_by_all(body: str) -> list[dict]:
                    return [
                        (await phoenix.expect("new_msg", lambda l: l["payload"]["body"] == body))["payload"],
                        {k: v for k, v in (await rails.expect("received", received("new_msg", body))
                                           )["message"].items() if k != "event"},
                        (await sio.expect("new_msg", lambda l: l["payload"]["body"] == body))["payload"],
                    ]

                await phoenix.send("push from phoenix")
                sent = await heard_by_all("from phoenix")
                assert sent == [{"id": 1, "name": "phx", "body": "from phoenix"}] * 3
                await rails.send("speak from action cable")
                sent = await heard_by_all("from action cable")
                assert sent == [{"id": 2, "name": "rails", "body": "from action cable"}] * 3
                await sio.send("say from socket.io")
                sent = await heard_by_all("from socket.io")
                assert sent == [{"id": 3, "name": "sio", "body": "from socket.io"}] * 3
            finally:
                await asyncio.gather(phoenix.stop(), rails.stop(), sio.stop())
    run(scenario, timeout=25)
