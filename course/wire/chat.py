"""The chat's messages (chapter 4): what a page may send, checked without any I/O.

* page → server: ``{"type": "message", "text": "hi", "name": "ada"}`` (``name`` optional);
* server → page: ``{"type": "welcome", "history": [...]}`` on connect,
  ``{"type": "message", "id": 7, "name": "ada", "text": "hi"}`` for every message, and
  the envelope's error, ``{"type": "error", "code": "bad-json", "error": "..."}``, when
  a page sends something invalid (the connection stays open).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection

from course.wire.envelope import BadMessage, ErrorCode, Kind, decode

__all__ = ["MAX_TEXT_CHARS", "MAX_NAME_CHARS", "MAX_FRAME_BYTES", "HISTORY_SIZE",
           "RESERVED_NAMES", "BIDI_CONTROLS", "parse_client_message", "check_name", "text_field"]

MAX_TEXT_CHARS = 500          #: longest accepted message text
MAX_NAME_CHARS = 32           #: longest accepted name
MAX_FRAME_BYTES = 64 * 1024   #: larger frames are refused with close code 1009
HISTORY_SIZE = 50             #: messages replayed to a page that (re)connects
#: names a page may not take (compared case-insensitively, after NFKC normalisation)
RESERVED_NAMES = frozenset({"kernel", "server", "system", "admin", "moderator"})
#: the characters that reorder text (U+202A-U+202E, U+2066-U+2069, marks): refused in
#: names and texts, since they can make a line read as something else
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                          "\u2066\u2067\u2068\u2069")


def check_name(name: str, reserved: Collection[str] = RESERVED_NAMES) -> str:
    """A display name, checked: no control, format (bidi, zero-width) or separator
    characters other than spaces, and not a reserved name such as ``kernel``.

    Args:
        name: the stripped name.
        reserved: names refused (case-insensitive, NFKC-normalised).

    Returns:
        ``name`` unchanged.

    Raises:
        BadMessage: ``bad-shape``, with the reason.
    """
    for char in name:
        category = unicodedata.category(char)
        if category[0] == "C" or category in ("Zl", "Zp") or (category == "Zs" and char != " "):
            raise BadMessage(ErrorCode.BAD_SHAPE,
                             f"name contains a control or invisible character (U+{ord(char):04X})")
    if unicodedata.normalize("NFKC", name).casefold() in {r.casefold() for r in reserved}:
        raise BadMessage(ErrorCode.BAD_SHAPE, f"the name {name!r} is reserved")
    return name


def parse_client_message(data: str, *, reserved: Collection[str] = RESERVED_NAMES) -> dict[str, str]:
    """Validate one text message from a page.

    Args:
        data: the text of a WebSocket message, expected to be a JSON object
            ``{"type": "message", "text": str, "name": str (optional)}``.
        reserved: names a page may not use (:data:`RESERVED_NAMES`; the server itself
            posts as ``kernel`` with ``reserved=()``).

    Returns:
        ``{"name": ..., "text": ...}`` with surrounding whitespace stripped and
        ``name`` defaulting to ``"anonymous"``.

    Raises:
        BadMessage: not JSON (``bad-json``); not an object of type ``"message"``, or a
            text or name that is not a string (``bad-shape``); an empty text (``empty``);
            a text or name that is too long (``too-long``); a name with control or
            bidi characters, or reserved, or a text with bidi controls or control
            characters other than newline and tab (``bad-shape``).
    """
    try:
        obj = decode(data, types={Kind.MESSAGE.value})
    except BadMessage as error:
        if error.code is ErrorCode.BAD_JSON:
            raise
        raise BadMessage(ErrorCode.BAD_SHAPE,
                         'expected a JSON object {"type": "message", "text": ...}') from None
    text, name = obj.get("text"), obj.get("name", "anonymous")
    if not isinstance(text, str) or not isinstance(name, str):
        raise BadMessage(ErrorCode.BAD_SHAPE, '"text" and "name" must be strings')
    text, name = text.strip(), name.strip() or "anonymous"
    if not text:
        raise BadMessage(ErrorCode.EMPTY, "empty message")
    if len(text) > MAX_TEXT_CHARS:
        raise BadMessage(ErrorCode.TOO_LONG,
                         f"message too long: {len(text)} characters, at most {MAX_TEXT_CHARS}")
    if len(name) > MAX_NAME_CHARS:
        raise BadMessage(ErrorCode.TOO_LONG,
                         f"name too long: {len(name)} characters, at most {MAX_NAME_CHARS}")
    check_name(name, reserved)
    bad = next((c for c in text if c in BIDI_CONTROLS
                or (unicodedata.category(c) == "Cc" and c not in "\n\t")), None)
    if bad is not None:
        raise BadMessage(ErrorCode.BAD_SHAPE,
                         f"text contains a control or bidi character (U+{ord(bad):04X})")
    return {"name": name, "text": text}


def text_field(payload: object, field: str, limit: int) -> str:
    """One text field of a chat payload (a body, a nickname), stripped and bounded.

    Shared by every protocol of chapter 5 (Phoenix, Action Cable, Socket.IO), so that a
    message is refused for the same reasons whichever wire it came on.

    Args:
        payload: the decoded payload (must be a JSON object).
        field: the field's name, e.g. ``"body"`` or ``"name"``.
        limit: the most characters accepted after stripping.

    Raises:
        ValueError: the payload is not an object, or the field is not a string, is empty
            once stripped, or is longer than ``limit``.
    """
    if not isinstance(payload, dict):
        raise ValueError(f"the payload must be an object, got {type(payload).__name__}")
    value = payload.get(field)
    if not isinstance(value, str):
        raise ValueError(f'"{field}" must be a string')
    value = value.strip()
    if not value:
        raise ValueError(f'"{field}" is empty')
    if len(value) > limit:
        raise ValueError(f'"{field}" too long: {len(value)} characters, at most {limit}')
    return value
