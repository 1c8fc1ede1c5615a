"""Look at WebSocket traffic: a recording TCP proxy and a frame dissector.

Teaching tools for chapter 2.  :class:`Recorder` sits between a real client and
a real server and keeps every byte in both directions; :func:`split_head`,
:func:`frames_in`, :func:`show_frame` and :func:`show_frames` cut those bytes
into the HTTP handshake and the frames and print every header field, using
:func:`course.protocol.parse_frame_header` for the decoding.

:func:`raw_upgrade` opens a raw connection (TCP plus a typed upgrade request) and
:func:`read_frames` reads the server's frames from it, both with bounded waits.

Printed masking keys look like ``key=37fa213d``: clients pick them at random,
so ``tests/sanitize.cfg`` masks that exact form.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from course.protocol import Frame, FrameHeader, FrameReader, apply_mask, parse_frame_header

__all__ = ["Link", "Recorder", "start_recorder", "split_head", "CapturedFrame", "frames_in",
           "show_frame", "show_frames", "length_form", "RFC_KEY", "raw_upgrade",
           "read_frames", "PeerClosed"]

#: The example ``Sec-WebSocket-Key`` of RFC 6455, section 1.3 (a real client draws 16 random bytes).
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="

RFC_FIGURE = """\
 0                   1                   2                   3
 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
+-+-+-+-+-------+-+-------------+-------------------------------+
|F|R|R|R| opcode|M| Payload len |    Extended payload length    |
|I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
|N|V|V|V|       |S|             |   (if payload len==126/127)   |
| |1|2|3|       |K|             |                               |
+-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
|     Extended payload length continued, if payload len == 127  |
+ - - - - - - - - - - - - - - - +-------------------------------+
|                               |Masking-key, if MASK set to 1  |
+-------------------------------+-------------------------------+
| Masking-key (continued)       |          Payload Data         |
+-------------------------------- - - - - - - - - - - - - - - - +
:                     Payload Data continued ...                :
+ - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - +"""


@dataclass
class Link:
    """One relayed TCP connection, as the :class:`Recorder` saw it.

    Attributes:
        number: 1 for the first connection, 2 for the next...
        to_server: The bytes this client sent.
        to_client: The bytes the server sent back.
        last_to_server: ``time.monotonic()`` of the client's last bytes (``None``: none yet).
        last_to_client: The same for the server.
        open: Whether both directions still run.
    """

    number: int
    to_server: bytearray = field(default_factory=bytearray)
    to_client: bytearray = field(default_factory=bytearray)
    last_to_server: float | None = None
    last_to_client: float | None = None
    open: bool = True


class Recorder:
    """A TCP proxy on 127.0.0.1 that forwards to a server and records both directions.

    Attributes:
        port: Where clients should connect (instead of the server's port).
        to_server: Every byte clients sent, concatenated.
        to_client: Every byte the server sent back, concatenated.
        links: Each connection on its own (:class:`Link`), in the order they came.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.to_server = bytearray()
        self.to_client = bytearray()
        self.links: list[Link] = []
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    link: Link, upstream: bool) -> None:
        record, mine = ((self.to_server, link.to_server) if upstream
                        else (self.to_client, link.to_client))
        try:
            while data := await reader.read(65536):
                record += data
                mine += data
                if upstream:
                    link.last_to_server = time.monotonic()
                else:
                    link.last_to_client = time.monotonic()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if writer.can_write_eof() and not writer.is_closing():
                try:
                    writer.write_eof()
                except (ConnectionError, OSError):
                    pass

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            s_reader, s_writer = await asyncio.open_connection(*self.target)
        except OSError:
            c_writer.close()
            return
        link = Link(len(self.links) + 1)
        self.links.append(link)
        tasks = [asyncio.create_task(self._pipe(c_reader, s_writer, link, upstream=True)),
                 asyncio.create_task(self._pipe(s_reader, c_writer, link, upstream=False))]
        self._tasks.update(tasks)
        try:
            await asyncio.gather(*tasks)
        finally:
            link.open = False
            self._tasks.difference_update(tasks)
            s_writer.close()
            c_writer.close()

    def clear(self) -> None:
        """Forget what was recorded so far."""
        self.to_server.clear()
        self.to_client.clear()
        self.links.clear()

    def close(self) -> None:
        """Stop listening and cut the connections still open."""
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()


