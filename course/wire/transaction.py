"""Transactions as compare-and-set on a hash, after Firebase's ``runTransaction``.

The client runs the update function on the value it believes is current and sends the
result with a hash of that believed value.  The server writes only if the hash still
matches its current value (:func:`matches`); otherwise it answers ``datastale`` with the
current value, and the client runs the function again on it, at most
:data:`MAX_RETRIES` times (Firebase's ``MAX_TRANSACTION_RETRIES``), then gives up with
``maxretry``.  :func:`next_step` is that loop's decision, pure.

The hash is SHA-256 of canonical JSON (sorted keys, no spaces): two equal trees have one
hash whatever the order their keys arrived in (Firebase hashes its own canonical form,
with SHA-1).
"""

from __future__ import annotations

import enum
import hashlib
import random

from course.wire.tree import Value, canonical

__all__ = ["MAX_RETRIES", "Step", "value_hash", "matches", "next_step", "retry_delay"]

MAX_RETRIES = 25  #: attempts after the first (firebase-js-sdk's MAX_TRANSACTION_RETRIES)


class Step(str, enum.Enum):
    """What a transaction does after the server's answer."""

    DONE = "done"          #: the server wrote it (``ok``)
    RETRY = "retry"        #: stale: run the function again on the value the server sent
    GIVE_UP = "maxretry"   #: stale too many times
    FAIL = "fail"          #: refused for another reason (``permission_denied``...)


def value_hash(value: Value) -> str:
    """SHA-256 (hex) of the canonical JSON of ``value`` (``null`` for no data)."""
    return hashlib.sha256(canonical(value).encode()).hexdigest()


def matches(current: Value, expected_hash: str) -> bool:
    """The server's check: is ``current`` the value the client based its write on?"""
    return value_hash(current) == expected_hash


def next_step(status: str, retries: int, max_retries: int = MAX_RETRIES) -> Step:
    """The retry loop's decision after one answer.

    Args:
        status: the server's answer, ``"ok"``, ``"datastale"`` or another status.
        retries: how many times the function was already run again (0 after the first try).
        max_retries: the bound.

    Returns:
        :data:`Step.DONE`, :data:`Step.RETRY`, :data:`Step.GIVE_UP` or :data:`Step.FAIL`.
    """
    if status == "ok":
        return Step.DONE
    if status != "datastale":
        return Step.FAIL
    return Step.RETRY if retries < max_retries else Step.GIVE_UP


def retry_delay(retries: int, rng: random.Random, *, base: float = 0.002, cap: float = 0.2) -> float:
    """Seconds to wait before retry number ``retries + 1``: exponential backoff with full
    jitter, a random delay in ``[0, min(cap, base * 2**retries))``.

    Firebase retries at once.  With dozens of clients on one counter, retrying at once
    means every retry collides with every other: one client wins each round trip and the
    others burn a retry each, so some reach 25.  Waiting longer after each loss spreads
    them out (measured with 50 clients: ``benchmarks/minibase.py --contention``).
    """
    return rng.uniform(0, min(cap, base * 2 ** retries))
