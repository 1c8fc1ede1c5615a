"""Resume without loss, exactly once in effect, sans-I/O: sequence numbers, a bounded log,
an outbox with message ids, and a deduplicator.

A connection can die at any byte.  Two things then go missing, one per direction, and
each has its own cure:

**Server → client: number, log, replay, drop duplicates.**  The server numbers each
topic's messages 1, 2, 3... (``seq``) and keeps the last ``capacity`` of them in a
:class:`TopicLog`.  The client remembers the last ``seq`` it delivered, rejoins with it,
and the server replays what is missing (:meth:`TopicLog.since`), or answers *resync*
when its log no longer reaches that far back.  The client classifies every incoming
``seq`` with :func:`classify` and drops the duplicates (:class:`Receiver`)::

    log = TopicLog(capacity=1000)
    log.append({"body": "hi"})          # -> 1
    log.since(0)                        # Replay(entries=[Entry(1, {"body": "hi"})])
    classify(last_seen=4, seq=5)        # Seen.DELIVER
    classify(last_seen=4, seq=3)        # Seen.DUPLICATE
    classify(last_seen=4, seq=7)        # Seen.GAP (5 and 6 are missing)

**Client → server: ids, retry until acknowledged, deduplicate.**  Every message the
client sends gets an id (an *idempotency key*) and stays in its :class:`Outbox` until
the server acknowledges that id; after a reconnect every unacknowledged message is
sent again, in order.  A message whose acknowledgement was lost therefore arrives
twice, so the server remembers the ids it has seen (:class:`Deduplicator`) and answers
a repeat with the first answer, without acting on it again.  At least once on the wire,
plus deduplication, is exactly once *in effect*.

Nothing here does I/O: :mod:`course.net.channels` (the server) and
:mod:`course.net.channels_client` (the client) use these rules.
"""

from __future__ import annotations

import enum
import itertools
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

__all__ = ["Seen", "classify", "Entry", "Replay", "Resync", "TopicLog", "Receiver", "Outbox",
           "Deduplicator", "MAX_ID_CHARS", "message_id", "resume_point"]

MAX_ID_CHARS = 64  #: the longest message id (or client id) a server accepts


class Seen(enum.Enum):
    """What a client does with an incoming ``seq`` (see :func:`classify`)."""

    DELIVER = "deliver"      #: the next one: deliver it
    DUPLICATE = "duplicate"  #: seen already (a replay overlapped): drop it
    GAP = "gap"              #: some are missing before it: resume from the last seen


def classify(last_seen: int, seq: int) -> Seen:
    """Classify an incoming sequence number against the last one delivered.

    Args:
        last_seen: the ``seq`` of the last message delivered (0: none yet).
        seq: the ``seq`` that just arrived.

    Returns:
        :attr:`Seen.DELIVER` if ``seq`` is ``last_seen + 1``; :attr:`Seen.DUPLICATE` if
        it is ``last_seen`` or older; :attr:`Seen.GAP` if it is further ahead.
    """
    if seq == last_seen + 1:
        return Seen.DELIVER
    if seq <= last_seen:
        return Seen.DUPLICATE
    return Seen.GAP


@dataclass(frozen=True)
class Entry:
    """One logged message: its ``seq`` in the topic and its payload."""

    seq: int
    payload: Any


@dataclass(frozen=True)
class Replay:
    """The answer of :meth:`TopicLog.since` when the log holds the gap: the missed
    entries, oldest first (empty when nothing was missed)."""

    entries: list[Entry]


@dataclass(frozen=True)
class Resync:
    """The answer of :meth:`TopicLog.since` when it cannot replay: the client must start
    again from ``last_seq`` (and refetch what it needs some other way).

    Attributes:
        last_seq: the topic's newest ``seq`` (continue after it).
        reason: why, for people ("too old", "ahead of the log").
    """

    last_seq: int
    reason: str