async def start_recorder(target_host: str, target_port: int) -> Recorder:
    """Start a :class:`Recorder` on 127.0.0.1, port 0, forwarding to the target.

    Args:
        target_host: The real server's address.
        target_port: The real server's port.

    Returns:
        The running recorder; connect clients to ``recorder.port``.
    """
    recorder = Recorder(target_host, target_port)
    recorder._server = await asyncio.start_server(recorder._handle, "127.0.0.1", 0)
    recorder.port = recorder._server.sockets[0].getsockname()[1]
    return recorder


def split_head(data: bytes) -> tuple[bytes, bytes]:
    """Split a recorded stream into the HTTP head and the frames after it.

    Args:
        data: The bytes of one direction of a WebSocket connection.

    Returns:
        ``(head, rest)``: the HTTP request or response head (up to and including
        the blank line) and the frame bytes that follow.

    Raises:
        ValueError: If there is no complete HTTP head.
    """
    end = bytes(data).find(b"\r\n\r\n")
    if end < 0:
        raise ValueError("no complete HTTP head (no blank line) in the data")
    return bytes(data[:end + 4]), bytes(data[end + 4:])


@dataclass(frozen=True)
class CapturedFrame:
    """One frame cut out of a byte stream.

    Attributes:
        header: Every header field (from :func:`course.protocol.parse_frame_header`).
        raw: The frame's bytes exactly as on the wire (header and masked payload).
        payload: The payload, unmasked.
    """

    header: FrameHeader
    raw: bytes
    payload: bytes


def frames_in(data: bytes, *, partial: bool = False) -> list[CapturedFrame]:
    """Cut a stream of frames into :class:`CapturedFrame` objects, without validating them.

    Args:
        data: Frame bytes (no HTTP head), e.g. the ``rest`` of :func:`split_head`.
        partial: Accept data that ends in the middle of a frame (a stream still
            arriving): that last piece is left out.

    Returns:
        Every complete frame, in order.

    Raises:
        ValueError: If the data ends in the middle of a frame (unless ``partial``).
    """
    data = bytes(data)
    frames = []
    pos = 0
    while pos < len(data):
        header = parse_frame_header(data[pos:pos + 14])
        end = pos + (header.header_length + header.payload_length if header else 0)
        if header is None or end > len(data):
            if partial:
                break
            raise ValueError(f"incomplete frame at byte {pos} of {len(data)}")
        body = data[pos + header.header_length:end]
        payload = apply_mask(body, header.mask) if header.mask is not None else body
        frames.append(CapturedFrame(header, data[pos:end], payload))
        pos = end
    return frames


def length_form(header: FrameHeader) -> str:
    """Name the payload length encoding: ``"7-bit"``, ``"16-bit (126)"`` or ``"64-bit (127)"``."""
    return {0: "7-bit", 2: "16-bit (126)", 8: "64-bit (127)"}[header.length_bytes]


def _payload_text(payload: bytes, limit: int = 24) -> str:
    shown = repr(payload[:limit])
    return shown + (f"… ({len(payload)} bytes)" if len(payload) > limit else "")


def show_frame(frame: CapturedFrame | bytes) -> None:
    """Print every header field of one frame, bit by bit for the first two bytes.

    Args:
        frame: A :class:`CapturedFrame`, or bytes starting with one whole frame.

    Raises:
        ValueError: If the bytes do not hold one whole frame.
    """
    if not isinstance(frame, CapturedFrame):
        header = parse_frame_header(bytes(frame)[:14])
        if header is None:
            raise ValueError("not enough bytes for a frame header")
        frame = frames_in(bytes(frame)[:header.header_length + header.payload_length])[0]
    h, raw = frame.header, frame.raw
    print(f"byte 0 = 0x{raw[0]:02x} = {raw[0] >> 7} {raw[0] >> 6 & 1} {raw[0] >> 5 & 1} "
          f"{raw[0] >> 4 & 1} {raw[0] & 0xF:04b}")
    print("           FIN R R R opcode")
    print(f"           FIN={int(h.fin)} RSV1={int(h.rsv1)} RSV2={int(h.rsv2)} RSV3={int(h.rsv3)} "
          f"opcode=0x{h.opcode:X} ({h.opcode_name})")
    print(f"byte 1 = 0x{raw[1]:02x} = {raw[1] >> 7} {raw[1] & 0x7F:07b}")
    print("           MASK payload-len")
    print(f"           MASK={int(h.masked)} payload len field={raw[1] & 0x7F}")
    if h.length_bytes:
        ext = raw[2:2 + h.length_bytes]
        print(f"extended length ({h.length_bytes} bytes) = {ext.hex(' ')} = {h.payload_length}")
    print(f"payload length = {h.payload_length} ({length_form(h)} form)")
    if h.mask is not None:
        print(f"masking key: key={h.mask.hex()}")
    print(f"header = {h.header_length} bytes, payload (unmasked) = {_payload_text(frame.payload)}")


