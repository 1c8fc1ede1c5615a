"""Small statistics shared by the measurements (no I/O)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["percentile", "LatencyRecorder"]


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


@dataclass
class LatencyRecorder:
    """Collects ``now - sent_ns`` for each pushed message, in milliseconds."""

    samples_ms: list[float] = field(default_factory=list)

    def record(self, message: dict[str, Any], now_ns: int | None = None) -> float | None:
        """Record the latency of ``message`` if it carries ``sent_ns``; return it in ms."""
        sent = message.get("sent_ns")
        if not isinstance(sent, int):
            return None
        now_ns = time.perf_counter_ns() if now_ns is None else now_ns
        latency = (now_ns - sent) / 1e6
        self.samples_ms.append(latency)
        return latency

    def p(self, q: float) -> float:
        """The ``q``-th percentile in milliseconds (see :func:`percentile`)."""
        return percentile(self.samples_ms, q)
