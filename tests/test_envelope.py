"""The course's message envelope (course.wire.envelope): one shape for messages and errors."""

from __future__ import annotations

import json

import pytest

from course.wire.envelope import BadMessage, ErrorCode, Kind, decode, encode, error_message


def test_encode_decode_round_trip():
    text = encode(Kind.PRICE, symbol="ACME", price=101.25, seq=3)
    assert json.loads(text) == {"type": "price", "symbol": "ACME", "price": 101.25, "seq": 3}
    assert decode(text) == json.loads(text)
    assert decode(text.encode()) == json.loads(text)
    assert encode("ack", text="x") == '{"type":"ack","text":"x"}'


@pytest.mark.parametrize("frame, code, text", [
    ("{not json", ErrorCode.BAD_JSON, "bad JSON: Expecting property name"),
    ("[" * 100_000, ErrorCode.BAD_JSON, "bad JSON"),
    ("[1, 2]", ErrorCode.BAD_SHAPE, 'expected a JSON object with a "type" string'),
    ('{"text": "no type"}', ErrorCode.BAD_SHAPE, "expected a JSON object"),
    ('{"type": 7}', ErrorCode.BAD_SHAPE, "expected a JSON object"),
    ('{"type": "nope"}', ErrorCode.UNKNOWN_TYPE, "unknown message type 'nope'"),
    (b"\xff\xfe", ErrorCode.NOT_TEXT, "binary frame is not UTF-8 text"),
])
def test_decode_refuses_with_a_code_and_a_sentence(frame, code, text):
    with pytest.raises(BadMessage) as caught:
        decode(frame)
    assert caught.value.code is code
    assert str(caught.value).startswith(text)
    payload = json.loads(caught.value.encode())
    assert payload == {"type": "error", "code": code.value, "error": str(caught.value)}


def test_decode_accepts_only_the_types_an_endpoint_names():
    assert decode('{"type": "join", "topic": "room:1"}', types={"join"})["topic"] == "room:1"
    with pytest.raises(BadMessage) as caught:
        decode('{"type": "news", "text": "x"}', types={"control"})
    assert caught.value.code is ErrorCode.UNKNOWN_TYPE


def test_encode_refuses_fields_json_cannot_hold():
    with pytest.raises(BadMessage, match="cannot encode") as caught:
        encode(Kind.NEWS, text=object())
    assert caught.value.code is ErrorCode.BAD_SHAPE
    with pytest.raises(BadMessage):
        encode(Kind.NEWS, loop=_cycle())


def _cycle():
    a: list = []
    a.append(a)
    return a


def test_error_message_is_the_one_error_shape():
    assert json.loads(error_message(ErrorCode.TOO_LONG, "too long: 501 characters")) == {
        "type": "error", "code": "too-long", "error": "too long: 501 characters"}
    with pytest.raises(ValueError):
        BadMessage("no-such-code", "x")
