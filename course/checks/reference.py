"""The ``websockets`` library as the reference for the chapter 2 checks.

What a student encodes must parse with websockets' own frame parser (:func:`ws_parse`),
and what websockets serializes must decode with the student's decoder
(:func:`ws_serialize`).  The library is a second, independent implementation of RFC 6455:
agreeing with it is evidence, beyond the RFC's few examples.
"""

from __future__ import annotations

from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode as WsOpcode
from websockets.streams import StreamReader

__all__ = ["ws_parse", "ws_serialize"]


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
