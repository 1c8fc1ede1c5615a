"""The Pusher protocol (v7), spoken by Pusher, Laravel Reverb and Soketi, and Laravel's Redis payload; sans-I/O.

The official clients ``pusher-js`` and ``laravel-echo`` (with ``broadcaster: "pusher"``)
open ``ws://HOST:PORT/app/<key>?protocol=7&client=js&version=8.6.0``.  Every frame, both
ways, is one JSON object ``{"event", "channel"?, "data"?}``; for the server's events
``data`` is a JSON-encoded *string*::

    S->C {"event":"pusher:connection_established","data":"{\\"socket_id\\":\\"123.456\\",\\"activity_timeout\\":30}"}
    C->S {"event":"pusher:subscribe","data":{"channel":"orders"}}
    S->C {"event":"pusher_internal:subscription_succeeded","channel":"orders","data":"{}"}
    C->S {"event":"pusher:subscribe","data":{"channel":"private-orders.1","auth":"KEY:<hex HMAC-SHA256>"}}
    C->S {"event":"pusher:subscribe","data":{"channel":"presence-room.1","auth":"KEY:<hex>","channel_data":"{\\"user_id\\":\\"1\\"}"}}
    S->C {"event":"OrderShipped","channel":"orders","data":"{\\"id\\":1}"}
    C->S {"event":"client-typing","channel":"private-orders.1","data":{"name":"ada"}}
    C->S {"event":"pusher:ping","data":{}}          S->C {"event":"pusher:pong","data":"{}"}
    C->S {"event":"pusher:unsubscribe","data":{"channel":"orders"}}      (no reply)
    S->C {"event":"pusher:error","data":"{\\"code\\":4009,\\"message\\":\\"Connection is unauthorized\\"}"}

**Channels.**  ``private-*`` and ``presence-*`` need a signature from the application
(Laravel's ``POST /broadcasting/auth``): ``auth = KEY + ":" + hex(HMAC_SHA256(secret,
"<socket_id>:<channel>"))``, and for presence ``"<socket_id>:<channel>:<channel_data>"``
where ``channel_data`` is the JSON string ``{"user_id": ..., "user_info": ...}``.  The
server checks it in constant time (:func:`verify`).  Client events (``client-*``) are
relayed only on private and presence channels the sender is subscribed to, to the *other*
subscribers (presence adds the sender's ``user_id``).

**Error codes** (``pusher:error``; the ranges are the close-code ranges of the protocol:
4000-4099 the client must not reconnect, 4100-4199 reconnect after a pause, 4200-4299
reconnect at once, 4300-4399 rejected client events): :class:`ErrorCode`.

**Laravel's ``RedisBroadcaster``** publishes, for ``broadcast(new OrderShipped($order))``,
the JSON ``{"event": "OrderShipped", "data": {...}, "socket": null}`` to each Redis channel
``<prefix><channel>`` (the channel as the browser names it, e.g. ``private-orders.1``);
``socket`` is the sender's socket id when the app called ``->toOthers()`` (Echo sends it
as ``X-Socket-ID``): the WebSocket server then skips that one connection.
laravel-echo-server listened with ``PSUBSCRIBE <prefix>*``.  The course adds one optional
field, ``"id"``: the entry id in the channel's Redis Stream, used to replay what a client
missed (:mod:`course.net.pusher_server`).

Sans-I/O: strings in, :class:`Frame` and actions out; no sockets, no asyncio.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import random
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "PROTOCOL", "ACTIVITY_TIMEOUT", "MAX_FRAME_BYTES", "PREFIX", "Event", "ErrorCode", "Kind",
    "BadFrame", "Frame", "Member", "Broadcast", "kind_of", "encode", "decode", "new_socket_id",
    "connection_established", "error_frame", "pong", "subscription_succeeded", "member_added",
    "member_removed", "event_frame", "sign", "auth_string", "verify", "authorize",
    "parse_channel_data", "broadcast_payload", "parse_broadcast", "stream_id_key", "route",
    "presence_at",
    "Reply", "Subscribe", "Unsubscribe", "Whisper", "Action", "PusherSession",
]

PROTOCOL = 7             #: the protocol version pusher-js speaks (``?protocol=7``)
ACTIVITY_TIMEOUT = 30    #: seconds of silence before the client pings (sent to the client)
MAX_FRAME_BYTES = 10_000  #: Pusher's and Reverb's message size limit
PREFIX = "laravel_database_"  #: Laravel's default Redis key prefix (``<app name>_database_``)

_SOCKET_ID = re.compile(r"\A\d+\.\d+\Z")
_CHANNEL = re.compile(r"\A[A-Za-z0-9_\-=@,.;]{1,200}\Z")  # Pusher's channel name rule
_STREAM_ID = re.compile(r"\A(\d+)-(\d+)\Z")


class Event(str, enum.Enum):
    """The protocol's own event names."""

    CONNECTION_ESTABLISHED = "pusher:connection_established"
    ERROR = "pusher:error"
    PING = "pusher:ping"
    PONG = "pusher:pong"
    SUBSCRIBE = "pusher:subscribe"
    UNSUBSCRIBE = "pusher:unsubscribe"
    SUBSCRIPTION_SUCCEEDED = "pusher_internal:subscription_succeeded"
    MEMBER_ADDED = "pusher_internal:member_added"
    MEMBER_REMOVED = "pusher_internal:member_removed"


