"""Action Cable's JSON frames (subprotocol ``actioncable-v1-json``), sans-I/O.

Rails' Action Cable speaks JSON objects over one WebSocket at ``/cable``.  The frames, as
Rails sends them (``actioncable/lib/action_cable/connection/*.rb``; the JavaScript client
is ``@rails/actioncable``)::

    S->C {"type":"welcome"}
    C->S {"command":"subscribe","identifier":"{\\"channel\\":\\"RoomChannel\\",\\"room\\":\\"lobby\\",\\"name\\":\\"ada\\"}"}
    S->C {"identifier":"{\\"channel\\":...}","type":"confirm_subscription"}   (or reject_subscription)
    C->S {"command":"message","identifier":"{\\"channel\\":...}","data":"{\\"body\\":\\"hi\\",\\"action\\":\\"speak\\"}"}
    S->C {"identifier":"{\\"channel\\":...}","message":{"event":"new_msg","id":1,"name":"ada","body":"hi"}}
    S->C {"type":"ping","message":1795839214}                   every 3 s, Unix time
    C->S {"command":"unsubscribe","identifier":"..."}            no reply
    S->C {"type":"disconnect","reason":"server_restart","reconnect":true}

Note the **double encoding**: ``identifier`` and ``data`` are JSON *strings* holding JSON
objects.  The identifier is opaque to the client: the server echoes it byte for byte
and a subscription is found by that exact string (two spellings of the same object are
two subscriptions, as in Rails).  ``data.action`` names the channel method
(``perform("speak", {...})``).

**The demo chat's channel** (issue 9): ``RoomChannel`` with ``room`` (1 to 32 letters,
digits, ``_``, ``-``) and ``name`` (the nickname); actions ``speak`` with ``{"body": text}``
and ``typing`` with ``{}`` or ``{"typing": bool}``.  Every message the server transmits on
a subscription carries an ``event``: ``new_msg`` (``id``, ``name``, ``body``), ``typing``
(``name``, ``typing``), ``presence`` (``names``, the nicknames online, sorted), ``history``
(``messages``, right after the confirmation), ``error`` (see below).

**Errors.**  Rails has no error frame: it logs a bad command and sends nothing, and a
subscription to a channel class it does not know gets no answer at all.  Here:

=====================================================  ==========================================
what the client did                                    what the server sends (connection lives)
=====================================================  ==========================================
subscribe to a channel other than ``RoomChannel``      ``reject_subscription`` for that identifier
subscribe with a bad ``room`` or ``name``              ``reject_subscription`` for that identifier
subscribe again with the same identifier               nothing (Rails ignores it too)
a frame that is not a command (see :func:`decode`)     error frame, reason ``invalid command``
``data`` not a JSON-object string, on a subscription   error message, reason ``invalid command``
unsubscribe/message on an identifier not subscribed    error frame, reason ``not subscribed``
an ``action`` the channel does not have                error message, reason ``unknown action``
``speak`` without a proper ``body``, bad ``typing``    error message, reason ``bad payload``
=====================================================  ==========================================

An **error message** goes to the subscription the command named, like any other:
``{"identifier":...,"message":{"event":"error","reason":...,"detail":...}}`` (its
``received`` sees it).  An **error frame** is for commands that name no subscription of
this connection: ``{"type":"error","identifier":...,"reason":...,"detail":...}``, the
identifier as sent, or ``""`` if there was none.  The official client ignores it: it
looks for a subscription with that identifier and finds none.  The identifier must be
there: a frame of an unknown ``type`` *without* one makes ``@rails/actioncable`` 8.1
throw a ``TypeError`` in its message handler (``Subscriptions.notify`` maps over
``[undefined]``); the tests check both.  ``reason`` is short and stable; ``detail`` is a
sentence.  Frames above 64 KiB are the I/O layer's business (close 1009).

Sans-I/O: strings in, :class:`Action` objects and strings out; no sockets, no asyncio.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from course.wire.channels import room_of
from course.wire.chat import MAX_NAME_CHARS, MAX_TEXT_CHARS, text_field
from course.wire.limits import JsonTooDeep, check_json_depth

__all__ = ["PROTOCOL", "UNSUPPORTED", "CHANNEL", "PING_INTERVAL", "COMMANDS", "BadCommand", "Command",
           "decode", "welcome", "ping", "confirm", "reject", "transmit", "disconnect", "error",
           "error_message",
           "Action", "Send", "Subscribe", "Unsubscribe", "Speak", "Typing", "CableSession"]

PROTOCOL = "actioncable-v1-json"         #: the one subprotocol spoken
UNSUPPORTED = "actioncable-unsupported"  #: what the JS client also offers, to detect old servers
CHANNEL = "RoomChannel"                  #: the demo chat's channel class
PING_INTERVAL = 3.0                      #: seconds between pings (Rails' ``BEAT_INTERVAL``)
COMMANDS = ("subscribe", "unsubscribe", "message")


class BadCommand(ValueError):
    """A client frame that is not an Action Cable command.

    Attributes:
        reason: short and stable (``"invalid command"``); ``str(error)`` is for people.
        identifier: the identifier string, when the frame had a string there.
    """

    def __init__(self, detail: str, reason: str = "invalid command", identifier: str | None = None):
        super().__init__(detail)
        self.reason = reason
        self.identifier = identifier


@dataclass(frozen=True)
class Command:
    """One client command.

    Attributes:
        command: ``subscribe``, ``unsubscribe`` or ``message``.
        identifier: the identifier exactly as sent (a JSON string).
        params: the identifier decoded (a dict).
        data: the decoded ``data`` of a ``message`` (a dict; ``{}`` for the other commands).
    """

    command: str
    identifier: str
    params: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)


def _object(text: Any, what: str, identifier: str | None = None) -> dict[str, Any]:
    if not isinstance(text, str):
        raise BadCommand(f"{what} must be a string holding a JSON object, got {type(text).__name__}",
                         identifier=identifier)
    try:
        check_json_depth(text)
        value = json.loads(text)
    except json.JSONDecodeError as problem:
        raise BadCommand(f"{what} is not JSON: {problem.msg} at position {problem.pos}",
                         identifier=identifier) from None
    except JsonTooDeep as problem:
        raise BadCommand(f"{what} is not JSON: nested too deeply ({problem.depth} levels, at most "
                         f"{problem.limit})", identifier=identifier) from None
    except ValueError as problem:  # e.g. an integer of more than 4,300 digits
        raise BadCommand(f"{what} is not JSON: {str(problem)[:80]}", identifier=identifier) from None
    except RecursionError:
        raise BadCommand(f"{what} is not JSON: nested too deeply", identifier=identifier) from None
    if not isinstance(value, dict):
        raise BadCommand(f"{what} must hold a JSON object, got {type(value).__name__}",
                         identifier=identifier)
    return value


def decode(data: str | bytes) -> Command:
    """Parse one client frame.

    Raises:
        BadCommand: not UTF-8; not a JSON object; ``command`` missing or not one of
            :data:`COMMANDS`; ``identifier`` not a string holding a JSON object; for
            ``message``, ``data`` not a string holding a JSON object.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            data = bytes(data).decode()
        except UnicodeDecodeError:
            raise BadCommand("frame is not UTF-8 text") from None
    frame = _object(data, "the frame")
    command = frame.get("command")
    if command not in COMMANDS:
        raise BadCommand(f"command must be one of {', '.join(COMMANDS)}, got {command!r}")
    identifier = frame.get("identifier")
    params = _object(identifier, "identifier", identifier if isinstance(identifier, str) else None)
    payload = _object(frame.get("data"), "data", identifier) if command == "message" else {}
    return Command(command, identifier, params, payload)


