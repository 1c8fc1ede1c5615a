"""The transports experiment's names and knobs: the five strategies and their :class:`Settings`."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["STRATEGIES", "HOST", "Settings", "compact_json"]

STRATEGIES = ("reload", "polling", "long-polling", "sse", "websocket")
HOST = "127.0.0.1"  #: every server, relay and client of the experiment uses this address


def compact_json(value: Any) -> str:
    """JSON without optional spaces, as browsers' ``JSON.stringify`` writes it."""
    return json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True)
class Settings:
    """Parameters of one measurement (seconds unless said otherwise).

    Attributes:
        reload_interval: full page reload period (a ``<meta http-equiv="refresh">``).
        poll_interval: AJAX short-polling period.
        long_poll_wait: how long the client asks the server to hold a long-poll request.
        ack_interval: the WebSocket client sends a cumulative ack upstream at most this often.
        page_size: how many newest events the reloaded HTML page lists.
        mean_interval: mean time between two events of the news source.
    """

    reload_interval: float = 2.5
    poll_interval: float = 1.0
    long_poll_wait: float = 20.0
    ack_interval: float = 1.0
    page_size: int = 30
    mean_interval: float = 0.15

    def __post_init__(self) -> None:
        for name in ("reload_interval", "poll_interval", "long_poll_wait", "ack_interval",
                     "mean_interval"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"Settings.{name} must be a positive number of seconds, got {value!r}")
        if not (isinstance(self.page_size, int) and self.page_size >= 1):
            raise ValueError(f"Settings.page_size must be an int >= 1, got {self.page_size!r}")

    def describe(self, strategy: str) -> str:
        """One line saying how ``strategy`` was configured."""
        return {
            "reload": f"GET / (HTML, {self.page_size} newest) every {self.reload_interval * 1000:.0f} ms",
            "polling": f"GET /events?since=N every {self.poll_interval * 1000:.0f} ms",
            "long-polling": f"GET /events?since=N&wait={self.long_poll_wait:g}, again at once",
            "sse": "GET /stream, one text/event-stream response",
            "websocket": f"GET /ws upgrade; acks up every {self.ack_interval * 1000:.0f} ms",
        }[strategy]