class ErrorCode(enum.IntEnum):
    """``pusher:error`` codes and close codes (Pusher's table; Reverb uses the same)."""

    APP_DOES_NOT_EXIST = 4001          #: wrong key in ``/app/<key>`` (close; do not reconnect)
    UNSUPPORTED_PROTOCOL = 4007        #: ``?protocol=`` other than 7 (close)
    UNAUTHORIZED = 4009                #: bad or missing signature for a private/presence channel
    GENERIC_RECONNECT = 4200           #: a malformed frame (Reverb: "Invalid message format")
    PONG_NOT_RECEIVED = 4201           #: the client stayed silent too long (close; reconnect)
    CLIENT_EVENT_REJECTED = 4301       #: ``client-*`` event refused


class Kind(str, enum.Enum):
    """The three kinds of channel, from the name's prefix."""

    PUBLIC = "public"
    PRIVATE = "private"
    PRESENCE = "presence"


class BadFrame(ValueError):
    """A frame or payload that breaks the protocol; ``code`` is the :class:`ErrorCode` to answer."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.GENERIC_RECONNECT) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Frame:
    """One decoded frame: ``data`` as sent (an object, a string, ``None``...); ``user_id``
    on a whisper relayed on a presence channel."""

    event: str
    data: Any = None
    channel: str | None = None
    user_id: str | None = None


@dataclass(frozen=True)
class Member:
    """A presence member: ``user_id`` (a string) and ``user_info`` (any JSON)."""

    user_id: str
    user_info: Any = None


@dataclass(frozen=True)
class Broadcast:
    """Laravel's Redis payload: ``event``, ``data``, ``socket`` (the sender to skip), and the
    course's optional stream ``id`` and ``user_id`` (the sender of a whisper on a presence
    channel, which Pusher adds to the frame)."""

    event: str
    data: Any
    socket: str | None = None
    id: str | None = None
    user_id: str | None = None


def kind_of(channel: str) -> Kind:
    """``private-*`` → PRIVATE, ``presence-*`` → PRESENCE, anything else → PUBLIC."""
    if channel.startswith("presence-"):
        return Kind.PRESENCE
    if channel.startswith("private-"):
        return Kind.PRIVATE
    return Kind.PUBLIC


def _check_channel(channel: Any) -> str:
    if not isinstance(channel, str) or not _CHANNEL.match(channel):
        raise BadFrame(f"invalid channel name {channel!r} (1-200 of A-Z a-z 0-9 _-=@,.;)")
    if channel.startswith("private-encrypted-"):
        raise BadFrame("encrypted channels are not supported here")
    return channel


def encode(event: str, data: Any = None, channel: str | None = None, **extra: Any) -> str:
    """One frame as JSON text; ``data`` that is not already a string is JSON-encoded into one.

    Raises:
        BadFrame: ``data`` cannot be encoded as JSON.
    """
    frame: dict[str, Any] = {"event": event}
    if channel is not None:
        frame["channel"] = channel
    if data is not None:
        try:
            frame["data"] = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise BadFrame(f"data is not JSON: {exc}") from exc
    frame.update(extra)
    return json.dumps(frame, separators=(",", ":"))


def decode(text: str | bytes) -> Frame:
    """Parse one frame from a client.

    Raises:
        BadFrame: not UTF-8, not JSON, not an object, no string ``event``, a ``channel``
            that is not a string, or above :data:`MAX_FRAME_BYTES`.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode()
        except UnicodeDecodeError as exc:
            raise BadFrame("frame is not UTF-8") from exc
    if len(text.encode()) > MAX_FRAME_BYTES:
        raise BadFrame(f"frame above {MAX_FRAME_BYTES} bytes")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BadFrame("frame is not JSON") from exc
    if not isinstance(value, dict):
        raise BadFrame("frame must be a JSON object")
    event = value.get("event")
    if not isinstance(event, str) or not event:
        raise BadFrame("frame needs a non-empty string 'event'")
    channel = value.get("channel")
    if channel is not None and not isinstance(channel, str):
        raise BadFrame("'channel' must be a string")
    user_id = value.get("user_id")
    return Frame(event, value.get("data"), channel, user_id if isinstance(user_id, str) else None)


