"""A raw WebSocket client: TCP, a typed upgrade request, and frames read by hand.

For the lessons and checks that look at the protocol byte by byte: :func:`raw_upgrade`
opens a connection and sends :func:`course.protocol.upgrade_request`; :func:`read_frames`
reads the server's frames with :class:`course.protocol.FrameReader`; every wait is bounded.
"""

from __future__ import annotations

import asyncio

from course.protocol import Frame, FrameReader, upgrade_request
from course.wire.rfc import RFC_KEY

__all__ = ["PeerClosed", "raw_upgrade", "read_frames"]


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
                      path: str = "/chat", timeout: float = 5.0) -> tuple[asyncio.StreamReader, asyncio.StreamWriter,
                                                     bytes, bytes]:
    """Open TCP, type the upgrade request, read the response head.

    A raw connection answers nothing by itself, not even the server's keepalive pings:
    open it in the cell that uses it.

    Args:
        port: The WebSocket server's port.
        key: The ``Sec-WebSocket-Key`` to send.
        host: The server's address.
        path: The resource asked for in the request line.
        timeout: Seconds to wait for the whole response head.

    Returns:
        ``(reader, writer, request, response head)``; close ``writer`` when done.

    Raises:
        ConnectionError: The server refused or closed the connection before answering.
        TimeoutError: No complete response head within ``timeout`` seconds.
    """
    request = upgrade_request(f"{host}:{port}", key, path)
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
            parser.receive_data(data)
            frames += parser.frames_received()
    return frames
