"""The reconnect storm: every client comes back at once after a server restart.

A server restarts; all its clients lose their connection at the same moment (``t = 0``)
and reconnect with exponential backoff (:func:`course.wire.backoff.backoff_delay`).  The
new server accepts at most ``rate`` connections per second (a token bucket with ``burst``
tokens, :class:`course.wire.limits.TokenBucket`) and refuses the rest (HTTP 503, "try again later");
a refused client waits its next backoff delay and tries again.

Without jitter every client tries at the same instants, the bucket lets ``burst`` of them
in each time and refuses the rest, and the whole crowd waits the next, longer delay: the
server sits idle between the waves.  With full jitter the same crowd arrives spread out,
close to the rate the server can take.

:func:`simulate_storm` is that story as a seeded discrete-event simulation (no I/O, no
clock: a heap of attempt times), fast enough for a lesson or a test; :func:`real_storm`
plays it for real (a ``websockets`` server on 127.0.0.1, restarted on the same port, and
real ``websockets`` clients; ``benchmarks/storm.py`` runs it with 1,000) and builds the
same :class:`StormResult` with :meth:`StormResult.from_attempts`.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
import resource
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus

from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import InvalidHandshake
from websockets.http11 import Request, Response

from course.wire.backoff import Jitter, backoff_delay
from course.wire.limits import TokenBucket

__all__ = ["StormResult", "simulate_storm", "real_storm", "raise_fd_limit",
           "storm_table", "plot_storm"]


@dataclass(frozen=True)
class StormResult:
    """One storm, measured or simulated.

    Attributes:
        jitter: the clients' jitter.
        clients: how many clients had to come back.
        back: how many did (``clients`` when the storm ended).
        bin_width: seconds per bin of :attr:`attempts_per_bin`.
        attempts_per_bin: connection attempts in each bin, from ``t = 0``.
        accepted_per_bin: accepted attempts in each bin.
        all_back_after: seconds from the restart to the last client's accepted attempt
            (``math.inf`` if not everybody came back).
        attempts: all attempts, accepted or refused.
        refusals: refused attempts.
        closes_seen: when the first and the last client saw its connection close, in seconds
            after the restart began (``(0, 0)`` in the simulation, where everybody loses it
            at ``t = 0``).
    """

    jitter: Jitter
    clients: int
    back: int
    bin_width: float
    attempts_per_bin: tuple[int, ...]
    accepted_per_bin: tuple[int, ...]
    all_back_after: float
    attempts: int
    refusals: int
    closes_seen: tuple[float, float] = (0.0, 0.0)

    @property
    def peak(self) -> int:
        """The most attempts in one bin."""
        return max(self.attempts_per_bin, default=0)

    @classmethod
    def from_attempts(cls, jitter: Jitter, clients: int, attempts: Sequence[tuple[float, bool]],
                      bin_width: float = 0.1,
                      closes_seen: tuple[float, float] = (0.0, 0.0)) -> StormResult:
        """Build a result from every attempt's ``(time since the restart, accepted)``.

        Raises:
            ValueError: ``bin_width`` not positive, or a negative time.
        """
        if not bin_width > 0:
            raise ValueError(f"bin_width must be > 0, got {bin_width}")
        if any(t < 0 for t, _ in attempts):
            raise ValueError("attempt times are counted from the restart: none is negative")
        last = max((t for t, _ in attempts), default=0.0)
        bins = [0] * (int(last / bin_width) + 1)
        ok_bins = [0] * len(bins)
        for t, accepted in attempts:
            bins[int(t / bin_width)] += 1
            ok_bins[int(t / bin_width)] += accepted
        back = sum(ok_bins)
        accepted_times = [t for t, ok in attempts if ok]
        done = max(accepted_times) if back >= clients and accepted_times else math.inf
        return cls(jitter, clients, back, bin_width, tuple(bins), tuple(ok_bins), done,
                   len(attempts), len(attempts) - back, closes_seen)


def simulate_storm(clients: int = 1000, *, jitter: Jitter = Jitter.FULL, rate: float = 500.0,
                   burst: int = 200, base: float = 1.0, cap: float = 5.0, seed: int = 0,
                   bin_width: float = 0.1, horizon: float = 600.0) -> StormResult:
    """Simulate ``clients`` reconnecting at once against a server taking ``rate`` per second.

    Every client lost its connection at ``t = 0``; it waits ``backoff_delay(0)``, tries,
    and after each refusal waits the next delay (``attempt`` counts its refusals).  An
    accepted client stays connected.  Same arguments, same result.  The default delays are
    Socket.IO's (1 s, doubled up to 5 s), its ``randomizationFactor`` replaced by ``jitter``.

    Args:
        clients: how many clients reconnect.
        jitter: their jitter (see :class:`course.wire.backoff.Jitter`).
        rate: connections the server accepts per second.
        burst: the accept bucket's size (connections accepted at once).
        base: the first delay before jitter, in seconds.
        cap: the longest delay before jitter, in seconds.
        seed: the random generator's seed.
        bin_width: seconds per bin of the result.
        horizon: stop simulating at this time (seconds); clients still out are not back.

    Returns:
        The storm's :class:`StormResult`.
    """
    rng = random.Random(seed)
    bucket = TokenBucket(rate, burst)
    pending = [(backoff_delay(0, base=base, cap=cap, jitter=jitter, rng=rng), i, 0)
               for i in range(clients)]
    heapq.heapify(pending)
    attempts: list[tuple[float, bool]] = []
    while pending:
        now, client, refused = heapq.heappop(pending)
        if now > horizon:
            break
        accepted = bucket.take(now)
        attempts.append((now, accepted))
        if not accepted:
            refused += 1
            delay = backoff_delay(refused, base=base, cap=cap, jitter=jitter, rng=rng)
            heapq.heappush(pending, (now + delay, client, refused))
    return StormResult.from_attempts(jitter, clients, attempts, bin_width)


def raise_fd_limit(needed: int) -> int:
    """Raise this process's open-file limit (soft, up to the hard one) to at least ``needed``.

    Returns:
        The soft limit now.

    Raises:
        OSError: the hard limit is below ``needed``.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise OSError(f"{needed} files needed, the hard limit is {hard} (ulimit -Hn)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        soft = needed
    return soft


async def real_storm(clients: int = 1000, *, jitter: Jitter = Jitter.FULL, rate: float = 500.0,
                     burst: int = 200, base: float = 1.0, cap: float = 5.0, seed: int = 0,
                     bin_width: float = 0.1, timeout: float = 120.0) -> StormResult:
    """Play the storm for real on 127.0.0.1: connect, restart the server, count the attempts.

    A ``websockets`` server takes ``clients`` real ``websockets`` clients (connected a
    hundred at a time, no limit yet).  Then it restarts: the old server closes every
    connection (1001, going away) and a new one listens on the same port at once, whose
    ``process_request`` takes a token from a :class:`course.wire.limits.TokenBucket` and answers
    ``503 Service Unavailable`` when there is none.  Each client, from the moment it saw
    its connection close, waits ``backoff_delay(refusals)`` and tries again until it is
    accepted (a refused TCP connection, while no server listens yet, counts as a refusal).
    Times are counted from the moment the restart began.  Two things the simulation
    leaves out show here: closing a thousand connections takes the old server a moment
    (:attr:`StormResult.closes_seen`), and the clients share one event loop (and the
    machine) with the server, so a wave of simultaneous attempts is spread over a few
    hundred milliseconds by the CPU: the real peak per bin is lower than the simulated one.

    Args:
        clients, jitter, rate, burst, base, cap, seed, bin_width: as for :func:`simulate_storm`
            (each client draws from its own generator, seeded from ``seed``).
        timeout: bound on the whole storm, in seconds.

    Returns:
        The storm's :class:`StormResult`.

    Raises:
        TimeoutError: not everybody was back within ``timeout``.
        OSError: the open-file limit cannot hold ``clients`` twice (see :func:`raise_fd_limit`).
    """
    raise_fd_limit(2 * clients + 64)
    loop = asyncio.get_running_loop()
    attempts: list[tuple[float, bool]] = []
    closes_seen: list[float] = []
    bucket = TokenBucket(rate, burst)
    t0 = 0.0

    async def hold(websocket: ServerConnection) -> None:
        await websocket.wait_closed()

    def gate(connection: ServerConnection, request: Request) -> Response | None:
        if bucket.take(loop.time() - t0):
            return None
        return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "try again later\n")

    async def client(index: int, url: str, connected: asyncio.Event) -> None:
        rng = random.Random(f"{seed}-{index}")
        async with connect(url, ping_interval=None, open_timeout=10, close_timeout=1) as ws:
            connected.set()
            await ws.wait_closed()  # the restart began: t0 is set
        closes_seen.append(loop.time() - t0)
        refused = 0
        while True:
            await asyncio.sleep(backoff_delay(refused, base=base, cap=cap, jitter=jitter, rng=rng))
            started = loop.time() - t0
            try:
                ws = await connect(url, ping_interval=None, open_timeout=30, close_timeout=1)
            except (InvalidHandshake, OSError):
                attempts.append((started, False))
                refused += 1
                continue
            attempts.append((started, True))
            await ws.close()  # back: the storm's question is answered for this client
            return

    old: Server = await serve(hold, "127.0.0.1", 0, backlog=4096, ping_interval=None)
    port = old.sockets[0].getsockname()[1]
    url = f"ws://127.0.0.1:{port}/"
    tasks: list[asyncio.Task] = []
    new: Server | None = None
    try:
        async with asyncio.timeout(timeout):
            for start in range(0, clients, 100):
                events = [asyncio.Event() for _ in range(start, min(clients, start + 100))]
                tasks += [asyncio.create_task(client(start + i, url, e)) for i, e in enumerate(events)]
                await asyncio.gather(*(e.wait() for e in events))
            t0 = loop.time()
            old.close()
            await old.wait_closed()
            new = await serve(hold, "127.0.0.1", port, backlog=4096, ping_interval=None,
                              process_request=gate)
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        old.close()
        if new is not None:
            new.close()
            await new.wait_closed()
    seen = (min(closes_seen), max(closes_seen)) if closes_seen else (0.0, 0.0)
    return StormResult.from_attempts(jitter, clients, attempts, bin_width, seen)


