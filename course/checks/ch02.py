"""Self-checks for chapter 2: the protocol, byte by byte.

Each ``check_*`` function calls the student's function on several cases (the RFC 6455
examples of :mod:`course.wire.rfc`, the length-form boundaries, edge cases) and, where it
can, compares with the ``websockets`` library (:mod:`course.checks.reference`): what the
student encodes must parse with websockets' parser, and what websockets serializes must
decode with the student's decoder.  One ✅/❌ line per case; a stub that raises
``NotImplementedError`` gives "not implemented yet", never a traceback.

:func:`check_with_real_server` makes the student's four functions talk to a real
``websockets`` server over TCP.  The capstone (``solutions/02b_capstone_raw_server.ipynb``) uses
:func:`check_handshake`, :func:`check_reply_to`, :func:`check_echo_server` and
:func:`check_autobahn` (which runs Autobahn|Testsuite cases with :mod:`course.checks.autobahn`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import Callable, Sequence
from typing import Any

from websockets.utils import accept_key as ws_accept_key
from websockets.utils import apply_mask as ws_apply_mask

from course.checks import FAIL, PASS, acheck, check, expect, expect_equal, summary
from course.checks.autobahn import (AUTOBAHN_SUBSET, PASSING, report_stall, run_autobahn,
                                    selected_cases, summarize_autobahn, watch_for_stall)
from course.checks.reference import ws_parse, ws_serialize
from course.net.rawclient import PeerClosed, raw_upgrade, read_frames
from course.net.relay import start_relay
from course.protocol import (Frame, FrameReader, MessageAssembler, Opcode, ProtocolError,
                             encode_frame, upgrade_request)
from course.wire.rfc import (RFC_ACCEPT, RFC_HEL, RFC_HELLO, RFC_KEY, RFC_LO, RFC_MASK,
                             RFC_MASKED_HELLO, RFC_MASKED_PONG, RFC_PING)

__all__ = [
    "check_unmask",
    "check_accept_key",
    "check_encode_frame",
    "check_decode_frame",
    "check_reply_to",
    "check_handshake",
    "check_echo_server",
    "check_autobahn",
    "check_with_real_server",
]

# Opcodes as plain ints, as the student's functions take and return them.
_TEXT, _BINARY, _CONTINUATION, _CLOSE, _PING, _PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def _payload(n: int) -> bytes:
    """Deterministic, non-repeating-looking bytes of length ``n``."""
    return bytes((i * 37 + i // 251) % 256 for i in range(n))


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

    def same(key: str, expected: str | None = None) -> Callable[[], None]:
        def test() -> None:
            got = accept_key(key)
            if isinstance(got, bytes):
                raise AssertionError("returned bytes; the header value is a str (use .decode())")
            forgot = base64.b64encode(hashlib.sha1(key.encode()).digest()).decode()
            if got == forgot:
                raise AssertionError(f"got {got!r}, the hash of the key alone: the GUID is missing")
            expect_equal(got, expected or ws_accept_key(key))
        return test

    keys = [base64.b64encode(bytes(range(i, i + 16))).decode() for i in (0, 16, 200)]
    results = [
        check(f"RFC 6455 §1.3: {RFC_KEY!r} → {RFC_ACCEPT!r}", same(RFC_KEY, RFC_ACCEPT),
              "the key and the GUID are joined as text (the key is not base64-decoded), "
              "in that order; the digest, not its hex form, is what gets base64-encoded."),
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
        return exact(ws_serialize(_BINARY, payload), _BINARY, payload)

    def parses(n: int, mask: bytes | None, opcode: int = _BINARY, fin: bool = True) -> Callable[[], None]:
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
              exact(RFC_HELLO, _TEXT, b"Hello"), "byte 0 = FIN bit (0x80) | opcode; byte 1 = length"),
        check("RFC §5.7: masked 'Hello' with key 37 fa 21 3d",
              exact(RFC_MASKED_HELLO, _TEXT, b"Hello", mask=RFC_MASK),
              "set the MASK bit (0x80) in byte 1, then the 4-byte key, then the masked payload"),
        check("RFC §5.7: fragments 'Hel' (fin=False, text) + 'lo' (continuation)",
              lambda: (exact(RFC_HEL, _TEXT, b"Hel", fin=False)(),
                       exact(RFC_LO, _CONTINUATION, b"lo")()),
              "fin=False clears the top bit of byte 0"),
        check("RFC §5.7: ping 'Hello' and masked pong 'Hello'",
              lambda: (exact(RFC_PING, _PING, b"Hello")(),
                       exact(RFC_MASKED_PONG, _PONG, b"Hello", mask=RFC_MASK)())),
        check("empty close frame = 88 00", exact(bytes.fromhex("8800"), _CLOSE, b"")),
        check("125 bytes: 7-bit length form (2-byte header)", header(125),
              "lengths up to 125 go straight into byte 1"),
        check("126 bytes: 16-bit form (7e + 2 bytes)", header(126),
              "126 and more: byte 1 = 126, then the length on 2 bytes, big-endian"),
        check("65535 bytes: 16-bit form (7e ff ff)", header(65535)),
        check("65536 bytes: 64-bit form (7f + 8 bytes)", header(65536),
              "more than 65535: byte 1 = 127, then the length on 8 bytes (struct '!Q')"),
        check("mask of zeros: MASK bit set, key 00 00 00 00, payload unchanged",
              exact(bytes.fromhex("8285 00000000") + b"abcde", _BINARY, b"abcde", mask=b"\0\0\0\0"),
              "set the MASK bit and send the key even when it is 00 00 00 00: test `mask is not None`, not `any(mask)`"),
        check("websockets parses your masked 300-byte frame", parses(300, b"abcd")),
        check("websockets parses your masked 70000-byte frame", parses(70000, bytes.fromhex("01020304"))),
        check("websockets parses your unmasked, non-final text frame",
              parses(10, None, opcode=_TEXT, fin=False)),
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
        return gives(ws_serialize(_BINARY, payload, masked=masked), True, _BINARY, payload)

    def too_short() -> None:
        for cut in (RFC_HELLO[:1], RFC_HELLO[:4], ws_serialize(_BINARY, _payload(200))[:3]):
            try:
                decode_frame(cut)
            except ValueError:
                continue
            except NotImplementedError:
                raise
            except Exception as error:
                kind = type(error).__name__
                if type(error).__module__ != "builtins":
                    kind = f"{type(error).__module__}.{kind}"
                raise AssertionError(f"{len(cut)} bytes: raised {kind}, not ValueError")
            raise AssertionError(f"{len(cut)} bytes: returned instead of raising ValueError")

    results = [
        check("RFC §5.7: 81 05 'Hello' → (True, 1, b'Hello', 7)", gives(RFC_HELLO, True, _TEXT, b"Hello"),
              "fin = byte0 >> 7, opcode = byte0 & 0x0F, length = byte1 & 0x7F"),
        check("RFC §5.7: masked 'Hello' is unmasked, 11 bytes consumed",
              gives(RFC_MASKED_HELLO, True, _TEXT, b"Hello"),
              "if byte1 & 0x80, the 4 bytes after the length are the key"),
        check("RFC §5.7: first fragment 'Hel' has fin False",
              gives(RFC_HEL, False, _TEXT, b"Hel")),
        check("empty close frame 88 00", gives(bytes.fromhex("8800"), True, _CLOSE, b"")),
        check("extra bytes after the frame are not consumed",
              gives(RFC_HELLO + RFC_PING, True, _TEXT, b"Hello", used=len(RFC_HELLO)),
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


# --------------------------------------------------------------------------- capstone

def check_reply_to(reply_to: Callable[[Any, Any], tuple[bytes, bool]]) -> bool:
    """Check ``reply_to(frame, assembler) -> (bytes_to_send, connection_over)``.

    ``frame`` is a :class:`course.protocol.Frame`, ``assembler`` a
    :class:`course.protocol.MessageAssembler` shared by the frames of one connection.
    """
    def run(frames: list[Any]) -> list[tuple[bytes, bool]]:
        assembler = MessageAssembler()
        out = []
        for frame in frames:
            got = reply_to(frame, assembler)
            expect(isinstance(got, tuple) and len(got) == 2,
                   f"expected a tuple (bytes, bool), got {got!r:.60}")
            out.append((bytes(got[0]), bool(got[1])))
        return out

    def gives(frames: list[Any], expected: list[tuple[bytes, bool]]) -> Callable[[], None]:
        def test() -> None:
            got = run(frames)
            expect_equal([(b.hex(" "), done) for b, done in got],
                         [(b.hex(" "), done) for b, done in expected], "(reply hex, over)")
        return test

    def fails(frames: list[Any], code: int) -> Callable[[], None]:
        def test() -> None:
            try:
                run(frames)
            except ProtocolError as error:
                expect_equal(int(error.close_code), code, "ProtocolError.close_code")
                return
            raise AssertionError(f"no ProtocolError raised (expected close code {code})")
        return test

    T, B, C = Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION
    results = [
        check("text 'Hello' is echoed as 81 05 48 65 6c 6c 6f",
              gives([Frame(T, b"Hello")], [(RFC_HELLO, False)]),
              "let the assembler build the message, then encode_frame it back (never masked)"),
        check("binary 300 bytes is echoed (16-bit length)",
              gives([Frame(B, _payload(300))], [(ws_serialize(_BINARY, _payload(300)), False)])),
        check("ping 'Hello' is answered by pong 'Hello'",
              gives([Frame(Opcode.PING, b"Hello")], [(bytes.fromhex("8a0548656c6c6f"), False)]),
              "a pong carries the ping's payload"),
        check("an unsolicited pong is ignored", gives([Frame(Opcode.PONG, b"x")], [(b"", False)])),
        check("fragments 'Hel' + ping + 'lo': pong first, then one 'Hello' message",
              gives([Frame(T, b"Hel", fin=False), Frame(Opcode.PING, b""), Frame(C, b"lo")],
                    [(b"", False), (bytes.fromhex("8a00"), False), (RFC_HELLO, False)]),
              "control frames may come between fragments; answer them at once"),
        check("close 1000 is answered by close 1000, and the connection is over",
              gives([Frame(Opcode.CLOSE, b"\x03\xe8")], [(bytes.fromhex("880203e8"), True)]),
              "decode_close the payload, encode_close the same code back"),
        check("an empty close is answered by an empty close",
              gives([Frame(Opcode.CLOSE, b"")], [(bytes.fromhex("8800"), True)]),
              "decode_close gives 1005 (no status), which must never be sent: reply with no code"),
        check("invalid UTF-8 in a text message → ProtocolError 1007",
              fails([Frame(T, b"\xff\xfe")], 1007),
              "let the assembler's ProtocolError propagate; the loop sends the close frame"),
        check("a continuation with no message started → ProtocolError 1002",
              fails([Frame(C, b"x")], 1002)),
        check("close code 999 → ProtocolError 1002", fails([Frame(Opcode.CLOSE, b"\x03\xe7")], 1002)),
    ]
    return summary(results, "reply_to")


async def _start(handler: Callable[..., Any]) -> tuple[asyncio.base_events.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` on a fresh TCP connection and read the reply head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        try:
            return await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            return error.partial
    finally:
        writer.close()


async def check_handshake(handshake: Callable[..., Any], *, stalled_limit: float = 8.0) -> bool:
    """Check ``async handshake(reader, writer) -> bool`` over a real TCP connection.

    A valid upgrade must get ``101`` with the right ``Sec-WebSocket-Accept`` and
    ``True``; a plain HTTP request must get a 4xx answer and ``False``; a client that
    sends half a request and then nothing must be let go (``False``) within
    ``stalled_limit`` seconds.
    """
    returned: list[Any] = []
    errors: list[BaseException] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            returned.append(await handshake(reader, writer))
        except Exception as error:  # reported by the cases below
            errors.append(error)
        finally:
            writer.close()

    good = upgrade_request("127.0.0.1", RFC_KEY, "/chat")
    plain = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    server, port = await _start(handler)

    def case(request: bytes, status: str, ok: bool, accept: bool) -> Callable[[], Any]:
        async def test() -> None:
            returned.clear()
            errors.clear()
            try:
                head = await _exchange(port, request)
            except ConnectionError:  # the handler dropped the connection; errors tell why
                head = b""
            for _ in range(500):  # let the handler finish (bounded: 5 s)
                if returned or errors:
                    break
                await asyncio.sleep(0.01)
            if errors:
                raise errors[0]
            text = head.decode("latin-1")
            expect(text.startswith(f"HTTP/1.1 {status}"),
                   f"status line: expected 'HTTP/1.1 {status}…', got {text.splitlines()[0] if text else 'nothing'!r}")
            if accept:
                expect(f"Sec-WebSocket-Accept: {RFC_ACCEPT}\r\n" in text,
                       f"no 'Sec-WebSocket-Accept: {RFC_ACCEPT}' header")
            expect(returned == [ok], f"handshake() should return {ok}, returned {returned[:1]}")
        return test

    async def half_request_then_silence() -> None:
        returned.clear()
        errors.clear()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(good[:40])  # half a request line, then nothing, ever
            await writer.drain()
            started = asyncio.get_running_loop().time()
            while not (returned or errors):
                waited = asyncio.get_running_loop().time() - started
                if waited > stalled_limit:
                    raise AssertionError(
                        f"a client that sent half a request {waited:.0f} s ago still holds the "
                        "connection: your handshake has no deadline, so a few hundred such "
                        "clients (slowloris) take every file descriptor of the server")
                await asyncio.sleep(0.05)
        finally:
            writer.close()
        if errors and isinstance(errors[0], TimeoutError):
            raise AssertionError("your deadline fired, but handshake() let TimeoutError escape "
                                 "instead of returning False")
        if errors:
            raise errors[0]
        expect(returned == [False], f"handshake() should return False when the client never "
               f"finishes its request, returned {returned[:1]}")

    try:
        results = [
            await acheck("RFC example upgrade → 101 + Sec-WebSocket-Accept, returns True",
                         case(good, "101", True, True),
                         "the head ends at the first blank line; course.protocol parses, "
                         "validates and answers it (see the list above)."),
            await acheck("plain HTTP GET (no Upgrade) → 426, returns False",
                         case(plain, "426", False, False),
                         "a bad request raises HandshakeError, which carries its own HTTP answer."),
            await acheck("a client that stalls mid-request is let go, returns False",
                         half_request_then_silence,
                         "bound the read of the head with a deadline (asyncio.timeout) and "
                         "return False when it expires (TimeoutError).",
                         timeout=stalled_limit + 2),
        ]
    finally:
        server.close()
    return summary(results, "handshake")


async def check_echo_server(port: int, server_errors: Sequence[BaseException] = ()) -> bool:
    """Talk to a running echo server with the ``websockets`` client.

    Args:
        port: The server's port on 127.0.0.1.
        server_errors: Exceptions the server's handler caught (if a case fails and
            one is there, it is reported instead: ``NotImplementedError`` reads
            "not implemented yet").

    Returns:
        Whether every case passed.
    """
    from websockets.asyncio.client import connect

    state: dict[str, Any] = {}

    def explain(error: BaseException) -> BaseException:
        return server_errors[-1] if server_errors else error

    def using_connection(body: Callable[[Any], Any]) -> Callable[[], Any]:
        async def test() -> None:
            ws = state.get("ws")
            if ws is None:
                if server_errors:
                    raise server_errors[-1]
                raise AssertionError("no connection: the opening handshake failed")
            try:
                await body(ws)
            except Exception as error:
                raise explain(error) from None
        return test

    async def opening() -> None:
        try:
            state["ws"] = await connect(f"ws://127.0.0.1:{port}", max_size=None,
                                        compression=None, open_timeout=3, close_timeout=3)
        except Exception as error:
            raise explain(error) from None

    async def echo(ws: Any, message: str | bytes) -> None:
        await ws.send(message)
        got = await ws.recv()
        expect(type(got) is type(message), f"sent {type(message).__name__}, got {type(got).__name__} back")
        expect(got == message, f"the echo differs ({len(got)} vs {len(message)} items)")

    async def ping(ws: Any) -> None:
        waiter = await ws.ping(b"are you there?")
        await waiter

    async def two_in_one_write() -> None:
        try:
            reader, writer, _, head = await raw_upgrade(port, timeout=3)
        except Exception as error:
            raise explain(error) from None
        try:
            expect(head.startswith(b"HTTP/1.1 101"), "the opening handshake failed")
            key = os.urandom(4)
            writer.write(encode_frame(Opcode.TEXT, b"first", mask=key)
                         + encode_frame(Opcode.TEXT, b"second", mask=key))
            parser = FrameReader(expect_masked=False)
            frames: list[Any] = []
            try:
                while len(frames) < 2:
                    frames += await read_frames(reader, 1, parser, timeout=2)
            except (TimeoutError, PeerClosed):
                if server_errors:
                    raise server_errors[-1] from None
                echoed = f" ({frames[0].payload!r})" if frames else ""
                raise AssertionError(
                    f"two frames arrived in one read and {len(frames)} came back{echoed}: the "
                    "other one was lost, or still waits in your FrameReader") from None
            expect_equal([f.payload for f in frames], [b"first", b"second"], "the echoes")
        finally:
            writer.close()

    async def close(ws: Any) -> None:
        await ws.close()
        rcvd = ws.protocol.close_rcvd
        expect(rcvd is not None, "the server never sent its close frame")
        expect_equal(rcvd.code, 1000, "close code the server sent back")

    try:
        results = [
            await acheck("opening handshake with the websockets client", opening),
            await acheck("echo text 'héllo 👋'", using_connection(lambda ws: echo(ws, "héllo 👋"))),
            await acheck("echo binary 300 bytes", using_connection(lambda ws: echo(ws, _payload(300)))),
            await acheck("echo 70000 bytes (64-bit length)",
                         using_connection(lambda ws: echo(ws, _payload(70000)))),
            await acheck("two messages in one TCP write: both are echoed", two_in_one_write,
                         "one read() may hold several frames: after each read, take every "
                         "frame the FrameReader has, not just one."),
            await acheck("ping is answered with pong", using_connection(ping),
                         "answer Opcode.PING with Opcode.PONG, same payload"),
            await acheck("closing handshake: close 1000 answered with 1000", using_connection(close),
                         "reply to a close frame with a close frame, then close TCP"),
        ]
    finally:
        if state.get("ws") is not None:
            await state["ws"].close()
    return summary(results, "echo server")


async def check_autobahn(port: int, server_errors: Sequence[BaseException] = (), *,
                         include: Sequence[str] = AUTOBAHN_SUBSET,
                         timeout: float = 60.0, stall: float = 5.0) -> dict[str, int] | None:
    """Run the Autobahn subset against the server on ``port`` and print the summary.

    A quick echo probe runs first: if the server cannot even echo (e.g. it is not
    implemented yet), Autobahn is skipped with one ❌ line instead of 50 failures.
    The cases run through a recording relay (:class:`course.net.relay.Relay`): when a
    connection stays silent for ``stall`` seconds, the run stops, the cases are replayed
    one by one to find the one that hangs, and the check names it, says what was sent and
    answered, and hints at the cause.

    Args:
        port: The server's port on 127.0.0.1.
        server_errors: Exceptions the server's handler caught, reported if the run fails.
        include: Case ids or globs.
        timeout: Seconds for the whole run.
        stall: Seconds a case may wait for the server's answer (raise it for 9.*: big messages).

    Returns:
        The counts by status, or ``None`` if skipped or stopped.
    """
    from websockets.asyncio.client import connect

    echoed = False
    try:
        async with asyncio.timeout(3):
            async with connect(f"ws://127.0.0.1:{port}", compression=None,
                               close_timeout=0.5) as ws:
                await ws.send("probe")
                await ws.recv()
                echoed = True
    except Exception as error:
        if not echoed:  # a failed close is for Autobahn to report, case by case
            cause = server_errors[-1] if server_errors else error
            why = ("not implemented yet" if isinstance(cause, NotImplementedError)
                   else f"{type(cause).__name__}: {cause}")
            print(f"{FAIL} Autobahn skipped: your server does not echo yet ({why}). "
                  "Make check_echo_server pass first.")
            return None
    relay = await start_relay("127.0.0.1", port)
    run = asyncio.create_task(run_autobahn(relay.port, include, timeout=timeout))
    stalled = False
    try:
        stalled = await watch_for_stall(run, relay, stall) is not None
        results = await run
    except (Exception, asyncio.CancelledError) as error:
        if not stalled and isinstance(error, asyncio.CancelledError):
            raise  # not our doing: the cell was interrupted
        if stalled or isinstance(error, TimeoutError):
            await report_stall(port, selected_cases(include), stall, server_errors)
        else:
            print(f"{FAIL} Autobahn could not run: {type(error).__name__}: {error}")
        return None
    finally:
        relay.close()
        await relay.wait_closed()
    counts = summarize_autobahn(results)
    failed = sum(n for s, n in counts.items() if s not in PASSING)
    if failed:
        print(f"{FAIL} Autobahn: {failed} of {len(results)} cases failed")
    else:
        print(f"{PASS} Autobahn: all {len(results)} cases pass (OK, NON-STRICT or INFORMATIONAL)")
    return counts


async def check_with_real_server(accept_key: Callable[[str], str], encode_frame: Callable[..., bytes],
                                 decode_frame: Callable[[bytes], Sequence[Any]]) -> bool:
    """Talk to a real ``websockets`` echo server using only the student's functions.

    Opens TCP, sends the upgrade, checks ``Sec-WebSocket-Accept`` with ``accept_key``,
    sends masked frames built by ``encode_frame`` and reads the replies with
    ``decode_frame``; the server is stopped before returning.
    """
    from websockets.asyncio.server import serve

    from course.net.handlers import echo_handler

    server = await serve(echo_handler, "127.0.0.1", 0, compression=None, max_size=None,
                         ping_interval=None)  # our raw client answers no keepalive ping
    port = server.sockets[0].getsockname()[1]
    conn: dict[str, Any] = {}

    async def read_frame() -> tuple[Any, ...]:
        reader: asyncio.StreamReader = conn["reader"]
        buffer = conn.setdefault("buffer", bytearray())
        while True:
            try:
                parsed = decode_frame(bytes(buffer))
            except ValueError:
                data = await reader.read(65536)
                expect(bool(data), "the server closed the connection")
                buffer += data
                continue
            del buffer[:parsed[3]]
            return tuple(parsed)

    async def handshake() -> None:
        reader, writer, _, response = await raw_upgrade(port, RFC_KEY)
        conn.update(reader=reader, writer=writer)
        head = response.decode("latin-1")
        expect(head.startswith("HTTP/1.1 101"), f"the server said {head.splitlines()[0]!r}")
        expect(f"Sec-WebSocket-Accept: {accept_key(RFC_KEY)}\r\n" in head,
               "the server's Sec-WebSocket-Accept differs from your accept_key")

    def echoes(opcode: int, payload: bytes) -> Callable[[], Any]:
        async def test() -> None:
            expect("writer" in conn, "no connection (the handshake case failed)")
            conn["writer"].write(bytes(encode_frame(opcode, payload, mask=os.urandom(4))))
            fin, got_opcode, got, _ = await read_frame()
            expect_equal((bool(fin), int(got_opcode)), (True, opcode), "(fin, opcode) of the echo")
            expect(bytes(got) == payload, "the echoed payload differs")
        return test

    async def closing() -> None:
        expect("writer" in conn, "no connection (the handshake case failed)")
        conn["writer"].write(bytes(encode_frame(_CLOSE, b"\x03\xe8", mask=os.urandom(4))))
        _, opcode, payload, _ = await read_frame()
        expect_equal((int(opcode), bytes(payload)), (_CLOSE, b"\x03\xe8"), "(opcode, payload) of the reply")

    try:
        results = [
            await acheck("handshake: the server's accept key matches yours", handshake),
            await acheck("a masked text frame comes back as the same text",
                         echoes(_TEXT, "Hello from my own frames 🎉".encode())),
            await acheck("a masked 70000-byte binary frame comes back whole", echoes(_BINARY, _payload(70000))),
            await acheck("close 1000 is answered by close 1000", closing),
        ]
    finally:
        if "writer" in conn:
            conn["writer"].close()
        server.close()
        await server.wait_closed()
    return summary(results, "talking to a real server")

