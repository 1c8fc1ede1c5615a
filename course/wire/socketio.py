"""Socket.IO v5 over Engine.IO v4, sans-I/O: decode and encode the text packets.

Two layers, each a one-character type prefix (``docs/engine.io-protocol/v4-current.md`` and
``docs/socket.io-protocol/v5-current.md`` in the socket.io repository)::

    Engine.IO packet     0 open {JSON}   1 close   2 ping   3 pong   4 message   5 upgrade   6 noop
    Socket.IO packet     (inside an Engine.IO ``4`` message)
                         <type>[<attachments>-][<namespace>,][<ack id>][JSON]
                         0 CONNECT  1 DISCONNECT  2 EVENT  3 ACK  4 CONNECT_ERROR
                         5 BINARY_EVENT  6 BINARY_ACK

So the WebSocket text frame ``42/chat,7["msg",{"body":"hi"}]`` is Engine.IO ``4`` (message)
carrying the Socket.IO packet ``2/chat,7[...]``: an EVENT on namespace ``/chat`` whose
sender wants an acknowledgement with id 7; the answer is ``43/chat,7[...]``.  The namespace
``/`` is omitted.  ``2probe``/``3probe`` test a new WebSocket during the upgrade from
HTTP long-polling, then ``5`` switches; over long-polling several Engine.IO packets share
one HTTP body, separated by the record separator ``\\x1e`` (:func:`decode_payload`).

Sans-I/O: text in, dataclasses out, and back; every malformed input raises
:class:`BadPacket` with a sentence that says what is wrong.  Binary attachments
(types 5 and 6) are parsed as placeholders; their bytes travel in separate frames and
are not reassembled here.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SEPARATOR", "BadPacket", "EngineType", "EnginePacket", "PacketType", "Packet",
           "decode_engine", "encode_engine", "decode_payload", "encode_payload", "decode", "encode",
           "decode_frame", "event", "ack"]

SEPARATOR = "\x1e"  #: between Engine.IO packets in one long-polling HTTP body


class BadPacket(ValueError):
    """Text that is not a valid Engine.IO or Socket.IO packet; the message says why."""


class EngineType(enum.IntEnum):
    """Engine.IO v4 packet types."""

    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


class PacketType(enum.IntEnum):
    """Socket.IO v5 packet types."""

    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


@dataclass(frozen=True)
class EnginePacket:
    """One Engine.IO packet.

    Attributes:
        type: the packet type.
        data: ``OPEN``: the handshake object (``sid``, ``upgrades``, ``pingInterval``...);
            ``MESSAGE``: the text after the ``4`` (a Socket.IO packet) or the bytes of a
            binary frame; ``PING``/``PONG``: ``""`` or ``"probe"``; otherwise ``""``.
    """

    type: EngineType
    data: Any = ""


@dataclass(frozen=True)
class Packet:
    """One Socket.IO packet.

    Attributes:
        type: the packet type.
        namespace: ``"/"`` unless another one is named (``"/chat"``).
        data: the decoded JSON payload, or ``None`` when there is none.
        id: the acknowledgement id, or ``None``.
        attachments: for BINARY_EVENT/BINARY_ACK, how many binary frames follow.
    """

    type: PacketType
    namespace: str = "/"
    data: Any = None
    id: int | None = None
    attachments: int = field(default=0)


def _digit_type(text: str, kind: type[enum.IntEnum], what: str) -> enum.IntEnum:
    if not text:
        raise BadPacket(f"empty {what} packet")
    if not text[0].isdigit() or int(text[0]) not in kind._value2member_map_:
        raise BadPacket(f"{what} packet type must be one of "
                        f"{''.join(str(v) for v in kind._value2member_map_)}, got {text[0]!r}")
    return kind(int(text[0]))


def decode_engine(data: str | bytes) -> EnginePacket:
    """Decode one Engine.IO packet (the text of one WebSocket frame, or one piece of a
    polling body).  Bytes are a binary WebSocket frame: a ``MESSAGE`` with those bytes.

    Raises:
        BadPacket: empty, unknown type, or an ``open`` whose data is not a JSON object
            with a string ``sid``.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        return EnginePacket(EngineType.MESSAGE, bytes(data))
    if not isinstance(data, str):
        raise BadPacket(f"expected text, got {type(data).__name__}")
    kind = _digit_type(data, EngineType, "Engine.IO")
    rest = data[1:]
    if kind == EngineType.OPEN:
        try:
            handshake = json.loads(rest)
        except (ValueError, RecursionError):
            raise BadPacket("open packet: the handshake after '0' is not JSON") from None
        if not isinstance(handshake, dict) or not isinstance(handshake.get("sid"), str):
            raise BadPacket('open packet: the handshake must be an object with a string "sid"')
        return EnginePacket(kind, handshake)
    return EnginePacket(kind, rest)


def encode_engine(packet: EnginePacket) -> str | bytes:
    """The text of one Engine.IO packet (bytes for a binary ``MESSAGE``)."""
    kind = EngineType(packet.type)
    if kind == EngineType.MESSAGE and isinstance(packet.data, (bytes, bytearray)):
        return bytes(packet.data)
    if kind == EngineType.OPEN:
        return "0" + json.dumps(packet.data, separators=(",", ":"))
    return f"{int(kind)}{packet.data or ''}"


