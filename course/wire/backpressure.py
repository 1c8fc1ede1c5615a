"""What a server does with messages for a client that stopped reading: the policies, sans-I/O.

A broadcast server must not wait for its slowest client (everybody else would wait too),
so each client gets a queue that its own writer drains.  When a client stops reading
(a frozen tab, a phone in a tunnel), its queue grows; the policy decides what then:

* :data:`Policy.UNBOUNDED`: keep everything.  The server's memory grows for as long as
  the client stays connected: what a naive server (and python-socketio) does.
* :data:`Policy.DROP_CLIENT`: past the bound, the client is too slow and is
  disconnected (gorilla/websocket's chat; the course's :mod:`course.net.fanout` gives it a
  grace period first).  It reconnects and resyncs; nobody else notices.
* :data:`Policy.DROP_OLDEST`: past the bound, the oldest messages are discarded.  The
  client stays, lagging with bounded memory, and misses messages (fine for a feed where
  only recent items matter; a resume protocol can tell it what it missed).
* :data:`Policy.COALESCE`: a message with a key (a price's symbol) replaces the
  queued message with the same key, in its place: the client gets the latest value of
  every key, and the queue holds at most one message per key.  Messages without a key,
  or more keys than the bound, fall back to dropping the oldest.

:class:`SendQueue` is one client's queue under one policy: :meth:`SendQueue.offer`
returns a :class:`Decision`, and the queue's length and bytes are observable.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["Policy", "Decision", "SendQueue"]

_T = TypeVar("_T")


class Policy(str, enum.Enum):
    """What to do when a client's queue is past its bound."""

    UNBOUNDED = "unbounded"
    DROP_CLIENT = "drop client"
    DROP_OLDEST = "drop oldest"
    COALESCE = "coalesce"


class Decision(str, enum.Enum):
    """What :meth:`SendQueue.offer` did with a message."""

    QUEUED = "queued"                  #: queued, the queue is within its bound
    REPLACED = "replaced"              #: COALESCE: it replaced the queued message with its key
    DROPPED_OLDEST = "dropped oldest"  #: queued, and the oldest message(s) discarded to make room
    OVER_BOUND = "over bound"          #: DROP_CLIENT: queued, but the client is past its bound


class SendQueue(Generic[_T]):
    """One client's send queue under a :class:`Policy`.

    The bound is ``max_items`` messages and ``max_bytes`` bytes, whichever is reached
    first; the queue always holds the newest message, whatever its size.

    Args:
        policy: what happens past the bound.
        max_items: messages the queue may hold (at least 1).
        max_bytes: bytes the queue may hold (at least 0).

    Raises:
        ValueError: ``max_items`` below 1 or ``max_bytes`` negative.
    """

    def __init__(self, policy: Policy = Policy.DROP_CLIENT, *, max_items: int = 16,
                 max_bytes: int = 1024 * 1024) -> None:
        if max_items < 1 or max_bytes < 0:
            raise ValueError(f"max_items must be >= 1 and max_bytes >= 0, got {max_items}, {max_bytes}")
        self.policy = Policy(policy)
        self.max_items, self.max_bytes = max_items, max_bytes
        self.bytes = 0
        self.discarded = 0      #: messages dropped or replaced, never to be sent
        self._items: OrderedDict[Hashable, tuple[_T, int]] = OrderedDict()
        self._serial = 0        # the slot key of a message without a key

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return (f"SendQueue({self.policy.value!r}, items={len(self)}, bytes={self.bytes}, "
                f"discarded={self.discarded})")

    def over_bound(self) -> bool:
        """Whether the queue holds more than its bound (it can with UNBOUNDED and DROP_CLIENT)."""
        return len(self) > self.max_items or (len(self) > 1 and self.bytes > self.max_bytes)

    def offer(self, item: _T, size: int, key: Hashable | None = None) -> Decision:
        """Queue ``item`` (``size`` bytes) under the policy, and say what happened.

        Args:
            item: the message.
            size: its size in bytes (at least 0).
            key: what it coalesces on (COALESCE only; ``None``: never coalesced).

        Returns:
            The :class:`Decision`.  :data:`Decision.OVER_BOUND` tells the caller to drop the
            client (DROP_CLIENT); the message is queued anyway, so the caller decides when.

        Raises:
            ValueError: a negative ``size``.
        """
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        if self.policy is Policy.COALESCE and key is not None:
            slot: Hashable = ("key", key)
            old = self._items.get(slot)
            if old is not None:
                self._items[slot] = (item, size)   # an OrderedDict keeps the slot's place
                self.bytes += size - old[1]
                self.discarded += 1
                return Decision.REPLACED
        else:
            self._serial += 1
            slot = ("serial", self._serial)
        self._items[slot] = (item, size)
        self.bytes += size
        if not self.over_bound():
            return Decision.QUEUED
        if self.policy in (Policy.DROP_OLDEST, Policy.COALESCE):
            while self.over_bound():
                _, (_, dropped) = self._items.popitem(last=False)
                self.bytes -= dropped
                self.discarded += 1
            return Decision.DROPPED_OLDEST
        return Decision.OVER_BOUND if self.policy is Policy.DROP_CLIENT else Decision.QUEUED

    def items(self) -> list[_T]:
        """The queued messages, oldest first (the queue is not changed)."""
        return [item for item, _ in self._items.values()]

    def pop(self) -> tuple[_T, int]:
        """Take the oldest message and its size.

        Raises:
            IndexError: the queue is empty.
        """
        if not self._items:
            raise IndexError("pop from an empty SendQueue")
        _, (item, size) = self._items.popitem(last=False)
        self.bytes -= size
        return item, size

    def clear(self) -> None:
        """Forget every queued message (they count as discarded)."""
        self.discarded += len(self._items)
        self._items.clear()
        self.bytes = 0
