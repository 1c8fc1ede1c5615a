"""Every worked example of RFC 6455 sections 1.3 and 5.7, both ways.

Encoding must produce the RFC's exact bytes; :class:`FrameReader` must decode them
whole, byte by byte, and cut at every possible split point.
"""

from __future__ import annotations

import pytest

from course.protocol import FrameReader, Opcode, accept_key, encode_frame, parse_frame_header
from course.wire.rfc import (RFC_ACCEPT, RFC_HEL, RFC_HELLO, RFC_KEY, RFC_LO, RFC_MASK,
                             RFC_MASKED_HELLO, RFC_MASKED_PONG, RFC_PING)


def test_accept_key_section_1_3():
    assert accept_key(RFC_KEY) == RFC_ACCEPT


# (name, wire bytes, [(opcode, payload, fin, mask)]) — section 5.7
EXAMPLES = [
    ("single-frame unmasked text", RFC_HELLO, [(Opcode.TEXT, b"Hello", True, None)]),
    ("single-frame masked text", RFC_MASKED_HELLO, [(Opcode.TEXT, b"Hello", True, RFC_MASK)]),
    ("fragmented unmasked text", RFC_HEL + RFC_LO,
     [(Opcode.TEXT, b"Hel", False, None), (Opcode.CONTINUATION, b"lo", True, None)]),
    ("unmasked ping", RFC_PING, [(Opcode.PING, b"Hello", True, None)]),
    ("masked pong", RFC_MASKED_PONG, [(Opcode.PONG, b"Hello", True, RFC_MASK)]),
]


@pytest.mark.parametrize("name, wire, frames", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_encode_gives_rfc_bytes(name, wire, frames):
    encoded = b"".join(encode_frame(op, payload, fin=fin, mask=mask)
                       for op, payload, fin, mask in frames)
    assert encoded == wire


def _expected(frames):
    return [(op, payload, fin, mask is not None, mask) for op, payload, fin, mask in frames]


def _got(decoded):
    return [(f.opcode, f.payload, f.fin, f.masked, f.mask) for f in decoded]


@pytest.mark.parametrize("name, wire, frames", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_reader_decodes_rfc_bytes_whole(name, wire, frames):
    assert _got(FrameReader().receive_frames(wire)) == _expected(frames)


@pytest.mark.parametrize("name, wire, frames", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_reader_decodes_rfc_bytes_byte_by_byte(name, wire, frames):
    reader = FrameReader()
    decoded = []
    for i in range(len(wire)):
        reader.receive_data(wire[i:i + 1])
        decoded += reader.frames_received()
    assert _got(decoded) == _expected(frames)
    assert reader.buffered == 0


@pytest.mark.parametrize("name, wire, frames", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_reader_decodes_rfc_bytes_at_every_split(name, wire, frames):
    for cut in range(len(wire) + 1):
        reader = FrameReader()
        decoded = reader.receive_frames(wire[:cut]) + reader.receive_frames(wire[cut:])
        assert _got(decoded) == _expected(frames), f"split at {cut}"


@pytest.mark.parametrize("size, header", [
    (256, bytes.fromhex("827e0100")),
    (65536, bytes.fromhex("827f0000000000010000")),
], ids=["256 bytes: 16-bit length", "64 KiB: 64-bit length"])
def test_binary_length_headers(size, header):
    payload = bytes(range(256)) * (size // 256)
    wire = encode_frame(Opcode.BINARY, payload)
    assert wire[:len(header)] == header
    assert wire[len(header):] == payload
    parsed = parse_frame_header(wire)
    assert (parsed.opcode, parsed.payload_length, parsed.header_length) == (2, size, len(header))
    for cut in (1, len(header) - 1, len(header), len(header) + 1, len(wire) - 1):
        reader = FrameReader()
        first = reader.receive_frames(wire[:cut])
        assert first == []
        [frame] = reader.receive_frames(wire[cut:])
        assert (frame.opcode, frame.payload, frame.fin) == (Opcode.BINARY, payload, True)


def test_dissect_masked_hello_shows_every_field():
    header = parse_frame_header(RFC_MASKED_HELLO)
    assert header.fields() == {
        "FIN": 1, "RSV1": 0, "RSV2": 0, "RSV3": 0, "opcode": "0x1 (TEXT)", "MASK": 1,
        "payload length": 5, "extended length bytes": 0, "masking key": "37 fa 21 3d",
        "header bytes": 6,
    }


def test_dissect_incomplete_header_returns_none():
    wire = encode_frame(Opcode.BINARY, bytes(70000), mask=RFC_MASK)
    for cut in range(14):
        assert parse_frame_header(wire[:cut]) is None
    assert parse_frame_header(wire[:14]).header_length == 14
