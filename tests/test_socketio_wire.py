"""course.wire.socketio: Engine.IO v4 / Socket.IO v5 packets, checked against the documented
examples and against frames captured from the real python-socketio server and client."""

from __future__ import annotations

import asyncio

import pytest

from course.net.socketio_capture import capture_socketio
from course.wire import socketio as sio
from course.wire.socketio import (BadPacket, EnginePacket, EngineType, Packet, PacketType, ack,
                                  decode, decode_engine, decode_frame, decode_payload, encode,
                                  encode_engine, encode_payload, event)


@pytest.mark.parametrize("text, packet", [
    ("0", Packet(PacketType.CONNECT)),
    ('0{"token":"ada"}', Packet(PacketType.CONNECT, data={"token": "ada"})),
    ('0/chat,{"sid":"abc"}', Packet(PacketType.CONNECT, "/chat", {"sid": "abc"})),
    ("1/chat,", Packet(PacketType.DISCONNECT, "/chat")),
    ("1", Packet(PacketType.DISCONNECT)),
    ('2["hello","world"]', Packet(PacketType.EVENT, data=["hello", "world"])),
    ('2/chat,1["chat",{"text":"hi"}]', Packet(PacketType.EVENT, "/chat", ["chat", {"text": "hi"}], 1)),
    ('212["x"]', Packet(PacketType.EVENT, data=["x"], id=12)),
    ('3/chat,1[{"ok":true,"seq":1}]', Packet(PacketType.ACK, "/chat", [{"ok": True, "seq": 1}], 1)),
    ("30[]", Packet(PacketType.ACK, data=[], id=0)),
    ('4/chat,{"message":"bad token"}', Packet(PacketType.CONNECT_ERROR, "/chat", {"message": "bad token"})),
    ('51-/chat,["file",{"_placeholder":true,"num":0}]',
     Packet(PacketType.BINARY_EVENT, "/chat", ["file", {"_placeholder": True, "num": 0}], None, 1)),
    ('2["é ✓"]', Packet(PacketType.EVENT, data=["é ✓"])),
])
def test_decode_and_encode_round_trip(text, packet):
    assert decode(text) == packet
    assert encode(packet) == text


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("7", "type"),
    ("x", "type"),
    ('2{"a":1}', "non-empty array"),
    ("2[]", "non-empty array"),
    ("2[1]", "name"),
    ("2[", "not JSON"),
    ('2/chat["x"]', "must end with ','"),
    ('1{"a":1}', "no data"),
    ("0[1]", "object"),
    ("3", "array"),
    ("3[]", "id"),
    ('3{"a":1}', "array"),
    ("4", "object or a string"),
    ('5["x"]', "attachment"),
    ('01{"a":1}', "ack id"),
])
def test_decode_refuses_malformed_packets(text, words):
    with pytest.raises(BadPacket, match=words):
        decode(text)


def test_namespace_without_comma_is_the_whole_rest():
    # "1/chat" (no comma, no payload) is what some clients send to leave a namespace
    assert decode("1/chat") == Packet(PacketType.DISCONNECT, "/chat")
    with pytest.raises(BadPacket):
        decode('2/chat["x"]')


@pytest.mark.parametrize("text, packet", [
    ('0{"sid":"s1","upgrades":["websocket"],"pingInterval":25000}',
     EnginePacket(EngineType.OPEN, {"sid": "s1", "upgrades": ["websocket"], "pingInterval": 25000})),
    ("1", EnginePacket(EngineType.CLOSE)),
    ("2", EnginePacket(EngineType.PING)),
    ("3", EnginePacket(EngineType.PONG)),
    ("2probe", EnginePacket(EngineType.PING, "probe")),
    ("3probe", EnginePacket(EngineType.PONG, "probe")),
    ('42["a"]', EnginePacket(EngineType.MESSAGE, '2["a"]')),
    ("5", EnginePacket(EngineType.UPGRADE)),
    ("6", EnginePacket(EngineType.NOOP)),
])
def test_engine_packets(text, packet):
    assert decode_engine(text) == packet
    assert encode_engine(packet) == text


def test_a_binary_frame_is_a_binary_message():
    assert decode_engine(b"\x01\x02") == EnginePacket(EngineType.MESSAGE, b"\x01\x02")
    assert encode_engine(EnginePacket(EngineType.MESSAGE, b"\x01\x02")) == b"\x01\x02"
    assert decode_frame(b"\x01") == (EnginePacket(EngineType.MESSAGE, b"\x01"), None)


@pytest.mark.parametrize("text, words", [
    ("", "empty"), ("9", "type"), ("0", "not JSON"), ("0[]", "sid"), ('0{"sid":1}', "sid"),
])
def test_engine_refuses_malformed(text, words):
    with pytest.raises(BadPacket, match=words):
        decode_engine(text)
    with pytest.raises(BadPacket):
        decode_engine(None)  # type: ignore[arg-type]


def test_polling_payload():
    body = '41/chat,\x1e1'
    packets = decode_payload(body)
    assert packets == [EnginePacket(EngineType.MESSAGE, "1/chat,"), EnginePacket(EngineType.CLOSE)]
    assert encode_payload(packets) == body
    with pytest.raises(BadPacket, match="base64"):
        decode_payload("bAQID")
    with pytest.raises(BadPacket):
        decode_payload("4x\x1e")   # an empty piece