def _dump(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def welcome() -> str:
    """``{"type":"welcome"}``: the first frame of every connection."""
    return _dump({"type": "welcome"})


def ping(now: float) -> str:
    """``{"type":"ping","message":<Unix time, whole seconds>}``."""
    return _dump({"type": "ping", "message": int(now)})


def confirm(identifier: str) -> str:
    """The subscription is open."""
    return _dump({"identifier": identifier, "type": "confirm_subscription"})


def reject(identifier: str) -> str:
    """The subscription is refused (the client calls its ``rejected`` callback)."""
    return _dump({"identifier": identifier, "type": "reject_subscription"})


def transmit(identifier: str, message: dict[str, Any]) -> str:
    """A message on a subscription (the client calls ``received(message)``)."""
    return _dump({"identifier": identifier, "message": message})


def disconnect(reason: str, reconnect: bool) -> str:
    """The server is closing: ``reason`` is ``unauthorized``, ``invalid_request``,
    ``server_restart`` or ``remote``; the client reconnects only if ``reconnect``."""
    return _dump({"type": "disconnect", "reason": reason, "reconnect": reconnect})


def error(reason: str, detail: str, identifier: str | None = None) -> str:
    """This course's error frame, for a command that names no subscription (see the
    module docstring): ``identifier`` as sent, ``""`` if there was none."""
    return _dump({"type": "error", "identifier": identifier or "", "reason": reason, "detail": detail})


def error_message(identifier: str, reason: str, detail: str) -> str:
    """An error message on the subscription ``identifier`` (its ``received`` sees it)."""
    return transmit(identifier, {"event": "error", "reason": reason, "detail": detail})


@dataclass(frozen=True)
class Action:
    """Something the I/O layer must do for this connection."""


@dataclass(frozen=True)
class Send(Action):
    """Send ``text`` to this connection."""

    text: str


@dataclass(frozen=True)
class Subscribe(Action):
    """Join ``room`` as ``name``; confirm ``identifier`` (then send the history)."""

    identifier: str
    room: str
    name: str


@dataclass(frozen=True)
class Unsubscribe(Action):
    """Leave the room of ``identifier`` (no frame goes back)."""

    identifier: str
    room: str


@dataclass(frozen=True)
class Speak(Action):
    """Post ``body`` to ``room`` from the member of ``identifier``."""

    identifier: str
    room: str
    body: str


@dataclass(frozen=True)
class Typing(Action):
    """Tell the others in ``room`` that the member of ``identifier`` types (or stopped)."""

    identifier: str
    room: str
    typing: bool




class CableSession:
    """One connection's subscriptions, and what each command means.

    Attributes:
        subscribed: identifier → room, for the subscriptions confirmed.
    """

    def __init__(self) -> None:
        self.subscribed: dict[str, str] = {}

    def receive(self, data: str | bytes) -> list[Action]:
        """Decide what one text frame means (the rules are in the module docstring).

        Returns:
            The actions, in order; never raises on client input.
        """
        try:
            command = decode(data)
        except BadCommand as problem:
            if problem.identifier in self.subscribed:
                return [Send(error_message(problem.identifier, problem.reason, str(problem)))]
            return [Send(error(problem.reason, str(problem), problem.identifier))]
        if command.command == "subscribe":
            return self._subscribe(command)
        room = self.subscribed.get(command.identifier)
        if room is None:
            return [Send(error("not subscribed", f"subscribe to {command.identifier} before "
                               f"sending {command.command!r}", command.identifier))]
        if command.command == "unsubscribe":
            del self.subscribed[command.identifier]
            return [Unsubscribe(command.identifier, room)]
        return self._perform(command, room)

    def _subscribe(self, command: Command) -> list[Action]:
        identifier, params = command.identifier, command.params
        if identifier in self.subscribed:
            return []
        room = params.get("room")
        if (params.get("channel") != CHANNEL or not isinstance(room, str)
                or room_of(f"room:{room}") is None):
            return [Send(reject(identifier))]
        try:
            name = text_field(params, "name", MAX_NAME_CHARS)
        except ValueError:
            return [Send(reject(identifier))]
        self.subscribed[identifier] = room
        return [Subscribe(identifier, room, name)]

    def _perform(self, command: Command, room: str) -> list[Action]:
        identifier, data = command.identifier, command.data
        action = data.get("action")
        if action == "speak":
            try:
                body = text_field(data, "body", MAX_TEXT_CHARS)
            except ValueError as problem:
                return [Send(error_message(identifier, "bad payload",
                                           f'speak needs {{"body": text}}: {problem}'))]
            return [Speak(identifier, room, body)]
        if action == "typing":
            typing = data.get("typing", True)
            if not isinstance(typing, bool):
                return [Send(error_message(identifier, "bad payload", '"typing" must be true or false'))]
            return [Typing(identifier, room, typing)]
        return [Send(error_message(identifier, "unknown action",
                                   f"{CHANNEL} has the actions speak and typing, not {action!r}"))]

    def close(self) -> list[Unsubscribe]:
        """The connection ended: leave every room it subscribed to."""
        actions = [Unsubscribe(identifier, room) for identifier, room in self.subscribed.items()]
        self.subscribed.clear()
        return actions
