"""The course's message envelope: one JSON object per text frame, with a ``type``.

Every JSON server of the course (the chapter 3 hub and push server, the chat, the
transports experiment) speaks it, and the channel layer of chapter 5 extends it::

    {"type": "news", "seq": 1, "text": "..."}                  # any message
    {"type": "error", "code": "bad-json", "error": "..."}      # a refused message

An error names *why* twice: ``code`` for programs (an :class:`ErrorCode` value, stable)
and ``error`` for people (a sentence that may change).  A server answers a bad message
with an error and keeps the connection open; a client shows the ``error`` text as text,
never as HTML.

Sans-I/O: strings and dicts in, strings and dicts out; no sockets, no asyncio.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Collection
from typing import Any

from course.wire.limits import MAX_JSON_DEPTH, JsonTooDeep, check_json_depth

__all__ = ["Kind", "ErrorCode", "BadMessage", "encode", "loads", "decode", "error_message"]


class Kind(str, enum.Enum):
    """The ``type`` values the course's servers and clients exchange."""

    NEWS = "news"
    CLOCK = "clock"
    PRICE = "price"
    CONTROL = "control"
    ACK = "ack"
    ERROR = "error"
    CHAT = "chat"
    MESSAGE = "message"
    WELCOME = "welcome"


class ErrorCode(str, enum.Enum):
    """Why a message was refused: the ``code`` of an error message."""

    NOT_TEXT = "not-text"          #: a binary frame, or bytes that are not UTF-8
    BAD_JSON = "bad-json"          #: the text is not JSON
    BAD_SHAPE = "bad-shape"        #: JSON, but not an object with the expected fields
    UNKNOWN_TYPE = "unknown-type"  #: an object whose ``type`` this endpoint does not know
    EMPTY = "empty"                #: a required text is empty
    TOO_LONG = "too-long"          #: a field is longer than the endpoint accepts
    RATE_LIMITED = "rate-limited"  #: too many messages: this one was dropped, slow down


class BadMessage(ValueError):
    """A message that is refused, with a machine-readable :class:`ErrorCode`.

    Args:
        code: why, for programs.
        text: why, for people.
    """

    def __init__(self, code: ErrorCode, text: str) -> None:
        super().__init__(text)
        self.code = ErrorCode(code)

    def as_payload(self) -> dict[str, str]:
        """The error message as a dict: ``{"type": "error", "code": ..., "error": ...}``."""
        return {"type": Kind.ERROR.value, "code": self.code.value, "error": str(self)}

    def encode(self) -> str:
        """The error message as the text of one frame."""
        return json.dumps(self.as_payload(), separators=(",", ":"))


def encode(kind: Kind | str, **fields: Any) -> str:
    """Build one message: ``{"type": kind, **fields}`` as compact JSON.

    Args:
        kind: the message type (a :class:`Kind` or any string).
        **fields: JSON-serialisable fields.

    Raises:
        BadMessage: a field that JSON cannot encode (code ``bad-shape``).
    """
    kind = kind.value if isinstance(kind, Kind) else str(kind)
    try:
        return json.dumps({"type": kind, **fields}, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise BadMessage(ErrorCode.BAD_SHAPE, f"cannot encode message: {error}") from None


def loads(data: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON from the network, turning every way it can fail into a :class:`BadMessage`.

    Args:
        data: the text (bytes are decoded as UTF-8).
        max_depth: deepest nesting of arrays and objects accepted.

    Raises:
        BadMessage: not UTF-8 (``not-text``); not JSON, or a number Python refuses to convert, such as an
            integer of more than 4,300 digits, or nested deeper than ``max_depth``
            (``bad-json``).
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            data = bytes(data).decode()
        except UnicodeDecodeError:
            raise BadMessage(ErrorCode.NOT_TEXT, "binary frame is not UTF-8 text") from None
    try:
        check_json_depth(data, max_depth)
    except JsonTooDeep as error:
        raise BadMessage(ErrorCode.BAD_JSON, f"bad JSON: nested too deeply ({error.depth} levels, "
                         f"at most {error.limit})") from None
    try:
        return json.loads(data)
    except json.JSONDecodeError as error:
        raise BadMessage(ErrorCode.BAD_JSON,
                         f"bad JSON: {error.msg} at position {error.pos}") from None
    except ValueError as error:  # e.g. int() of more than sys.get_int_max_str_digits() digits
        raise BadMessage(ErrorCode.BAD_JSON, f"bad JSON: {str(error)[:80]}") from None
    except RecursionError:
        raise BadMessage(ErrorCode.BAD_JSON, "bad JSON: nested too deeply") from None


def decode(data: str | bytes, *, types: Collection[str] | None = None,
           max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """Parse one message.

    Args:
        data: the payload of a text frame (bytes are decoded as UTF-8).
        types: the ``type`` values this endpoint accepts (default: every :class:`Kind`).
        max_depth: deepest JSON nesting accepted (default
            :data:`course.wire.limits.MAX_JSON_DEPTH`).

    Returns:
        The message as a dict with a string ``type``.

    Raises:
        BadMessage: not UTF-8 (``not-text``), not JSON or nested too deeply
            (``bad-json``), not an object with a string ``type`` (``bad-shape``), or a
            ``type`` outside ``types`` (``unknown-type``).
    """
    message = loads(data, max_depth=max_depth)
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise BadMessage(ErrorCode.BAD_SHAPE, 'expected a JSON object with a "type" string')
    allowed = {k.value for k in Kind} if types is None else set(types)
    if message["type"] not in allowed:
        raise BadMessage(ErrorCode.UNKNOWN_TYPE, f"unknown message type {message['type']!r}")
    return message


def error_message(code: ErrorCode, text: str) -> str:
    """The text of an error frame: ``{"type": "error", "code": code, "error": text}``."""
    return BadMessage(code, text).encode()
