"""The examples of RFC 6455, as data: one copy for the lessons, the checks and the tests.

Section 1.3 gives the handshake's example key and its answer; section 5.7 gives frames
byte by byte ("Hello" unmasked and masked, fragmented, a ping and its masked pong);
section 5.2 draws the base framing.
"""

from __future__ import annotations

__all__ = ["RFC_KEY", "RFC_ACCEPT", "RFC_HELLO", "RFC_MASK", "RFC_MASKED_HELLO", "RFC_HEL",
           "RFC_LO", "RFC_PING", "RFC_MASKED_PONG", "RFC_FIGURE"]

#: The example ``Sec-WebSocket-Key`` of section 1.3 (a real client draws 16 random bytes).
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
#: Its ``Sec-WebSocket-Accept`` (section 1.3).
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
#: Section 5.7: a single-frame unmasked text message "Hello".
RFC_HELLO = bytes.fromhex("810548656c6c6f")
#: Section 5.7: the masking key of the masked examples.
RFC_MASK = bytes.fromhex("37fa213d")
#: Section 5.7: a single-frame masked text message "Hello".
RFC_MASKED_HELLO = bytes.fromhex("818537fa213d7f9f4d5158")
#: Section 5.7: a fragmented unmasked text message, first frame "Hel"...
RFC_HEL = bytes.fromhex("010348656c")
#: ...and the last frame "lo".
RFC_LO = bytes.fromhex("80026c6f")
#: Section 5.7: an unmasked ping with body "Hello".
RFC_PING = bytes.fromhex("890548656c6c6f")
#: Section 5.7: a masked pong with body "Hello" (the answer to that ping).
RFC_MASKED_PONG = bytes.fromhex("8a8537fa213d7f9f4d5158")

#: Section 5.2: the base framing protocol.
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
