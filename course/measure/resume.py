"""Chapter 6's measurement: messages through forced disconnects, lost and duplicated, counted.

One workload, two systems, the same seeded cuts through the same fault relay
(:class:`course.net.relay.Relay`, :class:`course.net.relay.FaultPlan`):

- **ours**: a :class:`course.net.channels.ChannelServer` and two
  :class:`course.net.channels_client.ResumingClient` members of one room, ``ada`` who
  sends and ``bob`` who listens; every message ada sends comes back to both;
- **python-socketio** with its default delivery (at most once: no replay, no retry), the
  same shape: ada emits ``up``, the server emits ``down`` to the room, both receive.

Both directions are counted: *up* is what the server received of ada's messages (its
record, in order), *down* is what each client delivered of what the server sent out.
The sender sends in bursts of ``burst`` messages with a ``pause`` in between; cut ``k``
of the plan happens once ada has tried to send ``step.after`` messages, then the run
waits until every client is back before arming the next::

    ours = await run_channels(messages=10_000, cuts=20, seed=7)
    theirs = await run_socketio(messages=10_000, cuts=20, seed=7)
    print(table([ours, theirs]))
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from course.net.channels import start_channels
from course.net.channels_client import ResumingClient
from course.net.relay import FaultPlan, start_relay

__all__ = ["Direction", "Report", "count", "run_channels", "run_socketio", "table"]


@dataclass(frozen=True)
class Direction:
    """One direction's tally.

    Attributes:
        sent: messages that should arrive.
        delivered: distinct messages that arrived.
        lost: ``sent - delivered``.
        duplicated: extra copies delivered to the application.
        in_order: whether the distinct messages arrived in the order they were sent.
    """

    sent: int
    delivered: int
    lost: int
    duplicated: int
    in_order: bool


def count(expected: list[Any], got: list[Any]) -> Direction:
    """Compare what arrived with what was sent (both in order, values unique in ``expected``).

    Args:
        expected: the messages in the order they were sent.
        got: the messages in the order the application received them.

    Returns:
        The tally; order is judged on the first copy of each message.
    """
    copies = Counter(got)
    wanted = set(expected)
    first = list(dict.fromkeys(m for m in got if m in wanted))
    rank = {m: i for i, m in enumerate(expected)}
    in_order = all(rank[a] < rank[b] for a, b in zip(first, first[1:]))
    return Direction(len(expected), len(first), len(expected) - len(first),
                     sum(n - 1 for n in copies.values()), in_order)


@dataclass
class Report:
    """One system's run.

    Attributes:
        system: a name for the table.
        up: client → server.
        down: server → clients (both clients' tallies summed).
        cuts: the faults applied, by kind.
        seconds: wall time of the run.
        settings: what was configured, for the table.
        notes: other counts (reconnects, duplicates dropped, repeats recognised...).
    """

    system: str
    up: Direction
    down: Direction
    cuts: dict[str, int]
    seconds: float
    settings: str
    notes: dict[str, int] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        """Nothing lost, nothing duplicated, order kept, both ways."""
        return all(d.lost == 0 and d.duplicated == 0 and d.in_order for d in (self.up, self.down))


def _sum(a: Direction, b: Direction) -> Direction:
    return Direction(a.sent + b.sent, a.delivered + b.delivered, a.lost + b.lost,
                     a.duplicated + b.duplicated, a.in_order and b.in_order)


def _bodies(n: int) -> list[str]:
    return [f"m{i}" for i in range(n)]


async def _drive(relay: Any, plan: FaultPlan, send: Any, settle: Any, *, messages: int,
                 burst: int, pause: float, backlog: Any = None) -> list:
    """Send ``messages`` in bursts while the plan cuts; returns what the plan applied."""
    tried = 0

    async def sender() -> None:
        nonlocal tried
        for body in _bodies(messages):
            await send(body)
            tried += 1
            if tried % burst == 0:
                await asyncio.sleep(pause)
                while backlog is not None and backlog() > 2 * burst:
                    await asyncio.sleep(pause)

    plan_task = asyncio.create_task(relay.run_plan(plan, lambda: tried, settle=settle))
    try:
        await sender()
        return await plan_task
    finally:
        plan_task.cancel()


class _DeadWrites(logging.Filter):
    """Drops asyncio's "socket.send() raised exception.": every cut in a run leaves
    writes in flight to a socket the relay just reset, which is the point of the run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "socket.send() raised exception."


def _quiet_dead_writes(function):
    """Run ``function`` with :class:`_DeadWrites` on asyncio's logger (and only then)."""
    @functools.wraps(function)
    async def run(*args: Any, **kwargs: Any) -> Any:
        log, quiet = logging.getLogger("asyncio"), _DeadWrites()
        log.addFilter(quiet)
        try:
            return await function(*args, **kwargs)
        finally:
            log.removeFilter(quiet)
    return run


@_quiet_dead_writes
async def run_channels(messages: int = 10_000, cuts: int = 20, seed: int = 7, *, burst: int = 100,
                       pause: float = 0.005, heartbeat: float = 0.1,
                       timeout: float = 60.0) -> Report:
    """Our channel server and resuming clients through the fault relay.

    Args:
        messages: how many ada sends (each also comes back to ada and bob).
        cuts: forced disconnects, every kind of :class:`course.net.relay.Fault` in turn.
        seed: the plan's seed.
        burst, pause: the sending rhythm.
        heartbeat: the clients' heartbeat interval (= timeout); the server's silence
            timeout is three of them: a blackhole is noticed in about two.
        timeout: bound on the whole run, seconds.

    Returns:
        The report (``exact`` is what chapter 6 promises).
    """
    plan = FaultPlan.random(seed, cuts=cuts, span=messages)
    server = await start_channels(heartbeat_timeout=3 * heartbeat, log_size=max(1000, messages),
                                  queue_size=1024, action_cable=False, socket_io=False)
    relay = await start_relay("127.0.0.1", server.port)
    recorded: list[str] = []  # what the server posted, in order: a member that records
    room = server.rooms.room("lobby")
    room.join("recorder", "recorder",
              lambda event, payload: recorded.append(payload["body"]) if event == "new_msg" else None)
    url = f"ws://127.0.0.1:{relay.port}/socket/websocket"
    options = dict(heartbeat_interval=heartbeat, backoff_base=0.01, backoff_cap=0.2, timeout=5.0)
    clients = [ResumingClient(url, "room:lobby", name, seed=seed + i, **options)
               for i, name in enumerate(("ada", "bob"))]
    ada = clients[0]
    start = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            for client in clients:
                await client.start()

            async def send(body: str) -> None:
                ada.send(body)

            async def settle() -> None:
                joins = [c.joins for c in clients]
                for client, before in zip(clients, joins):
                    await client.rejoined(before, timeout=10)

            applied = await _drive(relay, plan, send, settle, messages=messages, burst=burst,
                                   pause=pause, backlog=lambda: len(ada.outbox))
            await ada.flush(timeout=timeout)
            for client in clients:
                await client.wait_for_seq(room.log.last_seq, timeout=timeout)
        expected = _bodies(messages)
        up = count(expected, recorded)
        down = _sum(*(count(recorded, [m["body"] for m in c.received]) for c in clients))
        return Report(
            "ours (Phoenix V2 + resume)", up, down,
            Counter(a.step.fault.value for a in applied), time.monotonic() - start,
            f"heartbeat {heartbeat:g} s, server timeout {3 * heartbeat:g} s, backoff 0.01..0.2 s full jitter",
            {"connections": sum(c.connections for c in clients),
             "resyncs": sum(c.resyncs for c in clients),
             "duplicates dropped by clients": sum(c.receiver.duplicates for c in clients),
             "repeats dropped by server": server.dedup.repeats})
    finally:
        for client in clients:
            await client.close()
        relay.close()
        server.close()
        await relay.wait_closed()
        await server.wait_closed()


@_quiet_dead_writes
async def run_socketio(messages: int = 10_000, cuts: int = 20, seed: int = 7, *, burst: int = 100,
                       pause: float = 0.005, ping: float = 0.1,
                       reconnection_delay: float | None = None, timeout: float = 120.0) -> Report:
    """python-socketio (server and client) through the same relay and plan, default delivery.

    Everything is python-socketio's default except the heartbeat, shortened to ``ping``
    (interval and timeout; the defaults, 25 s and 20 s, would leave a blackholed link
    unnoticed for 45 s) and, if given, ``reconnection_delay`` (default 1 s, max 5 s).
    An emit while disconnected raises in python-socketio; it is counted as lost, as an
    application that does not buffer would lose it.

    Returns:
        The report.
    """
    import socketio  # python-socketio: only this measurement needs it here

    plan = FaultPlan.random(seed, cuts=cuts, span=messages)
    sio = socketio.AsyncServer(async_mode="aiohttp", ping_interval=ping, ping_timeout=ping)
    app = web.Application()
    sio.attach(app)
    recorded: list[str] = []

    @sio.event
    async def connect(sid: str, environ: dict, auth: Any) -> None:
        await sio.enter_room(sid, "lobby")

    @sio.on("up")
    async def up(sid: str, body: str) -> None:
        recorded.append(body)
        await sio.emit("down", body, room="lobby")

    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    relay = await start_relay("127.0.0.1", port)
    client_options = {} if reconnection_delay is None else {
        "reconnection_delay": reconnection_delay, "reconnection_delay_max": reconnection_delay,
        "randomization_factor": 0.0}
    clients = {name: socketio.AsyncClient(**client_options) for name in ("ada", "bob")}
    got: dict[str, list[str]] = {name: [] for name in clients}
    connects = Counter()
    for name, client in clients.items():
        client.on("down", lambda body, name=name: got[name].append(body))
        client.on("connect", lambda name=name: connects.update([name]))
    ada = clients["ada"]
    failed = 0
    start = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            for client in clients.values():
                await client.connect(f"http://127.0.0.1:{relay.port}", wait_timeout=5)

            async def send(body: str) -> None:
                nonlocal failed
                try:
                    await ada.emit("up", body)
                except socketio.exceptions.SocketIOError:
                    failed += 1  # not connected: python-socketio raises, nothing is kept

            async def settle() -> None:
                before = dict(connects)
                while any(connects[name] <= before.get(name, 0) for name in clients):
                    await asyncio.sleep(0.01)

            applied = await _drive(relay, plan, send, settle, messages=messages, burst=burst,
                                   pause=pause)
            await asyncio.sleep(max(1.0, 4 * ping))  # let the last messages arrive
        expected = _bodies(messages)
        up_tally = count(expected, recorded)
        down = _sum(*(count(recorded, got[name]) for name in clients))
        delay = "default 1..5 s ±0.5" if reconnection_delay is None else f"{reconnection_delay} s"
        return Report(
            f"python-socketio {importlib.metadata.version('python-socketio')}",
            up_tally, down, Counter(a.step.fault.value for a in applied), time.monotonic() - start,
            f"defaults, except ping_interval = ping_timeout = {ping:g} s; reconnection delay {delay}",
            {"connections": sum(connects.values()), "emits refused while disconnected": failed})
    finally:
        for client in clients.values():
            try:
                async with asyncio.timeout(2):
                    await client.disconnect()
            except (TimeoutError, OSError):
                pass
        relay.close()
        await relay.wait_closed()
        await sio.shutdown()
        await runner.cleanup()


def table(reports: list[Report]) -> str:
    """The reports side by side, as text."""
    rows = [("", *(r.system for r in reports))]
    for label, get in (
            ("up: sent", lambda r: r.up.sent), ("up: lost", lambda r: r.up.lost),
            ("up: duplicated", lambda r: r.up.duplicated), ("up: in order", lambda r: r.up.in_order),
            ("down: expected (2 clients)", lambda r: r.down.sent), ("down: lost", lambda r: r.down.lost),
            ("down: duplicated", lambda r: r.down.duplicated),
            ("down: in order", lambda r: r.down.in_order),
            ("cuts", lambda r: ", ".join(f"{n} {kind}" for kind, n in sorted(r.cuts.items()))),
            ("seconds", lambda r: f"{r.seconds:.1f}")):
        rows.append((label, *(str(get(r)) for r in reports)))
    keys = list(dict.fromkeys(k for r in reports for k in r.notes))
    for key in keys:
        rows.append((key, *(str(r.notes.get(key, "")) for r in reports)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += [f"{r.system}: {r.settings}" for r in reports]
    return "\n".join(lines)
