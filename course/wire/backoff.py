"""How long a client waits before it tries to reconnect: exponential backoff with jitter, sans-I/O.

After ``attempt`` failed tries (0 for the first retry) the delay grows as
``base * 2**attempt`` up to ``cap`` seconds, so a server that is down is not hammered.
Growth alone is not enough: when a server restarts, every client lost its connection at
the same instant, so without randomness they all come back at the same instants too
(a *reconnect storm*).  Jitter spreads them (Marc Brooker, "Exponential Backoff And
Jitter", AWS Architecture Blog, 2015,
https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/):

* :data:`Jitter.NONE`: ``d = min(cap, base * 2**attempt)``, the same for everybody;
* :data:`Jitter.EQUAL`: ``d/2 + uniform(0, d/2)``, never less than half;
* :data:`Jitter.FULL`: ``uniform(0, d)``, the most spread, and what the article advises.

What the libraries of the course do by default:

* Socket.IO (JS client, ``backo2``): ``reconnectionDelay`` 1000 ms doubled per attempt,
  ``randomizationFactor`` 0.5 (the delay moves up or down by up to half), then capped at
  ``reconnectionDelayMax`` 5000 ms; python-socketio adds its ±0.5 factor *after* the cap;
* Phoenix JS: ``reconnectAfterMs`` is a fixed table, 10, 50, 100, 150, 200, 250, 500,
  1000, 2000 ms, then 5000 ms: no jitter at all;
* Action Cable: reconnect poll ``6 s * 1.15**min(n, 10) * (1 + jitter)``, jitter in
  ``[0, 1)`` at first then ``[0, 0.15)``;
* Firebase: 1000 ms times 1.3 per failure up to 300 s, with full jitter
  (``random() * delay``).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterator

__all__ = ["Jitter", "backoff_delay", "schedule"]


class Jitter(enum.Enum):
    """How much randomness a delay gets."""

    NONE = "none"
    EQUAL = "equal"
    FULL = "full"


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 30.0,
                  jitter: Jitter = Jitter.FULL, rng: random.Random | None = None) -> float:
    """The delay before retry number ``attempt``, in seconds.

    Args:
        attempt: how many tries failed before this one, from 0.
        base: the delay of the first retry, before jitter (seconds).
        cap: the longest delay, before jitter (seconds).
        jitter: how to randomise it (see :class:`Jitter`).
        rng: where the random numbers come from (a seeded ``random.Random`` makes runs
            repeat); ``None`` uses the ``random`` module.

    Returns:
        A delay between 0 and ``cap``.

    Raises:
        ValueError: a negative ``attempt``, ``base`` or ``cap``.
    """
    if attempt < 0 or base < 0 or cap < 0:
        raise ValueError(f"attempt, base and cap must be >= 0, got {attempt}, {base}, {cap}")
    rng = rng or random
    d = min(cap, base * 2 ** min(attempt, 64))  # 2**64 * base is past any cap
    if jitter is Jitter.NONE:
        return d
    if jitter is Jitter.EQUAL:
        return d / 2 + rng.uniform(0, d / 2)
    return rng.uniform(0, d)


def schedule(*, base: float = 0.5, cap: float = 30.0, jitter: Jitter = Jitter.FULL,
             rng: random.Random | None = None) -> Iterator[float]:
    """The delays of retry 0, 1, 2, ... for ever (take what you need with ``itertools.islice``).

    Args:
        base, cap, jitter, rng: as for :func:`backoff_delay`.

    Yields:
        One delay per failed attempt, in seconds.
    """
    attempt = 0
    while True:
        yield backoff_delay(attempt, base=base, cap=cap, jitter=jitter, rng=rng)
        attempt += 1
