"""Self-checks for chapter 7: the Redis-to-local-clients bridge, private-channel auth, presence with expiry.

Used by ``solutions/07_scaling_out_with_redis_exercises.ipynb``::

    check_route(route)                 # route(channel, raw, subscriptions) -> {socket_id: frame}
    check_auth(auth)                   # auth(key, secret, socket_id, channel, channel_data=None) -> str
    check_presence(presence_at)        # presence_at(entries, now) -> (present, expired, gone)

The expected answers come from the course's own :mod:`course.wire.pusher` (``event_frame``,
``auth_string``, the server's expiry rule ``until < now``), so the exercises and the
servers agree.  Frames are compared as decoded JSON (key order and spacing are free), but
``data`` must be the JSON-encoded *string* the protocol sends.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from course.checks import check, expect, expect_equal, summary
from course.wire.pusher import Broadcast, auth_string, broadcast_payload, event_frame

__all__ = ["check_route", "check_auth", "check_presence"]


# --------------------------------------------------------------------------- (a) the bridge

def _same_frames(got: Any, expected: dict[str, str], what: str) -> None:
    expect(isinstance(got, dict), f"{what}: expected a dict {{socket_id: frame}}, got {got!r}")
    expect_equal(sorted(got), sorted(expected), f"{what}: the sockets that get a frame")
    for socket_id, text in expected.items():
        frame = got[socket_id]
        expect(isinstance(frame, str), f"{what}: the frame for {socket_id} must be text, got {frame!r}")
        try:
            decoded = json.loads(frame)
        except ValueError:
            raise AssertionError(f"{what}: the frame for {socket_id} is not JSON: {frame!r}") from None
        wanted = json.loads(text)
        expect(isinstance(decoded, dict) and isinstance(decoded.get("data"), str),
               f"{what}: the frame for {socket_id} must be an object whose data is a JSON string, got {frame!r}")
        try:
            decoded["data"] = json.loads(decoded["data"])
        except ValueError:
            raise AssertionError(f"{what}: the frame's data is not JSON text: {decoded['data']!r}") from None
        wanted["data"] = json.loads(wanted["data"])
        expect_equal(decoded, wanted, f"{what}: the frame for {socket_id} (data decoded)")


def check_route(route: Callable[[str, Any, dict[str, Any]], dict[str, str]]) -> bool:
    """Check ``route(channel, raw, subscriptions) -> {socket_id: frame text}``."""
    local = {"1.1": {"orders"}, "2.2": {"orders", "private-orders.7"}, "3.3": {"news"}}

    def case(channel: str, raw: Any, subscriptions: dict[str, Any], expected_sockets: list[str],
             broadcast: Broadcast | None, what: str) -> Callable[[], None]:
        def test() -> None:
            expected = {s: event_frame(channel, broadcast) for s in expected_sockets} if broadcast else {}
            _same_frames(route(channel, raw, subscriptions), expected, what)
        return test

    shipped = Broadcast("OrderShipped", {"id": 1, "total": 9.5})
    mine = Broadcast("OrderShipped", {"id": 2}, socket="2.2")
    private = Broadcast("StatusChanged", {"status": "paid"})
    with_id = Broadcast("OrderShipped", {"id": 3}, id="1700000000000-0")
    empty = Broadcast("Ping", None)
    results = [
        check("the subscribers of the channel get the event, the others nothing",
              case("orders", broadcast_payload(shipped.event, shipped.data), local, ["1.1", "2.2"], shipped,
                   "orders, socket null"),
              "keep the sockets whose channels include `channel`; build each frame with event, channel and data."),
        check("the frame's data is a JSON-encoded string, as Pusher sends it",
              case("news", broadcast_payload("Headline", {"title": "Redis"}), local, ["3.3"],
                   Broadcast("Headline", {"title": "Redis"}), "news"),
              "`data` in a server frame is json.dumps(data), a string inside the JSON object."),
        check("toOthers(): the sender's socket is skipped",
              case("orders", broadcast_payload(mine.event, mine.data, mine.socket), local, ["1.1"], mine,
                   "orders, socket 2.2"),
              "the payload's `socket` names the connection that caused the event: leave it out."),
        check("private channels too (the name is the browser's, prefix already removed)",
              case("private-orders.7", broadcast_payload(private.event, private.data), local, ["2.2"], private,
                   "private-orders.7"),
              "route by the exact channel name."),
        check("bytes from Redis, and the stream id kept in the frame",
              case("orders", json.dumps({"event": "OrderShipped", "data": {"id": 3}, "socket": None,
                                         "id": "1700000000000-0"}).encode(), local, ["1.1", "2.2"], with_id,
                   "bytes with an id"),
              "Redis gives bytes: json.loads accepts them; copy `id` to the frame (course.wire.pusher.event_frame)."),
        check("data null becomes {}",
              case("orders", broadcast_payload("Ping", None), local, ["1.1", "2.2"], empty, "data null"),
              "Pusher frames always carry data: send \"{}\" when the payload's data is null."),
        check("nobody subscribed here: no frame",
              case("orders", broadcast_payload(shipped.event, shipped.data), {"3.3": {"news"}}, [], None,
                   "no local subscriber"),
              "a process only pushes to its own subscribers of that channel."),
        check("a message that is not Laravel's shape is ignored, without an exception",
              _ignored(route, local),
              "parse with json.loads inside try/except; a message without a string `event` is skipped."),
    ]
    return summary(results, "route")


def _ignored(route: Callable[..., Any], local: dict[str, Any]) -> Callable[[], None]:
    def test() -> None:
        for raw in ("not json", "[1, 2]", json.dumps({"data": {"id": 1}}), json.dumps({"event": 5})):
            _same_frames(route("orders", raw, local), {}, f"message {raw!r}")
    return test


# --------------------------------------------------------------------------- (b) auth

KEY, SECRET = "course-key", "course-secret"


def check_auth(auth: Callable[..., str]) -> bool:
    """Check ``auth(key, secret, socket_id, channel, channel_data=None) -> "key:hex"``."""

    def case(socket_id: str, channel: str, channel_data: str | None = None,
             key: str = KEY, secret: str = SECRET) -> Callable[[], None]:
        def test() -> None:
            args = (key, secret, socket_id, channel) + ((channel_data,) if channel_data is not None else ())
            got = auth(*args)
            expect(isinstance(got, str), f"auth must return a string, got {got!r}")
            expect_equal(got, auth_string(key, secret, socket_id, channel, channel_data),
                         f"auth{args}")
        return test

    presence_data = json.dumps({"user_id": "1", "user_info": {"name": "ada"}})
    results = [
        check("a private channel: key, a colon, the hex HMAC-SHA256", case("123.456", "private-orders.1"),
              "the result is key + ':' + a lowercase hex digest of HMAC-SHA256 (hmac.new(..., hashlib.sha256))."),
        check("the secret is the HMAC key, \"socket_id:channel\" the message",
              case("9.87654", "private-chat.42", key="app-key", secret="s3cr3t"),
              "hmac.new(secret.encode(), f\"{socket_id}:{channel}\".encode(), hashlib.sha256): the secret "
              "is the key of the HMAC, the key only prefixes the result."),
        check("another socket id gives another signature (a signature is for one connection)",
              case("123.457", "private-orders.1"),
              "sign the socket id first, then the channel, separated by ':'."),
        check("a presence channel signs \"socket_id:channel:channel_data\"",
              case("123.456", "presence-room.1", presence_data),
              "when channel_data is given, append ':' + channel_data (the exact JSON string) to the message."),
        check("the same presence call with other user data gives another signature",
              case("123.456", "presence-room.1", json.dumps({"user_id": "2"})),
              "the user's data is signed too, so that a browser cannot claim to be someone else."),
    ]
    return summary(results, "auth")


# --------------------------------------------------------------------------- (c) presence

def _entry(user: Any, until: Any = None, **extra: Any) -> str:
    value = {"user_id": user, "user_info": {"name": str(user)}, **extra}
    if until is not None:
        value["until"] = until
    return json.dumps(value)


def check_presence(presence_at: Callable[[dict[Any, Any], float], tuple[set[str], set[str], set[str]]]) -> bool:
    """Check ``presence_at(entries, now) -> (present users, expired socket ids, gone users)``."""

    def case(entries: dict[Any, Any], now: float, present: set[str], expired: set[str],
             gone: set[str]) -> Callable[[], None]:
        def test() -> None:
            got = presence_at(entries, now)
            expect(isinstance(got, tuple) and len(got) == 3,
                   f"expected a tuple (present, expired, gone), got {got!r}")
            for name, value, wanted in zip(("present users", "expired sockets", "gone users"), got,
                                           (present, expired, gone)):
                expect(isinstance(value, (set, frozenset)),
                       f"{name}: expected a set, got {type(value).__name__} {value!r} (a set "
                       "counts a user with several tabs once)")
                expect_equal(value, wanted, f"{name} at t={now:g}")
        return test

    two = {"1.1": _entry("ada", 110), "2.2": _entry("bob", 105)}
    tabs = {"1.1": _entry("ada", 110), "1.2": _entry("ada", 95), "2.2": _entry("bob", 95)}
    results = [
        check("everyone present before their `until`", case(two, 100, {"ada", "bob"}, set(), set()),
              "an entry is live while now is not past its until."),
        check("an entry whose `until` has passed has expired, and its user is gone",
              case(two, 107, {"ada"}, {"2.2"}, {"bob"}),
              "expired when until < now: the process that wrote it stopped refreshing it."),
        check("exactly at `until` the entry is still live (the server's rule: until < now)",
              case(two, 105, {"ada", "bob"}, set(), set()),
              "the server expires an entry when until < now, not <=."),
        check("a user with another live tab stays present (one expired socket, nobody gone)",
              case(tabs, 100, {"ada"}, {"1.2", "2.2"}, {"bob"}),
              "presence is per user, entries per connection: a user is gone only when none of their "
              "entries is live."),
        check("user ids are strings; several tabs count once",
              case({"1.1": _entry("7", 110), "1.2": _entry("7", 120)}, 100, {"7"}, set(), set()),
              "collect user ids in a set."),
        check("bytes from HGETALL, an entry without `until` is expired",
              case({b"1.1": _entry("ada", 110).encode(), b"2.2": _entry("bob").encode()}, 100,
                   {"ada"}, {"2.2"}, {"bob"}),
              "decode bytes keys (socket ids are text); a missing until counts as 0, long past."),
        check("broken entries are skipped, not an exception",
              case({"1.1": _entry("ada", 110), "2.2": "not json", "3.3": json.dumps([1]),
                    "4.4": json.dumps({"until": 200})}, 100, {"ada"}, set(), set()),
              "json.loads inside try/except; skip what is not an object with a user_id."),
        check("nobody at all", case({}, 100, set(), set(), set()), "an empty hash: three empty sets."),
    ]
    return summary(results, "presence_at")
