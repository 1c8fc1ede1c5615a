"""RFC 6455 (The WebSocket Protocol), sans-I/O: bytes in, bytes out.

This module knows no sockets and no event loop.  Every function takes bytes (or
text) and returns bytes (or Python objects); an I/O layer such as
:mod:`course.net.rawserver` moves the bytes.  That split is the design of the
``websockets`` library too: the protocol can be tested byte by byte, and the
same code serves asyncio, threads or a notebook cell.

Layers, from the bytes up:

- :func:`accept_key`, :func:`parse_request`, :func:`validate_request`,
  :func:`accept_response`, :func:`error_response`: the opening handshake (RFC 6455
  section 4).
- :func:`parse_frame_header`, :func:`encode_frame`, :class:`FrameReader`: frames
  (section 5.2), masking (5.3), control frames (5.5).
- :func:`encode_close`, :func:`decode_close`: close payloads (5.5.1, 7.4).
- :class:`MessageAssembler`: fragmentation (5.4) and UTF-8 validation (8.1).
- :class:`ServerProtocol`: a small state machine tying them together
  (``receive_data()`` buffers bytes, iterate ``events_received()``, ``send_*()``
  queue bytes that ``data_to_send()`` returns; the closing handshake of section 7).

The names follow ``websockets`` (``ServerProtocol``, ``receive_data``,
``events_received``) and ``h11``: one method only buffers what was read, another
hands out what it parsed; :class:`FrameReader` reads the same way
(``receive_data()``, then ``frames_received()``).

Malformed frames raise :class:`ProtocolError`, which carries the close code to
send; a bad opening handshake raises :class:`HandshakeError`, which carries the
HTTP status to answer.  Nothing here raises ``IndexError`` or ``struct.error``
on bad input.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import enum
import functools
import hashlib
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

__all__ = [
    "GUID",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MAX_REQUEST_HEAD",
    "Opcode",
    "CloseCode",
    "ProtocolError",
    "HandshakeError",
    "accept_key",
    "upgrade_request",
    "Request",
    "parse_request",
    "validate_request",
    "accept_response",
    "error_response",
    "apply_mask",
    "new_mask",
    "FrameHeader",
    "parse_frame_header",
    "Frame",
    "encode_frame",
    "FrameReader",
    "is_valid_close_code",
    "encode_close",
    "decode_close",
    "Message",
    "MessageAssembler",
    "State",
    "Accepted",
    "Rejected",
    "Ping",
    "Pong",
    "CloseReceived",
    "Failed",
    "ConnectionLost",
    "ServerProtocol",
]

#: The fixed GUID of RFC 6455 section 1.3, appended to the client's key.
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: Default largest message (and frame) a :class:`ServerProtocol` accepts: 64 MiB.
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024

#: Largest HTTP request head accepted during the opening handshake.
MAX_REQUEST_HEAD = 16 * 1024


class Opcode(enum.IntEnum):
    """Frame opcodes (RFC 6455 section 5.2); 3-7 and 11-15 are reserved."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA

    @property
    def is_control(self) -> bool:
        """True for CLOSE, PING and PONG (opcodes with the high bit set)."""
        return self >= 0x8


class CloseCode(enum.IntEnum):
    """Close status codes (RFC 6455 section 7.4.1)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005  # never sent on the wire: "the close frame had no code"
    ABNORMAL_CLOSURE = 1006  # never sent on the wire: "the TCP connection just dropped"
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    TLS_HANDSHAKE = 1015  # never sent on the wire


class ProtocolError(Exception):
    """The peer broke RFC 6455; fail the connection with ``close_code``.

    Attributes:
        close_code: The :class:`CloseCode` to put in the close frame we send
            (1002 protocol error, 1007 invalid UTF-8, 1009 too big, ...).
        reason: A short human-readable explanation (fits in a close frame).
    """

    def __init__(self, close_code: CloseCode, reason: str) -> None:
        super().__init__(f"{int(close_code)} {close_code.name}: {reason}")
        self.close_code = CloseCode(close_code)
        self.reason = reason


class HandshakeError(Exception):
    """The opening handshake request is not an acceptable WebSocket upgrade.

    Attributes:
        status: HTTP status code to answer with (400, 405, 426, 431...).
        reason: Why, in a few words (also used as the response body).
        headers: Extra response headers, e.g. ``[("Sec-WebSocket-Version", "13")]``.
    """

    def __init__(self, status: int, reason: str,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason
        self.headers = list(headers or [])

    def response(self) -> bytes:
        """Return the complete HTTP error response for this error."""
        return error_response(self.status, self.reason, self.headers)


# ---------------------------------------------------------------------------
# Opening handshake (section 4)
# ---------------------------------------------------------------------------


def accept_key(key: str) -> str:
    """Compute ``Sec-WebSocket-Accept`` from the client's ``Sec-WebSocket-Key``.

    Args:
        key: The base64 key sent by the client, e.g. ``"dGhlIHNhbXBsZSBub25jZQ=="``.

    Returns:
        ``base64(SHA-1(key + GUID))``, e.g. ``"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="``.

    Raises:
        TypeError: If ``key`` is not a ``str``.
    """
    if not isinstance(key, str):
        raise TypeError(f"key must be str, not {type(key).__name__}")
    digest = hashlib.sha1((key + GUID).encode("ascii", "strict")).digest()
    return base64.b64encode(digest).decode("ascii")


def upgrade_request(host: str, key: str, path: str = "/",
                    headers: list[tuple[str, str]] | None = None) -> bytes:
    """Build a client's opening handshake (RFC 6455, section 4.1).

    Args:
        host: The ``Host`` header, e.g. ``"127.0.0.1:8765"``.
        key: The ``Sec-WebSocket-Key`` (base64 of 16 bytes; a real client draws them at random).
        path: The resource asked for in the request line.
        headers: Extra ``(name, value)`` headers, e.g. ``[("Origin", "http://example.com")]``.

    Returns:
        The complete request head, ending with ``b"\\r\\n\\r\\n"``.
    """
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    lines += [f"{name}: {value}" for name, value in headers or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


@dataclass(frozen=True)
class Request:
    """An HTTP/1.1 request head, as received before the upgrade.

    Attributes:
        method: ``"GET"``, ...
        target: The request target (path and query), e.g. ``"/chat"``.
        version: ``"HTTP/1.1"``, ...
        headers: ``(name, value)`` pairs in arrival order; names keep their case.
    """

    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]

    def get_all(self, name: str) -> list[str]:
        """Return every value of header ``name`` (case-insensitive), in order."""
        lower = name.lower()
        return [value for key, value in self.headers if key.lower() == lower]

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the values of header ``name`` joined by ``", "``, or ``default``."""
        values = self.get_all(name)
        return ", ".join(values) if values else default


