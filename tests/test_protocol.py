"""course.protocol: properties against the ``websockets`` library, malformed input, handshake,
close payloads, reassembly, UTF-8 and the ServerProtocol state machine."""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets import frames as wsframes
from websockets.client import ClientProtocol
from websockets.streams import StreamReader
from websockets.uri import parse_uri
from websockets.utils import accept_key as ws_accept_key
from websockets.utils import apply_mask as ws_apply_mask

from course.protocol import (
    Accepted,
    CloseCode,
    CloseReceived,
    ConnectionLost,
    Failed,
    Frame,
    FrameReader,
    HandshakeError,
    Message,
    MessageAssembler,
    Opcode,
    Ping,
    Pong,
    ProtocolError,
    Rejected,
    ServerProtocol,
    State,
    accept_key,
    accept_response,
    apply_mask,
    decode_close,
    encode_close,
    encode_frame,
    error_response,
    is_valid_close_code,
    parse_request,
    upgrade_request,
    validate_request,
)
from course.wire.rfc import RFC_ACCEPT, RFC_KEY

KEY = RFC_KEY
MASK = b"\x01\x02\x03\x04"
DATA_OPCODES = [Opcode.CONTINUATION, Opcode.TEXT, Opcode.BINARY]
CONTROL_OPCODES = [Opcode.CLOSE, Opcode.PING, Opcode.PONG]
RESERVED_OPCODES = [3, 4, 5, 6, 7, 11, 12, 13, 14, 15]
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


# -- helpers -------------------------------------------------------------------


