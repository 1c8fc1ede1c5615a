"""course.net.rawserver: the from-scratch echo server against the websockets client, raw sockets,
real Chromium, and its command line (SIGTERM/SIGINT)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from course.net.rawclient import raw_upgrade
from course.net.rawserver import start_server
from course.protocol import (CloseCode, FrameReader, Opcode, decode_close, encode_close, encode_frame,
                             upgrade_request)
from course.wire.rfc import RFC_ACCEPT, RFC_KEY

ROOT = Path(__file__).resolve().parent.parent
MASK = b"\x0a\x0b\x0c\x0d"


def run(coro_fn, timeout: float = 30):
    """Run ``coro_fn()`` in a fresh event loop, bounded by ``timeout`` seconds.

    The loop runs in its own thread: once the session's Playwright (sync API) has
    started, this thread counts as running a loop and ``asyncio.run`` would refuse.
    """
    async def bounded():
        async with asyncio.timeout(timeout):
            return await coro_fn()
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, bounded()).result()


async def raw_handshake(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer, _, head = await raw_upgrade(port)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert f"Sec-WebSocket-Accept: {RFC_ACCEPT}".encode() in head
    return reader, writer


async def read_until_eof(reader: asyncio.StreamReader):
    """Read server frames until the server closes TCP; return them."""
    frames_reader = FrameReader(expect_masked=False)
    frames = []
    while data := await reader.read(65536):
        frames += frames_reader.receive_frames(data)
    return frames


async def close_code_after(data: bytes, **limits) -> tuple[list, int]:
    """Send ``data`` after the handshake; return (frames before the close, close code)."""
    async with await start_server(**limits) as server:
        reader, writer = await raw_handshake(server.port)
        writer.write(data)
        frames = await read_until_eof(reader)
        writer.close()
    assert frames and frames[-1].opcode == Opcode.CLOSE
    return frames[:-1], decode_close(frames[-1].payload)[0]


# -- with the websockets client ------------------------------------------------------


def test_echo_with_websockets_client():
    async def main():
        async with await start_server() as server:
            assert server.url == f"ws://127.0.0.1:{server.port}" and server.port > 0
            async with connect(server.url, max_size=None) as ws:
                await ws.send("héllo")
                assert await ws.recv() == "héllo"
                await ws.send(b"\x00\xff")
                assert await ws.recv() == b"\x00\xff"
                big = os.urandom(1 << 20)
                await ws.send(big)
                assert await ws.recv() == big
                await ws.send(["frag", "mented ", "text"])  # sent as 3 frames
                assert await ws.recv() == "fragmented text"
                await ws.send([b"a", b"b"])
                assert await ws.recv() == b"ab"
                latency = await (await ws.ping(b"tick"))
                assert latency >= 0
                assert server.connections == 1
            assert ws.close_code == CloseCode.NORMAL_CLOSURE
            assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1000
    run(main)


def test_many_concurrent_clients():
    async def client(url: str, n: int):
        async with connect(url) as ws:
            for i in range(20):
                await ws.send(f"{n}:{i}")
                assert await ws.recv() == f"{n}:{i}"

    async def main():
        async with await start_server() as server:
            await asyncio.gather(*(client(server.url, n) for n in range(10)))
    run(main)


def test_message_too_big_closes_with_1009():
    async def main():
        async with await start_server(max_message_size=1000) as server:
            async with connect(server.url) as ws:
                await ws.send(bytes(1000))
                assert await ws.recv() == bytes(1000)
                await ws.send(bytes(1001))
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
            assert info.value.rcvd.code == CloseCode.MESSAGE_TOO_BIG
    run(main)


def test_shutdown_sends_1001_going_away():
    async def main():
        server = await start_server(close_timeout=1)
        async with connect(server.url) as ws:
            await ws.send("x")
            await ws.recv()
            server.close()
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd.code == CloseCode.GOING_AWAY
        await server.wait_closed()
        assert server.connections == 0
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", server.port)
    run(main)


def test_shutdown_aborts_a_client_that_never_answers_close():
    async def main():
        server = await start_server(close_timeout=0.3)
        reader, writer = await raw_handshake(server.port)
        server.close()
        await server.wait_closed()  # bounded by close_timeout, not by the silent client
        frames = await read_until_eof(reader)
        assert [decode_close(f.payload)[0] for f in frames] == [CloseCode.GOING_AWAY]
        writer.close()
    run(main, timeout=10)


# -- with raw sockets ------------------------------------------------------------


def test_plain_http_request_gets_426():
    async def main():
        async with await start_server() as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            response = await reader.read()  # the server closes after answering
            writer.close()
            return response
    response = run(main)
    assert response.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert b"\r\nUpgrade: websocket\r\n" in response


def test_wrong_version_gets_426_with_version_header():
    async def main_raw():
        async with await start_server() as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            valid = upgrade_request(f"127.0.0.1:{server.port}", RFC_KEY)
            writer.write(valid.replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"))
            response = await reader.read()
            writer.close()
            return response
    response = run(main_raw)
    assert response.startswith(b"HTTP/1.1 426 ") and b"\r\nSec-WebSocket-Version: 13\r\n" in response


@pytest.mark.parametrize("data, code", [
    (encode_frame(Opcode.TEXT, b"unmasked"), CloseCode.PROTOCOL_ERROR),
    (encode_frame(Opcode.TEXT, b"x", mask=MASK, rsv=4), CloseCode.PROTOCOL_ERROR),
    (encode_frame(5, b"", mask=MASK), CloseCode.PROTOCOL_ERROR),
    (encode_frame(Opcode.PING, bytes(126), mask=MASK), CloseCode.PROTOCOL_ERROR),
    (encode_frame(Opcode.CLOSE, b"\x03\xec", mask=MASK), CloseCode.PROTOCOL_ERROR),  # 1004
    (encode_frame(Opcode.TEXT, b"ok \xff", mask=MASK), CloseCode.INVALID_DATA),
    (encode_frame(Opcode.TEXT, b"\xce", mask=MASK, fin=False), CloseCode.INVALID_DATA),
    (encode_frame(Opcode.BINARY, bytes(2000), mask=MASK), CloseCode.MESSAGE_TOO_BIG),
], ids=["unmasked", "RSV1", "reserved opcode", "long ping", "close code 1004",
        "invalid UTF-8", "truncated UTF-8 then close", "too big"])
def test_protocol_errors_close_with_the_right_code(data, code):
    if code == CloseCode.INVALID_DATA and data[0] & 0x80 == 0:
        # a text fragment ending mid-character, then a final empty continuation
        data += encode_frame(Opcode.CONTINUATION, b"", mask=MASK)
    _, got = run(lambda: close_code_after(data, max_message_size=1000))
    assert got == code


def test_valid_frames_before_an_error_are_echoed_first():
    data = encode_frame(Opcode.TEXT, b"first", mask=MASK) + encode_frame(Opcode.TEXT, b"bad")
    echoed, code = run(lambda: close_code_after(data))
    assert [(f.opcode, f.payload) for f in echoed] == [(Opcode.TEXT, b"first")]
    assert code == CloseCode.PROTOCOL_ERROR


def test_client_close_is_answered_then_server_closes_tcp():
    data = encode_frame(Opcode.CLOSE, encode_close(3000, "app"), mask=MASK)
    echoed, code = run(lambda: close_code_after(data))
    assert echoed == [] and code == 3000


def test_client_vanishing_does_not_crash_the_server():
    async def main():
        async with await start_server() as server:
            for cut in (3, 30):  # mid-handshake, then mid-frame
                _, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n"[:cut])
                writer.transport.abort()
            reader, writer = await raw_handshake(server.port)
            writer.write(encode_frame(Opcode.BINARY, bytes(100), mask=MASK)[:20])
            writer.transport.abort()
            await asyncio.sleep(0.2)
            async with connect(server.url) as ws:  # still serving
                await ws.send("alive")
                assert await ws.recv() == "alive"
            assert server.connections == 0
    run(main)


def test_rawserver_does_not_use_the_websockets_library():
    code = ("import sys, course.net.rawserver; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'websockets'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=30, check=True).stdout
    assert out.strip() == "[]"


# -- the command line -------------------------------------------------------------


def start_cli(*args: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "course.net.rawserver", "--host", "127.0.0.1", "--port", "0", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line.startswith("listening on ws://127.0.0.1:"), (line, process.stderr.read())
    return process, line.split()[-1]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_serves_and_stops_cleanly_on_signal(sig):
    process, url = start_cli()
    try:
        async def main():
            async with connect(url) as ws:
                await ws.send("cli")
                assert await ws.recv() == "cli"
                process.send_signal(sig)
                with pytest.raises(ConnectionClosed) as info:
                    await ws.recv()
                assert info.value.rcvd.code == CloseCode.GOING_AWAY
        run(main)
        out, err = process.communicate(timeout=15)
        assert process.returncode == 0, err
        assert "stopped" in out and "Traceback" not in err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# -- a real browser ---------------------------------------------------------------


@pytest.mark.browser
def test_chromium_websocket_echo(chromium, blank_page_url):
    # the page is on another port: a foreign origin, let in by name (the Origin rule)
    process, url = start_cli("--allow-origin", blank_page_url.rstrip("/"))
    try:
        page = chromium.new_page()
        try:
            page.goto(blank_page_url)
            result = page.evaluate("""async (url) => {
                const ws = new WebSocket(url);
                ws.binaryType = "arraybuffer";
                const next = () => new Promise((resolve, reject) => {
                    ws.onmessage = (e) => resolve(e.data);
                    ws.onerror = () => reject(new Error("websocket error"));
                });
                await new Promise((resolve, reject) => {
                    ws.onopen = resolve; ws.onerror = () => reject(new Error("no open"));
                });
                ws.send("héllo from Chromium");
                const text = await next();
                ws.send(new Uint8Array([0, 1, 2, 255]));
                const bin = Array.from(new Uint8Array(await next()));
                const big = "x".repeat(200000);
                ws.send(big);
                const bigEcho = await next();
                const closed = new Promise((resolve) => {
                    ws.onclose = (e) => resolve([e.code, e.wasClean]);
                });
                ws.close(1000, "bye");
                return {text, bin, bigOk: bigEcho === big, close: await closed};
            }""", url)
        finally:
            page.close()
        assert result == {"text": "héllo from Chromium", "bin": [0, 1, 2, 255],
                          "bigOk": True, "close": [1000, True]}
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=15)
        assert process.returncode == 0


def test_connection_completing_its_handshake_during_shutdown_gets_1001():
    async def main():
        server = await start_server(close_timeout=1)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        request = upgrade_request(f"127.0.0.1:{server.port}", RFC_KEY)
        half = request.index(b"\r\n", request.index(b"Host:")) + 2
        writer.write(request[:half])  # half a handshake: the request line and Host
        await asyncio.sleep(0.1)
        server.close()
        writer.write(request[half:])
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        frames = FrameReader(expect_masked=False)
        got = []
        while not got:
            got = frames.receive_frames(await reader.read(100))
        assert decode_close(got[0].payload)[0] == CloseCode.GOING_AWAY
        writer.write(encode_frame(Opcode.CLOSE, encode_close(1001), mask=MASK))
        assert await reader.read() == b""  # then the server closes TCP
        writer.close()
        await server.wait_closed()
    run(main, timeout=10)
