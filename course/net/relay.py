"""The course's one TCP relay: it sits between a real client and a real server.

It forwards every byte both ways, counts them, and records the first ``keep`` bytes of
each connection (all of them by default), with the time of the last bytes each way.
Chapter 2 reads the recorded handshake and frames (:mod:`course.ui.frames` prints
them); the Autobahn check watches it for a server that stopped answering; chapter 1's
transports experiment counts the bytes every strategy costs.

**Faults (chapter 6).**  The relay also breaks connections on purpose, the three ways a
real network does (:class:`Fault`): ``CLOSE`` (both legs get a FIN: a clean end),
``RESET`` (both legs get an RST: an abrupt end) and ``BLACKHOLE`` (a half-open link: the
relay keeps both TCP legs open but throws away every byte, both ways, and never sends a
FIN; neither endpoint learns anything until a heartbeat goes unanswered).  It can delay
every chunk (``latency=`` seconds, per direction, order kept), and a seeded
:class:`FaultPlan` says when to cut and how, so a run reproduces::

    relay = await start_relay("127.0.0.1", server.port, latency=0.01)
    await relay.links[0].cut(Fault.BLACKHOLE)    # or relay.cut(1, Fault.RESET)
    await relay.cut_all(Fault.CLOSE)
    plan = FaultPlan.random(seed=7, cuts=20, span=10_000)   # pure: a list of Step
    applied = await relay.run_plan(plan, progress=lambda: acked, settle=all_rejoined)

A relay has the course's lifecycle (:class:`course.net.lifecycle.Service`)::

    relay = await start_relay("127.0.0.1", server.port)
    ... connect clients to relay.port ...
    relay.close()
    await relay.wait_closed()
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from course.net.lifecycle import Service

__all__ = ["Fault", "Step", "FaultPlan", "Applied", "Link", "Relay", "start_relay"]

_READ_SIZE = 65536


class Fault(enum.Enum):
    """How the relay breaks a connection.

    ``CLOSE``: a clean end, FIN both ways (each endpoint reads end-of-stream).
    ``RESET``: an abrupt end, RST both ways (``SO_LINGER`` 0; each endpoint gets
    "connection reset").  ``BLACKHOLE``: half-open; bytes go nowhere, both ways, and
    no FIN or RST ever comes: only a heartbeat can tell.
    """

    CLOSE = "close"
    RESET = "reset"
    BLACKHOLE = "blackhole"


@dataclass(frozen=True)
class Step:
    """One scripted cut: apply ``fault`` once progress reaches ``after``.

    Attributes:
        after: a progress mark: a count of messages, or seconds, whatever the
            ``progress`` callable given to :meth:`Relay.run_plan` counts.
        fault: the fault to apply to every open link.
    """

    after: float
    fault: Fault


@dataclass(frozen=True)
class FaultPlan:
    """A reproducible schedule of cuts, sans-I/O (no clock, no sockets): the same seed
    gives the same steps.

    Attributes:
        seed: the seed the steps came from (``None`` for a hand-written plan).
        steps: the cuts, in order of ``after``.
    """

    seed: int | None
    steps: tuple[Step, ...]

    @classmethod
    def random(cls, seed: int, *, cuts: int, span: float,
               faults: Sequence[Fault] = tuple(Fault), margin: float = 0.05) -> "FaultPlan":
        """``cuts`` steps at seeded random marks in ``[margin·span, (1-margin)·span]``,
        every fault in ``faults`` used as evenly as possible, in a seeded order.

        Args:
            seed: the random seed.
            cuts: how many steps (0 or more).
            span: the whole run, in the unit of progress (e.g. 10,000 messages).
            faults: the kinds to use (default: all three).
            margin: the fraction of ``span`` left without cuts at each end.

        Returns:
            The plan; ``FaultPlan.random(s, ...) == FaultPlan.random(s, ...)``.

        Raises:
            ValueError: ``cuts`` < 0, ``span`` <= 0, no faults, or ``margin`` not in [0, 0.5).
        """
        if cuts < 0 or not span > 0 or not faults or not 0 <= margin < 0.5:
            raise ValueError("need cuts >= 0, span > 0, at least one fault and 0 <= margin < 0.5")
        rng = random.Random(seed)
        kinds = [faults[i % len(faults)] for i in range(cuts)]
        rng.shuffle(kinds)
        low, high = span * margin, span * (1 - margin)
        marks = sorted(rng.uniform(low, high) for _ in range(cuts))
        if isinstance(span, int):
            marks = [int(mark) for mark in marks]
        return cls(seed, tuple(Step(mark, kind) for mark, kind in zip(marks, kinds)))

    def counts(self) -> dict[Fault, int]:
        """How many steps of each fault (every :class:`Fault` listed, 0 included)."""
        return {fault: sum(step.fault is fault for step in self.steps) for fault in Fault}


@dataclass(frozen=True)
class Applied:
    """What :meth:`Relay.run_plan` did for one step.

    Attributes:
        step: the step.
        links: the numbers of the links it cut (empty if none was open).
        progress: the progress value when it cut.
        at: ``time.monotonic()`` when it cut.
    """

    step: Step
    links: tuple[int, ...]
    progress: float
    at: float


@dataclass
class Link:
    """One relayed TCP connection.

    Attributes:
        number: 1 for the first connection, 2 for the next...
        to_server: The first bytes the client sent (at most the relay's ``keep``).
        to_client: The first bytes the server sent back (the same bound).
        bytes_up: How many bytes the client sent in all.
        bytes_down: How many bytes the server sent in all.
        last_to_server: ``time.monotonic()`` of the client's last bytes (``None``: none yet).
        last_to_client: The same for the server.
        open: Whether both directions still run.
        fault: The fault applied to this link (``None``: none).
        discarded: Bytes a ``BLACKHOLE`` threw away (both directions).
        latency: Seconds added to each chunk ``(to the server, to the client)``.
    """

    number: int
    to_server: bytearray = field(default_factory=bytearray)
    to_client: bytearray = field(default_factory=bytearray)
    bytes_up: int = 0
    bytes_down: int = 0
    last_to_server: float | None = None
    last_to_client: float | None = None
    open: bool = True
    fault: Fault | None = None
    discarded: int = 0
    latency: tuple[float, float] = (0.0, 0.0)
    _writers: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    async def cut(self, fault: Fault) -> None:
        """Break this connection (see :class:`Fault`); a link cut already is left alone.

        ``CLOSE`` and ``RESET`` close both TCP legs now; ``BLACKHOLE`` keeps them open and
        discards every byte from now on, both ways (the legs close only when the
        endpoints close theirs, or the relay stops).
        """
        if self.fault is not None or not self.open:
            return
        self.fault = Fault(fault)
        if self.fault is Fault.BLACKHOLE:
            return
        for writer in self._writers:
            if self.fault is Fault.RESET:
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
            else:
                writer.close()
        await asyncio.sleep(0)  # let the legs see it


class Relay(Service):
    """A TCP relay on 127.0.0.1 that forwards to a server, counting and recording.

    Args:
        target_host: The real server's address.
        target_port: The real server's port.
        keep: Bytes recorded per connection and direction (``None``: all of them; ``0``:
            count only).
        latency: Seconds added to every chunk, one number for both directions or
            ``(to_server, to_client)``; order is kept.

    Attributes:
        port: Where clients connect (instead of the server's port).
        links: Every connection (:class:`Link`), in the order they came.
        to_server: Everything recorded from clients, in arrival order.
        to_client: Everything recorded from the server, in arrival order.
    """

    def __init__(self, target_host: str, target_port: int, *, keep: int | None = None,
                 latency: float | tuple[float, float] = 0.0) -> None:
        self.target = (target_host, target_port)
        self.keep = keep
        self.latency = _latency(latency)
        self.live: dict[int, Link] = {}  #: open links by id(link) (survives :meth:`clear`)
        self.links: list[Link] = []
        self.to_server = bytearray()
        self.to_client = bytearray()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task] = set()

    @property
    def connections(self) -> int:
        """How many connections the relay accepted."""
        return len(self.links)

    @property
    def bytes_up(self) -> int:
        """Bytes clients sent, in all."""
        return sum(link.bytes_up for link in self.links)

    @property
    def bytes_down(self) -> int:
        """Bytes the server sent back, in all."""
        return sum(link.bytes_down for link in self.links)

    async def start(self) -> Relay:
        """Listen on 127.0.0.1, port 0."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        return self

    def clear(self) -> None:
        """Forget what was recorded so far (the links still open keep counting)."""
        self.to_server.clear()
        self.to_client.clear()
        self.links.clear()

    def _record(self, link: Link, data: bytes, upstream: bool) -> None:
        now = time.monotonic()
        mine, everything = ((link.to_server, self.to_server) if upstream
                            else (link.to_client, self.to_client))
        if upstream:
            link.bytes_up += len(data)
            link.last_to_server = now
        else:
            link.bytes_down += len(data)
            link.last_to_client = now
        room = len(data) if self.keep is None else max(0, self.keep - len(mine))
        if room:
            mine += data[:room]
            everything += data[:room]

    @property
    def open_links(self) -> list[Link]:
        """The links still open, oldest first."""
        return sorted(self.live.values(), key=lambda link: link.number)

    async def cut(self, number: int, fault: Fault) -> Link:
        """Cut the open link numbered ``number`` (see :meth:`Link.cut`).

        Raises:
            KeyError: no open link has that number.
        """
        link = next((link for link in self.open_links if link.number == number), None)
        if link is None:
            raise KeyError(f"no open link number {number}")
        await link.cut(fault)
        return link

    async def cut_all(self, fault: Fault) -> list[int]:
        """Cut every open link not cut yet; returns their numbers."""
        links = [link for link in self.open_links if link.fault is None]
        for link in links:
            await link.cut(fault)
        return [link.number for link in links]

    async def run_plan(self, plan: FaultPlan, progress: Callable[[], float] | None = None, *,
                       settle: Callable[[], Awaitable[Any]] | None = None,
                       settle_timeout: float = 10.0, poll: float = 0.002) -> list[Applied]:
        """Apply a plan's steps in order: each cuts every open link once ``progress()``
        reaches its mark.

        Args:
            plan: the steps.
            progress: returns the run's progress (e.g. messages acknowledged); ``None``:
                seconds since this call.
            settle: awaited after each cut, before the next mark is watched (e.g. "every
                client has rejoined"), so that each step cuts live sessions.
            settle_timeout: the bound on ``settle``, per step.
            poll: seconds between looks at ``progress``.

        Returns:
            What each step did, in order.

        Raises:
            TimeoutError: ``settle`` did not finish within ``settle_timeout``.
        """
        start = time.monotonic()
        progress = progress or (lambda: time.monotonic() - start)
        applied = []
        for step in plan.steps:
            while (now := progress()) < step.after:
                await asyncio.sleep(poll)
            links = await self.cut_all(step.fault)
            applied.append(Applied(step, tuple(links), now, time.monotonic()))
            if settle is not None:
                async with asyncio.timeout(settle_timeout):
                    await settle()
        return applied

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    link: Link, upstream: bool) -> None:
        delay = link.latency[0 if upstream else 1]
        queue: asyncio.Queue | None = asyncio.Queue() if delay else None
        later = asyncio.create_task(self._deliver_later(queue, writer, link, delay)) if queue else None
        try:
            while data := await reader.read(_READ_SIZE):
                if link.fault is not None:  # blackholed, or cut and still draining
                    link.discarded += len(data)
                    continue
                self._record(link, data, upstream)
                if queue is not None:
                    queue.put_nowait((time.monotonic() + delay, data))
                    continue
                writer.write(data)
                await writer.drain()
            if later is not None:
                queue.put_nowait((0.0, b""))
                await later
            if (link.fault is None and writer.can_write_eof()
                    and not writer.is_closing()):  # pass the half-close on
                writer.write_eof()
        except (ConnectionError, OSError):
            pass
        finally:
            if later is not None:
                later.cancel()

    @staticmethod
    async def _deliver_later(queue: asyncio.Queue, writer: asyncio.StreamWriter, link: Link,
                             delay: float) -> None:
        """Write each chunk ``delay`` seconds after it came, in order (``b""`` ends)."""
        with contextlib.suppress(ConnectionError, OSError):
            while (item := await queue.get())[1]:
                due, data = item
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if link.fault is not None:
                    link.discarded += len(data)
                    continue
                writer.write(data)
                await writer.drain()

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self._handlers.add(asyncio.current_task())
        s_writer = None
        try:
            async with asyncio.timeout(5):
                s_reader, s_writer = await asyncio.open_connection(*self.target)
            link = Link(len(self.links) + 1, latency=self.latency, _writers=(c_writer, s_writer))
            self.links.append(link)
            self.live[id(link)] = link
            try:
                await asyncio.gather(self._pipe(c_reader, s_writer, link, upstream=True),
                                     self._pipe(s_reader, c_writer, link, upstream=False))
            finally:
                link.open = False
                self.live.pop(id(link), None)
        except (OSError, TimeoutError, asyncio.CancelledError):
            # a cancelled handler would be logged as an error by asyncio.streams on 3.11
            pass
        finally:
            for writer in (s_writer, c_writer):
                if writer is not None:
                    writer.transport.abort() if self.closing else writer.close()
            self._handlers.discard(asyncio.current_task())

    async def _stop(self) -> None:
        """Stop listening and cut the connections still open (bounded: 3 s at most)."""
        if self._server is not None:
            self._server.close()
        for handler in list(self._handlers):
            handler.cancel()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=2)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await self._server.wait_closed()


def _latency(latency: float | tuple[float, float]) -> tuple[float, float]:
    up, down = (latency, latency) if isinstance(latency, (int, float)) else latency
    if not (up >= 0 and down >= 0):
        raise ValueError(f"latency must be >= 0 seconds, got {latency!r}")
    return float(up), float(down)


async def start_relay(target_host: str, target_port: int, *, keep: int | None = None,
                      latency: float | tuple[float, float] = 0.0) -> Relay:
    """Start a :class:`Relay` on 127.0.0.1, port 0, forwarding to the target.

    Args:
        target_host: The real server's address.
        target_port: The real server's port.
        keep: Bytes recorded per connection and direction (``None``: all).
        latency: Seconds added to every chunk (one number, or ``(to_server, to_client)``).

    Returns:
        The running relay; connect clients to ``relay.port``.

    Raises:
        OSError: No port to listen on.
        ValueError: A negative latency.
    """
    return await Relay(target_host, target_port, keep=keep, latency=latency).start()