def ws_parse(data: bytes, *, mask: bool) -> wsframes.Frame:
    """Parse one frame with the websockets library's own parser."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    gen = wsframes.Frame.parse(reader.read_exact, mask=mask)
    try:
        next(gen)
    except StopIteration as done:
        return done.value
    raise AssertionError("websockets wanted more data")


def fails_with(code: CloseCode, data: bytes, **reader_options) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        FrameReader(**reader_options).receive_frames(data)
    assert info.value.close_code == code, info.value
    return info.value


def handshake_request(**overrides: str | None) -> bytes:
    """A valid upgrade request (:func:`upgrade_request`); ``overrides`` change or drop
    (``None``) its headers, to make the invalid ones."""
    if not overrides:
        return upgrade_request("127.0.0.1:8765", KEY, "/chat")
    headers = {
        "Host": "127.0.0.1:8765", "Upgrade": "websocket", "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY, "Sec-WebSocket-Version": "13",
    }
    headers.update(overrides)
    lines = ["GET /chat HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items() if v is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def open_connection(**options) -> ServerProtocol:
    conn = ServerProtocol(**options)
    [event] = conn.receive_events(handshake_request())
    assert isinstance(event, Accepted)
    assert conn.data_to_send().startswith(b"HTTP/1.1 101 ")
    return conn


def client_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    return encode_frame(opcode, payload, fin=fin, mask=MASK)


frames_strategy = st.one_of(
    st.tuples(st.sampled_from(DATA_OPCODES), st.binary(max_size=70_000), st.booleans()),
    st.tuples(st.sampled_from(CONTROL_OPCODES), st.binary(max_size=125), st.just(True)),
)
masks = st.one_of(st.none(), st.binary(min_size=4, max_size=4))


# -- properties against websockets ---------------------------------------------


@SETTINGS
@given(frame=frames_strategy, mask=masks)
def test_encode_frame_is_parsed_by_websockets(frame, mask):
    opcode, payload, fin = frame
    parsed = ws_parse(encode_frame(opcode, payload, fin=fin, mask=mask), mask=mask is not None)
    assert (int(parsed.opcode), bytes(parsed.data), parsed.fin) == (opcode, payload, fin)


@SETTINGS
@given(frame=frames_strategy, masked=st.booleans(), data=st.data())
def test_frame_reader_parses_websockets_frames(frame, masked, data):
    opcode, payload, fin = frame
    wire = wsframes.Frame(wsframes.Opcode(opcode), payload, fin).serialize(mask=masked, extensions=[])
    cut = data.draw(st.integers(0, len(wire)), label="cut")
    reader = FrameReader(expect_masked=masked)
    got = reader.receive_frames(wire[:cut]) + reader.receive_frames(wire[cut:])
    assert got == [Frame(opcode, payload, fin, masked=masked,
                         mask=wire[len(wire) - len(payload) - 4:len(wire) - len(payload)] if masked else None)]


@SETTINGS
@given(frames=st.lists(st.tuples(frames_strategy, masks), max_size=6), data=st.data())
def test_frame_reader_handles_any_chunking(frames, data):
    wire = b"".join(encode_frame(op, p, fin=fin, mask=m) for (op, p, fin), m in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8), label="cuts"))
    reader = FrameReader()
    got = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)]):
        got += reader.receive_frames(wire[start:end])
    assert [(f.opcode, f.payload, f.fin) for f in got] == [f for f, _ in frames]


@SETTINGS
@given(payload=st.binary(max_size=5000), mask=st.binary(min_size=4, max_size=4))
def test_apply_mask_matches_websockets_and_is_an_involution(payload, mask):
    masked = apply_mask(payload, mask)
    assert masked == ws_apply_mask(payload, mask)
    assert apply_mask(masked, mask) == payload


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 511, 512, 513, 1001, 65539, 1 << 20])
def test_apply_mask_every_size_path_matches_websockets(size):
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    for mask in (b"\x00\x00\x00\x00", b"\x37\xfa\x21\x3d", b"\xff\x01\x80\x7f"):
        assert apply_mask(payload, mask) == ws_apply_mask(payload, mask)
    with pytest.raises(ValueError):
        apply_mask(payload, b"\x00")


@SETTINGS
@given(key=st.binary(min_size=16, max_size=16))
def test_accept_key_matches_websockets(key):
    encoded = base64.b64encode(key).decode()
    assert accept_key(encoded) == ws_accept_key(encoded)


@SETTINGS
@given(code=st.one_of(st.sampled_from([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011]),
                      st.integers(3000, 4999)),
       reason=st.text(max_size=30))
def test_close_payload_round_trips_with_websockets(code, reason):
    ours = encode_close(code, reason)
    assert ours == wsframes.Close(code, reason).serialize()
    assert decode_close(ours) == (code, reason)
    theirs = wsframes.Close.parse(ours)
    assert (theirs.code, theirs.reason) == (code, reason)


@SETTINGS
@given(text=st.text(max_size=300), data=st.data())
def test_assembler_reassembles_text_cut_anywhere(text, data):
    raw = text.encode("utf-8")
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=6), label="cuts"))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)])]
    assembler = MessageAssembler()
    results = []
    for i, piece in enumerate(pieces):
        opcode = Opcode.TEXT if i == 0 else Opcode.CONTINUATION
        results.append(assembler.add(Frame(opcode, piece, fin=i == len(pieces) - 1)))
    assert results[:-1] == [None] * (len(pieces) - 1)
    assert results[-1] == Message(text)
    assert not assembler.in_progress


@SETTINGS
@given(garbage=st.binary(max_size=300), data=st.data())
def test_frame_reader_never_crashes_on_garbage(garbage, data):
    cut = data.draw(st.integers(0, len(garbage)), label="cut")
    reader = FrameReader(expect_masked=True, max_frame_size=1 << 20)
    try:
        frames = reader.receive_frames(garbage[:cut]) + reader.receive_frames(garbage[cut:])
    except ProtocolError as exc:
        assert exc.close_code in (CloseCode.PROTOCOL_ERROR, CloseCode.MESSAGE_TOO_BIG)
    else:
        assert all(f.masked for f in frames)


@SETTINGS
@given(garbage=st.binary(max_size=300))
def test_server_connection_never_crashes_on_garbage(garbage):
    conn = open_connection(max_message_size=1 << 16)
    events = conn.receive_events(garbage) + conn.receive_eof()
    assert all(isinstance(e, (Message, Ping, Pong, CloseReceived, Failed, ConnectionLost))
               for e in events)
    conn.data_to_send()


# -- malformed frames ----------------------------------------------------------


@pytest.mark.parametrize("opcode", RESERVED_OPCODES)
def test_reserved_opcode_is_1002(opcode):
    fails_with(CloseCode.PROTOCOL_ERROR, encode_frame(opcode, b"x"))


@pytest.mark.parametrize("rsv", range(1, 8))
def test_rsv_bits_without_extension_are_1002(rsv):
    fails_with(CloseCode.PROTOCOL_ERROR, encode_frame(Opcode.TEXT, b"x", rsv=rsv))


@pytest.mark.parametrize("opcode", CONTROL_OPCODES)
def test_control_frame_longer_than_125_is_1002(opcode):
    fails_with(CloseCode.PROTOCOL_ERROR, encode_frame(opcode, bytes(126)))
    assert FrameReader().receive_frames(encode_frame(opcode, bytes(125)))[0].payload == bytes(125)


@pytest.mark.parametrize("opcode", CONTROL_OPCODES)
def test_fragmented_control_frame_is_1002(opcode):
    fails_with(CloseCode.PROTOCOL_ERROR, encode_frame(opcode, b"", fin=False))


def test_64_bit_length_with_high_bit_is_1002():
    fails_with(CloseCode.PROTOCOL_ERROR, b"\x82\x7f\x80" + bytes(7))


def test_unmasked_client_frame_is_1002_on_a_server():
    error = fails_with(CloseCode.PROTOCOL_ERROR, encode_frame(Opcode.TEXT, b"hi"),
                       expect_masked=True)
    assert "masked" in error.reason


def test_masked_server_frame_is_1002_on_a_client():
    fails_with(CloseCode.PROTOCOL_ERROR, client_frame(Opcode.TEXT, b"hi"), expect_masked=False)


def test_oversized_frame_is_1009_from_the_header_alone():
    header = encode_frame(Opcode.BINARY, bytes(1001), mask=MASK)[:8]
    fails_with(CloseCode.MESSAGE_TOO_BIG, header, max_frame_size=1000)
    assert FrameReader(max_frame_size=1000).receive_frames(encode_frame(Opcode.BINARY, bytes(1000)))


def test_truncated_frames_wait_for_more_bytes():
    wire = client_frame(Opcode.BINARY, bytes(300))
    for cut in range(len(wire)):
        reader = FrameReader(expect_masked=True)
        assert reader.receive_frames(wire[:cut]) == []
        assert reader.buffered == cut


def test_reader_stays_failed_after_an_error():
    reader = FrameReader()
    with pytest.raises(ProtocolError):
        reader.receive_frames(encode_frame(3, b""))
    with pytest.raises(ProtocolError):
        reader.receive_frames(encode_frame(Opcode.TEXT, b"fine"))


def test_encode_frame_rejects_bad_arguments():
    with pytest.raises(ValueError):
        encode_frame(16, b"")
    with pytest.raises(ValueError):
        encode_frame(Opcode.TEXT, b"", mask=b"abc")
    with pytest.raises(ValueError):
        encode_frame(Opcode.TEXT, b"", rsv=8)
    with pytest.raises(TypeError):
        encode_frame(Opcode.TEXT, "text is not bytes")


def test_protocol_error_carries_code_and_reason():
    error = ProtocolError(CloseCode.INVALID_DATA, "bad text")
    assert (error.close_code, error.reason) == (CloseCode.INVALID_DATA, "bad text")
    assert "1007" in str(error)


def test_opcode_is_control():
    assert [op.is_control for op in Opcode] == [False, False, False, True, True, True]


# -- close payloads ------------------------------------------------------------


VALID = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
INVALID = [0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("code", VALID)
def test_valid_close_codes(code):
    assert is_valid_close_code(code)
    assert decode_close(encode_close(code, "ok")) == (code, "ok")


@pytest.mark.parametrize("code", INVALID)
def test_invalid_close_codes_are_1002(code):
    assert not is_valid_close_code(code)
    with pytest.raises(ProtocolError) as info:
        decode_close(code.to_bytes(2, "big"))
    assert info.value.close_code == CloseCode.PROTOCOL_ERROR
    with pytest.raises(ValueError):
        encode_close(code)


def test_close_payload_edge_cases():
    assert decode_close(b"") == (CloseCode.NO_STATUS_RCVD, "")
    assert encode_close(None) == b""
    assert isinstance(decode_close(b"\x03\xe8")[0], CloseCode)
    with pytest.raises(ProtocolError) as info:
        decode_close(b"\x03")
    assert info.value.close_code == CloseCode.PROTOCOL_ERROR
    with pytest.raises(ProtocolError) as info:
        decode_close(b"\x03\xe8\xff")
    assert info.value.close_code == CloseCode.INVALID_DATA
    with pytest.raises(ValueError):
        encode_close(1000, "x" * 124)
    with pytest.raises(ValueError):
        encode_close(None, "reason without code")
    assert len(encode_close(1000, "é" * 61)) == 2 + 122


# -- reassembly and UTF-8 ------------------------------------------------------


def test_assembler_binary_fragments():
    assembler = MessageAssembler()
    assert assembler.add(Frame(Opcode.BINARY, b"ab", fin=False)) is None
    assert assembler.in_progress
    assert assembler.add(Frame(Opcode.CONTINUATION, b"", fin=False)) is None
    assert assembler.add(Frame(Opcode.CONTINUATION, b"cd")) == Message(b"abcd")
    assert Message(b"abcd").opcode == Opcode.BINARY and Message("x").is_text


def test_continuation_without_start_is_1002():
    with pytest.raises(ProtocolError) as info:
        MessageAssembler().add(Frame(Opcode.CONTINUATION, b"x"))
    assert info.value.close_code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_new_message_inside_fragmented_message_is_1002(opcode):
    assembler = MessageAssembler()
    assembler.add(Frame(Opcode.TEXT, b"a", fin=False))
    with pytest.raises(ProtocolError) as info:
        assembler.add(Frame(opcode, b"b"))
    assert info.value.close_code == CloseCode.PROTOCOL_ERROR


def test_control_frame_given_to_assembler_is_a_caller_bug():
    with pytest.raises(ValueError):
        MessageAssembler().add(Frame(Opcode.PING, b""))


def test_invalid_utf8_fails_fast_in_first_fragment():
    assembler = MessageAssembler()
    with pytest.raises(ProtocolError) as info:
        assembler.add(Frame(Opcode.TEXT, "κόσμε".encode() + b"\xf4\x90\x80\x80", fin=False))
    assert info.value.close_code == CloseCode.INVALID_DATA
    assert not assembler.in_progress


def test_utf8_character_split_across_fragments_is_fine():
    raw = "€".encode()  # 3 bytes
    assembler = MessageAssembler()
    assert assembler.add(Frame(Opcode.TEXT, raw[:1], fin=False)) is None
    assert assembler.add(Frame(Opcode.CONTINUATION, raw[1:2], fin=False)) is None
    assert assembler.add(Frame(Opcode.CONTINUATION, raw[2:])) == Message("€")


def test_truncated_utf8_at_end_of_message_is_1007():
    with pytest.raises(ProtocolError) as info:
        MessageAssembler().add(Frame(Opcode.TEXT, "€".encode()[:2]))
    assert info.value.close_code == CloseCode.INVALID_DATA


@pytest.mark.parametrize("bad", [b"\xc0\xaf", b"\xed\xa0\x80", b"\xff", b"\xf8\x88\x80\x80\x80"],
                         ids=["overlong", "surrogate", "0xff", "5-byte"])
def test_invalid_utf8_sequences_are_1007(bad):
    with pytest.raises(ProtocolError) as info:
        MessageAssembler().add(Frame(Opcode.TEXT, bad))
    assert info.value.close_code == CloseCode.INVALID_DATA


def test_message_too_big_is_1009_even_when_fragmented():
    assembler = MessageAssembler(max_message_size=10)
    assembler.add(Frame(Opcode.BINARY, bytes(6), fin=False))
    with pytest.raises(ProtocolError) as info:
        assembler.add(Frame(Opcode.CONTINUATION, bytes(5)))
    assert info.value.close_code == CloseCode.MESSAGE_TOO_BIG
    assert MessageAssembler(max_message_size=10).add(Frame(Opcode.BINARY, bytes(10)))


# -- opening handshake -----------------------------------------------------------


@pytest.mark.parametrize("overrides", [
    {}, {"Connection": "keep-alive, Upgrade"}, {"Connection": "upgrade"},
    {"Upgrade": "WebSocket"}, {"Host": "example.com"},
], ids=["plain", "comma list", "lowercase", "WebSocket", "other host"])
def test_valid_handshakes(overrides):
    request = parse_request(handshake_request(**overrides))
    assert validate_request(request) == KEY
    assert request.target == "/chat"
    response = accept_response(KEY)
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert f"\r\nSec-WebSocket-Accept: {RFC_ACCEPT}\r\n".encode() in response
    assert response.endswith(b"\r\n\r\n")


@pytest.mark.parametrize("request_bytes, status, header", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 426, ("Upgrade", "websocket")),
    (handshake_request().replace(b"GET", b"POST"), 405, ("Allow", "GET")),
    (handshake_request().replace(b"HTTP/1.1", b"HTTP/1.0"), 400, None),
    (handshake_request(Host=None), 400, None),
    (handshake_request(Connection="keep-alive"), 426, ("Upgrade", "websocket")),
    (handshake_request(**{"Sec-WebSocket-Version": "8"}), 426, ("Sec-WebSocket-Version", "13")),
    (handshake_request(**{"Sec-WebSocket-Version": None}), 426, ("Sec-WebSocket-Version", "13")),
    (handshake_request(**{"Sec-WebSocket-Key": None}), 400, None),
    (handshake_request(**{"Sec-WebSocket-Key": "not base64!"}), 400, None),
    (handshake_request(**{"Sec-WebSocket-Key": base64.b64encode(bytes(15)).decode()}), 400, None),
    (b"GARBAGE\r\n\r\n", 400, None),
    (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400, None),
], ids=["plain HTTP", "POST", "HTTP/1.0", "no Host", "no Connection upgrade", "version 8",
        "no version", "no key", "key not base64", "key 15 bytes", "bad request line",
        "bad header line"])
def test_bad_handshakes(request_bytes, status, header):
    with pytest.raises(HandshakeError) as info:
        validate_request(parse_request(request_bytes))
    assert info.value.status == status
    response = info.value.response()
    assert response.startswith(f"HTTP/1.1 {status} ".encode())
    if header:
        assert f"\r\n{header[0]}: {header[1]}\r\n".encode() in response
    conn = ServerProtocol()
    assert conn.receive_events(request_bytes) == [Rejected(status, info.value.reason)]
    assert conn.data_to_send() == response and conn.should_close


def test_request_head_too_large_is_431():
    conn = ServerProtocol()
    assert conn.receive_events(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 5000)[0].status == 431
    with pytest.raises(HandshakeError):
        parse_request(b"GET / HTTP/1.1\r\n")  # incomplete


def test_error_response_has_length_and_body():
    response = error_response(400, "nope")
    head, body = response.split(b"\r\n\r\n")
    assert body == b"nope\n" and b"Content-Length: 5" in head


def test_request_header_lookup_is_case_insensitive():
    request = parse_request(handshake_request().replace(b"Upgrade: websocket", b"upgrade: websocket"))
    assert request.get("UPGRADE") == "websocket" and request.get("missing") is None


# -- ServerProtocol ------------------------------------------------------------


def test_handshake_split_byte_by_byte_then_pipelined_frame():
    conn = ServerProtocol()
    data = handshake_request() + client_frame(Opcode.TEXT, b"hi")
    events = []
    for i in range(len(data)):
        events += conn.receive_events(data[i:i + 1])
    assert [type(e) for e in events] == [Accepted, Message] and events[1] == Message("hi")


def test_ping_gets_pong_with_same_payload():
    conn = open_connection()
    assert conn.receive_events(client_frame(Opcode.PING, b"tick")) == [Ping(b"tick")]
    assert conn.data_to_send() == encode_frame(Opcode.PONG, b"tick")
    assert conn.receive_events(client_frame(Opcode.PONG, b"x")) == [Pong(b"x")]
    assert conn.data_to_send() == b""


def test_control_frames_interleaved_in_fragmented_message():
    conn = open_connection()
    events = conn.receive_events(client_frame(Opcode.TEXT, b"Hel", fin=False)
                               + client_frame(Opcode.PING, b"")
                               + client_frame(Opcode.CONTINUATION, b"lo"))
    assert events == [Ping(b""), Message("Hello")]


def test_client_initiated_close_is_echoed_and_server_closes_tcp():
    conn = open_connection()
    events = conn.receive_events(client_frame(Opcode.CLOSE, encode_close(1000, "bye")))
    assert events == [CloseReceived(CloseCode.NORMAL_CLOSURE, "bye")]
    assert conn.data_to_send() == encode_frame(Opcode.CLOSE, encode_close(1000))
    assert conn.should_close and conn.state == State.CLOSED
    assert (conn.close_code, conn.close_reason) == (1000, "bye")
    with pytest.raises(RuntimeError):
        conn.send_message("too late")


def test_empty_close_gets_empty_close():
    conn = open_connection()
    assert conn.receive_events(client_frame(Opcode.CLOSE, b"")) == [
        CloseReceived(CloseCode.NO_STATUS_RCVD, "")]
    assert conn.data_to_send() == b"\x88\x00"


def test_server_initiated_close_waits_for_the_client():
    conn = open_connection()
    conn.send_close(CloseCode.GOING_AWAY, "bye")
    assert conn.data_to_send() == encode_frame(Opcode.CLOSE, encode_close(1001, "bye"))
    assert conn.state == State.CLOSING and not conn.should_close
    # messages and pings after our close frame are dropped, not answered
    assert conn.receive_events(client_frame(Opcode.TEXT, b"late")) == []
    assert conn.receive_events(client_frame(Opcode.PING, b"")) == [Ping(b"")]
    assert conn.data_to_send() == b""
    assert conn.close_code is None
    assert conn.receive_events(client_frame(Opcode.CLOSE, encode_close(1001))) == [
        CloseReceived(CloseCode.GOING_AWAY, "")]
    assert conn.data_to_send() == b"" and conn.should_close
    assert conn.close_code == CloseCode.GOING_AWAY


def test_server_initiated_close_then_tcp_drop_is_1006():
    conn = open_connection()
    conn.send_close()
    assert conn.receive_eof() == [ConnectionLost()]
    assert conn.close_code == CloseCode.ABNORMAL_CLOSURE


@pytest.mark.parametrize("data, code", [
    (encode_frame(Opcode.TEXT, b"unmasked"), CloseCode.PROTOCOL_ERROR),
    (client_frame(Opcode.TEXT, b"\xff"), CloseCode.INVALID_DATA),
    (client_frame(Opcode.BINARY, bytes(101)), CloseCode.MESSAGE_TOO_BIG),
    (client_frame(Opcode.CLOSE, b"\x03\xed"), CloseCode.PROTOCOL_ERROR),  # 1005 on the wire
    (client_frame(Opcode.CONTINUATION, b"x"), CloseCode.PROTOCOL_ERROR),
], ids=["unmasked", "bad UTF-8", "too big", "close 1005", "lone continuation"])
def test_protocol_errors_fail_with_the_right_close_code(data, code):
    conn = open_connection(max_message_size=100)
    [event] = conn.receive_events(data)
    assert isinstance(event, Failed) and event.code == code
    sent = FrameReader(expect_masked=False).receive_frames(conn.data_to_send())
    assert [f.opcode for f in sent] == [Opcode.CLOSE]
    assert decode_close(sent[0].payload)[0] == code
    assert conn.should_close and conn.close_code == code
    assert conn.receive_events(client_frame(Opcode.TEXT, b"ignored")) == []


def test_lazy_events_let_a_reply_go_before_a_later_failure():
    conn = open_connection()
    conn.receive_data(client_frame(Opcode.TEXT, b"first") + encode_frame(Opcode.TEXT, b"unmasked"))
    for event in conn.events_received():
        if isinstance(event, Message):
            conn.send_message(event.data)
    sent = FrameReader(expect_masked=False).receive_frames(conn.data_to_send())
    assert [(f.opcode, f.payload[:5]) for f in sent] == [
        (Opcode.TEXT, b"first"), (Opcode.CLOSE, b"\x03\xeacli")]


def test_eof_without_close_is_connection_lost():
    conn = open_connection()
    assert conn.receive_eof() == [ConnectionLost()]
    assert conn.close_code == CloseCode.ABNORMAL_CLOSURE and conn.should_close
    assert conn.receive_eof() == []


def test_send_message_types():
    conn = open_connection()
    conn.send_message("é")
    conn.send_message(b"\x00")
    conn.send_ping(b"p")
    assert conn.data_to_send() == (encode_frame(Opcode.TEXT, "é".encode())
                                   + encode_frame(Opcode.BINARY, b"\x00")
                                   + encode_frame(Opcode.PING, b"p"))
    with pytest.raises(TypeError):
        conn.send_message(42)
    with pytest.raises(ValueError):
        conn.send_ping(bytes(126))


def test_talks_to_the_websockets_client_protocol_without_sockets():
    client = ClientProtocol(parse_uri("ws://127.0.0.1:8765/"), max_size=None)
    client.send_request(client.connect())
    server = ServerProtocol()

    def pump():
        for chunk in client.data_to_send():
            server.receive_data(chunk)
        received = []
        for event in server.events_received():
            received.append(event)
            if isinstance(event, Message):
                server.send_message(event.data)
        client.receive_data(server.data_to_send())
        return received

    assert isinstance(pump()[0], Accepted)
    assert client.handshake_exc is None
    client.events_received()  # the handshake response
    client.send_text("héllo".encode(), fin=False)
    client.send_continuation(b" world", fin=True)
    client.send_binary(bytes(100_000))
    client.send_ping(b"ping")
    assert pump() == [Message("héllo world"), Message(bytes(100_000)), Ping(b"ping")]
    got = [(e.opcode, bytes(e.data)) for e in client.events_received()]
    assert got == [(wsframes.Opcode.TEXT, "héllo world".encode()),
                   (wsframes.Opcode.BINARY, bytes(100_000)),
                   (wsframes.Opcode.PONG, b"ping")]
    client.send_close(1000, "done")
    assert pump() == [CloseReceived(CloseCode.NORMAL_CLOSURE, "done")]
    assert server.should_close
    client.receive_eof()
    assert client.close_code == 1000


def test_invalid_utf8_fails_fast_inside_an_incomplete_frame():
    payload = "κόσμε".encode() + b"\xf4\x90\x80\x80" + b"edited" * 100
    wire = client_frame(Opcode.TEXT, payload)
    conn = open_connection()
    assert conn.receive_events(wire[:8 + 5]) == []  # header + 5 valid bytes
    [event] = conn.receive_events(wire[8 + 5:8 + 13])  # reaches the invalid sequence
    assert event == Failed(CloseCode.INVALID_DATA, "invalid UTF-8 in text message")


def test_valid_text_cut_anywhere_inside_frames_is_not_failed_early():
    text = "€uro κόσμε 😀 " * 30
    raw = text.encode()
    wire = client_frame(Opcode.TEXT, raw[:100], fin=False) + client_frame(Opcode.CONTINUATION, raw[100:])
    for step in (1, 3, 7, 64):
        conn = open_connection()
        events = []
        for i in range(0, len(wire), step):
            events += conn.receive_events(wire[i:i + step])
        assert events == [Message(text)], step


def test_invalid_utf8_fails_fast_in_an_incomplete_continuation_frame():
    wire = client_frame(Opcode.TEXT, "x€".encode()[:2], fin=False)  # ends mid-character
    wire += client_frame(Opcode.CONTINUATION, b"\x82A" + bytes(300))  # \x82 continues €, "A" cannot
    conn = open_connection()
    events = conn.receive_events(wire[:len(wire) - 200])
    assert events == [Failed(CloseCode.INVALID_DATA, "invalid UTF-8 in text message")]


def test_binary_frames_are_not_utf8_checked_while_incomplete():
    wire = client_frame(Opcode.BINARY, b"\xff" * 300)
    conn = open_connection()
    assert conn.receive_events(wire[:100]) == []
    assert conn.receive_events(wire[100:]) == [Message(b"\xff" * 300)]


@pytest.mark.parametrize("start", [0, 1, 2, 3, 5, 10])
def test_peek_payload_unmasks_from_any_offset(start):
    payload = bytes(range(40))
    reader = FrameReader()
    assert reader.receive_frames(encode_frame(Opcode.BINARY, payload, mask=b"\x11\x22\x33\x44")[:6 + 20]) == []
    assert reader.pending_header.payload_length == 40
    assert reader.peek_payload(start) == payload[start:20]
    assert FrameReader().peek_payload() == b""


def test_426_response_has_one_connection_header_listing_upgrade():
    response = HandshakeError(426, "send Upgrade: websocket", [("Upgrade", "websocket")]).response()
    head = response.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    connection = [line for line in head if line.lower().startswith("connection:")]
    assert connection == ["Connection: Upgrade, close"]
    assert "Upgrade: websocket" in head