def storm_table(results: Sequence[StormResult]) -> str:
    """A plain-text table: one row per jitter, peak attempts per bin, time until all back."""
    head = ("jitter", "back", "attempts", "refusals", f"peak/{results[0].bin_width * 1000:.0f}ms"
            if results else "peak", "all back after", "closes seen")
    rows = [head] + [(r.jitter.value, f"{r.back}/{r.clients}", str(r.attempts), str(r.refusals),
                      str(r.peak), "never" if math.isinf(r.all_back_after) else f"{r.all_back_after:.1f} s",
                      f"{r.closes_seen[0]:.2f}-{r.closes_seen[1]:.2f} s")
                     for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])])
                     for row in rows)


def plot_storm(results: Sequence[StormResult], *, rate: float | None = None, title: str | None = None):
    """Attempts per bin over time, one panel per result, the time everybody was back marked.

    Args:
        results: the storms to show (e.g. no, equal and full jitter).
        rate: the server's accept rate, drawn as its capacity per bin if given.
        title: the figure's title.

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(10, 2.2 * len(results) + 0.6),
                             sharex=True, sharey=True, squeeze=False)
    for ax, r in zip(axes[:, 0], results):
        edges = [i * r.bin_width for i in range(len(r.attempts_per_bin) + 1)]
        ax.stairs(r.attempts_per_bin, edges, fill=True, color="tab:red", label="refused")
        ax.stairs(r.accepted_per_bin, edges, fill=True, color="tab:green", label="accepted")
        if rate is not None:
            ax.axhline(rate * r.bin_width, color="black", linestyle=":", linewidth=1,
                       label="server capacity")
        if not math.isinf(r.all_back_after):
            ax.axvline(r.all_back_after, color="tab:blue", linestyle="--", linewidth=1,
                       label=f"all back: {r.all_back_after:.1f} s")
        ax.set_yscale("symlog", linthresh=10)
        ax.set_ylabel(f"attempts\nper {r.bin_width * 1000:.0f} ms")
        ax.set_title(f"{r.jitter.value} jitter: {r.attempts} attempts, peak {r.peak}",
                     loc="left", fontsize=10)
        ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("seconds after the restart")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
