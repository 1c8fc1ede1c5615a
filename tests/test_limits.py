"""The pure limits of chapter 06 (course.wire.limits), the Origin rule, and the input checks
that item 7 of issue 10 found missing: no I/O, no clock (time is passed in)."""
from __future__ import annotations

import json
import struct

import pytest

from course.demo.feeds import format_event
from course.protocol import CloseCode, FrameReader, Failed, ServerProtocol, encode_frame, upgrade_request
from course.wire import phoenix
from course.wire.chat import parse_client_message
from course.wire.envelope import BadMessage, ErrorCode, decode
from course.wire.limits import (
    Admission,
    ConnectionTable,
    JoinLimit,
    JsonTooDeep,
    RateLimit,
    TokenBucket,
    Verdict,
    check_json_depth,
    json_depth,
)
from course.wire.origin import host_is_address, origin_allowed, request_origin_allowed
from course.wire.rfc import RFC_KEY


# -- token bucket -----------------------------------------------------------------------

def test_bucket_allows_a_burst_then_refills_at_its_rate():
    bucket = TokenBucket(rate=2, burst=3)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.4)            # 0.8 token: not enough
    assert bucket.take(0.5)                # 1 token after 0.5 s at 2/s
    assert not bucket.take(0.5)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # capped at burst


def test_bucket_costs_and_a_clock_that_goes_back():
    bucket = TokenBucket(rate=1, burst=10)
    assert bucket.take(5.0, cost=8) and not bucket.take(5.0, cost=3)  # refused: takes nothing
    assert bucket.take(5.0, cost=2) and bucket.tokens == 0
    assert not bucket.take(1.0)            # earlier than last: adds nothing
    assert bucket.take(6.0)


