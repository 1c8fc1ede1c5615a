"""Who is on the other end of a WebSocket, and which rooms they may read: sans-I/O.

**Authentication.**  A browser's ``new WebSocket(url)`` takes a URL and sub-protocols,
nothing else: the API has no way to set an ``Authorization`` header (or any header), so
a page cannot hand a bearer token to the handshake the way ``fetch`` can.  (Some servers
smuggle a token in ``Sec-WebSocket-Protocol``, the one header the page controls, e.g.
Kubernetes' ``base64url.bearer.authorization.k8s.io.TOKEN``; the server must then echo a
protocol back, and proxies log that header too.)  What the
handshake *does* carry is what the browser adds by itself: the ``Origin`` of the page
and the cookies of the server's site.  That leaves two sound ways to authenticate:

* a **session cookie** (:class:`SessionSigner`): the login sets an ``HttpOnly`` cookie
  whose value is signed with a server secret (HMAC-SHA256), so a client cannot forge
  or alter it.  The browser sends it with every request to the site, the WebSocket
  handshake included, and it sends it *whoever the page is*: this is exactly what
  cross-site WebSocket hijacking abuses, so a cookie session needs the ``Origin``
  check of :mod:`course.wire.origin` as well;
* a **ticket** (:class:`TicketBook`): the page asks for one over authenticated HTTP
  (``POST /ticket``, with the session) and opens ``ws://HOST/socket?ticket=T``.  The
  ticket works **once** and **expires in seconds**.  A page from another origin cannot
  read the ``POST /ticket`` answer (the browser's same-origin policy), so it cannot get
  a ticket.

Why not a long-lived token in the query string?  The request line, query included, is
written to every access log between the browser and the server (the server's own,
reverse proxies', load balancers'), and ends up in the browser history and in error
reports: ``127.0.0.1 - - [...] "GET /socket?token=eyJ1c2VyIjoiYWRhIn0.x9... HTTP/1.1"
101``.  Whoever reads the log can replay a token that lives for days.  A ticket in the
same log line is worthless: it was redeemed when the line was written.

**Authorization** is separate and happens per topic: a signed-in user may join the
public rooms, and a private room only when listed in its members (:class:`RoomPolicy`).
Refusals are the course's envelope error: ``{"type": "error", "code": "forbidden",
"error": "..."}`` (:func:`denial`).

Sans-I/O: the clock is passed in (``now``, seconds, any monotonic origin), the secret
and random tokens are handed in or made with :mod:`secrets`; no sockets, no asyncio.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import secrets
from collections import OrderedDict, deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from course.wire.envelope import Kind, encode

__all__ = ["Denied", "AuthError", "denial", "SessionSigner", "Ticket", "TicketBook",
           "RoomPolicy"]


class Denied(str, enum.Enum):
    """Why a client was refused: the ``code`` of the error message (stable, for programs)."""

    UNAUTHENTICATED = "unauthenticated"  #: no valid session or ticket
    BAD_SESSION = "bad-session"          #: a session value that is forged, altered or expired
    TICKET_UNKNOWN = "ticket-unknown"    #: a ticket this server never issued
    TICKET_USED = "ticket-used"          #: a ticket that was already redeemed
    TICKET_EXPIRED = "ticket-expired"    #: a ticket redeemed after its deadline
    FORBIDDEN = "forbidden"              #: signed in, but not a member of this room
    NO_SUCH_ROOM = "no-such-room"        #: a room that does not exist


class AuthError(ValueError):
    """A refused session, ticket or join, with a machine-readable :class:`Denied` code.

    Args:
        code: why, for programs.
        text: why, for people.
    """

    def __init__(self, code: Denied, text: str) -> None:
        super().__init__(text)
        self.code = Denied(code)

    def encode(self) -> str:
        """The refusal as the course's error envelope (see :func:`denial`)."""
        return denial(self.code, str(self))