def parse_request(data: bytes) -> Request:
    """Parse an HTTP request head (request line and headers).

    Args:
        data: The bytes up to and including the blank line ``b"\\r\\n\\r\\n"``
            (anything after it is ignored).

    Returns:
        The parsed :class:`Request`.

    Raises:
        HandshakeError: 400 if the head is incomplete or malformed, 431 if it is
            larger than ``MAX_REQUEST_HEAD``.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > MAX_REQUEST_HEAD:
            raise HandshakeError(431, "request head too large")
        raise HandshakeError(400, "incomplete request head")
    if end > MAX_REQUEST_HEAD:
        raise HandshakeError(431, "request head too large")
    try:
        text = bytes(data[:end]).decode("iso-8859-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise HandshakeError(400, "undecodable request head") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not all(parts):
        raise HandshakeError(400, "malformed request line")
    method, target, version = parts
    if not version.startswith("HTTP/"):
        raise HandshakeError(400, "malformed request line")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or any(c in name for c in " \t"):
            raise HandshakeError(400, f"malformed header line {line[:40]!r}")
        headers.append((name, value.strip(" \t")))
    return Request(method, target, version, tuple(headers))


def _tokens(values: list[str]) -> list[str]:
    """Split comma-separated header values into lowercase tokens."""
    return [t.strip().lower() for v in values for t in v.split(",") if t.strip()]


def validate_request(request: Request) -> str:
    """Check that ``request`` is a valid WebSocket opening handshake (section 4.2.1).

    Args:
        request: The parsed request head.

    Returns:
        The client's ``Sec-WebSocket-Key`` (pass it to :func:`accept_response`).

    Raises:
        HandshakeError: 405 if the method is not GET; 400 if the version is not
            HTTP/1.1 or above, ``Host`` is missing or the key is not 16 bytes in
            base64; 426 (with ``Upgrade: websocket``) for a plain HTTP request
            without the upgrade headers; 426 with ``Sec-WebSocket-Version: 13``
            if the WebSocket version is not 13.
    """
    if request.method != "GET":
        raise HandshakeError(405, f"method {request.method} not allowed, use GET",
                             [("Allow", "GET")])
    if request.version != "HTTP/1.1":
        raise HandshakeError(400, f"{request.version} not supported, use HTTP/1.1")
    if not request.get_all("Host"):
        raise HandshakeError(400, "missing Host header")
    upgrade_headers = [("Upgrade", "websocket")]
    if "websocket" not in _tokens(request.get_all("Upgrade")):
        raise HandshakeError(426, "this is a WebSocket server: send Upgrade: websocket",
                             upgrade_headers)
    if "upgrade" not in _tokens(request.get_all("Connection")):
        raise HandshakeError(426, "missing Connection: Upgrade", upgrade_headers)
    versions = request.get_all("Sec-WebSocket-Version")
    if versions != ["13"]:
        raise HandshakeError(426, f"unsupported Sec-WebSocket-Version {versions}, use 13",
                             [("Sec-WebSocket-Version", "13")])
    keys = request.get_all("Sec-WebSocket-Key")
    if len(keys) != 1:
        raise HandshakeError(400, "need exactly one Sec-WebSocket-Key header")
    key = keys[0]
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise HandshakeError(400, "Sec-WebSocket-Key is not base64") from None
    if len(raw) != 16:
        raise HandshakeError(400, f"Sec-WebSocket-Key decodes to {len(raw)} bytes, not 16")
    return key


def accept_response(key: str, headers: list[tuple[str, str]] | None = None) -> bytes:
    """Build the ``101 Switching Protocols`` response accepting the upgrade.

    Args:
        key: The client's ``Sec-WebSocket-Key`` (as returned by :func:`validate_request`).
        headers: Extra ``(name, value)`` headers to add.

    Returns:
        The complete response head, ending with ``b"\\r\\n\\r\\n"``.
    """
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key)}",
    ]
    lines += [f"{name}: {value}" for name, value in headers or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


_STATUS_PHRASES = {
    400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    426: "Upgrade Required", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 503: "Service Unavailable",
}


def error_response(status: int, body: str,
                   headers: list[tuple[str, str]] | None = None) -> bytes:
    """Build a plain-text HTTP error response that closes the connection.

    Args:
        status: HTTP status code, e.g. 400 or 426.
        body: Text explaining the error (sent as ``text/plain; charset=utf-8``).
        headers: Extra ``(name, value)`` headers.

    Returns:
        The complete HTTP response (head and body).
    """
    payload = (body + "\n").encode("utf-8")
    # A response carrying Upgrade must list "upgrade" in Connection (RFC 9110, 7.8).
    upgrade = any(name.lower() == "upgrade" for name, _ in headers or [])
    lines = [
        f"HTTP/1.1 {status} {_STATUS_PHRASES.get(status, 'Error')}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(payload)}",
        "Connection: Upgrade, close" if upgrade else "Connection: close",
    ]
    lines += [f"{name}: {value}" for name, value in headers or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


# ---------------------------------------------------------------------------
# Frames (section 5)
# ---------------------------------------------------------------------------


@functools.cache
def _xor_table(byte: int) -> bytes:
    """The 256-byte translation table mapping every byte ``b`` to ``b ^ byte``."""
    return bytes(b ^ byte for b in range(256))


def apply_mask(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``mask`` repeated (section 5.3).

    Masking and unmasking are the same operation: ``out[i] = payload[i] ^ mask[i % 4]``.
    A Python loop over the bytes would take seconds for a 16 MiB message, so:
    short payloads are XORed as one big integer; longer ones are cut into the
    four byte positions modulo 4 (``payload[j::4]``), each translated in C with
    a 256-byte XOR table (``bytes.translate``).

    Args:
        payload: The bytes to (un)mask.
        mask: The 4-byte masking key.

    Returns:
        The (un)masked bytes, same length as ``payload``.

    Raises:
        ValueError: If ``mask`` is not exactly 4 bytes.
    """
    if len(mask) != 4:
        raise ValueError(f"mask must be 4 bytes, got {len(mask)}")
    n = len(payload)
    if n < 512:
        if n == 0:
            return b""
        repeated = (bytes(mask) * (n // 4 + 1))[:n]
        value = int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")
        return value.to_bytes(n, "little")
    data = payload if isinstance(payload, bytes) else bytes(payload)
    out = bytearray(n)
    for j in range(4):
        out[j::4] = data[j::4].translate(_xor_table(mask[j]))
    return bytes(out)


@dataclass(frozen=True)
class FrameHeader:
    """Every field of a frame header, raw and unvalidated (section 5.2).

    Attributes:
        fin: FIN bit: last fragment of a message.
        rsv1: RSV1 bit (extensions only).
        rsv2: RSV2 bit (extensions only).
        rsv3: RSV3 bit (extensions only).
        opcode: The 4-bit opcode as an ``int`` (may be a reserved value).
        masked: MASK bit: the payload is masked (client-to-server frames).
        payload_length: The decoded payload length.
        length_bytes: How the length was encoded: 0 (7-bit), 2 (16-bit) or 8 (64-bit).
        mask: The 4-byte masking key, or ``None`` when not masked.
        header_length: Total header size in bytes (2 to 14).
    """

    fin: bool
    rsv1: bool
    rsv2: bool
    rsv3: bool
    opcode: int
    masked: bool
    payload_length: int
    length_bytes: int
    mask: bytes | None
    header_length: int

    @property
    def opcode_name(self) -> str:
        """The opcode's name (``"TEXT"``...) or ``"RESERVED"``."""
        try:
            return Opcode(self.opcode).name
        except ValueError:
            return "RESERVED"

    def fields(self) -> dict[str, object]:
        """Return the header fields in wire order, for display."""
        return {
            "FIN": int(self.fin), "RSV1": int(self.rsv1), "RSV2": int(self.rsv2),
            "RSV3": int(self.rsv3), "opcode": f"0x{self.opcode:X} ({self.opcode_name})",
            "MASK": int(self.masked), "payload length": self.payload_length,
            "extended length bytes": self.length_bytes,
            "masking key": self.mask.hex(" ") if self.mask is not None else None,
            "header bytes": self.header_length,
        }


def parse_frame_header(data: bytes) -> FrameHeader | None:
    """Decode the header at the start of ``data``, without judging it.

    Useful to dissect captured frames: reserved opcodes and bits are reported,
    not rejected (:class:`FrameReader` does the validation).

    Args:
        data: Bytes starting at the first byte of a frame.

    Returns:
        The :class:`FrameHeader`, or ``None`` if ``data`` is too short to hold
        the whole header yet.
    """
    n = len(data)
    if n < 2:
        return None
    b0, b1 = data[0], data[1]
    masked = bool(b1 & 0x80)
    length = b1 & 0x7F
    pos = 2
    length_bytes = 0
    if length == 126:
        if n < 4:
            return None
        length = (data[2] << 8) | data[3]
        pos, length_bytes = 4, 2
    elif length == 127:
        if n < 10:
            return None
        length = int.from_bytes(data[2:10], "big")
        pos, length_bytes = 10, 8
    mask = None
    if masked:
        if n < pos + 4:
            return None
        mask = bytes(data[pos:pos + 4])
        pos += 4
    return FrameHeader(
        fin=bool(b0 & 0x80), rsv1=bool(b0 & 0x40), rsv2=bool(b0 & 0x20),
        rsv3=bool(b0 & 0x10), opcode=b0 & 0x0F, masked=masked, payload_length=length,
        length_bytes=length_bytes, mask=mask, header_length=pos,
    )


@dataclass(frozen=True)
class Frame:
    """A decoded frame; ``payload`` is already unmasked.

    Attributes:
        opcode: The frame's :class:`Opcode`.
        payload: Application data (unmasked).
        fin: FIN bit.
        rsv1: RSV1 bit.
        rsv2: RSV2 bit.
        rsv3: RSV3 bit.
        masked: Whether the frame arrived masked.
        mask: The masking key it arrived with, or ``None``.
    """

    opcode: Opcode
    payload: bytes
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False
    masked: bool = False
    mask: bytes | None = field(default=None, repr=False)


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True,
                 mask: bytes | None = None, rsv: int = 0) -> bytes:
    """Serialize one frame (section 5.2), with the shortest length encoding.

    Args:
        opcode: An :class:`Opcode` (or any 0-15 int, to build invalid frames in tests).
        payload: Application data, before masking.
        fin: FIN bit; ``False`` for all fragments but the last.
        mask: 4-byte masking key (clients must mask), or ``None`` for an
            unmasked frame (servers never mask).
        rsv: The three RSV bits as an int 0-7 (RSV1 = 4); 0 without extensions.

    Returns:
        The frame's bytes.

    Raises:
        ValueError: If ``opcode`` or ``rsv`` is out of range, ``mask`` is not 4
            bytes or ``payload`` is too long for 63 bits.
        TypeError: If ``payload`` is not bytes-like.
    """
    if not 0 <= int(opcode) <= 0xF:
        raise ValueError(f"opcode must be 0-15, got {opcode}")
    if not 0 <= rsv <= 7:
        raise ValueError(f"rsv must be 0-7, got {rsv}")
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
    head = (0x80 if fin else 0) | (rsv << 4) | int(opcode)
    mask_bit = 0x80 if mask is not None else 0
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", head, mask_bit | n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", head, mask_bit | 126, n)
    elif n < 1 << 63:
        header = struct.pack("!BBQ", head, mask_bit | 127, n)
    else:  # pragma: no cover - nobody has 8 EiB of RAM
        raise ValueError("payload too long")
    if mask is None:
        return header + bytes(payload)
    return header + bytes(mask) + apply_mask(payload, mask)