class TopicLog:
    """One topic's numbered messages, the last ``capacity`` of them.

    Args:
        capacity: how many entries are kept (the oldest go first).

    Raises:
        ValueError: ``capacity`` < 1.
    """

    def __init__(self, capacity: int = 1000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.last_seq = 0  #: the newest ``seq`` (0: nothing logged yet)
        self._entries: deque[Entry] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._entries)

    def append(self, payload: Any) -> int:
        """Log one message.

        Args:
            payload: the message (kept as is).

        Returns:
            Its ``seq``: one more than the previous.
        """
        self.last_seq += 1
        self._entries.append(Entry(self.last_seq, payload))
        return self.last_seq

    @property
    def newest(self) -> Entry | None:
        """The newest entry (``None`` when empty)."""
        return self._entries[-1] if self._entries else None

    @property
    def first_seq(self) -> int:
        """The oldest ``seq`` still held (``last_seq + 1`` when empty)."""
        return self._entries[0].seq if self._entries else self.last_seq + 1

    def since(self, last_seq: int) -> Replay | Resync:
        """What a client that delivered up to ``last_seq`` missed.

        Args:
            last_seq: the last ``seq`` the client delivered (0: none).

        Returns:
            :class:`Replay` with the entries after ``last_seq`` (possibly none), or
            :class:`Resync` if the log dropped some of them ("too old") or the client is
            ahead of the log (the server restarted: "ahead of the log").

        Raises:
            ValueError: ``last_seq`` is negative.
        """
        if last_seq < 0:
            raise ValueError(f"last_seq must be >= 0, got {last_seq}")
        if last_seq > self.last_seq:
            return Resync(self.last_seq, "ahead of the log")
        if last_seq + 1 < self.first_seq:
            return Resync(self.last_seq, "too old")
        skip = last_seq + 1 - self.first_seq
        return Replay(list(itertools.islice(self._entries, skip, None)))


class Receiver:
    """The client's side of server → client: deliver each ``seq`` once, in order.

    Args:
        last_seen: the last ``seq`` already delivered (0: none).

    Attributes:
        last_seen: the last ``seq`` delivered (what to rejoin with).
        duplicates: how many were dropped as duplicates.
        gaps: how many times a gap was seen.
    """

    def __init__(self, last_seen: int = 0) -> None:
        self.last_seen = last_seen
        self.duplicates = 0
        self.gaps = 0

    def receive(self, seq: int) -> Seen:
        """Classify ``seq`` (:func:`classify`) and advance on :attr:`Seen.DELIVER`.

        Returns:
            What to do with the message: deliver it, drop it, or resume from
            :attr:`last_seen` (on a gap nothing advances).
        """
        seen = classify(self.last_seen, seq)
        if seen is Seen.DELIVER:
            self.last_seen = seq
        elif seen is Seen.DUPLICATE:
            self.duplicates += 1
        else:
            self.gaps += 1
        return seen

    def resync(self, last_seq: int) -> None:
        """The server answered resync: continue after its ``last_seq``."""
        self.last_seen = last_seq


class Outbox:
    """The client's side of client → server: ids, and every unacknowledged message.

    Args:
        client_id: a prefix that makes this client's ids unique (e.g. a random token).

    Attributes:
        client_id: the prefix.
        acked: how many messages were acknowledged.
    """

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.acked = 0
        self._numbers = itertools.count(1)
        self._pending: OrderedDict[str, Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, payload: Any) -> str:
        """Keep a new message until it is acknowledged.

        Returns:
            Its id, ``"<client_id>-<n>"``, n = 1, 2, 3...
        """
        msg_id = f"{self.client_id}-{next(self._numbers)}"
        self._pending[msg_id] = payload
        return msg_id

    def ack(self, msg_id: str) -> bool:
        """The server acknowledged ``msg_id``; ``False`` if it was not pending (acked already)."""
        if self._pending.pop(msg_id, None) is None:
            return False
        self.acked += 1
        return True

    def unacked(self) -> list[tuple[str, Any]]:
        """Every message not acknowledged yet, ``(id, payload)``, oldest first: what to
        send again after a reconnect."""
        return list(self._pending.items())


