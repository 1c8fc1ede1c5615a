"""Running the transports experiment: server -> relay -> client, per strategy.

:func:`measure_all` and :func:`run_strategy` start an
:class:`~course.measure.transports.server.EventServer`, a
:class:`course.net.relay.Relay` (which counts the bytes) and a client per strategy, feed
them a seeded :class:`~course.demo.news.NewsSource`, and stop everything they started
before returning.  :func:`capture_empty_poll` records the exact bytes of one poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import aiohttp

from course.demo.news import NewsSource
from course.measure.stats import percentile
from course.measure.transports.clients import CLIENTS, Collector
from course.measure.transports.config import HOST, STRATEGIES, Settings
from course.measure.transports.report import Result
from course.measure.transports.server import EventServer
from course.net.lifecycle import shutdown
from course.net.relay import Relay, start_relay

__all__ = ["Trial", "measure_all", "run_strategy", "Exchange", "capture_empty_poll"]


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _percentile(values: list[float], p: float) -> float | None:
    """:func:`course.measure.stats.percentile`, rounded; None when nothing was measured."""
    return _round(percentile(values, p)) if values else None


class Trial:
    """One strategy: server -> relay -> client, on a given source.

    Args:
        strategy: one of :data:`~course.measure.transports.config.STRATEGIES`.
        source: the events to deliver (several trials may share one).
        settings: intervals and sizes.
    """

    def __init__(self, strategy: str, source: NewsSource, settings: Settings) -> None:
        self.strategy = strategy
        self.source = source
        self.settings = settings
        self.server = EventServer(source, max_wait=max(settings.long_poll_wait, 1.0),
                                  page_size=settings.page_size, refresh=settings.reload_interval)
        self.relay: Relay | None = None
        self.collector = Collector()
        self.task: asyncio.Task | None = None
        self.error: BaseException | None = None

    async def start(self) -> None:
        """Start the server, the relay (counting only) and the client; wait until it is connected.

        Raises:
            TimeoutError: the client did not connect within 5 s.
        """
        await self.server.start()
        self.relay = await start_relay(HOST, self.server.port, keep=0)
        client = CLIENTS[self.strategy]
        self.task = asyncio.create_task(client(f"http://{HOST}:{self.relay.port}", self.collector,
                                               self.settings))
        waiter = asyncio.create_task(self.collector.ready.wait())
        await asyncio.wait({waiter, self.task}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self.task.done():
            self.task.result()  # raise what went wrong
        if not self.collector.ready.is_set():
            raise TimeoutError(f"{self.strategy} client did not connect within 5 s")

    async def stop_client(self) -> None:
        """Cancel the client (keeping in :attr:`error` what it raised, if it failed)."""
        if self.task is None:
            return
        if self.task.done() and not self.task.cancelled() and self.task.exception() is not None:
            self.error = self.task.exception()
        self.task.cancel()
        await asyncio.wait({self.task}, timeout=5)
        self.task = None

    async def close(self) -> None:
        """Stop the client, then the server and the relay (bounded)."""
        await self.stop_client()
        await shutdown(servers=[self.server, self.relay])

    def result(self, emitted: int) -> Result:
        """What this trial measured, ``emitted`` being how many events the source emitted."""
        lat = list(self.collector.latencies_ms.values())
        stats = self.server.stats
        up, down = self.relay.bytes_up, self.relay.bytes_down
        events = len(lat)
        empty = self.collector.empty if self.strategy in ("reload", "polling", "long-polling") else 0
        return Result(
            strategy=self.strategy, setting=self.settings.describe(self.strategy),
            events=events, emitted=emitted,
            p50_ms=_percentile(lat, 50), p95_ms=_percentile(lat, 95),
            max_ms=_round(max(lat, default=None)),
            http_requests=stats.http_requests, empty_responses=empty,
            connections=self.relay.connections, bytes_up=up, bytes_down=down,
            bytes_per_event=_round((up + down) / events if events else None, 1),
            upstream_messages=stats.upstream_messages,
            upstream_p50_ms=_percentile(stats.upstream_latencies_ms, 50),
        )


async def _run(strategies: list[str], sources: list[NewsSource], duration: float,
               settings: Settings) -> list[Result]:
    """Run the trials of ``strategies`` at once; ``sources[i]`` feeds ``strategies[i]``."""
    trials = [Trial(s, src, settings) for s, src in zip(strategies, sources)]
    try:
        for trial in trials:
            await trial.start()
        distinct = list(dict.fromkeys(sources))
        runs = [asyncio.create_task(src.run(duration)) for src in distinct]
        async with asyncio.timeout(duration + 10):
            await asyncio.gather(*runs)
        grace = max(settings.reload_interval, settings.poll_interval) + 1.0
        for trial in trials:
            trial.collector.expect(trial.source.last_id)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await asyncio.gather(*(t.collector.complete.wait() for t in trials))
        for trial in trials:
            await trial.stop_client()
            if trial.error is not None:
                raise RuntimeError(f"the {trial.strategy} client failed: {trial.error!r}") from trial.error
        return [trial.result(len(trial.source.events)) for trial in trials]
    finally:
        await asyncio.gather(*(trial.close() for trial in trials), return_exceptions=True)
        for source in sources:
            source.close()


def _check_names(strategies: list[str]) -> None:
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; choose among {list(STRATEGIES)}")


async def measure_all(duration: float = 12.0, seed: int = 1, settings: Settings | None = None,
                      strategies: list[str] | None = None, concurrent: bool = True) -> list[Result]:
    """Measure every strategy on the same seeded event schedule.

    Args:
        duration: seconds during which the source emits events (then up to
            ``max(reload_interval, poll_interval) + 1`` s of grace for late deliveries).
        seed: seed of the event schedule (same seed, same instants and headlines).
        settings: intervals and sizes; :class:`Settings` defaults if None.
        strategies: a subset of :data:`STRATEGIES` (all by default).
        concurrent: True runs all strategies at once on ONE source (fast: the same events
            reach the five clients); False runs them one after the other, each on a fresh
            source with the same seed (slower, no interference on a busy machine).

    Returns:
        One :class:`Result` per strategy, in the order of ``strategies``.

    Raises:
        ValueError: unknown strategy, or ``duration`` not within (0, 300].
    """
    settings = settings or Settings()
    strategies = list(strategies or STRATEGIES)
    _check_names(strategies)
    if not (isinstance(duration, (int, float)) and 0 < duration <= 300):
        raise ValueError(f"duration must be within (0, 300] seconds, got {duration!r}")
    if concurrent:
        source = NewsSource(seed, settings.mean_interval)
        return await _run(strategies, [source] * len(strategies), duration, settings)
    results = []
    for strategy in strategies:
        source = NewsSource(seed, settings.mean_interval)
        results += await _run([strategy], [source], duration, settings)
    return results


async def run_strategy(name: str, duration: float = 5.0, seed: int = 1,
                       settings: Settings | None = None) -> Result:
    """Measure one strategy alone (its own server, relay, client and source).

    Raises:
        ValueError: unknown ``name`` or bad ``duration``.
    """
    return (await measure_all(duration, seed, settings, [name], concurrent=False))[0]


@dataclass(frozen=True)
class Exchange:
    """The exact bytes of one HTTP request and its response, as TCP carried them."""

    request: bytes
    response: bytes

    @staticmethod
    def _split(message: bytes) -> tuple[bytes, bytes]:
        head, sep, body = message.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("no blank line (CRLF CRLF) ends the header block")
        return head + sep, body

    @property
    def request_head(self) -> bytes:
        """Request line + headers + blank line."""
        return self._split(self.request)[0]

    @property
    def response_head(self) -> bytes:
        """Status line + headers + blank line."""
        return self._split(self.response)[0]

    @property
    def response_body(self) -> bytes:
        return self._split(self.response)[1]


async def capture_empty_poll() -> Exchange:
    """Make one AJAX poll that finds nothing new and return the bytes both ways.

    A quiet :class:`NewsSource`, an :class:`EventServer`, a :class:`~course.net.relay.Relay`
    (recording the first 4096 bytes each way) and an aiohttp client are started and all
    closed again before returning.
    """
    source = NewsSource()
    server = await EventServer(source).start()
    relay = None
    try:
        relay = await start_relay(HOST, server.port, keep=4096)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            async with session.get(f"http://{HOST}:{relay.port}/events", params={"since": 0}) as r:
                r.raise_for_status()
                await r.read()
        # the relay records bytes before relaying them, so both directions are complete here
        if relay.connections != 1:
            raise RuntimeError(f"expected 1 relayed connection, saw {relay.connections}")
        link = relay.links[0]
        return Exchange(bytes(link.to_server), bytes(link.to_client))
    finally:
        await shutdown(servers=[server, relay])
        source.close()
