"""The channel router of one connection, sans-I/O: a frame in, a list of actions out.

:class:`ChannelSession` is the decision part of a Phoenix-style socket.  It remembers
which topics this connection joined (and with which ``join_ref``) and turns every text
frame into :class:`Action` objects; it sends nothing and knows no rooms.  The I/O loop
(:mod:`course.net.channels`) carries the actions out::

    session = ChannelSession()
    for action in session.receive('["1","1","room:lobby","phx_join",{"name":"ada"}]'):
        ...   # JoinRoom(topic="room:lobby", room="lobby", name="ada", request=...)

The rules (the demo chat's interface, issue 9):

- topics are ``room:<name>``, ``<name>`` 1 to 32 letters, digits, ``_`` or ``-``;
- ``phx_join`` with ``{"name": nickname}`` → :class:`JoinRoom` (the I/O layer replies
  ok with ``{"history": [...]}``); joining a topic already joined leaves it first;
  ``"last_seq"`` and ``"client"`` in the payload ask to resume (chapter 6, the rules are
  :func:`course.wire.resume.resume_point`'s; :attr:`JoinRoom.resume`);
- ``phx_leave`` → :class:`LeaveRoom` and an ok reply;
- ``new_msg`` with ``{"body": text}`` → :class:`Say` (the I/O layer replies ok with the
  message's ``id``); ``typing`` with ``{}`` or ``{"typing": bool}`` → :class:`Typing`;
- ``heartbeat`` on topic ``phoenix`` → an ok reply (:class:`Send`);
- every refusal is an error reply to the push's ``ref``, and the connection lives:

  ========================================  =========================================
  what the client did                       ``response`` of the error reply
  ========================================  =========================================
  join a topic that is not ``room:<name>``  ``{"reason": "unmatched topic", ...}``
  push on a topic it has not joined         ``{"reason": "unmatched topic", ...}``
  push with the ``join_ref`` of an old join ``{"reason": "stale join_ref", ...}``
  an event the topic does not know          ``{"reason": "unknown event", ...}``
  a payload of the wrong shape              ``{"reason": "bad payload", ...}``
  ========================================  =========================================

  (``reason`` is stable, Phoenix's own for the first two; ``detail`` is a sentence.)
- **A malformed frame** (not JSON, not a 5-array, wrong types): Phoenix itself has no
  ref to answer.  Here, if the frame is a 5-array whose ``ref`` and ``topic`` are
  strings, the error is a reply to that ref (``{"reason": "malformed frame"}``); anything
  else gets ``[null,null,"phoenix","phx_error",{"reason":"malformed frame","detail":...}]``
  (clients ignore it; it is there to be read).  Either way the connection stays open.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from course.wire.chat import MAX_NAME_CHARS, MAX_TEXT_CHARS, text_field
from course.wire.limits import MAX_JOINS
from course.wire.phoenix import PHOENIX_TOPIC, BadFrame, Event, Message, decode, error, ok, push
from course.wire.resume import resume_point

__all__ = ["ROOM_TOPIC", "NEW_MSG", "TYPING", "Action", "Send", "JoinRoom", "LeaveRoom", "Say",
           "Typing", "room_of", "malformed", "refusal", "ChannelSession"]

ROOM_TOPIC = re.compile(r"room:([A-Za-z0-9_-]{1,32})")  #: the topics this socket serves
NEW_MSG = "new_msg"   #: a chat message, ``{"body": text}``
TYPING = "typing"     #: ephemeral, to the others only


@dataclass(frozen=True)
class Action:
    """Something the I/O layer must do for this connection."""


@dataclass(frozen=True)
class Send(Action):
    """Send ``message`` to this connection."""

    message: Message


@dataclass(frozen=True)
class JoinRoom(Action):
    """Join ``room`` as ``name``, then reply ok to ``request`` with the room's history."""

    topic: str
    room: str
    name: str
    request: Message
    #: ``(last_seq, client)`` when the join asks to resume (chapter 6,
    #: :func:`course.wire.resume.resume_point`), else ``None``
    resume: tuple[int, str | None] | None = None

    @property
    def join_ref(self) -> str | None:
        """The ``join_ref`` this membership answers to (the join's ``ref``)."""
        return self.request.ref


@dataclass(frozen=True)
class LeaveRoom(Action):
    """Leave ``room`` (presence leaves); a reply, if any, is a separate :class:`Send`."""

    topic: str
    room: str


@dataclass(frozen=True)
class Say(Action):
    """Post ``body`` to ``room``, then reply ok to ``request`` with the message's id."""

    topic: str
    room: str
    body: str
    request: Message


@dataclass(frozen=True)
class Typing(Action):
    """Tell the others in ``room`` that this member is (or stopped) typing."""

    topic: str
    room: str
    typing: bool


def room_of(topic: str) -> str | None:
    """``"lobby"`` for ``"room:lobby"``; ``None`` for a topic this socket does not serve."""
    match = ROOM_TOPIC.fullmatch(topic)
    return match.group(1) if match else None


