"""What a transports trial reports: a :class:`Result` per strategy, as a table or a chart."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Result", "COLUMNS", "table", "plot"]


@dataclass
class Result:
    """What one strategy cost and delivered.

    Attributes:
        strategy: one of :data:`~course.measure.transports.config.STRATEGIES`.
        setting: how it was configured (:meth:`Settings.describe`).
        events: distinct events the client received.
        emitted: events the source emitted during the run.
        p50_ms, p95_ms, max_ms: delivery latency percentiles (None if no event arrived).
        http_requests: HTTP requests the server handled (a WebSocket upgrade is one).
        empty_responses: answers that brought the client nothing new.
        connections: TCP connections the client opened.
        bytes_up, bytes_down: bytes client -> server and server -> client, headers included.
        bytes_per_event: (bytes_up + bytes_down) / events (None if no event arrived).
        upstream_messages: messages the client streamed up to the server (WebSocket only).
        upstream_p50_ms: median client -> server latency of those messages.
    """

    strategy: str
    setting: str
    events: int
    emitted: int
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None
    http_requests: int
    empty_responses: int
    connections: int
    bytes_up: int
    bytes_down: int
    bytes_per_event: float | None
    upstream_messages: int = 0
    upstream_p50_ms: float | None = None

    @property
    def missed(self) -> int:
        """Emitted events the client never saw (a reloaded page lists only the newest ones)."""
        return self.emitted - self.events

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``missed`` included)."""
        data = asdict(self)
        data["missed"] = self.missed
        return data


COLUMNS = ("strategy", "events", "p50_ms", "p95_ms", "http_requests", "empty_responses",
           "bytes_per_event", "setting")


def table(results: list[Result]) -> str:
    """A plain-text table of ``results``, one row per strategy."""
    head = ("strategy", "events", "p50 ms", "p95 ms", "requests", "empty", "bytes/event", "setting")
    rows = [head]
    for r in results:
        rows.append((r.strategy, f"{r.events}/{r.emitted}", _fmt(r.p50_ms), _fmt(r.p95_ms),
                     str(r.http_requests), str(r.empty_responses), _fmt(r.bytes_per_event, 0),
                     r.setting))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:-1], widths[1:-1])]
        lines.append("  ".join(cells + [row[-1]]))
    return "\n".join(lines)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def plot(results: list[Result]):
    """Three bar charts: latency (p50 bar, p95 tick, log scale), HTTP requests, bytes/event.

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    names = [r.strategy for r in results]
    x = range(len(results))
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.8))
    p50 = [r.p50_ms or 0 for r in results]
    p95 = [r.p95_ms or 0 for r in results]
    ax1.bar(x, p50, color="tab:blue", label="p50")
    ax1.scatter(x, p95, color="tab:red", marker="_", s=400, label="p95", zorder=3)
    ax1.set_yscale("log")
    ax1.set_title("delivery latency (ms, log)")
    ax1.legend()
    ax2.bar(x, [r.http_requests for r in results], color="tab:orange")
    ax2.set_yscale("log")
    ax2.set_title("HTTP requests (log)")
    ax3.bar(x, [r.bytes_per_event or 0 for r in results], color="tab:green")
    ax3.set_title("bytes on the wire per event")
    for ax in (ax1, ax2, ax3):
        ax.set_xticks(list(x), names, rotation=30)
    fig.tight_layout()
    return fig
