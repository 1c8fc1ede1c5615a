"""course.wire.backoff: exponential backoff with no, equal and full jitter (pure)."""

from __future__ import annotations

import itertools
import random

import pytest

from course.wire.backoff import Jitter, backoff_delay, schedule


def test_no_jitter_doubles_up_to_the_cap():
    delays = [backoff_delay(n, base=0.5, cap=30.0, jitter=Jitter.NONE) for n in range(9)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_a_huge_attempt_number_stays_at_the_cap():
    assert backoff_delay(10_000, base=0.5, cap=30.0, jitter=Jitter.NONE) == 30.0


@pytest.mark.parametrize("attempt", range(12))
def test_jittered_delays_stay_in_their_range(attempt):
    rng = random.Random(attempt)
    d = min(8.0, 0.25 * 2 ** attempt)
    for _ in range(200):
        full = backoff_delay(attempt, base=0.25, cap=8.0, jitter=Jitter.FULL, rng=rng)
        equal = backoff_delay(attempt, base=0.25, cap=8.0, jitter=Jitter.EQUAL, rng=rng)
        assert 0 <= full <= d
        assert d / 2 <= equal <= d


def test_jitter_spreads_and_full_spreads_more():
    rng = random.Random(1)
    full = [backoff_delay(4, jitter=Jitter.FULL, rng=rng) for _ in range(1000)]
    equal = [backoff_delay(4, jitter=Jitter.EQUAL, rng=rng) for _ in range(1000)]
    assert min(full) < 1.0 and max(full) > 7.0       # d = 8: the whole range [0, 8]
    assert min(equal) >= 4.0 and max(equal) > 7.0    # the upper half only
    assert len(set(full)) == 1000


def test_the_same_seed_gives_the_same_schedule():
    first = list(itertools.islice(schedule(rng=random.Random(7)), 10))
    again = list(itertools.islice(schedule(rng=random.Random(7)), 10))
    other = list(itertools.islice(schedule(rng=random.Random(8)), 10))
    assert first == again != other


def test_schedule_without_jitter_is_backoff_delay():
    assert list(itertools.islice(schedule(base=1, cap=5, jitter=Jitter.NONE), 5)) == [1, 2, 4, 5, 5]


@pytest.mark.parametrize("kwargs", [dict(attempt=-1), dict(attempt=0, base=-1), dict(attempt=0, cap=-0.1)])
def test_negative_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        backoff_delay(**kwargs)