def new_socket_id(rng: random.Random | None = None) -> str:
    """A fresh socket id, ``"<digits>.<digits>"`` as Pusher's."""
    rng = rng or random.SystemRandom()
    return f"{rng.randrange(10**9)}.{rng.randrange(10**9)}"


def connection_established(socket_id: str, activity_timeout: int = ACTIVITY_TIMEOUT) -> str:
    """The first frame of every connection."""
    return encode(Event.CONNECTION_ESTABLISHED.value,
                  {"socket_id": socket_id, "activity_timeout": activity_timeout})


def error_frame(code: ErrorCode | int | None, message: str) -> str:
    """``pusher:error`` with a code and a message."""
    return encode(Event.ERROR.value, {"code": None if code is None else int(code), "message": message})


def pong() -> str:
    """The answer to ``pusher:ping``."""
    return encode(Event.PONG.value, {})


def subscription_succeeded(channel: str, members: list[Member] | None = None) -> str:
    """``pusher_internal:subscription_succeeded``; for presence, ``members`` (one per user)."""
    if members is None:
        return encode(Event.SUBSCRIPTION_SUCCEEDED.value, {}, channel)
    unique = {m.user_id: m.user_info for m in members}
    return encode(Event.SUBSCRIPTION_SUCCEEDED.value,
                  {"presence": {"ids": list(unique), "hash": unique, "count": len(unique)}}, channel)


def member_added(channel: str, member: Member) -> str:
    """``pusher_internal:member_added`` (sent to the others when a user's first socket joins)."""
    return encode(Event.MEMBER_ADDED.value, {"user_id": member.user_id, "user_info": member.user_info},
                  channel)


def member_removed(channel: str, user_id: str) -> str:
    """``pusher_internal:member_removed`` (when a user's last socket is gone)."""
    return encode(Event.MEMBER_REMOVED.value, {"user_id": user_id}, channel)


def event_frame(channel: str, broadcast: Broadcast) -> str:
    """What the browsers of ``channel`` receive for a Laravel broadcast (``id`` and
    ``user_id`` kept if any)."""
    extra = {name: value for name, value in (("id", broadcast.id), ("user_id", broadcast.user_id))
             if value is not None}
    return encode(broadcast.event, broadcast.data if broadcast.data is not None else {}, channel, **extra)


# --------------------------------------------------------------------------- signatures


