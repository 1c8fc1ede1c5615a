"""Phoenix Channels' V2 JSON serializer, sans-I/O: one frame is one JSON array.

Every text frame, both ways, is ``[join_ref, ref, topic, event, payload]``
(``assets/js/phoenix/serializer.js`` and ``v2_json_serializer.ex`` in Phoenix)::

    C->S ["1","1","room:lobby","phx_join",{"name":"ada"}]
    S->C ["1","1","room:lobby","phx_reply",{"status":"ok","response":{"history":[]}}]
    C->S ["1","2","room:lobby","new_msg",{"body":"hi"}]
    S->C ["1","2","room:lobby","phx_reply",{"status":"ok","response":{}}]
    S->C [null,null,"room:lobby","new_msg",{"body":"hi","name":"ada","id":1}]
    C->S [null,"3","phoenix","heartbeat",{}]
    S->C [null,"3","phoenix","phx_reply",{"status":"ok","response":{}}]

- ``join_ref`` is the ``ref`` of the ``phx_join`` that opened the channel (``null`` outside
  a channel); a client drops messages whose ``join_ref`` belongs to an earlier join.
- ``ref`` numbers the client's pushes; a reply (``phx_reply``) carries the ``ref`` of the
  push it answers, and a payload ``{"status": "ok" | "error", "response": {...}}``.
- ``topic`` names the channel (``room:lobby``); the heartbeat uses the topic ``phoenix``.

Phoenix's JavaScript client sends the refs as strings; :func:`decode` accepts a string
or ``null`` and nothing else.  The payload must be a JSON object (Phoenix's client
always sends one).  Binary frames (Phoenix's binary serializer) are not spoken here.

Sans-I/O: strings in, :class:`Message` out, and back; no sockets, no asyncio.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

from course.wire.limits import JsonTooDeep, check_json_depth

__all__ = ["VSN", "PHOENIX_TOPIC", "Event", "Status", "BadFrame", "Message", "encode", "decode",
           "reply", "ok", "error", "push"]

VSN = "2.0.0"              #: the serializer version clients ask for (``?vsn=2.0.0``)
PHOENIX_TOPIC = "phoenix"  #: the topic of the socket's own messages (heartbeat)


class Event(str, enum.Enum):
    """The events Phoenix reserves (``constants.js``), plus Presence's two."""

    JOIN = "phx_join"
    LEAVE = "phx_leave"
    REPLY = "phx_reply"
    ERROR = "phx_error"
    CLOSE = "phx_close"
    HEARTBEAT = "heartbeat"            #: on topic ``phoenix`` only
    PRESENCE_STATE = "presence_state"  #: the whole presence map, to one joiner
    PRESENCE_DIFF = "presence_diff"    #: ``{"joins": {...}, "leaves": {...}}``, to a topic


class Status(str, enum.Enum):
    """The ``status`` of a reply."""

    OK = "ok"
    ERROR = "error"


class BadFrame(ValueError):
    """A frame that is not a V2 message; the text says why, for people."""


@dataclass(frozen=True)
class Message:
    """One V2 message.

    Args:
        join_ref: the ``ref`` of the join that opened the channel, or ``None``.
        ref: this push's ref (replies carry the ref they answer), or ``None``.
        topic: the channel's topic, such as ``"room:lobby"`` or ``"phoenix"``.
        event: the event name (an :class:`Event` value or an application event).
        payload: a JSON object.
    """

    join_ref: str | None
    ref: str | None
    topic: str
    event: str
    payload: dict[str, Any] = field(default_factory=dict)


def encode(message: Message) -> str:
    """The text of one frame: ``[join_ref, ref, topic, event, payload]`` as compact JSON.

    Raises:
        BadFrame: the payload holds something JSON cannot encode.
    """
    event = message.event.value if isinstance(message.event, Event) else message.event
    try:
        return json.dumps([message.join_ref, message.ref, message.topic, event, message.payload],
                          separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as problem:
        raise BadFrame(f"cannot encode payload: {problem}") from None


def decode(data: str | bytes) -> Message:
    """Parse the text of one frame.

    Args:
        data: a text frame's payload (bytes are decoded as UTF-8).

    Returns:
        The message.

    Raises:
        BadFrame: not UTF-8; not JSON; not an array of 5 elements; a ``join_ref`` or
            ``ref`` that is neither a string nor ``null``; an empty or non-string
            ``topic`` or ``event``; a ``payload`` that is not an object.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            data = bytes(data).decode()
        except UnicodeDecodeError:
            raise BadFrame("frame is not UTF-8 text") from None
    try:
        check_json_depth(data)
        frame = json.loads(data)
    except json.JSONDecodeError as problem:
        raise BadFrame(f"not JSON: {problem.msg} at position {problem.pos}") from None
    except JsonTooDeep as problem:
        raise BadFrame(f"not JSON: nested too deeply ({problem.depth} levels, at most {problem.limit})") from None
    except ValueError as problem:  # e.g. an integer of more than 4,300 digits
        raise BadFrame(f"not JSON: {str(problem)[:80]}") from None
    except RecursionError:
        raise BadFrame("not JSON: nested too deeply") from None
    if not isinstance(frame, list) or len(frame) != 5:
        raise BadFrame("expected a JSON array of 5 elements [join_ref, ref, topic, event, payload]")
    join_ref, ref, topic, event, payload = frame
    for name, value in (("join_ref", join_ref), ("ref", ref)):
        if value is not None and not isinstance(value, str):
            raise BadFrame(f"{name} must be a string or null, got {type(value).__name__}")
    for name, value in (("topic", topic), ("event", event)):
        if not isinstance(value, str) or not value:
            raise BadFrame(f"{name} must be a non-empty string")
    if not isinstance(payload, dict):
        raise BadFrame(f"payload must be a JSON object, got {type(payload).__name__}")
    return Message(join_ref, ref, topic, event, payload)


def reply(to: Message, status: Status | str, response: dict[str, Any] | None = None, *,
          join_ref: str | None = None) -> Message:
    """The ``phx_reply`` that answers ``to``: same topic and ``ref``.

    Args:
        to: the push being answered.
        status: ``ok`` or ``error``.
        response: the reply's ``response`` object (default ``{}``).
        join_ref: the ``join_ref`` to send (default: the one ``to`` carried).

    Returns:
        ``[join_ref, to.ref, to.topic, "phx_reply", {"status": ..., "response": ...}]``.
    """
    return Message(to.join_ref if join_ref is None else join_ref, to.ref, to.topic,
                   Event.REPLY.value, {"status": Status(status).value, "response": response or {}})


def ok(to: Message, response: dict[str, Any] | None = None) -> Message:
    """An ok reply to ``to`` (see :func:`reply`)."""
    return reply(to, Status.OK, response)


def error(to: Message, reason: str, detail: str | None = None, *,
          join_ref: str | None = None) -> Message:
    """An error reply to ``to``: ``{"status": "error", "response": {"reason": ...}}``.

    ``reason`` is short and stable (Phoenix's own, such as ``"unmatched topic"``);
    ``detail``, if given, is a sentence for people.
    """
    response = {"reason": reason} if detail is None else {"reason": reason, "detail": detail}
    return reply(to, Status.ERROR, response, join_ref=join_ref)


def push(topic: str, event: Event | str, payload: dict[str, Any] | None = None,
         join_ref: str | None = None) -> Message:
    """A server push (no ``ref``): a broadcast when ``join_ref`` is ``None``."""
    event = event.value if isinstance(event, Event) else event
    return Message(join_ref, None, topic, event, payload or {})
