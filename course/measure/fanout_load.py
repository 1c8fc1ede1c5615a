"""Chapter 7's fan-out load results: read the saved benchmark and plot how cost grows.

``benchmarks/fanout_load.py`` (run by ``make benchmarks``, minutes, up to 10,000 clients)
measures one Python process, the same without the fastlane, two Python processes behind
Redis, and Node's ``ws``; ``--save`` writes its rows as JSON.  The run quoted in chapter 7 is
kept in ``benchmarks/results/fanout_load.json``, so that the lesson can draw its chart
without running the load::

    figure = plot_fanout(load_results("../benchmarks/results/fanout_load.json"))
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["load_results", "plot_fanout"]

_PANELS = (("per_second", "broadcast deliveries per second"),
           ("cpu_us_per_delivery", "CPU µs per delivery (servers + Redis)"),
           ("kib_per_conn", "server memory per idle connection (KiB)"),
           ("idle_p99_ms", "p99 publish-to-receive, idle (ms)"))


def load_results(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a saved run (one dict per setup and client count)."""
    return json.loads(Path(path).read_text())


def plot_fanout(rows: list[dict[str, Any]], *, title: str | None = None):
    """Four panels against the number of clients: deliveries/s, CPU per delivery, memory
    per connection and idle p99, one line per setup; returns the matplotlib Figure."""
    import matplotlib.pyplot as plt  # noqa: PLC0415 - only when plotting

    figure, axes = plt.subplots(1, 4, figsize=(19, 4.5))
    for setup in dict.fromkeys(row["setup"] for row in rows):
        mine = [row for row in rows if row["setup"] == setup]
        xs = [row["connected"] for row in mine]
        for ax, (key, _) in zip(axes, _PANELS):
            ax.plot(xs, [row[key] for row in mine], marker="o", label=setup)
    for ax, (_, heading) in zip(axes, _PANELS):
        ax.set_title(heading)
        ax.set_xlabel("clients")
        ax.grid(alpha=0.3)
    axes[0].legend()
    figure.suptitle(title or f"fan-out on {os.cpu_count()} cores, loopback, clients in Node "
                             "processes on the same machine")
    figure.tight_layout()
    return figure
