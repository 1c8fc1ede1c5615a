"""The reconnect storm (course.measure.storm): the simulation's structure, and a small real storm."""

from __future__ import annotations

import asyncio
import math

import pytest

from course.measure.storm import (StormResult, plot_storm, real_storm, simulate_storm,
                                  storm_table)
from course.wire.backoff import Jitter


@pytest.fixture(scope="module")
def storms() -> dict[Jitter, StormResult]:
    return {jitter: simulate_storm(1000, jitter=jitter, seed=3) for jitter in Jitter}


def test_everybody_comes_back(storms):
    for result in storms.values():
        assert result.back == result.clients == 1000
        assert not math.isinf(result.all_back_after)
        assert result.attempts == result.back + result.refusals
        assert sum(result.attempts_per_bin) == result.attempts
        assert sum(result.accepted_per_bin) == result.back


def test_without_jitter_everybody_tries_at_once(storms):
    assert storms[Jitter.NONE].peak == 1000


def test_jitter_spreads_the_attempts_and_saves_work(storms):
    none, equal, full = storms[Jitter.NONE], storms[Jitter.EQUAL], storms[Jitter.FULL]
    assert full.peak < equal.peak < none.peak
    assert full.attempts < none.attempts and equal.attempts < none.attempts
    assert full.all_back_after < none.all_back_after and equal.all_back_after < none.all_back_after


def test_the_same_seed_gives_the_same_storm():
    assert simulate_storm(300, seed=5) == simulate_storm(300, seed=5)
    assert simulate_storm(300, seed=5) != simulate_storm(300, seed=6)


def test_a_horizon_leaves_clients_out():
    result = simulate_storm(1000, jitter=Jitter.NONE, horizon=2.0)
    assert result.back < 1000 and math.isinf(result.all_back_after)
    assert "never" in storm_table([result])


def test_bins_count_attempts_by_time():
    result = StormResult.from_attempts(Jitter.NONE, 2, [(0.05, False), (0.15, True), (0.19, True)], 0.1)
    assert result.attempts_per_bin == (1, 2) and result.accepted_per_bin == (0, 2)
    assert result.all_back_after == 0.19 and result.refusals == 1
    with pytest.raises(ValueError):
        StormResult.from_attempts(Jitter.NONE, 1, [(-1.0, True)])


def test_a_real_storm_brings_every_client_back():
    """60 real clients, a real restart on the same port, a bucket of 10 at 100/s: 503s, then all back."""
    async def storm():
        return await real_storm(60, jitter=Jitter.FULL, rate=100, burst=10, base=0.05, cap=0.4,
                                timeout=30)
    result = asyncio.run(storm())
    assert result.back == 60 and not math.isinf(result.all_back_after)
    assert result.refusals > 0                   # the bucket refused some: 60 > a burst of 10
    assert result.attempts == 60 + result.refusals


def test_the_plot_has_one_panel_per_storm(storms):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = plot_storm(list(storms.values()), rate=500, title="storm")
    try:
        assert len(fig.axes) == 3
        assert [ax.get_title(loc="left").split()[0] for ax in fig.axes] == ["none", "equal", "full"]
    finally:
        plt.close(fig)