def _message(socket_id: str, channel: str, channel_data: str | None) -> bytes:
    parts = [socket_id, channel] + ([channel_data] if channel_data is not None else [])
    return ":".join(parts).encode()


def sign(secret: str, socket_id: str, channel: str, channel_data: str | None = None) -> str:
    """``hex(HMAC_SHA256(secret, "socket_id:channel[:channel_data]"))``."""
    return hmac.new(secret.encode(), _message(socket_id, channel, channel_data), hashlib.sha256).hexdigest()


def auth_string(key: str, secret: str, socket_id: str, channel: str,
                channel_data: str | None = None) -> str:
    """``"<key>:<signature>"``, the ``auth`` a client sends in ``pusher:subscribe``."""
    return f"{key}:{sign(secret, socket_id, channel, channel_data)}"


def verify(auth: Any, key: str, secret: str, socket_id: str, channel: str,
           channel_data: str | None = None) -> bool:
    """Whether ``auth`` is the right signature, compared in constant time."""
    if not isinstance(auth, str):
        return False
    expected = auth_string(key, secret, socket_id, channel, channel_data)
    return hmac.compare_digest(auth.encode(), expected.encode())


def authorize(key: str, secret: str, socket_id: str, channel: str,
              member: Member | None = None) -> dict[str, str]:
    """The JSON body of Laravel's ``/broadcasting/auth`` answer for one subscription.

    Returns:
        ``{"auth": ...}`` for a private channel; ``{"auth": ..., "channel_data": ...}`` for a
        presence channel (``member`` required).

    Raises:
        BadFrame: a malformed socket id or channel name, a public channel, or a presence
            channel without ``member``.
    """
    if not isinstance(socket_id, str) or not _SOCKET_ID.match(socket_id):
        raise BadFrame(f"invalid socket_id {socket_id!r}")
    kind = kind_of(_check_channel(channel))
    if kind is Kind.PUBLIC:
        raise BadFrame(f"{channel!r} is public: it needs no signature")
    if kind is Kind.PRIVATE:
        return {"auth": auth_string(key, secret, socket_id, channel)}
    if member is None:
        raise BadFrame("a presence channel needs the member's user_id and user_info")
    channel_data = json.dumps({"user_id": member.user_id, "user_info": member.user_info},
                              separators=(",", ":"))
    return {"auth": auth_string(key, secret, socket_id, channel, channel_data),
            "channel_data": channel_data}


def parse_channel_data(channel_data: Any) -> Member:
    """The :class:`Member` in a presence subscription's ``channel_data`` (a JSON string).

    Raises:
        BadFrame: not a JSON object string with a ``user_id`` (string or number).
    """
    if not isinstance(channel_data, str):
        raise BadFrame("presence channel_data must be a JSON string")
    try:
        value = json.loads(channel_data)
    except ValueError as exc:
        raise BadFrame("presence channel_data is not JSON") from exc
    if not isinstance(value, dict):
        raise BadFrame("presence channel_data must be a JSON object")
    user_id = value.get("user_id")
    if isinstance(user_id, bool) or not isinstance(user_id, (str, int)) or user_id == "":
        raise BadFrame("presence channel_data needs a user_id (string or number)")
    return Member(str(user_id), value.get("user_info"))


# --------------------------------------------------------------------------- Laravel's payload


