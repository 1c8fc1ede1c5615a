"""The chapter 2 self-checks pass right code and catch wrong code, without ever crashing.

For each ``check_*`` of :mod:`course.checks.ch02`: a correct implementation (built on
``course.protocol``, and an independent one written from the RFC) passes; a stub raising
``NotImplementedError`` and plausible mistakes fail with ❌ lines, ``False`` and no exception.
The last section covers :mod:`course.ui.frames` and :mod:`course.net.relay` (the notebook's
dissector and recording relay).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct

import pytest

from course import protocol
from course.checks import ch02
from course.checks.reference import ws_parse
from course.net.handlers import echo_handler
from course.net.relay import start_relay
from course.ui.frames import frames_in, show_frame, show_frames, split_head
from course.wire.rfc import RFC_HEL, RFC_HELLO, RFC_LO, RFC_MASK, RFC_MASKED_HELLO
from course.protocol import (CloseCode, FrameReader, HandshakeError, MessageAssembler, Opcode,
                             ProtocolError, accept_response, decode_close, encode_close,
                             encode_frame, parse_request, validate_request)

pytestmark = pytest.mark.timeout(120)

GUID = protocol.GUID


# --------------------------------------------------------------------------- implementations

def stub(*args, **kwargs):
    raise NotImplementedError()


async def astub(*args, **kwargs):
    raise NotImplementedError()


# Right, built on course.protocol.
def lib_unmask(payload, mask):
    return protocol.apply_mask(payload, mask)


def lib_encode(opcode, payload, fin=True, mask=None):
    return protocol.encode_frame(opcode, payload, fin=fin, mask=mask)


def lib_decode(data):
    header = protocol.parse_frame_header(data)
    if header is None or len(data) < header.header_length + header.payload_length:
        raise ValueError("incomplete frame")
    [frame] = FrameReader().receive_frames(data[:header.header_length + header.payload_length])
    return frame.fin, frame.opcode, frame.payload, header.header_length + header.payload_length


# Right, written independently from the RFC (what a student would write).
def rfc_unmask(payload, mask):
    return bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def rfc_accept(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def make_encode(*, small_limit=125, mask_test=lambda m: m is not None, order="!"):
    def encode(opcode, payload, fin=True, mask=None):
        b0 = (0x80 if fin else 0) | opcode
        bit = 0x80 if mask_test(mask) else 0
        n = len(payload)
        if n <= small_limit:
            head = struct.pack("!BB", b0, bit | n)
        elif n <= 0xFFFF:
            head = struct.pack("!BB", b0, bit | 126) + struct.pack(order + "H", n)
        else:
            head = struct.pack("!BB", b0, bit | 127) + struct.pack(order + "Q", n)
        if not bit:
            return head + payload
        return head + mask + rfc_unmask(payload, mask)
    return encode


def make_decode(*, unmask=True, consumed_all=False, check_short=True):
    def decode(data):
        if check_short and len(data) < 2:
            raise ValueError("short")
        fin, opcode = bool(data[0] & 0x80), data[0] & 0x0F
        masked, n, pos = bool(data[1] & 0x80), data[1] & 0x7F, 2
        if check_short and len(data) < {126: 4, 127: 10}.get(n, 2):
            raise ValueError("short")
        if n == 126:
            n, pos = struct.unpack("!H", data[2:4])[0], 4
        elif n == 127:
            n, pos = struct.unpack("!Q", data[2:10])[0], 10
        key = data[pos:pos + 4] if masked else None
        pos += 4 if masked else 0
        if check_short and len(data) < pos + n:
            raise ValueError("short")
        payload = data[pos:pos + n]
        if masked and unmask:
            payload = rfc_unmask(payload, key)
        return fin, opcode, payload, len(data) if consumed_all else pos + n
    return decode


RIGHT = {
    "unmask": [lib_unmask, rfc_unmask],
    "accept_key": [protocol.accept_key, rfc_accept],
    "encode_frame": [lib_encode, make_encode()],
    "decode_frame": [lib_decode, make_decode()],
}

WRONG = {
    "unmask": {
        "mask only the first 4 bytes": lambda p, m: bytes(
            b ^ m[i] if i < 4 else b for i, b in enumerate(p)),
        "returns a list": lambda p, m: [b ^ m[i % 4] for i, b in enumerate(p)],
    },
    "accept_key": {
        "forgets the GUID": lambda k: base64.b64encode(hashlib.sha1(k.encode()).digest()).decode(),
        "returns bytes": lambda k: rfc_accept(k).encode(),
        "decodes the key first": lambda k: base64.b64encode(
            hashlib.sha1(base64.b64decode(k) + GUID.encode()).digest()).decode(),
        "hex digest": lambda k: hashlib.sha1((k + GUID).encode()).hexdigest(),
        "GUID first": lambda k: base64.b64encode(hashlib.sha1((GUID + k).encode()).digest()).decode(),
        "base64 of the hex digest": lambda k: base64.b64encode(
            hashlib.sha1((k + GUID).encode()).hexdigest().encode()).decode(),
    },
    "encode_frame": {
        "7-bit form up to 126": make_encode(small_limit=126),
        "`if mask:` instead of `is not None`": make_encode(mask_test=lambda m: bool(m and any(m))),
        "little-endian lengths": make_encode(order="<"),
    },
    "decode_frame": {
        "forgets to unmask": make_decode(unmask=False),
        "consumes all the data": make_decode(consumed_all=True),
        "IndexError on short data": make_decode(check_short=False),
    },
}

CHECKS = {
    "unmask": ch02.check_unmask,
    "accept_key": ch02.check_accept_key,
    "encode_frame": ch02.check_encode_frame,
    "decode_frame": ch02.check_decode_frame,
}


def lines(capsys) -> list[str]:
    return capsys.readouterr().out.splitlines()


# --------------------------------------------------------------------------- frame checks

@pytest.mark.parametrize("name", list(CHECKS))
@pytest.mark.parametrize("which", [0, 1], ids=["course.protocol", "from-the-RFC"])
def test_right_implementation_passes(name, which, capsys):
    assert CHECKS[name](RIGHT[name][which]) is True
    out = lines(capsys)
    assert out and all(line.startswith("✅") for line in out), out
    assert len(out) >= 5  # several cases, then the summary


@pytest.mark.parametrize("name", list(CHECKS))
def test_stub_fails_politely(name, capsys):
    assert CHECKS[name](stub) is False
    out = lines(capsys)
    assert all(line.startswith("❌") for line in out), out
    assert all("not implemented yet" in line for line in out[:-1])
    assert "Traceback" not in "\n".join(out)
    assert "Hint" not in "\n".join(out), "no hint before a real attempt"


@pytest.mark.parametrize("name,mistake", [(n, m) for n in WRONG for m in WRONG[n]])
def test_plausible_mistake_fails(name, mistake, capsys):
    assert CHECKS[name](WRONG[name][mistake]) is False
    out = lines(capsys)
    assert sum(line.startswith("❌") for line in out) >= 2  # a failed case and the summary
    assert out[-1].startswith("❌")


def test_forgotten_guid_is_named(capsys):
    ch02.check_accept_key(WRONG["accept_key"]["forgets the GUID"])
    assert "GUID is missing" in capsys.readouterr().out


def test_zero_mask_case_is_the_one_that_fails(capsys):
    ch02.check_encode_frame(WRONG["encode_frame"]["`if mask:` instead of `is not None`"])
    failed = [line for line in lines(capsys) if line.startswith("❌")]
    assert any("mask of zeros" in line for line in failed)
    assert len(failed) == 2  # only that case, plus the summary line


def test_wrong_length_form_names_the_boundary(capsys):
    ch02.check_encode_frame(WRONG["encode_frame"]["7-bit form up to 126"])
    failed = [line for line in lines(capsys) if line.startswith("❌")]
    assert any("126 bytes" in line for line in failed)
    assert not any("125 bytes" in line for line in failed)


def test_websockets_helpers_round_trip():
    frame, used = ws_parse(RFC_MASKED_HELLO + b"extra", masked=True)
    assert (frame.data, used) == (b"Hello", 11)
    with pytest.raises(AssertionError):
        ws_parse(RFC_HELLO[:3], masked=False)  # truncated
    with pytest.raises(AssertionError):
        ws_parse(RFC_HELLO, masked=True)  # should be masked


# --------------------------------------------------------------------------- live frames

def test_real_server_check_passes_and_fails(capsys):
    assert asyncio.run(ch02.check_with_real_server(rfc_accept, make_encode(), make_decode())) is True
    assert all(line.startswith("✅") for line in lines(capsys))
    assert asyncio.run(ch02.check_with_real_server(stub, stub, stub)) is False
    assert "not implemented yet" in capsys.readouterr().out

    def unmasked(opcode, payload, fin=True, mask=None):  # forgets to mask
        return make_encode()(opcode, payload, fin=fin)

    assert asyncio.run(ch02.check_with_real_server(rfc_accept, unmasked, make_decode())) is False
    out = lines(capsys)
    assert out[0].startswith("✅") and out[1].startswith("❌")


# --------------------------------------------------------------------------- capstone

async def good_handshake(reader, writer):
    try:
        async with asyncio.timeout(1):
            key = validate_request(parse_request(await reader.readuntil(b"\r\n\r\n")))
    except HandshakeError as error:
        writer.write(error.response())
        await writer.drain()
        return False
    except TimeoutError:
        return False
    writer.write(accept_response(key))
    await writer.drain()
    return True


async def no_deadline_handshake(reader, writer):  # the wrong answer: waits forever
    try:
        key = validate_request(parse_request(await reader.readuntil(b"\r\n\r\n")))
    except HandshakeError as error:
        writer.write(error.response())
        await writer.drain()
        return False
    writer.write(accept_response(key))
    await writer.drain()
    return True


async def escaping_timeout_handshake(reader, writer):  # a deadline, but TimeoutError escapes
    async with asyncio.timeout(1):
        return await no_deadline_handshake(reader, writer)


async def no_drain_on_error_handshake(reader, writer):  # never answers a bad request
    try:
        async with asyncio.timeout(1):
            key = validate_request(parse_request(await reader.readuntil(b"\r\n\r\n")))
    except (HandshakeError, TimeoutError):
        return False
    writer.write(accept_response(key))
    await writer.drain()
    return True


async def lax_handshake(reader, writer):  # accepts anything, even plain HTTP
    head = await reader.readuntil(b"\r\n\r\n")
    key = parse_request(head).get("Sec-WebSocket-Key") or "AAAAAAAAAAAAAAAAAAAAAA=="
    writer.write(accept_response(key))
    await writer.drain()
    return True


def good_reply(frame, assembler):
    if frame.opcode == Opcode.PING:
        return encode_frame(Opcode.PONG, frame.payload), False
    if frame.opcode == Opcode.PONG:
        return b"", False
    if frame.opcode == Opcode.CLOSE:
        code, _ = decode_close(frame.payload)
        return encode_frame(Opcode.CLOSE, b"" if code == CloseCode.NO_STATUS_RCVD
                            else encode_close(code)), True
    message = assembler.add(frame)
    if message is None:
        return b"", False
    data = message.data.encode() if message.is_text else message.data
    return encode_frame(message.opcode, data), False


def text_as_binary_reply(frame, assembler):  # echoes text messages as binary
    out, over = good_reply(frame, assembler)
    if out[:1] == b"\x81":
        out = b"\x82" + out[1:]
    return out, over


def close_1005_reply(frame, assembler):  # tries to send 1005 back: encode_close refuses
    if frame.opcode == Opcode.CLOSE:
        code, _ = decode_close(frame.payload)
        return encode_frame(Opcode.CLOSE, encode_close(code)), True
    return good_reply(frame, assembler)


def catching_reply(frame, assembler):  # swallows protocol errors
    try:
        return good_reply(frame, assembler)
    except ProtocolError:
        return b"", False


def test_check_reply_to(capsys):
    assert ch02.check_reply_to(good_reply) is True
    assert all(line.startswith("✅") for line in lines(capsys))
    for wrong in (stub, text_as_binary_reply, close_1005_reply, catching_reply):
        assert ch02.check_reply_to(wrong) is False, wrong.__name__
        assert lines(capsys)[-1].startswith("❌")


def test_check_handshake(capsys):
    assert asyncio.run(ch02.check_handshake(good_handshake, stalled_limit=3)) is True
    assert all(line.startswith("✅") for line in lines(capsys))
    assert asyncio.run(ch02.check_handshake(astub)) is False
    out = capsys.readouterr().out
    assert "not implemented yet" in out and "Traceback" not in out
    assert asyncio.run(ch02.check_handshake(lax_handshake, stalled_limit=3)) is False
    assert "426" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, named", [
    (no_deadline_handshake, "your handshake has no deadline"),
    (lax_handshake, "your handshake has no deadline"),
    (escaping_timeout_handshake, "let TimeoutError escape"),
    (no_drain_on_error_handshake, "expected 'HTTP/1.1 426"),
])
def test_check_handshake_names_the_mistake(capsys, wrong, named):
    assert asyncio.run(ch02.check_handshake(wrong, stalled_limit=3)) is False
    failed = [line for line in lines(capsys) if line.startswith("❌") and "Hint:" in line]
    assert any(named in line for line in failed), failed


def test_check_handshake_gives_no_hint_to_a_stub(capsys):
    assert asyncio.run(ch02.check_handshake(astub)) is False
    assert not any("Hint" in line for line in lines(capsys))


def make_server(handshake, reply_to, errors, *, one_frame_per_read=False):
    async def serve_connection(reader, writer):
        frames = FrameReader(expect_masked=True)
        assembler = MessageAssembler()
        while data := await reader.read(65536):
            frames.receive_data(data)
            try:
                for frame in frames.frames_received():
                    out, over = reply_to(frame, assembler)
                    writer.write(out)
                    if over:
                        return
                    if one_frame_per_read:  # the classic bug: the rest waits for the next read
                        break
            except ProtocolError as error:
                writer.write(encode_frame(Opcode.CLOSE, encode_close(error.close_code)))
                return
            finally:
                await writer.drain()

    async def handle(reader, writer):
        try:
            if await handshake(reader, writer):
                await serve_connection(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception as error:
            errors.append(error)
        finally:
            writer.close()

    return handle


async def run_echo_check(handshake, reply_to, **bug):
    errors: list[BaseException] = []
    server = await asyncio.start_server(make_server(handshake, reply_to, errors, **bug),
                                        "127.0.0.1", 0)
    try:
        return await ch02.check_echo_server(server.sockets[0].getsockname()[1], errors)
    finally:
        server.close()


def test_check_echo_server(capsys):
    assert asyncio.run(run_echo_check(good_handshake, good_reply)) is True
    assert all(line.startswith("✅") for line in lines(capsys))
    assert asyncio.run(run_echo_check(astub, good_reply)) is False
    out = lines(capsys)
    assert all(line.startswith("❌") and "not implemented yet" in line for line in out[:-1])
    assert asyncio.run(run_echo_check(good_handshake, text_as_binary_reply)) is False
    failed = [line for line in lines(capsys) if line.startswith("❌")]
    assert any("echo text" in line for line in failed)


def test_check_echo_server_catches_one_frame_per_read(capsys):
    assert asyncio.run(run_echo_check(good_handshake, good_reply, one_frame_per_read=True)) is False
    failed = [line for line in lines(capsys) if line.startswith("❌") and "Hint:" in line]
    assert any("two frames arrived in one read and 1 came back" in line for line in failed), failed


def test_check_autobahn_names_the_case_that_stalls(capsys):
    def no_close_reply(frame, assembler):  # ignores close frames: kosoku waits forever
        return (b"", False) if frame.opcode == Opcode.CLOSE else good_reply(frame, assembler)

    async def main():
        errors: list[BaseException] = []
        server = await asyncio.start_server(make_server(good_handshake, no_close_reply, errors),
                                            "127.0.0.1", 0)
        try:
            return await ch02.check_autobahn(server.sockets[0].getsockname()[1], errors,
                                             include=["2.2", "2.3"], stall=1.0,
                                             timeout=20)
        finally:
            server.close()

    assert asyncio.run(main()) is None
    out = capsys.readouterr().out
    assert "❌ Autobahn stopped at case 2.2: Send ping with small text payload." in out, out
    assert "(PING, CLOSE" in out and "your server answered 1;" in out, out
    assert "Hint: everything got an answer but kosoku's close frame" in out, out


async def run_autobahn_check(handshake, reply_to):
    errors: list[BaseException] = []
    server = await asyncio.start_server(make_server(handshake, reply_to, errors), "127.0.0.1", 0)
    try:
        return await ch02.check_autobahn(server.sockets[0].getsockname()[1], errors,
                                         include=["1.1.*", "2.*", "7.1.*"])
    finally:
        server.close()


def test_check_autobahn_skips_a_stub(capsys):
    assert asyncio.run(run_autobahn_check(astub, good_reply)) is None
    out = lines(capsys)
    assert len(out) == 1 and out[0].startswith("❌") and "not implemented yet" in out[0]


def test_check_autobahn_passes_a_right_server_and_reports_failures(capsys):
    counts = asyncio.run(run_autobahn_check(good_handshake, good_reply))
    out = capsys.readouterr().out
    assert counts is not None and counts["FAILED"] == 0 and counts["OK"] >= 15, out
    assert "✅ Autobahn" in out
    counts = asyncio.run(run_autobahn_check(good_handshake, text_as_binary_reply))
    out = capsys.readouterr().out
    assert counts["FAILED"] >= 8, out  # every 1.1.* text case
    assert "❌ 1.1.1 FAILED" in out and "❌ Autobahn:" in out


def test_reference_server_passes_the_capstone_subset(capsys):
    from course.net.rawserver import start_server

    async def main():
        server = await start_server("127.0.0.1", 0)
        try:
            return await ch02.check_autobahn(server.port)
        finally:
            server.close()
            await server.wait_closed()

    counts = asyncio.run(main())
    assert counts is not None and counts["FAILED"] == 0, capsys.readouterr().out
    assert sum(counts.values()) >= 50


# --------------------------------------------------------------------------- course.ui.frames, course.net.relay

def test_frames_in_reads_the_rfc_examples():
    data = RFC_HEL + RFC_LO + RFC_MASKED_HELLO
    frames = frames_in(data)
    assert [(f.header.fin, f.header.opcode, f.payload) for f in frames] == [
        (False, 1, b"Hel"), (True, 0, b"lo"), (True, 1, b"Hello")]
    assert frames[2].header.mask == RFC_MASK
    assert b"".join(f.raw for f in frames) == data
    with pytest.raises(ValueError):
        frames_in(data[:-1])


def test_show_frame_and_table(capsys):
    show_frame(RFC_MASKED_HELLO)
    out = capsys.readouterr().out
    assert "FIN=1" in out and "opcode=0x1 (TEXT)" in out and "key=37fa213d" in out
    assert "b'Hello'" in out
    show_frames(frames_in(encode_frame(Opcode.BINARY, bytes(70000))))
    assert "64-bit (127)" in capsys.readouterr().out
    with pytest.raises(ValueError):
        show_frame(b"\x81")


def test_split_head():
    head, rest = split_head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x81\x00")
    assert head.endswith(b"\r\n\r\n") and rest == b"\x81\x00"
    with pytest.raises(ValueError):
        split_head(b"GET / HTTP/1.1\r\n")


def test_relay_records_both_directions():
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    async def main():
        async with serve(echo_handler, "127.0.0.1", 0, compression=None) as server:
            port = server.sockets[0].getsockname()[1]
            relay = await start_relay("127.0.0.1", port)
            try:
                async with asyncio.timeout(5):
                    async with connect(relay.url, compression=None) as ws:
                        await ws.send("Hello")
                        assert await ws.recv() == "Hello"
            finally:
                relay.close()
                await relay.wait_closed()
            return bytes(relay.to_server), bytes(relay.to_client)

    to_server, to_client = asyncio.run(main())
    _, client_frames = split_head(to_server)
    head, server_frames = split_head(to_client)
    assert head.startswith(b"HTTP/1.1 101")
    sent, got = frames_in(client_frames), frames_in(server_frames)
    assert [(f.header.opcode, f.header.masked, f.payload) for f in sent][0] == (1, True, b"Hello")
    assert [(f.header.opcode, f.header.masked, f.payload) for f in got][0] == (1, False, b"Hello")
    assert sent[-1].header.opcode == got[-1].header.opcode == Opcode.CLOSE
