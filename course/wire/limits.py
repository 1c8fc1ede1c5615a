"""Limits a real-time server needs, as pure rules: no clock, no socket, no asyncio.

* :class:`TokenBucket`: how many messages a connection may send per second (with bursts);
* :class:`RateLimit`: the course's policy on top of it: over the limit, an error reply;
  still sending after ``strikes`` refusals, the connection is closed with 1008;
* :func:`json_depth` / :func:`check_json_depth`: how deeply a JSON text nests, measured
  before parsing (a deeply nested document makes ``json.loads`` raise ``RecursionError``
  or makes every later ``json.dumps`` of it fail);
* :class:`ConnectionTable`: who holds a connection: a cap in total, a cap per client
  address, a cap on connections still in their opening handshake (the oldest is evicted
  for a newcomer), and a deadline for that handshake (slowloris).

Time is always passed in (``now``, in seconds, from any monotonic clock): the I/O layer
(:mod:`course.net.guard`, :mod:`course.net.rawserver`) reads the clock, these classes only
compute.  The defaults below are the course's, documented once here.
"""

from __future__ import annotations

import enum
import re
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field

__all__ = [
    "MAX_JSON_DEPTH", "MESSAGE_RATE", "MESSAGE_BURST", "RATE_STRIKES", "MAX_CONNECTIONS",
    "MAX_PER_ADDRESS", "MAX_PENDING", "HANDSHAKE_TIMEOUT", "IDLE_GRACE", "MAX_JOINS",
    "TokenBucket", "Verdict", "RateLimit", "json_depth", "check_json_depth", "JsonTooDeep",
    "Admission", "ConnectionTable", "JoinLimit",
]

MAX_JSON_DEPTH = 32        #: deepest JSON nesting a server parses (arrays and objects)
MESSAGE_RATE = 200.0       #: messages per second a connection may send, sustained
MESSAGE_BURST = 2000.0     #: messages a connection may send at once after a quiet spell
RATE_STRIKES = 200         #: messages refused for rate in a row, then the connection is closed (1008)
MAX_CONNECTIONS = 1000     #: connections in total (the usual open-file limit is 1,024)
MAX_PER_ADDRESS = 1000     #: connections from one client IP address (loopback: all of them)
MAX_PENDING = 64           #: connections still in their opening handshake
HANDSHAKE_TIMEOUT = 10.0   #: seconds a connection has to complete its opening handshake
IDLE_GRACE = 10.0          #: seconds of silence after which an open connection may be evicted when full
MAX_JOINS = 100            #: topics one connection may join (channels)


