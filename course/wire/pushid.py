"""Push ids: 20-character keys that sort by creation time, after Firebase's ``nextPushId``.

A port of ``packages/database/src/core/util/NextPushId.ts`` (firebase-js-sdk)::

    -NdLqK2X  c4vBq0ZfX3_k
    ^^^^^^^^  ^^^^^^^^^^^^
    8 chars:  12 chars: 72 random bits, drawn once per millisecond; a second id in the
    the time  same millisecond reuses them plus one (as a base-64 number), so two ids of
    in ms,    one client never collide and stay in creation order
    base 64

The alphabet is in ASCII order, so comparing two ids as strings compares their times:
a list of pushed children sorted by key is sorted by creation time.

:func:`next_push_id` is the whole algorithm as one pure function (the clock and the random
generator are passed in); :class:`PushIds` keeps its state between calls.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

__all__ = ["PUSH_CHARS", "next_push_id", "PushIds", "push_id_time"]

PUSH_CHARS = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"  #: 64, ASCII-ordered


def next_push_id(now_ms: int, last_ms: int | None, last_random: Sequence[int],
                 rng: random.Random) -> tuple[str, list[int]]:
    """One push id.

    Args:
        now_ms: the time in milliseconds since 1970 (at most 64**8 - 1, the year 10889).
        last_ms: the time of the previous id (``None``: there was none).
        last_random: the 12 random digits (0..63) of the previous id.
        rng: where fresh random digits come from.

    Returns:
        ``(id, random_digits)``: the id, and the digits to pass back as ``last_random``.

    Raises:
        ValueError: ``now_ms`` negative or too large, or 64**12 ids in one millisecond.
    """
    if not 0 <= now_ms < 64 ** 8:
        raise ValueError(f"now_ms must be in [0, 64**8), got {now_ms}")
    time_chars = []
    t = now_ms
    for _ in range(8):
        time_chars.append(PUSH_CHARS[t % 64])
        t //= 64
    if now_ms != last_ms:
        digits = [rng.randrange(64) for _ in range(12)]
    else:  # the same millisecond: add one to the previous random part
        digits = list(last_random)
        i = 11
        while i >= 0 and digits[i] == 63:
            digits[i] = 0
            i -= 1
        if i < 0:
            raise ValueError("64**12 push ids in one millisecond: the random part overflowed")
        digits[i] += 1
    return "".join(reversed(time_chars)) + "".join(PUSH_CHARS[d] for d in digits), digits


class PushIds:
    """A push id generator with its state: ``ids = PushIds(); ids(now_ms)``.

    Args:
        rng: the random generator (default: a fresh ``random.SystemRandom``-seeded one).
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng if rng is not None else random.Random()
        self.last_ms: int | None = None
        self.last_random: list[int] = [0] * 12

    def __call__(self, now_ms: int) -> str:
        """The next id at ``now_ms``."""
        push_id, self.last_random = next_push_id(now_ms, self.last_ms, self.last_random, self.rng)
        self.last_ms = now_ms
        return push_id


def push_id_time(push_id: str) -> int:
    """The milliseconds encoded in the first 8 characters of a push id.

    Raises:
        ValueError: not 20 characters of :data:`PUSH_CHARS`.
    """
    if len(push_id) != 20 or any(c not in PUSH_CHARS for c in push_id):
        raise ValueError(f"not a push id: {push_id!r}")
    t = 0
    for char in push_id[:8]:
        t = t * 64 + PUSH_CHARS.index(char)
    return t
