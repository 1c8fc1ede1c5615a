"""Self-checks for chapter 6: backoff with jitter, resume, the Origin allow-list, the token bucket.

Used by ``solutions/06_reliability_exercises.ipynb``::

    check_backoff(backoff_delay)
    check_classify(classify)
    check_origin(origin_allowed)
    check_token_bucket(TokenBucket)

Every student function runs inside :func:`course.checks.check`: a stub or a bug is a ❌ line
with a hint, never a traceback.  Random behaviour is checked by its properties over many
draws from a seeded ``random.Random`` (bounds, spread, mean, and that the given generator is
the one used), never by exact values, so any correct use of the generator passes.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Collection
from typing import Any

from course.checks import check, expect, expect_equal, summary
from course.wire.backoff import Jitter
from course.wire.resume import Seen

__all__ = ["check_backoff", "check_classify", "check_origin", "check_token_bucket", "ORIGIN_CASES", "ALLOWED"]


# --------------------------------------------------------------------------- (a) backoff

def _draws(backoff_delay: Callable[..., float], attempt: int, jitter: Jitter, seed: int,
           n: int = 400, **options: Any) -> list[float]:
    rng = random.Random(seed)
    delays = [backoff_delay(attempt, jitter=jitter, rng=rng, **options) for _ in range(n)]
    for delay in delays:
        expect(isinstance(delay, (int, float)) and not isinstance(delay, bool),
               f"backoff_delay must return a number of seconds, got {delay!r}")
    return delays


def check_backoff(backoff_delay: Callable[..., float]) -> bool:
    """Check ``backoff_delay(attempt, *, base=0.5, cap=30.0, jitter=Jitter.FULL, rng=None)``."""

    def no_jitter() -> None:
        got = [backoff_delay(a, jitter=Jitter.NONE) for a in range(9)]
        expect_equal(got, [0.5, 1, 2, 4, 8, 16, 30, 30, 30], "delays for attempts 0..8 (base 0.5, cap 30)")

    def other_base_and_cap() -> None:
        got = [backoff_delay(a, base=1.0, cap=10.0, jitter=Jitter.NONE) for a in range(6)]
        expect_equal(got, [1, 2, 4, 8, 10, 10], "delays for attempts 0..5 (base 1, cap 10)")

    def huge_attempt() -> None:
        for jitter in Jitter:
            delay = backoff_delay(10_000, jitter=jitter, rng=random.Random(1))
            expect(0 <= delay <= 30, f"attempt 10000 with {jitter}: expected at most the cap 30, got {delay!r}")

    def within(jitter: Jitter, low: float, high: float) -> Callable[[], None]:
        def test() -> None:
            for attempt in range(12):
                d = min(30.0, 0.5 * 2 ** attempt)
                for delay in _draws(backoff_delay, attempt, jitter, seed=attempt, n=50):
                    expect(low * d <= delay <= high * d,
                           f"attempt {attempt} with {jitter}: {delay!r} is outside "
                           f"[{low * d:g}, {high * d:g}]")
        return test

    def spread(jitter: Jitter, low: float, mean: float) -> Callable[[], None]:
        def test() -> None:
            delays = _draws(backoff_delay, 12, jitter, seed=7)   # 0.5 * 2**12 is far above the cap
            expect(min(delays) < (low + 0.05) * 30 and max(delays) > 0.95 * 30,
                   f"400 draws at attempt 12 with {jitter} span {min(delays):.2f}..{max(delays):.2f} s; "
                   f"expected about {low * 30:g}..30 s")
            got = statistics.fmean(delays)
            expect(abs(got - mean * 30) < 0.06 * 30,
                   f"400 draws at attempt 12 with {jitter} average {got:.2f} s; expected about {mean * 30:g} s")
        return test

    def uses_the_rng() -> None:
        first = _draws(backoff_delay, 5, Jitter.FULL, seed=1, n=20)
        again = _draws(backoff_delay, 5, Jitter.FULL, seed=1, n=20)
        other = _draws(backoff_delay, 5, Jitter.FULL, seed=2, n=20)
        expect(first == again, "the same seed gave two different sequences")
        expect(first != other, "seeds 1 and 2 gave the same sequence: is `rng` used at all?")

    results = [
        check("no jitter: 0.5, 1, 2, 4, … doubling from `base`, never above `cap`", no_jitter,
              "attempt 0 is the first retry: base * 2 ** attempt, then at most `cap`."),
        check("another base and cap", other_base_and_cap, "use the `base` and `cap` arguments."),
        check("attempt 10 000 neither overflows nor exceeds the cap", huge_attempt,
              "0.5 * 2 ** 10000 does not fit in a float: cap the exponent (or compare) before multiplying."),
        check("full jitter: every delay in [0, d]", within(Jitter.FULL, 0, 1),
              "d = min(cap, base * 2 ** attempt); full jitter is uniform between 0 and d."),
        check("full jitter: spread over all of [0, cap] (mean ≈ cap / 2)", spread(Jitter.FULL, 0, 0.5),
              "apply the cap first, then the jitter: jitter on the uncapped delay, capped after, "
              "is nearly always the cap, and every client retries together again."),
        check("equal jitter: every delay in [d/2, d]", within(Jitter.EQUAL, 0.5, 1),
              "equal jitter keeps half of d and draws the other half: d/2 + uniform(0, d/2)."),
        check("equal jitter: spread over [cap/2, cap] (mean ≈ 3/4 cap)", spread(Jitter.EQUAL, 0.5, 0.75),
              "the cap comes first, then the jitter."),
        check("the random draws come from `rng`", uses_the_rng,
              "draw with rng.uniform(...) or rng.random(), not the module-level random functions."),
    ]
    return summary(results, "backoff_delay")


# --------------------------------------------------------------------------- (b) classify

def check_classify(classify: Callable[[int, int], Seen]) -> bool:
    """Check ``classify(last_seen, seq) -> Seen``."""

    def case(rows: list[tuple[int, int, Seen]]) -> Callable[[], None]:
        def test() -> None:
            for last_seen, seq, expected in rows:
                expect_equal(classify(last_seen, seq), expected, f"classify({last_seen}, {seq})")
        return test

    results = [
        check("the next number is delivered",
              case([(0, 1, Seen.DELIVER), (41, 42, Seen.DELIVER)]),
              "seq == last_seen + 1 is the one message we were waiting for."),
        check("a number already seen is a duplicate",
              case([(5, 5, Seen.DUPLICATE), (5, 3, Seen.DUPLICATE), (5, 1, Seen.DUPLICATE)]),
              "after a resume the server may send again what arrived just before the cut: "
              "anything at or below last_seen was delivered already."),
        check("a number further ahead is a gap",
              case([(0, 2, Seen.GAP), (5, 7, Seen.GAP), (5, 100, Seen.GAP)]),
              "seq > last_seen + 1: something in between was lost; do not deliver it out of order."),
    ]
    return summary(results, "classify")


# --------------------------------------------------------------------------- (c) origin

#: the allow-list of :data:`ORIGIN_CASES`
ALLOWED = ("https://chat.example", "http://127.0.0.1:8000")

#: (Origin header, allowed?, why); the allow-list is :data:`ALLOWED`.
ORIGIN_CASES: list[tuple[str | None, bool, str]] = [
    ("https://chat.example", True, "listed"),
    ("http://127.0.0.1:8000", True, "listed, with its port"),
    (None, True, "no Origin header: not a browser, so not a cross-site page (and not authentication either)"),
    ("HTTPS://Chat.Example", True, "scheme and host are case-insensitive"),
    ("https://chat.example:443", True, "443 is https's default port"),
    ("http://127.0.0.1:8001", False, "another port is another origin"),
    ("http://chat.example", False, "another scheme is another origin"),
    ("https://chat.example.evil.test", False, "a prefix match lets any suffix in"),
    ("https://evil.test/https://chat.example", False, "a substring match lets any page in"),
    ("https://evil-chat.example", False, "an ending match lets look-alike hosts in"),
    ("null", False, "sandboxed frames and file:// pages send the origin `null`"),
    ("", False, "an empty Origin is not a listed origin"),
]


def check_origin(origin_allowed: Callable[[str | None, Collection[str]], bool]) -> bool:
    """Check ``origin_allowed(origin, allowed) -> bool`` on :data:`ORIGIN_CASES`."""
    hints = {
        "listed": "compare the origin with each allowed one.",
        "no Origin": "origin is None when the header is missing.",
        "case": "lower-case the scheme and the host before comparing.",
        "default": "drop :80 from http and :443 from https before comparing (urllib.parse.urlsplit helps).",
        "port": "compare the whole origin: scheme, host and port.",
        "prefix": "compare for equality, never startswith/endswith/in.",
        "null": "`null` is never a listed origin.",
    }

    def hint_for(why: str) -> str:
        return next((text for key, text in hints.items() if key in why), hints["prefix"])

    results = []
    for origin, expected, why in ORIGIN_CASES:
        def test(origin: str | None = origin, expected: bool = expected) -> None:
            got = origin_allowed(origin, ALLOWED)
            expect(isinstance(got, bool), f"origin_allowed must return True or False, got {got!r}")
            expect_equal(got, expected, f"origin_allowed({origin!r}, ALLOWED)")
        verdict = "let in" if expected else "refused"
        results.append(check(f"{origin!r} is {verdict}: {why}", test, hint_for(why)))
    return summary(results, "origin_allowed")


# --------------------------------------------------------------------------- (d) token bucket

def _takes(bucket: Any, times: list[float], cost: float = 1.0) -> list[bool]:
    got = [bucket.take(t, cost) if cost != 1.0 else bucket.take(t) for t in times]
    for value in got:
        expect(isinstance(value, bool), f"take must return True or False, got {value!r}")
    return got


def check_token_bucket(TokenBucket: type) -> bool:
    """Check ``TokenBucket(rate, burst)`` and its ``take(now, cost=1.0) -> bool``."""

    def case(rate: float, burst: float, times: list[float], expected: list[bool],
             cost: float = 1.0) -> Callable[[], None]:
        def test() -> None:
            got = _takes(TokenBucket(rate, burst), times, cost)
            expect_equal(got, expected, f"TokenBucket({rate:g}, {burst:g}).take(t) for t in {times}")
        return test

    results = [
        check("a new bucket is full: `burst` takes at once, then no more",
              case(2, 3, [0, 0, 0, 0], [True, True, True, False]),
              "start with tokens = burst."),
        check("tokens come back at `rate` per second",
              case(2, 3, [0, 0, 0, 0, 0.5, 0.5, 1.0], [True, True, True, False, True, False, True]),
              "on each take, first add (now - last) * rate, then remember now as last."),
        check("never more than `burst`, however long the bucket rests",
              case(1, 2, [0, 0, 100, 100, 100], [True, True, True, True, False]),
              "after refilling, tokens = min(burst, tokens)."),
        check("fractions of a token add up (0.5 per second)",
              case(0.5, 1, [0, 1, 2, 3, 4], [True, False, True, False, True]),
              "keep tokens as a float: int() or round() loses the half token of each step."),
        check("a refused take takes nothing",
              case(1, 1, [0, 0, 0, 0, 1.0], [True, False, False, False, True]),
              "subtract only when there are enough tokens; a refused take must not push tokens below 0."),
        check("a clock that goes back adds nothing",
              case(1, 1, [10, 5, 10.5, 11], [True, False, False, True]),
              "elapsed = max(0, now - last), and last must not move backwards."),
        check("`cost` takes several tokens at once",
              case(1, 3, [0, 0, 1, 2], [True, False, True, False], cost=2),
              "compare tokens with cost, and subtract cost."),
    ]
    return summary(results, "TokenBucket")