class TokenBucket:
    """A bucket of at most ``burst`` tokens that refills at ``rate`` tokens per second.

    Each action takes ``cost`` tokens; an action that finds too few is refused and takes
    nothing.  The bucket starts full.  Rule, for ``take(now)``::

        tokens = min(burst, tokens + (now - last) * rate);  last = now
        if tokens >= cost: tokens -= cost and allow, else refuse

    Args:
        rate: tokens added per second (> 0).
        burst: capacity, the most actions allowed at once (>= 1).

    Raises:
        ValueError: ``rate`` not positive or ``burst`` below 1.
    """

    def __init__(self, rate: float, burst: float) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate!r}")
        if not burst >= 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.last: float | None = None

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens at time ``now`` (seconds); ``True`` if the action is allowed.

        A clock that goes backwards adds nothing (``now`` earlier than the last call).
        """
        if self.last is not None and now > self.last:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        if self.last is None or now > self.last:
            self.last = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


class Verdict(enum.Enum):
    """What to do with one message, according to a :class:`RateLimit`."""

    ALLOW = "allow"    #: handle it
    REFUSE = "refuse"  #: answer with an error (``rate-limited``), keep the connection
    CLOSE = "close"    #: abuse: close the connection with 1008 (policy violation)


class RateLimit:
    """Per-connection rate policy: a :class:`TokenBucket`, then an error, then 1008.

    A message within the rate is allowed.  Over it, the message is refused (the server
    answers with an error and drops the message); each refusal is a strike, and
    ``strikes`` refusals without a message allowed in between close the connection
    (1008).  A client that slows down when told so is never closed.

    Args:
        rate: messages per second, sustained (default :data:`MESSAGE_RATE`).
        burst: messages at once (default :data:`MESSAGE_BURST`).
        strikes: refusals in a row that close the connection (default :data:`RATE_STRIKES`).
    """

    def __init__(self, rate: float = MESSAGE_RATE, burst: float = MESSAGE_BURST,
                 strikes: int = RATE_STRIKES) -> None:
        if strikes < 1:
            raise ValueError(f"strikes must be >= 1, got {strikes!r}")
        self.bucket = TokenBucket(rate, burst)
        self.strikes = strikes
        self.refused = 0  #: refusals since the last allowed message

    def check(self, now: float, cost: float = 1.0) -> Verdict:
        """The verdict for one message arriving at ``now`` (seconds)."""
        if self.bucket.take(now, cost):
            self.refused = 0
            return Verdict.ALLOW
        self.refused += 1
        return Verdict.CLOSE if self.refused >= self.strikes else Verdict.REFUSE


class JsonTooDeep(ValueError):
    """A JSON text nests deeper than allowed.

    Attributes:
        depth: how deep it goes (at least ``limit + 1``).
        limit: the deepest allowed.
    """

    def __init__(self, depth: int, limit: int) -> None:
        super().__init__(f"JSON nested {depth} levels deep, at most {limit}")
        self.depth, self.limit = depth, limit


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?', re.S)  # a JSON string (maybe unterminated)
_BRACKETS = re.compile(r"[\[\]{}]")


def json_depth(text: str) -> int:
    """How deeply the arrays and objects of a JSON text nest (``0`` for a scalar).

    Brackets inside strings do not count.  The text need not be valid JSON: this is a
    cheap scan meant to run *before* ``json.loads``.

    Examples: ``json_depth('1') == 0``, ``json_depth('[[1], {"a": "[["}]') == 2``.
    """
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth = max(0, depth - 1)
    return deepest


def check_json_depth(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse a JSON text that nests deeper than ``limit``.

    Fast for ordinary messages: texts with at most ``limit`` brackets are not scanned.

    Raises:
        JsonTooDeep: the text nests deeper than ``limit``.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = bytes(text).decode("utf-8", "replace")
    if text.count("[") + text.count("{") <= limit:
        return
    depth = json_depth(text)
    if depth > limit:
        raise JsonTooDeep(depth, limit)


class Admission(enum.Enum):
    """The answer of :meth:`ConnectionTable.admit`."""

    ADMIT = "admit"              #: a place is free
    FULL = "full"                #: every place is taken by an open connection (HTTP 503)
    ADDRESS_FULL = "address-full"  #: this address holds its share already (HTTP 503)


@dataclass
class _Entry:
    address: str
    since: float
    open: bool = False
    last: float = 0.0  # when it last sent anything


@dataclass
class ConnectionTable:
    """Who holds a connection, and who must go: the bookkeeping of a connection cap.

    A connection is *pending* from its TCP accept until its opening handshake completes
    (:meth:`opened`), then *open* until :meth:`release`.  Rules:

    - at most ``max_connections`` in all, at most ``max_per_address`` per client address;
    - at most ``max_pending`` pending at once;
    - when a newcomer finds no place, the oldest *pending* connection (of its own address
      if that address is full) is evicted for it: half-open connections cannot lock out
      a client that completes its handshake;
    - if none is pending, the open connection silent the longest is evicted, provided it
      sent nothing (data, or a pong) for ``idle_grace`` seconds: connections opened and
      left silent cannot lock out a live client for long (call :meth:`touch` on input);
    - a pending connection older than ``handshake_timeout`` seconds is expired (slowloris).

    Keys are anything hashable (a transport, a task); addresses are strings (client IPs).

    Args:
        max_connections: see :data:`MAX_CONNECTIONS`.
        max_per_address: see :data:`MAX_PER_ADDRESS`.
        max_pending: see :data:`MAX_PENDING`.
        handshake_timeout: see :data:`HANDSHAKE_TIMEOUT`.
        idle_grace: see :data:`IDLE_GRACE`.
    """

    max_connections: int = MAX_CONNECTIONS
    max_per_address: int = MAX_PER_ADDRESS
    max_pending: int = MAX_PENDING
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    idle_grace: float = IDLE_GRACE
    _entries: OrderedDict = field(default_factory=OrderedDict, repr=False)  # key -> _Entry, oldest first
    _per_address: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if min(self.max_connections, self.max_per_address, self.max_pending) < 1:
            raise ValueError("every cap must be at least 1")
        if not self.handshake_timeout > 0:
            raise ValueError(f"handshake_timeout must be > 0, got {self.handshake_timeout!r}")

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    @property
    def pending(self) -> int:
        """Connections still in their opening handshake."""
        return sum(1 for entry in self._entries.values() if not entry.open)

    def count(self, address: str) -> int:
        """Connections held by one address."""
        return self._per_address.get(address, 0)

    def _oldest_pending(self, address: str | None = None) -> Hashable | None:
        for key, entry in self._entries.items():
            if not entry.open and (address is None or entry.address == address):
                return key
        return None

    def _most_idle(self, now: float, address: str | None = None) -> Hashable | None:
        victim, oldest = None, now - self.idle_grace
        for key, entry in self._entries.items():
            if entry.open and entry.last <= oldest and (address is None or entry.address == address):
                victim, oldest = key, entry.last
        return victim

    def touch(self, key: Hashable, now: float) -> None:
        """The connection sent something at ``now`` (it is not idle)."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.last = now

    def admit(self, key: Hashable, address: str, now: float) -> tuple[Admission, list[Hashable]]:
        """A new connection from ``address`` at ``now``.

        Returns:
            ``(verdict, evicted)``: when ``verdict`` is :attr:`Admission.ADMIT` the
            connection is recorded as pending; ``evicted`` lists the pending connections
            it displaced, which the caller must close (they are forgotten already).
        """
        evicted: list[Hashable] = []
        if self.count(address) >= self.max_per_address:
            victim = self._oldest_pending(address)
            if victim is None:
                victim = self._most_idle(now, address)
            if victim is None:
                return Admission.ADDRESS_FULL, evicted
            self.release(victim)
            evicted.append(victim)
        if len(self._entries) >= self.max_connections or self.pending >= self.max_pending:
            victim = self._oldest_pending()
            if victim is None and len(self._entries) >= self.max_connections:
                victim = self._most_idle(now)
            if victim is None:
                return Admission.FULL, evicted
            self.release(victim)
            evicted.append(victim)
        self._entries[key] = _Entry(address, now, last=now)
        self._per_address[address] = self.count(address) + 1
        return Admission.ADMIT, evicted

    def opened(self, key: Hashable) -> None:
        """The connection completed its opening handshake: it keeps its place."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.open = True

    def is_open(self, key: Hashable) -> bool:
        """Whether the connection is recorded and completed its handshake."""
        entry = self._entries.get(key)
        return entry is not None and entry.open

    def release(self, key: Hashable) -> None:
        """The connection ended (or was evicted): free its place. Unknown keys are ignored."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        left = self._per_address[entry.address] - 1
        if left:
            self._per_address[entry.address] = left
        else:
            del self._per_address[entry.address]

    def expired(self, now: float) -> list[Hashable]:
        """Pending connections older than ``handshake_timeout`` at ``now``; they are forgotten."""
        late = [key for key, entry in self._entries.items()
                if not entry.open and now - entry.since >= self.handshake_timeout]
        for key in late:
            self.release(key)
        return late


class JoinLimit:
    """How many topics one connection may join (channels): at most ``limit`` at once.

    Call :meth:`join` on every join and :meth:`leave` on every leave; a join beyond the
    limit is refused (the server answers the join with an error, the connection stays).

    Args:
        limit: topics at once (default :data:`MAX_JOINS`).
    """

    def __init__(self, limit: int = MAX_JOINS) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit!r}")
        self.limit = limit
        self.topics: set[str] = set()

    def join(self, topic: str) -> bool:
        """Record a join; ``False`` (nothing recorded) if it would go beyond the limit.

        Joining a topic already joined is always allowed.
        """
        if topic in self.topics:
            return True
        if len(self.topics) >= self.limit:
            return False
        self.topics.add(topic)
        return True

    def leave(self, topic: str) -> None:
        """Record a leave (unknown topics are ignored)."""
        self.topics.discard(topic)
