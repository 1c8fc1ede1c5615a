"""Fuzzing (issue 10, item 6): random and mutated bytes into the frame reader, the server
protocol (handshake parser included) and the envelope and channel parsers.  Nothing raises
anything but the documented error, the documented close code comes back, and a running
rawserver fed mutated bytes on one connection keeps serving another client.

``max_examples`` is bounded so that the file stays fast; the seed is derandomized so that a
failure reproduces (hypothesis prints the smallest failing input).
"""
from __future__ import annotations

import asyncio
import json
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from course.net.guard import ConnectionGuard
from course.net.rawserver import start_server
from course.protocol import (
    Accepted,
    CloseCode,
    CloseReceived,
    ConnectionLost,
    Failed,
    FrameReader,
    Message,
    Opcode,
    Ping,
    Pong,
    ProtocolError,
    Rejected,
    ServerProtocol,
    encode_close,
    encode_frame,
    upgrade_request,
)
from course.wire import phoenix
from course.wire.channels import ChannelSession, Send
from course.wire.envelope import BadMessage, decode
from course.wire.rfc import RFC_KEY

FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
CLOSE_CODES = {CloseCode.PROTOCOL_ERROR, CloseCode.INVALID_DATA, CloseCode.MESSAGE_TOO_BIG}
MASK = b"\x37\xfa\x21\x3d"
HANDSHAKE = upgrade_request("127.0.0.1:8765", RFC_KEY, "/chat", [("Origin", "http://127.0.0.1:8765")])
VALID_FRAMES = [
    encode_frame(Opcode.TEXT, "héllo".encode(), mask=MASK),
    encode_frame(Opcode.BINARY, bytes(range(200)), mask=MASK),
    encode_frame(Opcode.TEXT, b"x" * 70_000, mask=MASK),
    encode_frame(Opcode.TEXT, b"frag", fin=False, mask=MASK) + encode_frame(Opcode.CONTINUATION, b"ment", mask=MASK),
    encode_frame(Opcode.PING, b"p", mask=MASK),
    encode_frame(Opcode.CLOSE, encode_close(1000, "bye"), mask=MASK),
]


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A valid input with a few bytes flipped, inserted, deleted or the stream cut."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "cut", "dup"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[at:at + draw(st.integers(1, 8))]
        elif op == "cut":
            del data[at:]
        elif op == "dup":
            data += data[at:at + 64]
    return bytes(data)


frames_input = st.one_of(st.binary(max_size=300), mutated(VALID_FRAMES),
                         st.lists(st.sampled_from(VALID_FRAMES), max_size=4).map(b"".join).flatmap(
                             lambda d: mutated([d or b"\x81\x80" + MASK])))


def chunks(data: bytes, sizes: list[int]) -> list[bytes]:
    out, i = [], 0
    for size in sizes:
        out.append(data[i:i + size])
        i += size
    out.append(data[i:])
    return out


@FUZZ
@given(data=frames_input, sizes=st.lists(st.integers(1, 50), max_size=5))
def test_frame_reader_raises_only_protocol_errors(data, sizes):
    reader = FrameReader(expect_masked=True, max_frame_size=1 << 20)
    try:
        for chunk in chunks(data, sizes):
            reader.receive_data(chunk)
            for frame in reader.frames_received():
                assert isinstance(frame.opcode, Opcode)
    except ProtocolError as error:
        assert error.close_code in CLOSE_CODES
        try:  # a broken reader stays broken, with the same error
            list(reader.frames_received())
        except ProtocolError as again:
            assert again is error
        else:
            raise AssertionError("the reader recovered after an error")


def _server_events(data: bytes, sizes: list[int]) -> tuple[ServerProtocol, list]:
    conn = ServerProtocol(max_message_size=1 << 20)
    events = []
    for chunk in chunks(data, sizes):
        conn.receive_data(chunk)
        for event in conn.events_received():
            events.append(event)
            if isinstance(event, Message) and conn.state.name == "OPEN":
                conn.send_message(event.data)
        conn.data_to_send()
    events += conn.receive_eof()
    return conn, events


KNOWN_EVENTS = (Accepted, Rejected, Message, Ping, Pong, CloseReceived, Failed, ConnectionLost)


