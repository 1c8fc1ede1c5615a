"""The chapter 6 self-checks: ❌ on stubs and on plausible wrong answers, ✅ on correct ones.

The correct answers are the course's own (``course.wire.backoff``, ``course.wire.resume``,
``course.wire.limits``) and the solution notebook's, so the exercises and the library agree.
"""

from __future__ import annotations

import random
from urllib.parse import urlsplit

import pytest

from check_lines import failing, run, stub
from course.checks.ch06 import ORIGIN_CASES, check_backoff, check_classify, check_origin, check_token_bucket
from course.wire.backoff import Jitter, backoff_delay
from course.wire.limits import TokenBucket
from course.wire.resume import Seen, classify
from notebook_defs import defined_in



class StubBucket:
    def __init__(self, rate, burst):
        raise NotImplementedError()


# --------------------------------------------------------------------------- (a) backoff

def solution(name: str):
    """A function or class defined in the solution notebook (its solution regions included)."""
    return defined_in("solutions/06_reliable_and_secure_exercises.ipynb", name)


@pytest.mark.parametrize("answer", [backoff_delay, "solution"])
def test_backoff_passes_right_answers(answer, capsys):
    answer = solution("backoff_delay") if answer == "solution" else answer
    ok, cases = run(check_backoff(answer), capsys)
    assert ok and not failing(cases) and len(cases) == 8


def test_backoff_stub_is_not_implemented_without_hints(capsys):
    ok, cases = run(check_backoff(stub), capsys)
    assert not ok and len(failing(cases)) == 8
    assert all("not implemented yet" in line and "Hint" not in line for line in cases.values())


def _jitter_after_cap(attempt, *, base=0.5, cap=30.0, jitter=Jitter.FULL, rng=None):
    rng = rng or random.Random()
    d = base * 2 ** min(attempt, 60)
    if jitter is Jitter.FULL:
        return min(cap, rng.uniform(0, d))
    if jitter is Jitter.EQUAL:
        return min(cap, d / 2 + rng.uniform(0, d / 2))
    return min(cap, d)


def _one_based(attempt, *, base=0.5, cap=30.0, jitter=Jitter.FULL, rng=None):
    return backoff_delay(attempt + 1, base=base, cap=cap, jitter=jitter, rng=rng)


def _overflows(attempt, *, base=0.5, cap=30.0, jitter=Jitter.FULL, rng=None):
    rng = rng or random.Random()
    d = min(cap, base * 2 ** attempt)                      # OverflowError at attempt 10000
    return {Jitter.FULL: rng.uniform(0, d) if jitter is Jitter.FULL else 0,
            Jitter.EQUAL: d / 2 + rng.uniform(0, d / 2), Jitter.NONE: d}[jitter]


def _global_random(attempt, *, base=0.5, cap=30.0, jitter=Jitter.FULL, rng=None):
    return backoff_delay(attempt, base=base, cap=cap, jitter=jitter, rng=random.Random())


def _full_is_additive(attempt, *, base=0.5, cap=30.0, jitter=Jitter.FULL, rng=None):
    rng = rng or random.Random()
    d = min(cap, base * 2 ** min(attempt, 60))
    return d + rng.uniform(0, d) if jitter is Jitter.FULL else backoff_delay(attempt, base=base, cap=cap,
                                                                             jitter=jitter, rng=rng)


def _equal_is_full(attempt, *, base=0.5, cap=30.0, jitter=Jitter.FULL, rng=None):
    return backoff_delay(attempt, base=base, cap=cap, rng=rng,
                         jitter=Jitter.FULL if jitter is Jitter.EQUAL else jitter)


def _ignores_base_and_cap(attempt, *, base=0.5, cap=30.0, jitter=Jitter.FULL, rng=None):
    return backoff_delay(attempt, jitter=jitter, rng=rng)


@pytest.mark.parametrize("wrong, case", [
    (_jitter_after_cap, "full jitter: spread over all of [0, cap] (mean ≈ cap / 2)"),
    (_one_based, "no jitter: 0.5, 1, 2, 4, … doubling from `base`, never above `cap`"),
    (_overflows, "attempt 10 000 neither overflows nor exceeds the cap"),
    (_global_random, "the random draws come from `rng`"),
    (_full_is_additive, "full jitter: every delay in [0, d]"),
    (_equal_is_full, "equal jitter: every delay in [d/2, d]"),
    (_ignores_base_and_cap, "another base and cap"),
])
def test_backoff_wrong_answers_fail_where_expected(wrong, case, capsys):
    ok, cases = run(check_backoff(wrong), capsys)
    assert not ok
    assert case in failing(cases), cases
    assert "Hint:" in cases[case]


# --------------------------------------------------------------------------- (b) classify

@pytest.mark.parametrize("answer", [classify, "solution"])
def test_classify_passes_right_answers(answer, capsys):
    answer = solution("classify") if answer == "solution" else answer
    ok, cases = run(check_classify(answer), capsys)
    assert ok and len(cases) == 3


