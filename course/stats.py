"""Small statistics shared by the measurements (no I/O)."""

from __future__ import annotations

import math

__all__ = ["percentile"]


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0..100) of ``values`` by the nearest-rank method.

    Raises:
        ValueError: empty ``values`` or ``p`` outside 0..100.
    """
    if not 0 <= p <= 100:
        raise ValueError(f"p must be in 0..100, got {p}")
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]
