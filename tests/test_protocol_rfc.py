"""Every worked example of RFC 6455 sections 1.3 and 5.7, both ways.

Encoding must produce the RFC's exact bytes; :class:`FrameReader` must decode them
whole, byte by byte, and cut at every possible split point.
"""

from __future__ import annotations

import pytest

from course.protocol import FrameReader, Opcode, accept_key, encode_frame, parse_frame_header

MASK = bytes.fromhex("37fa213d")


def test_accept_key_section_1_3():
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


# (name, wire bytes, [(opcode, payload, fin, mask)]) — section 5.7
EXAMPLES = [
    ("single-frame unmasked text", bytes.fromhex("810548656c6c6f"),
     [(Opcode.TEXT, b"Hello", True, None)]),
    ("single-frame masked text", bytes.fromhex("818537fa213d7f9f4d5158"),
     [(Opcode.TEXT, b"Hello", True, MASK)]),
    ("fragmented unmasked text", bytes.fromhex("010348656c80026c6f"),
     [(Opcode.TEXT, b"Hel", False, None), (Opcode.CONTINUATION, b"lo", True, None)]),
    ("unmasked ping", bytes.fromhex("890548656c6c6f"),
     [(Opcode.PING, b"Hello", True, None)]),
    ("masked pong", bytes.fromhex("8a8537fa213d7f9f4d5158"),
     [(Opcode.PONG, b"Hello", True, MASK)]),
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
    assert _got(FrameReader().feed(wire)) == _expected(frames)


@pytest.mark.parametrize("name, wire, frames", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_reader_decodes_rfc_bytes_byte_by_byte(name, wire, frames):
    reader = FrameReader()
    decoded = []
    for i in range(len(wire)):
        decoded += reader.feed(wire[i:i + 1])
    assert _got(decoded) == _expected(frames)
    assert reader.buffered == 0


@pytest.mark.parametrize("name, wire, frames", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_reader_decodes_rfc_bytes_at_every_split(name, wire, frames):
    for cut in range(len(wire) + 1):
        reader = FrameReader()
        decoded = reader.feed(wire[:cut]) + reader.feed(wire[cut:])
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
        first = reader.feed(wire[:cut])
        assert first == []
        [frame] = reader.feed(wire[cut:])
        assert (frame.opcode, frame.payload, frame.fin) == (Opcode.BINARY, payload, True)


def test_dissect_masked_hello_shows_every_field():
    header = parse_frame_header(bytes.fromhex("818537fa213d7f9f4d5158"))
    assert header.fields() == {
        "FIN": 1, "RSV1": 0, "RSV2": 0, "RSV3": 0, "opcode": "0x1 (TEXT)", "MASK": 1,
        "payload length": 5, "extended length bytes": 0, "masking key": "37 fa 21 3d",
        "header bytes": 6,
    }


def test_dissect_incomplete_header_returns_none():
    wire = encode_frame(Opcode.BINARY, bytes(70000), mask=MASK)
    for cut in range(14):
        assert parse_frame_header(wire[:cut]) is None
    assert parse_frame_header(wire[:14]).header_length == 14