def denial(code: Denied, text: str) -> str:
    """The text of an error frame: ``{"type": "error", "code": code, "error": text}``.

    The same shape as :func:`course.wire.envelope.error_message`, with the codes of
    :class:`Denied`.
    """
    return encode(Kind.ERROR, code=Denied(code).value, error=text)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Signed session values: ``BASE64(JSON).BASE64(HMAC-SHA256)``, tamper-evident.

    The value is not encrypted (anyone can read the user name in it); it is *signed*:
    changing one byte, or making one up without the secret, fails :meth:`verify`.

    Args:
        secret: the server's key, at least 16 bytes (e.g. ``secrets.token_bytes(32)``).
        max_age: seconds a session value stays valid after :meth:`sign`.

    Raises:
        ValueError: a secret shorter than 16 bytes, or ``max_age`` not positive.
    """

    def __init__(self, secret: bytes, *, max_age: float = 12 * 3600) -> None:
        if len(secret) < 16:
            raise ValueError("the secret must be at least 16 bytes")
        if max_age <= 0:
            raise ValueError(f"max_age must be positive, got {max_age}")
        self._secret = bytes(secret)
        self.max_age = max_age

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest())

    def sign(self, user: str, now: float) -> str:
        """A session value for ``user``, issued at ``now`` (the cookie's value).

        Raises:
            ValueError: an empty user name.
        """
        if not user:
            raise ValueError("a session needs a user name")
        body = _b64(json.dumps({"user": user, "iat": now}, separators=(",", ":")).encode())
        return f"{body}.{self._mac(body)}"

    def verify(self, value: str | None, now: float) -> str:
        """The user a session value belongs to.

        Raises:
            AuthError: no value (``unauthenticated``); a malformed, altered or forged
                value, or one older than ``max_age`` (``bad-session``).
        """
        if not value:
            raise AuthError(Denied.UNAUTHENTICATED, "not signed in: no session")
        body, _, mac = value.partition(".")
        if not hmac.compare_digest(mac.encode("ascii", "replace"), self._mac(body).encode()):
            raise AuthError(Denied.BAD_SESSION, "session signature does not match")
        try:
            claims = json.loads(_unb64(body))
            user, issued = claims["user"], float(claims["iat"])
        except (ValueError, KeyError, TypeError):  # only our own signed bodies get here
            raise AuthError(Denied.BAD_SESSION, "session value is malformed") from None
        if not isinstance(user, str) or not 0 <= now - issued <= self.max_age:
            raise AuthError(Denied.BAD_SESSION, "session expired")
        return user


@dataclass(frozen=True)
class Ticket:
    """An issued ticket: its random ``value``, the ``user`` it admits, its ``deadline``."""

    value: str
    user: str
    deadline: float


class TicketBook:
    """Single-use, short-lived tickets for the WebSocket handshake.

    :meth:`issue` hands out a random ticket (128 bits, :func:`secrets.token_urlsafe`)
    for a signed-in user; :meth:`redeem` admits it **once**, before ``ttl`` seconds have
    passed.  Redeemed tickets are remembered until their deadline so that a replay says
    ``ticket-used`` rather than ``ticket-unknown``; at most ``capacity`` tickets are
    kept (the oldest go first), so the book's memory is bounded whatever clients do, and
    at most ``per_user`` per user (a user's oldest goes first), so that one signed-in
    client asking for tickets in a loop cannot push everyone else's out.

    ``now`` must not go backwards between calls (a monotonic or wall clock).

    Args:
        ttl: seconds a ticket stays valid.
        capacity: tickets kept at most (outstanding and recently used).
        per_user: tickets kept at most for one user.

    Raises:
        ValueError: ``ttl`` not positive, or ``capacity`` or ``per_user`` below 1.
    """

    def __init__(self, ttl: float = 10.0, capacity: int = 10_000, per_user: int = 8) -> None:
        if ttl <= 0:
            raise ValueError(f"ttl must be positive, got {ttl}")
        if capacity < 1 or per_user < 1:
            raise ValueError(f"capacity and per_user must be at least 1, got {capacity}, {per_user}")
        self.ttl = ttl
        self.capacity = capacity
        self.per_user = per_user
        self._tickets: OrderedDict[str, tuple[Ticket, bool]] = OrderedDict()  # value -> (ticket, used)
        self._by_user: dict[str, deque[str]] = {}  # user -> their tickets' values, oldest first

    def __len__(self) -> int:
        return len(self._tickets)

    def _prune(self, now: float) -> None:
        while self._tickets:
            ticket, _ = next(iter(self._tickets.values()))
            if ticket.deadline >= now and len(self._tickets) < self.capacity:
                break
            self._forget(next(iter(self._tickets)))  # issued in deadline order: oldest first

    def _forget(self, value: str) -> None:
        ticket, _ = self._tickets.pop(value)
        mine = self._by_user[ticket.user]
        mine.remove(value)  # at most per_user long
        if not mine:
            del self._by_user[ticket.user]

    def issue(self, user: str, now: float) -> Ticket:
        """A new ticket for ``user``, valid until ``now + ttl``.

        Raises:
            ValueError: an empty user name.
        """
        if not user:
            raise ValueError("a ticket needs a user name")
        self._prune(now)
        mine = self._by_user.setdefault(user, deque())
        if len(mine) >= self.per_user:
            self._forget(mine[0])
            mine = self._by_user.setdefault(user, deque())
        ticket = Ticket(secrets.token_urlsafe(16), user, now + self.ttl)
        self._tickets[ticket.value] = (ticket, False)
        mine.append(ticket.value)
        return ticket

    def redeem(self, value: str | None, now: float) -> str:
        """Spend a ticket: the user it admits.

        Raises:
            AuthError: no ticket (``unauthenticated``), one never issued or forgotten
                (``ticket-unknown``), already redeemed (``ticket-used``), or past its
                deadline (``ticket-expired``).
        """
        if not value:
            raise AuthError(Denied.UNAUTHENTICATED, "no ticket: POST /ticket first")
        entry = self._tickets.get(value)
        if entry is None:
            raise AuthError(Denied.TICKET_UNKNOWN, "unknown ticket")
        ticket, used = entry
        if used:
            raise AuthError(Denied.TICKET_USED, "ticket already used")
        if now > ticket.deadline:
            raise AuthError(Denied.TICKET_EXPIRED,
                            f"ticket expired {now - ticket.deadline:.1f} s ago")
        self._tickets[value] = (ticket, True)
        return ticket.user


class RoomPolicy:
    """Which user may join which room: public rooms for everyone signed in, private
    rooms for their members only.

    Args:
        public: the rooms every signed-in user may join.
        private: private room → the users allowed in it.
    """

    def __init__(self, public: Collection[str] = ("lobby",),
                 private: Mapping[str, Collection[str]] | None = None) -> None:
        self.public = frozenset(public)
        self.private = {room: frozenset(users) for room, users in (private or {}).items()}
        if self.public & self.private.keys():
            raise ValueError(f"rooms both public and private: {sorted(self.public & self.private.keys())}")

    @property
    def rooms(self) -> list[str]:
        """Every room, sorted."""
        return sorted(self.public | self.private.keys())

    def check(self, user: str, room: str) -> None:
        """Let ``user`` join ``room``, or raise.

        Raises:
            AuthError: ``no-such-room``, or ``forbidden`` for a private room ``user`` is
                not a member of.
        """
        if room in self.public:
            return
        members = self.private.get(room)
        if members is None:
            raise AuthError(Denied.NO_SUCH_ROOM, f"no room {room!r}")
        if user not in members:
            raise AuthError(Denied.FORBIDDEN, f"{user!r} may not join the private room {room!r}")
