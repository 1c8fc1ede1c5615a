"""Frames on screen: cut recorded bytes into the handshake and the frames, and print them.

Teaching tools for chapter 2.  :func:`split_head`, :func:`frames_in`, :func:`show_frame`
and :func:`show_frames` cut the bytes a :class:`course.net.relay.Relay` recorded into
the HTTP handshake and the frames and print every header field, using
:func:`course.protocol.parse_frame_header` for the decoding.

Printed masking keys look like ``key=37fa213d``: clients pick them at random,
so ``tests/sanitize.cfg`` masks that exact form.
"""

from __future__ import annotations

from dataclasses import dataclass

from course.protocol import FrameHeader, apply_mask, parse_frame_header

__all__ = ["split_head", "CapturedFrame", "frames_in", "length_form", "show_frame", "show_frames"]


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
