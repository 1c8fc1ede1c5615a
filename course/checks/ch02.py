"""Self-checks for chapter 2: the protocol, byte by byte.

Each ``check_*`` function calls the student's function on several cases (the RFC 6455
examples, the length-form boundaries, edge cases) and, where it can, compares with the
``websockets`` library: what the student encodes must parse with websockets' parser, and
what websockets serializes must decode with the student's decoder.  One ✅/❌ line per case;
a stub that raises ``NotImplementedError`` gives "not implemented yet", never a traceback.

The capstone (``solutions/02b_capstone_raw_server.ipynb``) uses :func:`check_handshake`,
:func:`check_echo_server` and :func:`check_autobahn`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode as WsOpcode
from websockets.streams import StreamReader
from websockets.utils import accept_key as ws_accept_key
from websockets.utils import apply_mask as ws_apply_mask

from course.checks import FAIL, PASS, check, expect, expect_equal, summary

__all__ = [
    "check_unmask",
    "check_accept_key",
    "check_encode_frame",
    "check_decode_frame",
    "check_handshake",
    "check_echo_server",
    "check_autobahn",
    "autobahn_subset",
    "run_autobahn",
    "summarize_autobahn",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# RFC 6455 section 5.7 examples.
RFC_HELLO = bytes.fromhex("810548656c6c6f")
RFC_MASK = bytes.fromhex("37fa213d")
RFC_MASKED_HELLO = bytes.fromhex("818537fa213d7f9f4d5158")
RFC_HEL = bytes.fromhex("010348656c")
RFC_LO = bytes.fromhex("80026c6f")
RFC_PING = bytes.fromhex("890548656c6c6f")
RFC_MASKED_PONG = bytes.fromhex("8a8537fa213d7f9f4d5158")
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaK0EtE6yGf8YoWz1k="

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def _payload(n: int) -> bytes:
    """Deterministic, non-repeating-looking bytes of length ``n``."""
    return bytes((i * 37 + i // 251) % 256 for i in range(n))


def ws_parse(data: bytes, *, masked: bool) -> tuple[WsFrame, int]:
    """Parse one frame with the websockets library.

    Args:
        data: bytes holding at least one whole frame.
        masked: whether the frame must be masked (client to server) or not.

    Returns:
        The websockets ``Frame`` and how many bytes it used.

    Raises:
        AssertionError: the bytes are not one valid frame for websockets.
    """
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = WsFrame.parse(reader.read_exact, mask=masked, max_size=None, extensions=[])
    try:
        next(parser)
    except StopIteration as done:
        return done.value, len(data) - len(reader.buffer)
    except Exception as error:  # websockets' own ProtocolError, EOFError...
        raise AssertionError(f"websockets cannot parse your frame ({type(error).__name__}: {error})")
    raise AssertionError("websockets needs more bytes than your frame holds: the length field is wrong")


def ws_serialize(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = False) -> bytes:
    """Serialize one frame with websockets (a random mask if ``masked``)."""
    return WsFrame(WsOpcode(opcode), payload, fin).serialize(mask=masked, extensions=[])


# --------------------------------------------------------------------------- unmask

def check_unmask(unmask: Callable[[bytes, bytes], bytes]) -> bool:
    """Check ``unmask(payload, mask) -> bytes`` (XOR with the 4-byte key, repeated)."""

    def same(payload: bytes, mask: bytes, expected: bytes) -> Callable[[], None]:
        def test() -> None:
            got = unmask(payload, mask)
            expect(isinstance(got, (bytes, bytearray)), f"expected bytes, got {type(got).__name__}")
            expect_equal(bytes(got), expected)
        return test

    data = _payload(1000)
    key = bytes.fromhex("a1b2c3d4")
    results = [
        check("RFC 6455 §5.7: masked 'Hello' unmasks to b'Hello'",
              same(RFC_MASKED_HELLO[6:], RFC_MASK, b"Hello"),
              "byte i of the payload is XORed with mask[i % 4]"),
        check("empty payload gives b''", same(b"", key, b"")),
        check("a mask of zeros changes nothing", same(data[:7], b"\0\0\0\0", data[:7]),
              "x ^ 0 == x"),
        check("lengths that are not a multiple of 4 (1, 2, 3, 5 bytes)",
              lambda: [same(data[:n], key, ws_apply_mask(data[:n], key))() for n in (1, 2, 3, 5)],
              "use i % 4 to pick the mask byte, so the tail works too"),
        check("1000 bytes: same result as websockets.utils.apply_mask",
              same(data, key, ws_apply_mask(data, key))),
        check("masking twice gives the payload back (XOR is its own inverse)",
              lambda: same(bytes(unmask(data, key)), key, data)()),
    ]
    return summary(results, "unmask")


# --------------------------------------------------------------------------- accept key

def check_accept_key(accept_key: Callable[[str], str]) -> bool:
    """Check ``accept_key(key) -> str``: base64(SHA-1(key + GUID))."""

    def same(key: str) -> Callable[[], None]:
        def test() -> None:
            got = accept_key(key)
            if isinstance(got, bytes):
                raise AssertionError("returned bytes; the header value is a str (use .decode())")
            forgot = base64.b64encode(hashlib.sha1(key.encode()).digest()).decode()
            if got == forgot:
                raise AssertionError(f"got {got!r}, the hash of the key alone: the GUID is missing")
            expect_equal(got, ws_accept_key(key))
        return test

    keys = [base64.b64encode(bytes(range(i, i + 16))).decode() for i in (0, 16, 200)]
    results = [
        check(f"RFC 6455 §1.3: {RFC_KEY!r} → {RFC_ACCEPT!r}", same(RFC_KEY),
              f"sha1((key + {GUID!r}).encode()), then base64; the key is used as text, not decoded"),
        *[check(f"key {k!r} gives the same as websockets", same(k)) for k in keys],
    ]
    return summary(results, "accept_key")


# --------------------------------------------------------------------------- encode

def check_encode_frame(encode_frame: Callable[..., bytes]) -> bool:
    """Check ``encode_frame(opcode, payload, fin=True, mask=None) -> bytes``."""

    def exact(expected: bytes, *args: Any, **kwargs: Any) -> Callable[[], None]:
        def test() -> None:
            got = encode_frame(*args, **kwargs)
            expect(isinstance(got, (bytes, bytearray)), f"expected bytes, got {type(got).__name__}")
            got = bytes(got)
            expect_equal(got[:14].hex(" "), expected[:14].hex(" "), "first bytes (hex)")
            expect_equal(len(got), len(expected), "frame length")
            expect(got == expected, "the header is right but the payload bytes differ")
        return test

    def header(n: int) -> Callable[[], None]:
        payload = _payload(n)
        return exact(ws_serialize(BINARY, payload), BINARY, payload)

    def parses(n: int, mask: bytes | None, opcode: int = BINARY, fin: bool = True) -> Callable[[], None]:
        def test() -> None:
            payload = _payload(n)
            frame, used = ws_parse(bytes(encode_frame(opcode, payload, fin=fin, mask=mask)),
                                   masked=mask is not None)
            expect_equal((frame.fin, int(frame.opcode), len(frame.data)), (fin, opcode, n),
                         "websockets read (fin, opcode, length)")
            expect(frame.data == payload, "websockets read a different payload")
        return test

    results = [
        check("RFC §5.7: unmasked text 'Hello' = 81 05 48 65 6c 6c 6f",
              exact(RFC_HELLO, TEXT, b"Hello"), "byte 0 = FIN bit (0x80) | opcode; byte 1 = length"),
        check("RFC §5.7: masked 'Hello' with key 37 fa 21 3d",
              exact(RFC_MASKED_HELLO, TEXT, b"Hello", mask=RFC_MASK),
              "set the MASK bit (0x80) in byte 1, then the 4-byte key, then the masked payload"),
        check("RFC §5.7: fragments 'Hel' (fin=False, text) + 'lo' (continuation)",
              lambda: (exact(RFC_HEL, TEXT, b"Hel", fin=False)(),
                       exact(RFC_LO, CONTINUATION, b"lo")()),
              "fin=False clears the top bit of byte 0"),
        check("RFC §5.7: ping 'Hello' and masked pong 'Hello'",
              lambda: (exact(RFC_PING, PING, b"Hello")(),
                       exact(RFC_MASKED_PONG, PONG, b"Hello", mask=RFC_MASK)())),
        check("empty close frame = 88 00", exact(bytes.fromhex("8800"), CLOSE, b"")),
        check("125 bytes: 7-bit length form (2-byte header)", header(125),
              "lengths up to 125 go straight into byte 1"),
        check("126 bytes: 16-bit form (7e + 2 bytes)", header(126),
              "126 and more: byte 1 = 126, then the length on 2 bytes, big-endian"),
        check("65535 bytes: 16-bit form (7e ff ff)", header(65535)),
        check("65536 bytes: 64-bit form (7f + 8 bytes)", header(65536),
              "more than 65535: byte 1 = 127, then the length on 8 bytes (struct '!Q')"),
        check("mask of zeros: MASK bit set, key 00 00 00 00, payload unchanged",
              exact(bytes.fromhex("8285 00000000") + b"abcde", BINARY, b"abcde", mask=b"\0\0\0\0"),
              "test `mask is not None`, not `if mask:` — four zero bytes are still a mask"),
        check("websockets parses your masked 300-byte frame", parses(300, b"abcd")),
        check("websockets parses your masked 70000-byte frame", parses(70000, bytes.fromhex("01020304"))),
        check("websockets parses your unmasked, non-final text frame",
              parses(10, None, opcode=TEXT, fin=False)),
    ]
    return summary(results, "encode_frame")


# --------------------------------------------------------------------------- decode

def check_decode_frame(decode_frame: Callable[[bytes], Sequence[Any]]) -> bool:
    """Check ``decode_frame(data) -> (fin, opcode, payload, consumed)`` on one whole frame."""

    def gives(data: bytes, fin: bool, opcode: int, payload: bytes, used: int | None = None
              ) -> Callable[[], None]:
        def test() -> None:
            got = decode_frame(data)
            expect(isinstance(got, Sequence) and len(got) == 4,
                   f"expected a tuple (fin, opcode, payload, consumed), got {got!r:.60}")
            g_fin, g_op, g_payload, g_used = got
            expect_equal((bool(g_fin), int(g_op)), (fin, opcode), "(fin, opcode)")
            expect(isinstance(g_payload, (bytes, bytearray)),
                   f"payload: expected bytes, got {type(g_payload).__name__}")
            expect_equal(len(g_payload), len(payload), "payload length")
            expect(bytes(g_payload) == payload,
                   "payload bytes differ (did you unmask it?)" if data[1] & 0x80 else "payload bytes differ")
            expect_equal(g_used, len(data) if used is None else used, "bytes consumed")
        return test

    def from_websockets(n: int, masked: bool) -> Callable[[], None]:
        payload = _payload(n)
        return gives(ws_serialize(BINARY, payload, masked=masked), True, BINARY, payload)

    def too_short() -> None:
        for cut in (RFC_HELLO[:1], RFC_HELLO[:4], ws_serialize(BINARY, _payload(200))[:3]):
            try:
                decode_frame(cut)
            except ValueError:
                continue
            except NotImplementedError:
                raise
            except Exception as error:
                raise AssertionError(f"{len(cut)} bytes: raised {type(error).__name__}, not ValueError")
            raise AssertionError(f"{len(cut)} bytes: returned instead of raising ValueError")

    results = [
        check("RFC §5.7: 81 05 'Hello' → (True, 1, b'Hello', 7)", gives(RFC_HELLO, True, TEXT, b"Hello"),
              "fin = byte0 >> 7, opcode = byte0 & 0x0F, length = byte1 & 0x7F"),
        check("RFC §5.7: masked 'Hello' is unmasked, 11 bytes consumed",
              gives(RFC_MASKED_HELLO, True, TEXT, b"Hello"),
              "if byte1 & 0x80, the 4 bytes after the length are the key"),
        check("RFC §5.7: first fragment 'Hel' has fin False",
              gives(RFC_HEL, False, TEXT, b"Hel")),
        check("empty close frame 88 00", gives(bytes.fromhex("8800"), True, CLOSE, b"")),
        check("extra bytes after the frame are not consumed",
              gives(RFC_HELLO + RFC_PING, True, TEXT, b"Hello", used=len(RFC_HELLO)),
              "consumed = header length + payload length, not len(data)"),
        check("websockets' 125-byte frame", from_websockets(125, False)),
        check("websockets' 126-byte frame (16-bit length)", from_websockets(126, False),
              "length 126 means: read the real length from the next 2 bytes"),
        check("websockets' 65536-byte frame (64-bit length)", from_websockets(65536, False),
              "length 127 means: read the real length from the next 8 bytes"),
        check("websockets' masked 65535-byte frame (random key)", from_websockets(65535, True)),
        check("fewer bytes than one frame raises ValueError", too_short,
              "compare len(data) with the header and payload lengths before slicing"),
    ]
    return summary(results, "decode_frame")