class FrameReader:
    """Incremental frame parser: give it bytes as they arrive, get whole frames.

    :meth:`receive_data` only buffers; :meth:`frames_received` parses and hands out
    the complete frames; :meth:`receive_frames` does both at once::

        reader = FrameReader(expect_masked=True)
        reader.receive_data(data)
        for frame in reader.frames_received():
            ...

    The stream may be cut anywhere (even inside the header).  Each frame is
    validated as it is parsed:

    - reserved opcodes (3-7, 11-15) -> 1002;
    - RSV bits set (no extension is negotiated) -> 1002;
    - control frames longer than 125 bytes or fragmented -> 1002;
    - a 64-bit length with its most significant bit set -> 1002;
    - a length not in its shortest form (section 5.2: 126 for a length that fits in
      7 bits, 127 for one that fits in 16) -> 1002;
    - masking not as expected (``expect_masked``) -> 1002;
    - payload longer than ``max_frame_size`` -> 1009 (detected from the header,
      before the payload is read).

    After an error the reader is broken: asking it for frames again raises the same error.

    Args:
        expect_masked: ``True`` on a server (client frames MUST be masked),
            ``False`` on a client (server frames MUST NOT be), ``None`` to accept both.
        max_frame_size: Largest payload accepted, or ``None`` for no limit.
    """

    def __init__(self, *, expect_masked: bool | None = None,
                 max_frame_size: int | None = None) -> None:
        self.expect_masked = expect_masked
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._header: FrameHeader | None = None
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Number of bytes received but not yet returned as a frame."""
        return len(self._buffer)

    @property
    def pending_header(self) -> FrameHeader | None:
        """The header of a frame whose payload has not fully arrived yet, if any."""
        return self._header

    def peek_payload(self, start: int = 0) -> bytes:
        """Return the part of the pending frame's payload received so far, unmasked.

        Lets a caller look at a big frame before it is complete (e.g. to fail
        fast on invalid UTF-8).

        Args:
            start: Offset in the payload to start from (skip what you already saw).

        Returns:
            The unmasked payload bytes from ``start`` up to what has arrived;
            ``b""`` if no frame is pending.
        """
        header = self._header
        if header is None:
            return b""
        stop = min(len(self._buffer) - header.header_length, header.payload_length)
        if stop <= start:
            return b""
        with memoryview(self._buffer) as view:
            chunk = bytes(view[header.header_length + start:header.header_length + stop])
        if header.mask is None:
            return chunk
        shift = start % 4
        return apply_mask(chunk, header.mask[shift:] + header.mask[:shift])

    def receive_data(self, data: bytes) -> None:
        """Buffer ``data`` without parsing it (:meth:`frames_received` parses).

        Args:
            data: Bytes just read from the connection (any length, even 0).
        """
        self._buffer += data

    def frames_received(self) -> Iterator[Frame]:
        """Parse the buffered bytes lazily, yielding each complete frame, unmasked.

        A frame is parsed only when you ask for it, so frames yielded before an
        invalid one reach you before the :class:`ProtocolError`.  Stopping early is
        fine: the rest stays buffered for the next call.  The iteration ends when
        the buffer holds no complete frame (the start of the next one stays there).

        Yields:
            The next :class:`Frame`, in order.

        Raises:
            ProtocolError: If a frame breaks one of the rules above.
        """
        while True:
            if self._error is not None:
                raise self._error
            try:
                frame = self._next_frame()
            except ProtocolError as exc:
                self._error = exc
                raise
            if frame is None:
                return
            yield frame

    def receive_frames(self, data: bytes) -> list[Frame]:
        """Shortcut for ``receive_data(data); list(frames_received())``.

        Args:
            data: Bytes just read from the connection (any length, even 0).

        Returns:
            The complete frames, in order (possibly an empty list).

        Raises:
            ProtocolError: If a frame is invalid.  Frames decoded earlier in the
                same call are lost; iterate :meth:`frames_received` to handle them
                one by one.
        """
        self.receive_data(data)
        return list(self.frames_received())

    def _next_frame(self) -> Frame | None:
        header = self._header
        if header is None:
            header = parse_frame_header(self._buffer)
            if header is None:
                return None
            self._check(header)
            self._header = header
        end = header.header_length + header.payload_length
        if len(self._buffer) < end:
            return None
        with memoryview(self._buffer) as view:  # one copy, not two
            payload = bytes(view[header.header_length:end])
        del self._buffer[:end]  # cheap: CPython drops a bytearray's head without moving the rest
        self._header = None
        if header.mask is not None:
            payload = apply_mask(payload, header.mask)
        return Frame(
            opcode=Opcode(header.opcode), payload=payload, fin=header.fin,
            rsv1=header.rsv1, rsv2=header.rsv2, rsv3=header.rsv3,
            masked=header.masked, mask=header.mask,
        )

    def _check(self, header: FrameHeader) -> None:
        error = CloseCode.PROTOCOL_ERROR
        if header.rsv1 or header.rsv2 or header.rsv3:
            raise ProtocolError(error, "reserved bits set but no extension negotiated")
        try:
            opcode = Opcode(header.opcode)
        except ValueError:
            raise ProtocolError(error, f"reserved opcode 0x{header.opcode:X}") from None
        if opcode.is_control:
            if header.payload_length > 125:
                raise ProtocolError(error, "control frame payload longer than 125 bytes")
            if not header.fin:
                raise ProtocolError(error, "fragmented control frame")
        if header.payload_length >= 1 << 63:
            raise ProtocolError(error, "64-bit payload length with the high bit set")
        if (header.length_bytes == 2 and header.payload_length < 126) or \
                (header.length_bytes == 8 and header.payload_length < 1 << 16):
            raise ProtocolError(error, "payload length not in its minimal encoding")
        if self.expect_masked is not None and header.masked != self.expect_masked:
            if self.expect_masked:
                raise ProtocolError(error, "client frames must be masked")
            raise ProtocolError(error, "server frames must not be masked")
        if self.max_frame_size is not None and header.payload_length > self.max_frame_size:
            raise ProtocolError(
                CloseCode.MESSAGE_TOO_BIG,
                f"frame of {header.payload_length} bytes exceeds {self.max_frame_size}",
            )


# ---------------------------------------------------------------------------
# Close frames (sections 5.5.1 and 7.4)
# ---------------------------------------------------------------------------


def is_valid_close_code(code: int) -> bool:
    """Tell whether ``code`` may appear in a close frame on the wire (section 7.4).

    Valid: 1000-1003, 1007-1011 (defined), 3000-4999 (libraries, applications).
    Invalid: below 1000, 1004 (reserved), 1005/1006/1015 (local only),
    1012-2999 (reserved for future RFCs), 5000 and above.

    Args:
        code: A close status code.

    Returns:
        True if an endpoint may send it.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1011 or 3000 <= code <= 4999