@pytest.mark.parametrize("rate, burst", [(0, 1), (-1, 5), (1, 0.5)])
def test_bucket_refuses_nonsense(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


def test_rate_limit_refuses_first_then_closes_and_forgives_a_client_that_slows_down():
    limit = RateLimit(rate=1, burst=2, strikes=3)
    assert [limit.check(0.0) for _ in range(5)] == [Verdict.ALLOW, Verdict.ALLOW, Verdict.REFUSE,
                                                    Verdict.REFUSE, Verdict.CLOSE]
    polite = RateLimit(rate=1, burst=1, strikes=2)
    assert polite.check(0) is Verdict.ALLOW and polite.check(0) is Verdict.REFUSE
    assert polite.check(1.0) is Verdict.ALLOW      # it waited: strikes start again
    assert polite.check(1.0) is Verdict.REFUSE


# -- JSON depth -------------------------------------------------------------------------

@pytest.mark.parametrize("text, depth", [
    ("1", 0), ("[]", 1), ('[[1], {"a": "[[[["}]', 2), ('{"a": "\\"[[["}', 1), ("[" * 50, 50),
    ("]]]]", 0),
])
def test_json_depth(text, depth):
    assert json_depth(text) == depth


def test_check_json_depth():
    check_json_depth("[" * 32 + "]" * 32)
    check_json_depth('["[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]')  # brackets in a string
    with pytest.raises(JsonTooDeep, match="33 levels deep, at most 32"):
        check_json_depth("[" * 33 + "]" * 33)
    with pytest.raises(JsonTooDeep):
        check_json_depth(b"[" * 100_000)


# -- connection table -------------------------------------------------------------------

def test_table_caps_in_total_and_evicts_the_oldest_pending_for_a_newcomer():
    table = ConnectionTable(max_connections=3, max_per_address=10, max_pending=10, handshake_timeout=5)
    assert table.admit("a", "1.1.1.1", 0) == (Admission.ADMIT, [])
    table.opened("a")
    assert table.admit("b", "1.1.1.1", 1) == (Admission.ADMIT, [])
    assert table.admit("c", "2.2.2.2", 2) == (Admission.ADMIT, [])
    assert table.admit("d", "3.3.3.3", 3) == (Admission.ADMIT, ["b"])   # b was pending
    table.opened("c")
    table.opened("d")
    assert table.admit("e", "3.3.3.3", 4) == (Admission.FULL, [])       # all open: refused
    table.release("a")
    assert table.admit("e", "3.3.3.3", 4) == (Admission.ADMIT, [])
    assert len(table) == 3 and "b" not in table and table.count("3.3.3.3") == 2


def test_table_per_address_and_pending_caps_and_deadline():
    table = ConnectionTable(max_connections=100, max_per_address=2, max_pending=3, handshake_timeout=5)
    table.admit(1, "x", 0)
    table.opened(1)
    table.admit(2, "x", 0)
    table.opened(2)
    assert table.admit(3, "x", 0) == (Admission.ADDRESS_FULL, [])
    assert table.admit(4, "y", 1)[0] is Admission.ADMIT
    assert table.admit(5, "y", 2)[0] is Admission.ADMIT
    assert table.admit(6, "y", 3) == (Admission.ADMIT, [4])               # y's oldest pending
    assert table.admit(7, "z", 3) == (Admission.ADMIT, [])                # 5, 6, 7 pending
    assert table.admit(8, "z", 4) == (Admission.ADMIT, [5])               # 3 pending at most
    assert table.pending == 3
    assert table.expired(7.9) == [] and table.expired(8.0) == [6, 7] and table.expired(8.5) == [] and table.expired(9) == [8]
    assert len(table) == 2 and table.count("y") == 0 and table.count("z") == 0


def test_table_evicts_the_longest_silent_open_connection_when_full():
    table = ConnectionTable(max_connections=2, max_per_address=10, max_pending=10, idle_grace=5)
    for key in ("old", "live"):
        table.admit(key, "a", 0)
        table.opened(key)
    table.touch("live", 4)
    assert table.admit("new", "a", 4) == (Admission.FULL, [])       # nobody silent for 5 s yet
    assert table.admit("new", "a", 6) == (Admission.ADMIT, ["old"])  # silent since 0
    table.opened("new")
    assert table.admit("next", "a", 8) == (Admission.FULL, [])       # live: 4, new: 6
    assert table.admit("next", "a", 9.5) == (Admission.ADMIT, ["live"])


def test_join_limit():
    joins = JoinLimit(2)
    assert joins.join("room:a") and joins.join("room:b") and joins.join("room:a")
    assert not joins.join("room:c")
    joins.leave("room:a")
    assert joins.join("room:c")


# -- the Origin rule --------------------------------------------------------------------

@pytest.mark.parametrize("origin, host, allowed, proxied, ok", [
    (None, "127.0.0.1:8765", (), False, True),                               # not a browser
    ("http://127.0.0.1:8765", "127.0.0.1:8765", (), False, True),            # its own page
    ("http://localhost:8765", "localhost:8765", (), False, True),
    ("http://[::1]:8765", "[::1]:8765", (), False, True),
    ("http://localhost:9999", "127.0.0.1:8765", (), False, False),           # another port: CSWSH
    ("http://attacker.example:8765", "127.0.0.1:8765", (), False, False),
    ("http://attacker.example:8765", "attacker.example:8765", (), False, False),  # DNS rebinding
    ("http://attacker.example:8765", "attacker.example:8765", {"http://attacker.example:8765"},
     False, True),                                                           # listed
    ("https://hub.example.org", "hub.example.org", (), True, True),          # through the proxy
    ("null", "127.0.0.1:8765", (), False, False),                            # file://, sandboxed
    ("http://x:99999999", "x:99999999", (), False, False),                   # a malformed origin
    ("http://evil.example", "127.0.0.1:1", "*", False, True),
])
def test_origin_rule(origin, host, allowed, proxied, ok):
    assert origin_allowed(origin, host, allowed, proxied=proxied) is ok


def test_origin_rule_from_headers():
    rebinding = {"Origin": "http://attacker.example:80", "Host": "attacker.example:80"}
    assert not request_origin_allowed(rebinding)
    assert request_origin_allowed({**rebinding, "X-Forwarded-Context": "/proxy/80"})
    assert host_is_address("10.0.0.7:80") and host_is_address("app.localhost")
    assert not host_is_address("example.com") and not host_is_address(None)


# -- RFC 6455 section 5.2: minimal length encoding --------------------------------------

def _masked(head: bytes, payload: bytes) -> bytes:
    return head + b"\0\0\0\0" + payload  # a zero mask leaves the payload as is


@pytest.mark.parametrize("head, n", [
    (struct.pack("!BBH", 0x81, 0x80 | 126, 5), 5),          # 5 in 16 bits
    (struct.pack("!BBH", 0x81, 0x80 | 126, 125), 125),
    (struct.pack("!BBQ", 0x81, 0x80 | 127, 5), 5),          # 5 in 64 bits
    (struct.pack("!BBQ", 0x81, 0x80 | 127, 65535), 65535),  # fits in 16 bits
])
def test_non_minimal_lengths_are_refused_with_1002(head, n):
    reader = FrameReader(expect_masked=True)
    with pytest.raises(Exception) as caught:
        reader.receive_frames(_masked(head, b"a" * n))
    assert caught.value.close_code == CloseCode.PROTOCOL_ERROR and "minimal" in caught.value.reason
    conn = ServerProtocol()
    events = conn.receive_events(upgrade_request("127.0.0.1:1", RFC_KEY) + _masked(head, b"a" * n))
    assert isinstance(events[-1], Failed) and events[-1].code == CloseCode.PROTOCOL_ERROR


def test_minimal_lengths_still_pass():
    for n in (0, 125, 126, 65535, 65536):
        frames = FrameReader(expect_masked=False).receive_frames(encode_frame(1, b"a" * n))
        assert len(frames[0].payload) == n


# -- inputs that used to escape as exceptions -------------------------------------------

@pytest.mark.parametrize("text, code", [
    ('{"type": "news", "n": ' + "9" * 5000 + "}", ErrorCode.BAD_JSON),   # int max str digits
    ("[" * 100_000, ErrorCode.BAD_JSON),                                 # RecursionError
    ('{"type": "news", "x": ' + "[" * 40 + "]" * 40 + "}", ErrorCode.BAD_JSON),
    ('{"type": []}', ErrorCode.BAD_SHAPE),
    ('{"type": {"a": 1}}', ErrorCode.BAD_SHAPE),
])
def test_envelope_refuses_with_a_clear_error(text, code):
    with pytest.raises(BadMessage) as caught:
        decode(text)
    assert caught.value.code is code and json.loads(caught.value.encode())["type"] == "error"


@pytest.mark.parametrize("text", ['["1","1","room:a","phx_join",{"n":' + "9" * 5000 + "}]",
                                  "[" * 100_000, '["1","1","room:a","x",' + "[" * 50 + "]" * 50 + "]"])
def test_phoenix_decode_refuses_with_bad_frame(text):
    with pytest.raises(phoenix.BadFrame):
        phoenix.decode(text)


@pytest.mark.parametrize("name, reason", [
    ("kernel", "reserved"), ("KERNEL", "reserved"), ("ｋｅｒｎｅｌ", "reserved"), ("server", "reserved"),
    ("ada\u202e", "U+202E"), ("a\u2066b", "U+2066"), ("a\x00", "U+0000"), ("a\x1b[31m", "U+001B"),
    ("a\u200bb", "U+200B"), ("a\u2028b", "U+2028"),
])
def test_chat_refuses_names_that_impersonate_or_reorder(name, reason):
    with pytest.raises(BadMessage, match=reason.replace("+", r"\+")) as caught:
        parse_client_message(json.dumps({"type": "message", "text": "hi", "name": name}))
    assert caught.value.code is ErrorCode.BAD_SHAPE


def test_chat_keeps_ordinary_names_and_texts():
    for name in ("ada", "Zoë", "李雷", "kernel fan", "ada lovelace"):
        assert parse_client_message(json.dumps({"type": "message", "text": "a\nb\tc", "name": name})) \
            == {"name": name, "text": "a\nb\tc"}
    with pytest.raises(BadMessage, match="U\\+202E"):
        parse_client_message(json.dumps({"type": "message", "text": "gnp.\u202eexe"}))
    assert parse_client_message(json.dumps({"type": "message", "text": "hi", "name": "kernel"}),
                                reserved=()) == {"name": "kernel", "text": "hi"}


@pytest.mark.parametrize("message, line", [
    ({"type": "news"}, "news   (malformed: missing or invalid text)"),
    ({"type": "price", "symbol": "X", "price": "1e9", "seq": 4}, "#04 price  (malformed: missing or invalid price)"),
    ({"type": "price", "symbol": "X", "price": True}, "price  (malformed: missing or invalid price)"),
    ({"type": "clock", "time": ["09:00"]}, "clock  (malformed: missing or invalid time)"),
    ({"type": "news", "text": "<img src=x onerror=alert(1)>", "seq": True},
     "news   <img src=x onerror=alert(1)>"),                    # text: the widget shows it as text
    ({"type": "ack"}, "server: "),
])
def test_format_event_never_raises(message, line):
    assert format_event(message) == line


@pytest.mark.parametrize("text", ["9" * 5000, "[" * 100_000,
                                  '{"command":"subscribe","identifier":"' + "[" * 100 + '"}',
                                  '{"command":"message","identifier":"{}","data":"{\\"n\\":' + "9" * 5000 + '}"}'])
def test_actioncable_decode_refuses_with_bad_command(text):
    from course.wire import actioncable
    with pytest.raises(actioncable.BadCommand):
        actioncable.decode(text)


def test_origin_rule_knows_a_proxy_by_its_port():
    # jupyter-server-proxy forwards a WebSocket with the browser's Origin and Host unchanged:
    # they name JupyterLab's port, not the server's own
    assert origin_allowed("http://jupyter.test:8888", "jupyter.test:8888", own_port=40123)
    assert origin_allowed("https://hub.example.org", "hub.example.org", own_port=40123)
    # DNS rebinding straight to the server: the Host names the server's own port
    assert not origin_allowed("http://attacker.example:40123", "attacker.example:40123", own_port=40123)
    assert not origin_allowed("http://attacker.example", "attacker.example", own_port=80)