@pytest.mark.parametrize("wrong, case", [
    (stub, "the next number is delivered"),
    (lambda last, seq: Seen.DELIVER if seq > last else Seen.DUPLICATE, "a number further ahead is a gap"),
    (lambda last, seq: Seen.DELIVER if seq == last + 1 else Seen.GAP, "a number already seen is a duplicate"),
    (lambda last, seq: (Seen.DELIVER if seq == last + 1 else Seen.DUPLICATE if seq < last
                        else Seen.GAP), "a number already seen is a duplicate"),
    (lambda last, seq: Seen.DELIVER if seq == last else Seen.DUPLICATE if seq < last else Seen.GAP,
     "the next number is delivered"),
    (lambda last, seq: "deliver" if seq == last + 1 else "duplicate" if seq <= last else "gap",
     "the next number is delivered"),
])
def test_classify_wrong_answers_fail(wrong, case, capsys):
    ok, cases = run(check_classify(wrong), capsys)
    assert not ok and case in failing(cases), cases


# --------------------------------------------------------------------------- (c) origin

def test_origin_passes_the_solution(capsys):
    ok, cases = run(check_origin(solution("origin_allowed")), capsys)
    assert ok and len(cases) == len(ORIGIN_CASES)


def _prefix(origin, allowed):
    return origin is None or any(origin.lower().startswith(a) for a in allowed)


def _substring(origin, allowed):
    return origin is None or any(a in origin for a in allowed)


def _exact(origin, allowed):
    return origin is None or origin in allowed


def _host_only(origin, allowed):
    return origin is None or any(urlsplit(origin).hostname == urlsplit(a).hostname for a in allowed)


def _no_default_ports(origin, allowed):
    if origin is None:
        return True
    return any(origin.lower() == a.lower() for a in allowed)


def _lets_null_in(origin, allowed):
    return origin in (None, "null") or solution("origin_allowed")(origin, allowed)


def _refuses_scripts(origin, allowed):
    return origin is not None and solution("origin_allowed")(origin, allowed)


def _ends_with(origin, allowed):
    return origin is None or any(origin.lower().endswith(urlsplit(a).hostname) for a in allowed)


@pytest.mark.parametrize("wrong, case", [
    (stub, "'https://chat.example' is let in: listed"),
    (_prefix, "'https://chat.example.evil.test' is refused: a prefix match lets any suffix in"),
    (_substring, "'https://evil.test/https://chat.example' is refused: a substring match lets any page in"),
    (_exact, "'HTTPS://Chat.Example' is let in: scheme and host are case-insensitive"),
    (_host_only, "'http://127.0.0.1:8001' is refused: another port is another origin"),
    (_no_default_ports, "'https://chat.example:443' is let in: 443 is https's default port"),
    (_lets_null_in, "'null' is refused: sandboxed frames and file:// pages send the origin `null`"),
    (_refuses_scripts, "None is let in: no Origin header: not a browser, so not a cross-site page "
                       "(and not authentication either)"),
    (_ends_with, "'https://evil-chat.example' is refused: an ending match lets look-alike hosts in"),
])
def test_origin_wrong_answers_fail(wrong, case, capsys):
    ok, cases = run(check_origin(wrong), capsys)
    assert not ok and case in failing(cases), failing(cases)


# --------------------------------------------------------------------------- (d) token bucket

@pytest.mark.parametrize("answer", [TokenBucket, "solution"])
def test_bucket_passes_right_answers(answer, capsys):
    answer = solution("TokenBucket") if answer == "solution" else answer
    ok, cases = run(check_token_bucket(answer), capsys)
    assert ok and len(cases) == 7


class _NoCap:
    def __init__(self, rate, burst):
        self.rate, self.burst, self.tokens, self.last = rate, burst, float(burst), None

    def take(self, now, cost=1.0):
        if self.last is not None:
            self.tokens += max(0.0, now - self.last) * self.rate
        self.last = now if self.last is None else max(self.last, now)
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


class _StartsEmpty(_NoCap):
    def __init__(self, rate, burst):
        super().__init__(rate, burst)
        self.tokens = 0.0


class _Capped(_NoCap):
    def take(self, now, cost=1.0):
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + max(0.0, now - self.last) * self.rate)
        self.last = now if self.last is None else max(self.last, now)
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


class _IntTokens(_Capped):
    def take(self, now, cost=1.0):
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + int(max(0.0, now - self.last) * self.rate))
        self.last = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


class _ChargesRefusals(_Capped):
    def take(self, now, cost=1.0):
        allowed = super().take(now, cost)
        if not allowed:
            self.tokens -= cost
        return allowed


class _ClockBack(_Capped):
    def take(self, now, cost=1.0):
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + max(0.0, now - self.last) * self.rate)
        self.last = now                                     # moves backwards
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


class _IgnoresCost(_Capped):
    def take(self, now, cost=1.0):
        return super().take(now, 1.0)


@pytest.mark.parametrize("wrong, case", [
    (StubBucket, "a new bucket is full: `burst` takes at once, then no more"),
    (_NoCap, "never more than `burst`, however long the bucket rests"),
    (_StartsEmpty, "a new bucket is full: `burst` takes at once, then no more"),
    (_IntTokens, "fractions of a token add up (0.5 per second)"),
    (_ChargesRefusals, "a refused take takes nothing"),
    (_ClockBack, "a clock that goes back adds nothing"),
    (_IgnoresCost, "`cost` takes several tokens at once"),
])
def test_bucket_wrong_answers_fail(wrong, case, capsys):
    ok, cases = run(check_token_bucket(wrong), capsys)
    assert not ok and case in failing(cases), failing(cases)