def test_decode_frame_and_builders():
    outer, inner = decode_frame('42/chat,7["msg",{"body":"hi"}]')
    assert outer.type == EngineType.MESSAGE
    assert inner == event("msg", {"body": "hi"}, namespace="/chat", id=7)
    assert "4" + encode(ack(7, "ok", namespace="/chat")) == '43/chat,7["ok"]'
    assert decode_frame("3probe") == (EnginePacket(EngineType.PONG, "probe"), None)
    with pytest.raises(BadPacket):
        encode(Packet(PacketType.EVENT, data=[]))
    with pytest.raises(BadPacket):
        decode(b"2")  # type: ignore[arg-type]
    assert set(sio.__all__) >= {"decode", "encode", "decode_frame"}


@pytest.fixture(scope="module")
def captured():
    return asyncio.run(capture_socketio(ping_interval=1))


def test_every_captured_unit_decodes(captured):
    """Every frame and polling body python-socketio 5.18 sent, both ways, decodes; and
    re-encoding gives the same text back (the format is canonical)."""
    kinds = set()
    for unit in captured.packets:
        if unit.http:
            continue
        for outer in (decode_payload(unit.text) if unit.transport == "polling" else [decode_engine(unit.text)]):
            kinds.add(("eio", outer.type))
            if outer.type == EngineType.MESSAGE:
                inner = decode(outer.data)
                kinds.add(("sio", inner.type))
                assert encode(inner) == outer.data
            else:
                assert encode_engine(outer) == (unit.text if unit.transport == "websocket"
                                                 else encode_engine(outer))
    assert {("eio", t) for t in (EngineType.OPEN, EngineType.PING, EngineType.PONG,
                                 EngineType.MESSAGE, EngineType.UPGRADE)} <= kinds
    assert {("sio", t) for t in (PacketType.CONNECT, PacketType.EVENT, PacketType.ACK)} <= kinds


def test_the_captured_exchange_says_what_the_lesson_says(captured):
    ws = [(u.link, u.direction, u.text) for u in captured.packets if u.transport == "websocket"]
    texts = [t for _, _, t in ws]
    assert "2probe" in texts and "3probe" in texts and "5" in texts
    probe = next(i for i, (_, d, t) in enumerate(ws) if t == "2probe")
    upgrade = next(i for i, (_, d, t) in enumerate(ws) if t == "5")
    assert probe < upgrade and ws[probe][0] == ws[upgrade][0]
    polling_open = [u for u in captured.packets if u.transport == "polling" and u.text.startswith("0")]
    assert decode_engine(polling_open[0].text).data["upgrades"] == ["websocket"]
    ws_open = next(t for _, d, t in ws if t.startswith("0{"))
    assert decode_engine(ws_open).data["upgrades"] == []
    assert decode_engine(ws_open).data["pingInterval"] == 1000
    chat = next(decode_frame(t)[1] for _, d, t in ws if d == "C->S" and '"chat"' in t)
    assert chat.type == PacketType.EVENT and chat.namespace == "/chat" and chat.id is not None
    answer = next(decode_frame(t)[1] for _, d, t in ws if d == "S->C" and t.startswith("43/chat,"))
    assert answer.id == chat.id and answer.data == [{"ok": True, "id": 1}]
    broadcast = [decode_frame(t)[1] for _, d, t in ws if d == "S->C" and t.startswith('42/chat,["chat"')]
    assert [p.data for p in broadcast] == [["chat", {"name": "ada", "body": "hi"}]]  # sender skipped
    assert ("C->S", "2") not in {(d, t) for _, d, t in ws}  # since EIO v4 the server pings
    assert ("S->C", "2") in {(d, t) for _, d, t in ws} and ("C->S", "3") in {(d, t) for _, d, t in ws}
    assert captured.acks == {"chat": {"ok": True, "id": 1}, "whoami": "bob"}


def test_transcript_masks_sids_and_keeps_one_heartbeat_per_link(captured):
    from course.net.socketio_capture import transcript
    lines = transcript(captured)
    text = "\n".join(lines)
    assert captured.sids and not any(sid in text for sid in captured.sids)
    assert '"sid":"<sid>"' in text
    for link in {u.link for u in captured.packets}:
        beats = [line for line in lines if line.startswith(f"link {link} ") and line.endswith((" 2", " 3"))]
        assert len(beats) <= 2, beats
    assert "link 2 C->S http      GET /socket.io/?transport=polling&EIO=4 HTTP/1.1" in lines
    assert "link 2 C->S websocket 2probe" in lines and "link 2 S->C websocket 3probe" in lines


def test_behind_a_proxy_that_blocks_websockets_the_client_stays_on_polling():
    from course.net.socketio_capture import capture_blocked
    blocked = asyncio.run(capture_blocked())
    assert blocked.refused == 1 and blocked.transport == "polling"
    assert blocked.ack == {"ok": True, "id": 1}
    assert all("transport=polling" in line for line in blocked.requests)
    assert {line.split()[0] for line in blocked.requests} == {"GET", "POST"}
    packets = [(u.direction, p) for u in blocked.bodies if u.text != "OK"
               for p in decode_payload(u.text)]
    inner = [(d, decode(p.data)) for d, p in packets if p.type == EngineType.MESSAGE]
    assert ("C->S", event("chat", {"body": "hi"}, namespace="/chat", id=1)) in inner
    assert ("S->C", ack(1, {"ok": True, "id": 1}, namespace="/chat")) in inner