def malformed(data: str | bytes, problem: BadFrame) -> Message:
    """The answer to a frame :func:`course.wire.phoenix.decode` refused (see the module doc)."""
    return refusal(data, "malformed frame", str(problem))


def refusal(data: str | bytes, reason: str, detail: str) -> Message:
    """An error for a frame refused before it was read (malformed, or over the rate limit).

    Returns:
        An error reply to the frame's ref when the frame has the shape of a Phoenix message,
        else a ``phx_error`` push on topic ``phoenix``.
    """
    try:
        frame = json.loads(data)
    except (ValueError, RecursionError):
        frame = None
    if (isinstance(frame, list) and len(frame) == 5 and isinstance(frame[1], str)
            and isinstance(frame[2], str) and frame[2]):
        join_ref = frame[0] if isinstance(frame[0], str) else None
        return error(Message(join_ref, frame[1], frame[2], Event.REPLY.value), reason, detail)
    return push(PHOENIX_TOPIC, Event.ERROR, {"reason": reason, "detail": detail})




class ChannelSession:
    """One connection's channels: which topics it joined, and what each frame means.

    Args:
        max_joins: how many topics one connection may have joined at once (a join beyond
            it gets the error ``too many joins``).

    Attributes:
        joined: topic → ``join_ref`` of the join that opened it.
    """

    def __init__(self, max_joins: int = MAX_JOINS) -> None:
        self.joined: dict[str, str | None] = {}
        self.max_joins = max_joins

    def receive(self, data: str | bytes) -> list[Action]:
        """Decide what one text frame means (see the module docstring for the rules).

        Returns:
            The actions, in order; never raises on client input.
        """
        try:
            message = decode(data)
        except BadFrame as problem:
            return [Send(malformed(data, problem))]
        return self.handle(message)

    def handle(self, message: Message) -> list[Action]:
        """Like :meth:`receive`, for a message already decoded."""
        if message.topic == PHOENIX_TOPIC:
            if message.event == Event.HEARTBEAT.value:
                return [Send(ok(message))]
            return [Send(error(message, "unknown event",
                               f"topic phoenix has only the heartbeat event, not {message.event!r}"))]
        room = room_of(message.topic)
        if message.event == Event.JOIN.value:
            return self._join(message, room)
        if room is None or message.topic not in self.joined:
            return [Send(error(message, "unmatched topic",
                               f"join {message.topic} before sending {message.event!r}"
                               if room is not None else f"no channel serves {message.topic!r}"))]
        if message.join_ref != self.joined[message.topic]:
            return [Send(error(message, "stale join_ref",
                               f"{message.topic} was joined with join_ref "
                               f"{self.joined[message.topic]!r}, not {message.join_ref!r}"))]
        if message.event == Event.LEAVE.value:
            del self.joined[message.topic]
            return [LeaveRoom(message.topic, room), Send(ok(message))]
        if message.event == NEW_MSG:
            try:
                body = text_field(message.payload, "body", MAX_TEXT_CHARS)
            except ValueError as problem:
                return [Send(error(message, "bad payload", f'new_msg needs {{"body": text}}: {problem}'))]
            return [Say(message.topic, room, body, message)]
        if message.event == TYPING:
            typing = message.payload.get("typing", True)
            if not isinstance(typing, bool):
                return [Send(error(message, "bad payload", '"typing" must be true or false'))]
            return [Typing(message.topic, room, typing)]
        return [Send(error(message, "unknown event",
                           f"{message.topic} knows phx_leave, {NEW_MSG} and {TYPING}, "
                           f"not {message.event!r}"))]

    def _join(self, message: Message, room: str | None) -> list[Action]:
        if room is None:
            return [Send(error(message, "unmatched topic", f"no channel serves {message.topic!r}; "
                               "topics are room:<name>"))]
        try:
            name = text_field(message.payload, "name", MAX_NAME_CHARS)
        except ValueError as problem:
            return [Send(error(message, "bad payload", f'phx_join needs {{"name": nickname}}: {problem}'))]
        try:  # resume (chapter 6): {"last_seq": n, "client": id}, both optional
            resume = resume_point(message.payload)
        except ValueError as problem:
            return [Send(error(message, "bad payload", f"phx_join: {problem}"))]
        if message.topic not in self.joined and len(self.joined) >= self.max_joins:
            return [Send(error(message, "too many joins",
                               f"at most {self.max_joins} topics per connection"))]
        actions: list[Action] = []
        if message.topic in self.joined:  # a second join replaces the first, as in Phoenix
            actions.append(LeaveRoom(message.topic, room))
        self.joined[message.topic] = message.ref
        actions.append(JoinRoom(message.topic, room, name, message, resume))
        return actions

    def close(self) -> list[LeaveRoom]:
        """The connection ended: leave every topic it joined."""
        actions = [LeaveRoom(topic, room_of(topic) or "") for topic in self.joined]
        self.joined.clear()
        return actions
