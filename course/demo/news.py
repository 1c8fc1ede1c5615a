"""A news source that emits headlines at random instants: the events of chapter 1.

This module knows nothing about HTTP, WebSockets or sockets.  Servers read from a
:class:`NewsSource`; clients compute *delivery latency* as "time I received the event"
minus the event's emission stamp ``Event.t`` (``time.perf_counter_ns()``, which every
part of one Python process reads from the same clock).

Example::

    source = NewsSource(seed=1)
    task = asyncio.create_task(source.run(duration=3))
    events = await source.wait_after(0, timeout=1)   # first headline(s), or [] after 1 s
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Event", "NewsSource", "schedule"]

_TOPICS = ("Markets", "Weather", "Football", "Science", "Elections", "Traffic", "Music", "Space")
_WHAT = ("rise", "fall", "surprise everyone", "break a record", "slow down", "stay calm",
         "make headlines", "go viral")


@dataclass(frozen=True)
class Event:
    """One headline.

    Attributes:
        id: 1, 2, 3 ... in emission order.
        text: the headline.
        t: emission instant, ``time.perf_counter_ns()`` (same clock in the whole process).
    """

    id: int
    text: str
    t: int

    def to_json(self) -> dict[str, Any]:
        """The JSON object servers send: ``{"id": ..., "text": ..., "t": ...}``."""
        return {"id": self.id, "text": self.text, "t": self.t}

    @classmethod
    def from_json(cls, data: Any) -> Event:
        """Rebuild an event from its JSON object.

        Raises:
            ValueError: ``data`` is not an object with an int ``id`` >= 1, a str ``text``
                and an int ``t``.
        """
        if not isinstance(data, dict):
            raise ValueError(f"an event must be a JSON object, got {type(data).__name__}")
        id_, text, t = data.get("id"), data.get("text"), data.get("t")
        if not isinstance(id_, int) or isinstance(id_, bool) or id_ < 1:
            raise ValueError(f"event id must be an integer >= 1, got {id_!r}")
        if not isinstance(text, str):
            raise ValueError(f"event text must be a string, got {text!r}")
        if not isinstance(t, int) or isinstance(t, bool):
            raise ValueError(f"event t must be an integer (perf_counter_ns), got {t!r}")
        return cls(id_, text, t)


def schedule(seed: int, duration: float, mean_interval: float = 0.15) -> list[tuple[float, str]]:
    """The deterministic emission plan: ``(offset in seconds, headline)`` pairs.

    Inter-arrival times are exponential (a Poisson process), the usual model of
    independent events such as messages or news.

    Args:
        seed: the random seed; the same seed gives the same plan.
        duration: only offsets below this many seconds are kept.
        mean_interval: mean time between two events, in seconds.

    Raises:
        ValueError: ``duration`` < 0 or ``mean_interval`` <= 0.
    """
    if duration < 0:
        raise ValueError(f"duration must be >= 0 seconds, got {duration}")
    if mean_interval <= 0:
        raise ValueError(f"mean_interval must be > 0 seconds, got {mean_interval}")
    rng = random.Random(seed)
    plan: list[tuple[float, str]] = []
    offset = rng.expovariate(1 / mean_interval)
    while offset < duration:
        plan.append((offset, f"{rng.choice(_TOPICS)} {rng.choice(_WHAT)}"))
        offset += rng.expovariate(1 / mean_interval)
    return plan


class NewsSource:
    """An in-memory event log that wakes up whoever waits for new events.

    Args:
        seed: seed of the emission plan used by :meth:`run`.
        mean_interval: mean seconds between two events in :meth:`run`.
    """

    def __init__(self, seed: int = 1, mean_interval: float = 0.15) -> None:
        if mean_interval <= 0:
            raise ValueError(f"mean_interval must be > 0 seconds, got {mean_interval}")
        self.seed = seed
        self.mean_interval = mean_interval
        self.events: list[Event] = []
        self.closed = False
        self.finished = asyncio.Event()
        self._wake = asyncio.Event()

    @property
    def last_id(self) -> int:
        """Id of the newest event, 0 when none was emitted yet."""
        return self.events[-1].id if self.events else 0

    def publish(self, text: str) -> Event:
        """Emit one event now and wake every waiter.

        Raises:
            RuntimeError: the source is closed.
        """
        if self.closed:
            raise RuntimeError("this NewsSource is closed")
        event = Event(self.last_id + 1, text, time.perf_counter_ns())
        self.events.append(event)
        self.wake()
        return event

    def wake(self) -> None:
        """Wake every waiter so it re-checks its condition (new events, closing...)."""
        self._wake.set()
        self._wake = asyncio.Event()

    def close(self) -> None:
        """Stop for good: waiters return, followers stop, :meth:`publish` refuses."""
        self.closed = True
        self.finished.set()
        self.wake()

    def after(self, since: int) -> list[Event]:
        """Events whose id is greater than ``since`` (ids are 1, 2, 3 ... so this is a slice)."""
        return self.events[max(since, 0):]

    async def run(self, duration: float, plan: list[tuple[float, str]] | None = None) -> int:
        """Emit the seeded plan (or ``plan``) in real time, then set :attr:`finished`.

        Args:
            duration: seconds to run; events are planned in ``[0, duration)``.
            plan: ``(offset, text)`` pairs to emit instead of the seeded plan.

        Returns:
            How many events were emitted.
        """
        if plan is None:
            plan = schedule(self.seed, duration, self.mean_interval)
        start = time.perf_counter()
        count = 0
        try:
            for offset, text in plan:
                delay = start + offset - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if self.closed:
                    break
                self.publish(text)
                count += 1
            rest = start + duration - time.perf_counter()
            if rest > 0 and not self.closed:
                await asyncio.sleep(rest)
        finally:
            self.finished.set()
        return count

    async def wait_after(self, since: int, timeout: float,
                         stop: Callable[[], bool] = lambda: False) -> list[Event]:
        """Events after ``since``; if none yet, wait up to ``timeout`` seconds for some.

        Returns ``[]`` on timeout, when the source closes, or when ``stop()`` becomes true
        (a server uses ``stop`` to release held requests when it shuts down).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        while True:
            events = self.after(since)
            if events or self.closed or stop():
                return events
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            try:
                async with asyncio.timeout(remaining):
                    await self._wake.wait()
            except TimeoutError:
                return []

    async def follow(self, since: int,
                     stop: Callable[[], bool] = lambda: False) -> AsyncIterator[Event]:
        """Yield every event after ``since`` as it is emitted, until close or ``stop()``."""
        while not (self.closed or stop()):
            for event in self.after(since):
                since = event.id
                yield event
            if self.after(since) or self.closed or stop():
                continue
            try:  # woken by publish/close/wake; the 1 s bound re-checks stop() anyway
                async with asyncio.timeout(1.0):
                    await self._wake.wait()
            except TimeoutError:
                pass