def broadcast_payload(event: str, data: Any, socket: str | None = None, user_id: str | None = None) -> str:
    """Laravel ``RedisBroadcaster``'s message: ``{"event","data","socket"}`` as JSON
    (plus ``"user_id"`` when given: a whisper on a presence channel).

    Raises:
        BadFrame: an empty event name or ``data`` that is not JSON.
    """
    if not isinstance(event, str) or not event:
        raise BadFrame("event must be a non-empty string")
    payload = {"event": event, "data": data, "socket": socket}
    if user_id is not None:
        payload["user_id"] = user_id
    try:
        return json.dumps(payload, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise BadFrame(f"data is not JSON: {exc}") from exc


def parse_broadcast(raw: str | bytes) -> Broadcast:
    """Parse a message read from Redis.

    Raises:
        BadFrame: not a JSON object with a string ``event``; a ``socket`` or ``id`` that
            is not a string or null.
    """
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadFrame("broadcast is not JSON") from exc
    if not isinstance(value, dict) or not isinstance(value.get("event"), str) or not value["event"]:
        raise BadFrame("broadcast must be a JSON object with a string 'event'")
    socket, stream_id, user_id = value.get("socket"), value.get("id"), value.get("user_id")
    if socket is not None and not isinstance(socket, str):
        raise BadFrame("broadcast 'socket' must be a string or null")
    if user_id is not None and not isinstance(user_id, str):
        raise BadFrame("broadcast 'user_id' must be a string or null")
    if stream_id is not None and not (isinstance(stream_id, str) and _STREAM_ID.match(stream_id)):
        raise BadFrame("broadcast 'id' must be a Redis stream id 'ms-seq'")
    return Broadcast(value["event"], value.get("data"), socket, stream_id, user_id)


def stream_id_key(stream_id: str) -> tuple[int, int]:
    """A Redis stream id ``"ms-seq"`` as a sortable pair.

    Raises:
        BadFrame: not ``"<digits>-<digits>"``.
    """
    match = _STREAM_ID.match(stream_id) if isinstance(stream_id, str) else None
    if match is None:
        raise BadFrame(f"not a stream id: {stream_id!r}")
    return int(match[1]), int(match[2])


def route(channel: str, raw: str | bytes, subscriptions: dict[str, Any]) -> dict[str, str]:
    """The bridge's decision: which local connections get which frame for one Redis message.

    Args:
        channel: the channel as the browsers name it (the Redis channel without the prefix).
        raw: the message read from Redis (Laravel's payload, :func:`broadcast_payload`).
        subscriptions: this process's connections, ``socket_id`` → the channels it joined.

    Returns:
        ``{socket_id: frame text}`` (:func:`event_frame`) for every connection subscribed to
        ``channel`` except the sender named by ``socket`` (``toOthers()``); ``{}`` for a
        message that is not Laravel's shape (ignored, as laravel-echo-server did).
    """
    try:
        broadcast = parse_broadcast(raw)
    except BadFrame:
        return {}
    text = event_frame(channel, broadcast)
    return {socket_id: text for socket_id, channels in subscriptions.items()
            if channel in channels and socket_id != broadcast.socket}


def presence_at(entries: dict[Any, Any], now: float) -> tuple[set[str], set[str], set[str]]:
    """Who is present at ``now``, from a presence hash (``HGETALL``; the server's rule).

    Args:
        entries: ``socket_id`` → the JSON text ``{"user_id", "user_info", "until"}``
            (``str`` or ``bytes`` keys and values, as Redis returns them).
        now: the time (``time.time()``) to judge at.

    Returns:
        ``(present users, expired socket ids, gone users)``: an entry whose ``until`` is
        before ``now`` (or missing) has expired; a user is present while one of their
        entries is not expired (two tabs are one user); a gone user had an expired entry
        and has no live one (the server announces ``member_removed`` for them).  Entries
        that are not JSON objects with a ``user_id`` are skipped.
    """
    present: set[str] = set()
    expired: set[str] = set()
    expired_users: set[str] = set()
    for socket_id, value in entries.items():
        try:
            entry = json.loads(value)
        except (ValueError, TypeError, UnicodeDecodeError):
            continue
        if not isinstance(entry, dict) or entry.get("user_id") is None:
            continue
        socket = socket_id.decode() if isinstance(socket_id, bytes) else str(socket_id)
        user = str(entry["user_id"])
        until = entry.get("until", 0)
        if not isinstance(until, (int, float)) or until < now:
            expired.add(socket)
            expired_users.add(user)
        else:
            present.add(user)
    return present, expired, expired_users - present


# --------------------------------------------------------------------------- one connection


@dataclass(frozen=True)
class Reply:
    """Send ``text`` to this connection."""

    text: str


@dataclass(frozen=True)
class Subscribe:
    """The connection is now subscribed to ``channel`` (``member`` on presence channels).

    ``since`` is the course's extension: a stream id the client has seen; replay what follows.
    The server sends the ``subscription_succeeded`` reply itself (presence needs the members).
    """

    channel: str
    member: Member | None = None
    since: str | None = None


@dataclass(frozen=True)
class Unsubscribe:
    """The connection left ``channel``."""

    channel: str


@dataclass(frozen=True)
class Whisper:
    """A client event to relay to the channel's other subscribers (``user_id`` on presence)."""

    channel: str
    event: str
    data: Any
    user_id: str | None = None


Action = Reply | Subscribe | Unsubscribe | Whisper  #: what :meth:`PusherSession.receive` returns


@dataclass
class PusherSession:
    """One connection's rules: frames in, actions out.

    Args:
        key: the application key.
        secret: the application secret (checks the signatures).
        socket_id: this connection's id.
        client_events: whether ``client-*`` events are relayed (Reverb's
            ``accept_client_events_from``); refused with 4301 otherwise.
    """

    key: str
    secret: str
    socket_id: str = field(default_factory=new_socket_id)
    client_events: bool = True
    channels: dict[str, Member | None] = field(default_factory=dict)

    def receive(self, text: str | bytes) -> list[Action]:
        """The actions one frame from the client asks for (errors are ``Reply`` s of
        ``pusher:error``; the connection lives)."""
        try:
            frame = decode(text)
            return self._route(frame)
        except BadFrame as exc:
            return [Reply(error_frame(exc.code, str(exc)))]

    def _route(self, frame: Frame) -> list[Action]:
        if frame.event == Event.PING.value:
            return [Reply(pong())]
        if frame.event == Event.SUBSCRIBE.value:
            return self._subscribe(frame.data)
        if frame.event == Event.UNSUBSCRIBE.value:
            data = frame.data if isinstance(frame.data, dict) else {}
            channel = data.get("channel")
            if self.channels.pop(channel, 0) == 0:
                return []
            return [Unsubscribe(channel)]
        if frame.event.startswith("client-"):
            return self._client_event(frame)
        if frame.event == Event.PONG.value:
            return []
        raise BadFrame(f"unknown event {frame.event!r}")

    def _subscribe(self, data: Any) -> list[Action]:
        if not isinstance(data, dict):
            raise BadFrame("pusher:subscribe needs a data object")
        channel = _check_channel(data.get("channel"))
        since = data.get("since")
        if since is not None:
            stream_id_key(since)  # raises BadFrame
        kind = kind_of(channel)
        member = None
        if kind is not Kind.PUBLIC:
            channel_data = data.get("channel_data") if kind is Kind.PRESENCE else None
            if not verify(data.get("auth"), self.key, self.secret, self.socket_id, channel, channel_data):
                raise BadFrame(f"Connection is unauthorized: invalid signature for {channel}",
                               ErrorCode.UNAUTHORIZED)
            if kind is Kind.PRESENCE:
                member = parse_channel_data(channel_data)
        if channel in self.channels:
            return [Reply(subscription_succeeded(channel) if kind is not Kind.PRESENCE else
                          error_frame(None, f"already subscribed to {channel}"))]
        self.channels[channel] = member
        return [Subscribe(channel, member, since)]

    def _client_event(self, frame: Frame) -> list[Action]:
        channel = frame.channel
        if not self.client_events:
            raise BadFrame("client events are not enabled", ErrorCode.CLIENT_EVENT_REJECTED)
        if channel is None or kind_of(channel) is Kind.PUBLIC:
            raise BadFrame("client events need a private or presence channel",
                           ErrorCode.CLIENT_EVENT_REJECTED)
        if channel not in self.channels:
            raise BadFrame("The client is not a member of the specified channel.",
                           ErrorCode.UNAUTHORIZED)
        member = self.channels[channel]
        return [Whisper(channel, frame.event, frame.data, member.user_id if member else None)]