def encode_close(code: int | None = CloseCode.NORMAL_CLOSURE, reason: str = "") -> bytes:
    """Build a close frame payload: 2-byte code (big endian) + UTF-8 reason.

    Args:
        code: The status code, or ``None`` for an empty payload (no code, no reason).
        reason: Text, at most 123 bytes once UTF-8 encoded.

    Returns:
        The payload to put in a CLOSE frame.

    Raises:
        ValueError: If ``code`` may not be sent, the reason is too long, or a
            reason is given without a code.
    """
    if code is None:
        if reason:
            raise ValueError("a close reason needs a close code")
        return b""
    if not is_valid_close_code(code):
        raise ValueError(f"close code {code} may not be sent")
    data = reason.encode("utf-8")
    if len(data) > 123:
        raise ValueError(f"close reason is {len(data)} bytes, at most 123 allowed")
    return struct.pack("!H", code) + data


def decode_close(payload: bytes) -> tuple[int, str]:
    """Parse a received close frame payload.

    Args:
        payload: The (unmasked) payload of a CLOSE frame.

    Returns:
        ``(code, reason)``.  An empty payload gives ``(1005, "")``
        (:attr:`CloseCode.NO_STATUS_RCVD`).  ``code`` is a :class:`CloseCode`
        when known, else a plain ``int`` (3000-4999).

    Raises:
        ProtocolError: 1002 for a 1-byte payload or a code that may not be
            sent; 1007 if the reason is not valid UTF-8.
    """
    if len(payload) == 0:
        return CloseCode.NO_STATUS_RCVD, ""
    if len(payload) == 1:
        raise ProtocolError(CloseCode.PROTOCOL_ERROR, "close payload of 1 byte")
    code = int.from_bytes(payload[:2], "big")
    if not is_valid_close_code(code):
        raise ProtocolError(CloseCode.PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = bytes(payload[2:]).decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(CloseCode.INVALID_DATA, "close reason is not UTF-8") from None
    try:
        code = CloseCode(code)
    except ValueError:
        pass
    return code, reason


# ---------------------------------------------------------------------------
# Messages: fragmentation (5.4) and UTF-8 (8.1)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """A complete data message.

    Attributes:
        data: ``str`` for a text message, ``bytes`` for a binary one.
    """

    data: str | bytes

    @property
    def is_text(self) -> bool:
        """True for a text message."""
        return isinstance(self.data, str)

    @property
    def opcode(self) -> Opcode:
        """TEXT or BINARY."""
        return Opcode.TEXT if self.is_text else Opcode.BINARY


class MessageAssembler:
    """Reassemble data frames into messages, validating UTF-8 as text arrives.

    Feed it only data frames (TEXT, BINARY, CONTINUATION); control frames may be
    interleaved between fragments and do not touch its state, so handle them
    before calling :meth:`add`.

    Text is decoded with an incremental UTF-8 decoder fragment by fragment, so
    an invalid byte fails the message immediately, not at its end.

    Args:
        max_message_size: Largest message in bytes (``None``: no limit).
    """

    def __init__(self, *, max_message_size: int | None = None) -> None:
        self.max_message_size = max_message_size
        self._opcode: Opcode | None = None
        self._parts: list = []
        self._size = 0
        self._decoder = None

    @property
    def in_progress(self) -> bool:
        """True while a fragmented message is incomplete."""
        return self._opcode is not None

    def text_lookahead(self):
        """Return a fresh UTF-8 decoder in the state the next text fragment starts in.

        Returns:
            An incremental decoder (``codecs``) primed with the bytes of an
            unfinished character that ended the previous fragment, or ``None``
            when the message in progress is not text.
        """
        decoder = codecs.getincrementaldecoder("utf-8")()
        if self._opcode is None:
            return decoder
        if self._opcode != Opcode.TEXT:
            return None
        decoder.setstate(self._decoder.getstate())
        return decoder

    def add(self, frame: Frame) -> Message | None:
        """Add one data frame.

        Args:
            frame: A TEXT, BINARY or CONTINUATION frame.

        Returns:
            The :class:`Message` this frame completes, or ``None``.

        Raises:
            ProtocolError: 1002 for a CONTINUATION without a message started or
                a new TEXT/BINARY before the previous message ended; 1007 for
                invalid UTF-8 in a text message; 1009 if the message grows past
                ``max_message_size``.
            ValueError: If ``frame`` is a control frame (a bug in the caller).
        """
        opcode = frame.opcode
        if opcode.is_control:
            raise ValueError("control frames are not part of messages; handle them first")
        if opcode == Opcode.CONTINUATION:
            if self._opcode is None:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR,
                                    "continuation frame without a message to continue")
        else:
            if self._opcode is not None:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR,
                                    f"new {opcode.name} frame inside a fragmented message")
            self._opcode = opcode
            self._parts = []
            self._size = 0
            if opcode == Opcode.TEXT:
                self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._size += len(frame.payload)
        if self.max_message_size is not None and self._size > self.max_message_size:
            self._reset()
            raise ProtocolError(CloseCode.MESSAGE_TOO_BIG,
                                f"message exceeds {self.max_message_size} bytes")
        if self._opcode == Opcode.TEXT:
            try:
                self._parts.append(self._decoder.decode(frame.payload, final=frame.fin))
            except UnicodeDecodeError:
                self._reset()
                raise ProtocolError(CloseCode.INVALID_DATA, "invalid UTF-8 in text message") from None
        else:
            self._parts.append(frame.payload)
        if not frame.fin:
            return None
        parts = self._parts
        text = self._opcode == Opcode.TEXT
        self._reset()
        if len(parts) == 1:
            return Message(parts[0])
        return Message("".join(parts) if text else b"".join(parts))

    def _reset(self) -> None:
        self._opcode = None
        self._parts = []
        self._size = 0
        self._decoder = None


# ---------------------------------------------------------------------------
# Server connection state machine
# ---------------------------------------------------------------------------


class State(enum.Enum):
    """Life cycle of a connection (section 4 and 7)."""

    CONNECTING = "connecting"  # waiting for / reading the opening handshake
    OPEN = "open"  # messages flow both ways
    CLOSING = "closing"  # we sent a close frame, waiting for the peer's
    CLOSED = "closed"  # closing handshake done or connection failed


@dataclass(frozen=True)
class Accepted:
    """Event: the opening handshake succeeded (the 101 response is queued)."""

    request: Request


@dataclass(frozen=True)
class Rejected:
    """Event: the opening handshake was refused (an HTTP error response is queued)."""

    status: int
    reason: str


@dataclass(frozen=True)
class Ping:
    """Event: a ping arrived (the matching pong is already queued)."""

    payload: bytes


@dataclass(frozen=True)
class Pong:
    """Event: a pong arrived."""

    payload: bytes


@dataclass(frozen=True)
class CloseReceived:
    """Event: the peer's close frame arrived; the closing handshake is complete."""

    code: int
    reason: str


@dataclass(frozen=True)
class Failed:
    """Event: the peer broke the protocol; a close frame with ``code`` is queued."""

    code: CloseCode
    reason: str


@dataclass(frozen=True)
class ConnectionLost:
    """Event: the TCP connection ended without a closing handshake (1006)."""

    code: CloseCode = CloseCode.ABNORMAL_CLOSURE


class ServerProtocol:
    """The server side of one WebSocket connection, without I/O.

    Give received bytes to :meth:`receive_data` (it only buffers), act on each
    event :meth:`events_received` yields (it parses), write :meth:`data_to_send`
    to the socket, and close the socket once :attr:`should_close` is true.  Pings
    are answered and the closing handshake is replied to automatically.

    Example::

        conn = ServerProtocol()
        conn.receive_data(raw_bytes)
        for event in conn.events_received():
            if isinstance(event, Message):
                conn.send_message(event.data)      # echo
        sock.sendall(conn.data_to_send())

    Args:
        max_message_size: Largest message accepted (also the largest frame);
            bigger ones fail the connection with 1009.  ``None``: no limit.
        max_frame_size: Largest single frame, defaults to ``max_message_size``.
        check_request: Called with each valid upgrade :class:`Request` before it is
            accepted; it refuses the handshake by raising :class:`HandshakeError`
            (e.g. 403 for an ``Origin`` that is not allowed).  ``None``: accept all.

    Attributes:
        state: The :class:`State`.
        request: The opening handshake :class:`Request`, once accepted.
        close_code: What ended the connection: the code of the peer's close
            frame (1005 if it had none), the code we failed the connection
            with, or 1006 if TCP ended first; ``None`` while not ended.
        close_reason: The reason that went with ``close_code``.
        should_close: True once the I/O layer must close the TCP connection
            (after writing :meth:`data_to_send`).
        frames_count: Frames received so far (control frames and empty fragments
            included): what a server rate-limits to stop floods.
    """

    def __init__(self, *, max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
                 max_frame_size: int | None = None,
                 check_request: Callable[[Request], None] | None = None) -> None:
        if max_frame_size is None:
            max_frame_size = max_message_size
        self.check_request = check_request
        self.state = State.CONNECTING
        self.request: Request | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.should_close = False
        self.frames_count = 0
        self._head = bytearray()
        self._out: list[bytes] = []
        self._reader = FrameReader(expect_masked=True, max_frame_size=max_frame_size)
        self._assembler = MessageAssembler(max_message_size=max_message_size)
        self._lookahead: tuple[FrameHeader, object, int] | None = None

    # -- input ---------------------------------------------------------------

    @property
    def message_pending(self) -> bool:
        """Whether part of a frame or of a fragmented message is waiting for the rest.

        A server bounds how long this may last (a client that stalls mid-message
        pins the memory of what it sent so far).
        """
        return self._reader.buffered > 0 or self._assembler.in_progress

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes received from the client; :meth:`events_received` parses them.

        Args:
            data: Bytes just read from the socket.
        """
        if self.state == State.CONNECTING:
            self._head += data
        elif self.state != State.CLOSED:
            self._reader.receive_data(data)

    def events_received(self) -> Iterator[object]:
        """Parse buffered bytes lazily, yielding one event at a time.

        The next frame is parsed only when you ask for the next event, so a
        reply you queue while handling an event (an echo, say) goes out before
        anything caused by later frames, e.g. the close frame of a protocol
        error.  Stopping early is fine: the rest stays buffered for the next call.

        Yields:
            :class:`Accepted`, :class:`Rejected`, :class:`Message`,
            :class:`Ping`, :class:`Pong`, :class:`CloseReceived`, :class:`Failed`.
        """
        while True:
            if self.state == State.CONNECTING:
                event = self._handshake()
                if event is None:
                    return
                yield event
                continue
            if self.state == State.CLOSED:
                return
            try:
                frame = next(self._reader.frames_received(), None)  # one frame at a time
                if frame is None:
                    self._check_partial_text()
                    return
                self._lookahead = None
                event = self._handle(frame)
            except ProtocolError as exc:
                yield self.fail(exc.close_code, exc.reason)
                return
            if event is not None:
                yield event

    def receive_events(self, data: bytes) -> list:
        """Process bytes received from the client and return all events at once.

        Shortcut for ``receive_data(data); list(events_received())``.  Every frame
        in ``data`` is handled before you see the events, so if a later frame is invalid the
        connection is already failed (and :meth:`send_message` raises) when you
        handle an earlier message; servers that reply to messages should use
        :meth:`receive_data` and :meth:`events_received`.

        Args:
            data: Bytes just read from the socket.

        Returns:
            The events (see :meth:`events_received`), in order.
        """
        self.receive_data(data)
        return list(self.events_received())

    def _handshake(self) -> Accepted | Rejected | None:
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_REQUEST_HEAD:
                return self._reject(HandshakeError(431, "request head too large"))
            return None
        head, rest = bytes(self._head[:end + 4]), bytes(self._head[end + 4:])
        self._head = bytearray()
        try:
            request = parse_request(head)
            key = validate_request(request)
            if self.check_request is not None:
                self.check_request(request)
        except HandshakeError as exc:
            return self._reject(exc)
        self.request = request
        self._out.append(accept_response(key))
        self.state = State.OPEN
        self._reader.receive_data(rest)
        return Accepted(request)

    def receive_eof(self) -> list:
        """Tell the connection the client closed TCP.

        Returns:
            ``[ConnectionLost()]`` if this happened before the closing
            handshake completed, else ``[]``.
        """
        self.should_close = True
        if self.state == State.CLOSED:
            return []
        self.state = State.CLOSED
        if self.close_code is None:
            self.close_code = CloseCode.ABNORMAL_CLOSURE
        return [ConnectionLost()]

    def _reject(self, exc: HandshakeError) -> Rejected:
        self._out.append(exc.response())
        self.state = State.CLOSED
        self.should_close = True
        return Rejected(exc.status, exc.reason)

    def _check_partial_text(self) -> None:
        """Fail fast on invalid UTF-8 inside a text frame that is still arriving."""
        header = self._reader.pending_header
        if header is None or header.opcode not in (Opcode.TEXT, Opcode.CONTINUATION):
            return
        if self._lookahead is None or self._lookahead[0] is not header:
            if header.opcode == Opcode.TEXT:
                decoder = codecs.getincrementaldecoder("utf-8")()
            else:
                decoder = self._assembler.text_lookahead()
                if decoder is None:  # a binary message (or an error caught later)
                    return
            self._lookahead = (header, decoder, 0)
        _, decoder, seen = self._lookahead
        chunk = self._reader.peek_payload(seen)
        self._lookahead = (header, decoder, seen + len(chunk))
        try:
            decoder.decode(chunk, final=False)
        except UnicodeDecodeError:
            raise ProtocolError(CloseCode.INVALID_DATA, "invalid UTF-8 in text message") from None

    def _handle(self, frame: Frame):
        self.frames_count += 1
        opcode = frame.opcode
        if opcode == Opcode.CLOSE:
            code, reason = decode_close(frame.payload)
            if self.state == State.OPEN:  # the client started the closing handshake
                reply = code if code != CloseCode.NO_STATUS_RCVD else None
                self._out.append(encode_frame(Opcode.CLOSE, encode_close(reply)))
            self.close_code, self.close_reason = code, reason
            self.state = State.CLOSED
            self.should_close = True  # the server closes TCP first (section 7.1.1)
            return CloseReceived(code, reason)
        if opcode == Opcode.PING:
            if self.state == State.OPEN:
                self._out.append(encode_frame(Opcode.PONG, frame.payload))
            return Ping(frame.payload)
        if opcode == Opcode.PONG:
            return Pong(frame.payload)
        message = self._assembler.add(frame)
        if self.state != State.OPEN:  # data after our close frame is dropped (7.1.4)
            return None
        return message

    # -- output --------------------------------------------------------------

    def _require_open(self) -> None:
        if self.state != State.OPEN:
            raise RuntimeError(f"cannot send: connection is {self.state.value}")

    def send_message(self, data: str | bytes) -> None:
        """Queue one unfragmented message: ``str`` as TEXT, bytes as BINARY.

        Args:
            data: The message.

        Raises:
            RuntimeError: If the connection is not open.
            TypeError: If ``data`` is neither ``str`` nor bytes-like.
        """
        self._require_open()
        if isinstance(data, str):
            self._out.append(encode_frame(Opcode.TEXT, data.encode("utf-8")))
        elif isinstance(data, (bytes, bytearray, memoryview)):
            self._out.append(encode_frame(Opcode.BINARY, bytes(data)))
        else:
            raise TypeError(f"message must be str or bytes, not {type(data).__name__}")

    def send_ping(self, payload: bytes = b"") -> None:
        """Queue a ping (payload at most 125 bytes).

        Raises:
            RuntimeError: If the connection is not open.
            ValueError: If the payload is longer than 125 bytes.
        """
        self._require_open()
        if len(payload) > 125:
            raise ValueError("ping payload longer than 125 bytes")
        self._out.append(encode_frame(Opcode.PING, payload))

    def send_close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake: queue a close frame, wait for the client's.

        Args:
            code: Close code (1000 normal, 1001 going away, ...).
            reason: Short UTF-8 reason (at most 123 bytes).

        Raises:
            RuntimeError: If the connection is not open.
            ValueError: If the code may not be sent or the reason is too long.
        """
        self._require_open()
        self._out.append(encode_frame(Opcode.CLOSE, encode_close(code, reason)))
        self.state = State.CLOSING

    def fail(self, code: CloseCode, reason: str = "") -> Failed:
        """Fail the connection: queue a close frame with ``code`` and give up.

        Args:
            code: Close code to send (1002, 1007, 1009...).
            reason: Short explanation sent in the close frame.

        Returns:
            The :class:`Failed` event describing it.
        """
        if self.state == State.OPEN:
            data = reason.encode("utf-8")[:123].decode("utf-8", "ignore")
            self._out.append(encode_frame(Opcode.CLOSE, encode_close(code, data)))
        if self.state != State.CLOSED:
            self.close_code, self.close_reason = code, reason
        self.state = State.CLOSED
        self.should_close = True
        return Failed(CloseCode(code), reason)

    def data_to_send(self) -> bytes:
        """Return (and forget) the bytes queued for the client."""
        if not self._out:
            return b""
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out = []
        return data


def new_mask() -> bytes:
    """Return a fresh random 4-byte masking key (section 5.3: unpredictable)."""
    return os.urandom(4)