class Deduplicator:
    """The server's memory of message ids, per client, bounded.

    The bound: the last ``per_client`` ids of each client, for the last ``clients``
    clients that sent something (least recently used forgotten first): at most
    ``per_client × clients`` ids.  A repeat is recognised as long as fewer than
    ``per_client`` newer ids of that client came in between, so a client must keep fewer
    than ``per_client`` messages unacknowledged (the course's client sends at most
    ``window`` at a time, default 64, against 1024 here).

    Args:
        per_client: ids remembered per client.
        clients: clients remembered.

    Raises:
        ValueError: a bound < 1.
    """

    def __init__(self, per_client: int = 1024, clients: int = 1024) -> None:
        if per_client < 1 or clients < 1:
            raise ValueError("per_client and clients must be >= 1")
        self.per_client = per_client
        self.clients = clients
        self.repeats = 0  #: how many repeats were recognised
        self._seen: OrderedDict[Hashable, OrderedDict[str, Any]] = OrderedDict()

    def seen(self, client: Hashable, msg_id: str) -> tuple[bool, Any]:
        """Whether ``client`` sent ``msg_id`` before, and the answer given then.

        Returns:
            ``(True, first_answer)`` for a repeat (counted), ``(False, None)`` otherwise.
        """
        ids = self._seen.get(client)
        if ids is None or msg_id not in ids:
            return False, None
        self.repeats += 1
        return True, ids[msg_id]

    def remember(self, client: Hashable, msg_id: str, answer: Any = None) -> None:
        """Remember that ``client`` sent ``msg_id`` and what it was answered (forgetting
        the oldest id, or the least recent client, past the bounds)."""
        ids = self._seen.pop(client, None)
        if ids is None:
            ids = OrderedDict()
        self._seen[client] = ids
        ids[msg_id] = answer
        while len(ids) > self.per_client:
            ids.popitem(last=False)
        while len(self._seen) > self.clients:
            self._seen.popitem(last=False)

    def __len__(self) -> int:
        """How many ids are remembered in all."""
        return sum(len(ids) for ids in self._seen.values())


def message_id(payload: dict[str, Any]) -> str | None:
    """The ``id`` a client put in a push (``None`` if it sent none).

    Raises:
        ValueError: ``id`` is not a string of 1 to :data:`MAX_ID_CHARS` characters.
    """
    msg_id = payload.get("id")
    if msg_id is None:
        return None
    if not isinstance(msg_id, str) or not 1 <= len(msg_id) <= MAX_ID_CHARS:
        raise ValueError(f'"id" must be a string of 1 to {MAX_ID_CHARS} characters')
    return msg_id


def resume_point(payload: dict[str, Any]) -> tuple[int, str | None] | None:
    """What a join asks to resume: ``(last_seq, client)``, or ``None`` (a plain join).

    A join resumes when its payload holds ``"last_seq"`` (an integer >= 0; 0 for a first
    join); ``"client"`` (optional) names the client across its connections, for the
    deduplicator.

    Raises:
        ValueError: ``last_seq`` is not an integer >= 0 (``true`` is not one), or
            ``client`` is not a string of 1 to :data:`MAX_ID_CHARS` characters.
    """
    if "last_seq" not in payload:
        return None
    last_seq = payload["last_seq"]
    if isinstance(last_seq, bool) or not isinstance(last_seq, int) or last_seq < 0:
        raise ValueError('"last_seq" must be an integer >= 0')
    client = payload.get("client")
    if client is not None and (not isinstance(client, str) or not 1 <= len(client) <= MAX_ID_CHARS):
        raise ValueError(f'"client" must be a string of 1 to {MAX_ID_CHARS} characters')
    return last_seq, client