def decode_payload(body: str) -> list[EnginePacket]:
    """Decode a long-polling HTTP body: Engine.IO packets separated by ``\\x1e``.

    Raises:
        BadPacket: a piece is not a packet (base64 binary pieces, ``b...``, are refused).
    """
    if not isinstance(body, str):
        raise BadPacket(f"a polling body is text, got {type(body).__name__}")
    packets = []
    for piece in body.split(SEPARATOR):
        if piece.startswith("b"):
            raise BadPacket("base64 binary packets ('b...') are not decoded here")
        packets.append(decode_engine(piece))
    return packets


def encode_payload(packets: list[EnginePacket]) -> str:
    """The long-polling body of text packets, joined by ``\\x1e``."""
    return SEPARATOR.join(str(encode_engine(p)) for p in packets)


def _valid(kind: PacketType, data: Any, present: bool) -> str | None:
    """Why ``data`` cannot be the payload of ``kind`` (None: it can)."""
    if kind == PacketType.CONNECT:
        return None if not present or isinstance(data, dict) else "CONNECT data must be an object"
    if kind == PacketType.DISCONNECT:
        return None if not present else "DISCONNECT carries no data"
    if kind == PacketType.CONNECT_ERROR:
        return (None if isinstance(data, (dict, str)) else
                "CONNECT_ERROR data must be an object or a string")
    if kind in (PacketType.EVENT, PacketType.BINARY_EVENT):
        if not isinstance(data, list) or not data:
            return "EVENT data must be a non-empty array [name, ...args]"
        return None if isinstance(data[0], str) else "an EVENT's first element (its name) must be a string"
    return None if isinstance(data, list) else "ACK data must be an array of arguments"


def decode(text: str) -> Packet:
    """Decode one Socket.IO packet: the text inside an Engine.IO ``4`` message.

    Raises:
        BadPacket: unknown type, a bad attachment count, a namespace without its ``,``
            before a payload, a payload that is not JSON or not of the type's shape.
    """
    if not isinstance(text, str):
        raise BadPacket(f"expected text, got {type(text).__name__}")
    kind = PacketType(_digit_type(text, PacketType, "Socket.IO"))
    pos, attachments = 1, 0
    if kind in (PacketType.BINARY_EVENT, PacketType.BINARY_ACK):
        dash = text.find("-", pos)
        if dash < 0 or not text[pos:dash].isdigit():
            raise BadPacket("a binary packet needs its attachment count: '51-...'")
        attachments, pos = int(text[pos:dash]), dash + 1
    namespace = "/"
    if text.startswith("/", pos):
        comma = text.find(",", pos)
        end = len(text) if comma < 0 else comma
        if comma < 0 and any(c in text[pos:] for c in "[{\""):
            raise BadPacket(f"the namespace in {text[:30]!r} must end with ',' before the payload")
        namespace = text[pos:end]
        pos = end + 1 if comma >= 0 else end
    start = pos
    while pos < len(text) and text[pos].isdigit():
        pos += 1
    ack_id = int(text[start:pos]) if pos > start else None
    rest = text[pos:]
    data: Any = None
    if rest:
        try:
            data = json.loads(rest)
        except (ValueError, RecursionError):
            raise BadPacket(f"the payload {rest[:30]!r} is not JSON") from None
    problem = _valid(kind, data, bool(rest))
    if problem:
        raise BadPacket(problem)
    if ack_id is not None and kind not in (PacketType.EVENT, PacketType.ACK,
                                           PacketType.BINARY_EVENT, PacketType.BINARY_ACK):
        raise BadPacket(f"only events and acks carry an ack id, not {kind.name}")
    if kind in (PacketType.ACK, PacketType.BINARY_ACK) and ack_id is None:
        raise BadPacket("an ACK needs the id of the event it answers")
    return Packet(kind, namespace, data, ack_id, attachments)


def encode(packet: Packet) -> str:
    """The text of one Socket.IO packet (put ``"4"`` in front for Engine.IO).

    Raises:
        BadPacket: the data does not fit the packet type (same rules as :func:`decode`).
    """
    kind = PacketType(packet.type)
    problem = _valid(kind, packet.data, packet.data is not None)
    if problem:
        raise BadPacket(problem)
    text = str(int(kind))
    if kind in (PacketType.BINARY_EVENT, PacketType.BINARY_ACK):
        text += f"{packet.attachments}-"
    if packet.namespace != "/":
        text += packet.namespace + ","
    if packet.id is not None:
        text += str(packet.id)
    if packet.data is not None:
        text += json.dumps(packet.data, separators=(",", ":"), ensure_ascii=False)
    return text


def decode_frame(data: str | bytes) -> tuple[EnginePacket, Packet | None]:
    """One WebSocket frame of a Socket.IO connection: the Engine.IO packet and, for a text
    ``MESSAGE``, the Socket.IO packet inside (else ``None``).

    Raises:
        BadPacket: either layer is malformed.
    """
    outer = decode_engine(data)
    if outer.type == EngineType.MESSAGE and isinstance(outer.data, str):
        return outer, decode(outer.data)
    return outer, None


def event(name: str, *args: Any, namespace: str = "/", id: int | None = None) -> Packet:
    """An EVENT packet: ``event("chat", {"body": "hi"}, id=1)`` encodes as ``21["chat",{...}]``."""
    return Packet(PacketType.EVENT, namespace, [name, *args], id)


def ack(id: int, *args: Any, namespace: str = "/") -> Packet:
    """The ACK answering event ``id``: ``ack(1, "ok")`` encodes as ``31["ok"]``."""
    return Packet(PacketType.ACK, namespace, list(args), id)