def show_frames(frames: list[CapturedFrame], title: str = "") -> None:
    """Print one line per frame: FIN, RSV, opcode, MASK, length and its form, key, payload.

    Args:
        frames: From :func:`frames_in`.
        title: Printed above the table.
    """
    if title:
        print(title)
    print(f"{'#':>2} {'FIN':>3} {'RSV':>3} {'opcode':<17} {'MASK':>4} {'length':>7} "
          f"{'form':<12} {'key':<12} payload (unmasked)")
    for i, frame in enumerate(frames, 1):
        h = frame.header
        key = f"key={h.mask.hex()}" if h.mask is not None else "-"
        rsv = f"{int(h.rsv1)}{int(h.rsv2)}{int(h.rsv3)}"
        print(f"{i:>2} {int(h.fin):>3} {rsv:>3} {f'0x{h.opcode:X} {h.opcode_name}':<17} "
              f"{int(h.masked):>4} {h.payload_length:>7} {length_form(h):<12} {key:<12} "
              f"{_payload_text(frame.payload)}")


# --------------------------------------------------------------------------- raw connections


class PeerClosed(ConnectionError):
    """The peer closed TCP before the frames we waited for arrived.

    Attributes:
        frames: The frames that did arrive, in order.
    """

    def __init__(self, frames: list[Frame], wanted: int) -> None:
        self.frames = frames
        names = ", ".join(frame.opcode.name for frame in frames) or "none"
        super().__init__(f"the peer closed the connection after {len(frames)} of {wanted} "
                         f"frames (received: {names})")


async def raw_upgrade(port: int, key: str = RFC_KEY, *, host: str = "127.0.0.1",
                      timeout: float = 5.0) -> tuple[asyncio.StreamReader, asyncio.StreamWriter,
                                                     bytes, bytes]:
    """Open TCP, type the upgrade request, read the response head.

    A raw connection answers nothing by itself, not even the server's keepalive pings:
    open it in the cell that uses it.

    Args:
        port: The WebSocket server's port.
        key: The ``Sec-WebSocket-Key`` to send.
        host: The server's address.
        timeout: Seconds to wait for the whole response head.

    Returns:
        ``(reader, writer, request, response head)``; close ``writer`` when done.

    Raises:
        ConnectionError: The server refused or closed the connection before answering.
        TimeoutError: No complete response head within ``timeout`` seconds.
    """
    request = (f"GET /chat HTTP/1.1\r\nHost: {host}:{port}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    try:
        async with asyncio.timeout(timeout):
            response = await reader.readuntil(b"\r\n\r\n")  # the head ends with an empty line
    except BaseException as error:
        writer.close()
        if isinstance(error, asyncio.IncompleteReadError):
            raise ConnectionError("the server closed the connection before answering "
                                  "the upgrade request") from None
        raise
    return reader, writer, request, response


async def read_frames(reader: asyncio.StreamReader, n: int, parser: FrameReader | None = None,
                      timeout: float = 5.0) -> list[Frame]:
    """Read from the socket until the parser returns ``n`` frames (``timeout`` seconds at most).

    Args:
        reader: The raw connection's reader (from :func:`raw_upgrade`).
        n: How many frames to wait for.
        parser: A :class:`course.protocol.FrameReader` that keeps state between calls
            (default: a new one for server frames, which are never masked).
        timeout: Seconds to wait for all ``n`` frames.

    Returns:
        The frames, in order (more than ``n`` if more came in the same read).

    Raises:
        PeerClosed: The peer closed TCP first. At end of file ``read`` returns ``b""``
            at once, without waiting: a loop that ignored it would spin at 100 % CPU
            and never let the timeout fire.
        TimeoutError: Fewer than ``n`` frames arrived within ``timeout`` seconds.
        course.protocol.ProtocolError: The server sent a malformed frame.
    """
    parser = parser or FrameReader(expect_masked=False)
    frames: list[Frame] = []
    async with asyncio.timeout(timeout):
        while len(frames) < n:
            data = await reader.read(65536)
            if not data:
                raise PeerClosed(frames, n)
            frames += parser.feed(data)
    return frames