@FUZZ
@given(data=st.one_of(mutated([HANDSHAKE]), st.binary(max_size=400),
                      frames_input.map(lambda frames: HANDSHAKE + frames)),
       sizes=st.lists(st.integers(1, 80), max_size=5))
def test_server_protocol_handshake_and_frames_never_raise(data, sizes):
    conn, events = _server_events(data, sizes)
    assert all(isinstance(event, KNOWN_EVENTS) for event in events)
    assert conn.should_close
    for event in events:
        if isinstance(event, Failed):
            assert event.code in CLOSE_CODES
        if isinstance(event, Rejected):
            assert event.status in (400, 403, 405, 426, 431, 505)


ENVELOPES = [b'{"type": "news", "text": "hi", "seq": 1}', b'{"type": "price", "symbol": "X", "price": 1.5}',
             b'{"type": "control", "name": "n", "value": [1, {"a": null}]}', b'[1, 2, 3]',
             b'{"type": "news", "n": 99999999999999999999}']
PHOENIX = [b'["1","1","room:lobby","phx_join",{"name":"ada"}]', b'[null,"2","room:lobby","new_msg",{"body":"hi"}]',
           b'["1","3","room:lobby","typing",{"typing":true}]', b'[null,"4","phoenix","heartbeat",{}]',
           b'["1","5","room:lobby","phx_leave",{}]']
TEXTS = st.one_of(st.text(max_size=200), st.binary(max_size=200),
                  st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                               lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                               max_leaves=20).map(json.dumps),
                  st.integers(33, 3000).map(lambda n: "[" * n),
                  st.integers(4000, 6000).map(lambda n: '{"type": "news", "n": ' + "7" * n + "}"))


@FUZZ
@given(data=st.one_of(TEXTS, mutated(ENVELOPES)))
def test_envelope_decode_raises_only_bad_message(data):
    try:
        message = decode(data)
    except BadMessage as error:
        assert json.loads(error.encode())["type"] == "error"
    else:
        assert isinstance(message, dict) and isinstance(message["type"], str)


@FUZZ
@given(data=st.one_of(TEXTS, mutated(PHOENIX)))
def test_phoenix_decode_raises_only_bad_frame(data):
    try:
        message = phoenix.decode(data)
    except phoenix.BadFrame:
        return
    assert isinstance(message.topic, str) and isinstance(message.payload, dict)


@FUZZ
@given(frames=st.lists(st.one_of(TEXTS, mutated(PHOENIX), st.sampled_from(PHOENIX)), max_size=6))
def test_channel_session_never_raises(frames):
    session = ChannelSession()
    for data in frames:
        actions = session.receive(data)
        assert isinstance(actions, list)
        for action in actions:
            if isinstance(action, Send):
                phoenix.encode(action.message)  # every reply can be sent


def test_live_rawserver_keeps_serving_while_one_connection_gets_mutated_bytes():
    rng = random.Random(6)

    async def feed(port: int, data: bytes) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(data)
            async with asyncio.timeout(3):
                while await reader.read(65536):
                    pass
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    def mutate(data: bytes) -> bytes:
        data = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            data[at] ^= 1 << rng.randrange(8)
        return bytes(data)

    async def main():
        async with await start_server(message_timeout=0.5,
                                      guard=ConnectionGuard(handshake_timeout=0.5)) as server:
            async with connect(server.url) as healthy:
                inputs = [mutate(HANDSHAKE + b"".join(VALID_FRAMES[:2] + VALID_FRAMES[4:])) for _ in range(60)]
                inputs += [HANDSHAKE + mutate(b"".join(VALID_FRAMES)) for _ in range(60)]
                echoes = 0
                for start in range(0, len(inputs), 20):
                    await asyncio.gather(*(feed(server.port, data) for data in inputs[start:start + 20]))
                    await healthy.send(f"echo {start}")
                    async with asyncio.timeout(3):
                        echoes += await healthy.recv() == f"echo {start}"
            while server.connections:
                await asyncio.sleep(0.02)
            return echoes, server.connections

    async def bounded():
        async with asyncio.timeout(60):
            return await main()

    echoes, left = asyncio.run(bounded())
    assert echoes == 6 and left == 0
