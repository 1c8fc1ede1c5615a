"""Backpressure measured: one client stops reading a price feed, under each queue policy.

A :class:`PriceServer` (``websockets`` on 127.0.0.1, its queues a
:class:`course.net.fanout.Fanout` under one :class:`course.wire.backpressure.Policy`)
broadcasts prices: ``rate`` messages a second over a few symbols, each padded to ``size``
bytes and stamped with ``time.monotonic_ns()`` (one clock for every process of the
machine on Linux).  :func:`measure_policy` runs it in a child process, so that the
memory it reports (``VmRSS`` from ``/proc/PID/status``) is the server's own, connects
``healthy`` reading clients and one stalled reader (:func:`course.net.fanout.stalled_reader`:
a real socket with a tiny receive buffer that never reads), and records for ``seconds``:

* the server's resident memory over time;
* what became of the stalled client (dropped, or kept with how much queued);
* the healthy clients' delivery latency (p50, p99) and how many messages they got.

Run it with ``python -m course.measure.backpressure`` (``--help``); ``benchmarks/backpressure.py``
prints the table for every policy.  The child process is this module too
(``python -m course.measure.backpressure --serve POLICY``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from course.measure.stats import percentile
from course.net.fanout import Fanout, stalled_reader
from course.net.lifecycle import Service
from course.wire.backpressure import Policy

__all__ = ["SYMBOLS", "price_message", "PriceServer", "rss_kib", "BackpressureResult",
           "measure_policy", "measure_all", "backpressure_table", "plot_rss", "main"]

SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "META", "TSLA", "ORCL")  #: the feed's keys
_ROOT = Path(__file__).resolve().parents[2]


def price_message(seq: int, symbol: str, size: int = 1024) -> str:
    """One price update as JSON, padded to about ``size`` bytes (an order book's worth).

    It carries ``seq`` (the feed's counter), ``symbol``, ``price`` and ``sent_ns``
    (``time.monotonic_ns()`` when it was made).
    """
    body = {"type": "price", "seq": seq, "symbol": symbol, "price": round(100 + (seq % 997) / 10, 2),
            "sent_ns": time.monotonic_ns(), "book": ""}
    pad = max(0, size - len(json.dumps(body)))
    body["book"] = "." * pad
    return json.dumps(body, separators=(",", ":"))


class PriceServer(Service):
    """A price feed broadcasting through a :class:`course.net.fanout.Fanout` under ``policy``.

    Start it with :meth:`start`; feed it with :meth:`publish` or :meth:`run_feed`.  A
    message's coalescing key is its symbol.  Clients only listen (what they send is ignored).

    Args:
        policy: the queues' policy.
        queue_size: the bound of a queue in messages (and where DROP_CLIENT's clock starts).
        grace: DROP_CLIENT's grace period, in seconds.
        max_bytes: the bound of a queue in bytes.
    """

    def __init__(self, policy: Policy = Policy.DROP_CLIENT, *, queue_size: int = 16,
                 grace: float = 1.0, max_bytes: int = 1024 * 1024) -> None:
        self.fanout = Fanout(queue_size, grace=grace, max_bytes=max_bytes, close_timeout=1.0,
                             policy=policy)
        self.published = 0
        self._server: Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> PriceServer:
        """Listen on ``host:port`` (``port`` 0: any free port); returns ``self``."""
        self._server = await serve(self._handler, host, port, ping_interval=None, close_timeout=1.0)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        return self

    async def _handler(self, websocket: ServerConnection) -> None:
        transport = websocket.transport
        address = websocket.remote_address or ("?", 0)
        self.fanout.join(websocket, f"{address[0]}:{address[1]}", send=websocket.send,
                         close=websocket.close, abort=transport.abort,
                         buffered=transport.get_write_buffer_size, close_timeout=1.0)
        try:
            async for _ in websocket:
                pass
        except ConnectionClosed:
            pass
        finally:
            self.fanout.leave(websocket)

    def publish(self, count: int = 1, size: int = 1024) -> None:
        """Broadcast the next ``count`` prices (symbols in turn), never waiting."""
        for _ in range(count):
            symbol = SYMBOLS[self.published % len(SYMBOLS)]
            self.published += 1
            self.fanout.broadcast(price_message(self.published, symbol, size), topic=symbol)

    async def run_feed(self, rate: float, size: int = 1024, tick: float = 0.005) -> None:
        """Publish ``rate`` prices a second, in batches every ``tick`` seconds, until cancelled."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            due = int((loop.time() - start) * rate) - self.published
            if due > 0:
                self.publish(due, size)
            await asyncio.sleep(tick)

    def stats(self, name: str) -> dict:
        """What the server holds for the client called ``name`` (``"HOST:PORT"`` as it sees it).

        Returns:
            ``published`` (the feed's count), ``clients``, ``dropped`` (whether that client
            was dropped as too slow), ``queued``, ``queued_bytes``, ``discarded`` (by the policy).
        """
        outbox = next((o for o in self.fanout.clients.values() if o.name == name), None)
        load = outbox.load() if outbox is not None else None
        return {"published": self.published, "clients": len(self.fanout),
                "dropped": name in self.fanout.dropped,
                "queued": load.queued if load else 0,
                "queued_bytes": load.queued_bytes if load else 0,
                "discarded": outbox.discarded if outbox is not None else 0}

    async def _stop(self) -> None:
        await self.fanout.stop(timeout=1.0)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def rss_kib(pid: int) -> int:
    """The resident memory of process ``pid`` in KiB (``VmRSS`` of ``/proc/PID/status``, Linux).

    Raises:
        OSError: no such process, or no ``/proc``.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise OSError(f"no VmRSS for process {pid}")


@dataclass
class BackpressureResult:
    """One policy, measured by :func:`measure_policy`.

    Attributes:
        policy: the server's policy.
        rss: ``(seconds since the feed started, server RSS in MiB)`` samples.
        published: prices the server published.
        slow_dropped: whether the stalled client was disconnected.
        slow_queued: messages queued for the stalled client at the end (0 if dropped).
        slow_queued_bytes: their bytes.
        discarded: messages the policy dropped or replaced for the stalled client.
        healthy_received: messages each healthy client received (under COALESCE a healthy
            client whose writer is a batch behind gets the latest price too, so fewer; under
            DROP_OLDEST one that falls ``queue_size`` behind for a moment loses the oldest).
        healthy_dropped: healthy clients whose connection closed during the run.
        healthy_p50_ms, healthy_p99_ms: their delivery latency.
    """

    policy: Policy
    rss: list[tuple[float, float]] = field(default_factory=list)
    published: int = 0
    slow_dropped: bool = False
    slow_queued: int = 0
    slow_queued_bytes: int = 0
    discarded: int = 0
    healthy_received: list[int] = field(default_factory=list)
    healthy_dropped: int = 0
    healthy_p50_ms: float = math.nan
    healthy_p99_ms: float = math.nan

    @property
    def rss_growth_mib(self) -> float:
        """Server RSS at the end minus at the start of the feed, in MiB."""
        return self.rss[-1][1] - self.rss[0][1] if self.rss else math.nan

    @property
    def slow_outcome(self) -> str:
        """What became of the stalled client, in words."""
        if self.slow_dropped:
            return "dropped (1008)"
        if self.policy is Policy.UNBOUNDED:
            return f"kept, {self.slow_queued} queued ({self.slow_queued_bytes / 2**20:.1f} MiB)"
        latest = ", latest price per symbol" if self.policy is Policy.COALESCE else ""
        return (f"kept, lagging: {self.slow_queued} queued ({self.slow_queued_bytes / 1024:.0f} KiB)"
                f"{latest}, {self.discarded} discarded")


async def _healthy_client(url: str, latencies: list[float], counts: list[int], newest: list[int],
                          index: int, ready: asyncio.Event) -> None:
    async with connect(url, ping_interval=None, max_size=None) as ws:
        ready.set()
        async for text in ws:
            message = json.loads(text)
            latencies.append((time.monotonic_ns() - message["sent_ns"]) / 1e6)
            counts[index] += 1
            # the highest, not the last: under COALESCE a newer price replaces an older one
            # in its place, so a lagging client may get seq 766 before 765 of another symbol
            newest[index] = max(newest[index], message["seq"])


async def measure_policy(policy: Policy, *, healthy: int = 4, seconds: float = 5.0,
                         rate: float = 1000.0, size: int = 4096, queue_size: int = 16,
                         grace: float = 1.0, sample: float = 0.1) -> BackpressureResult:
    """Run the price server in a child process with ``healthy`` readers and one stalled reader.

    Args:
        policy: the server's queue policy.
        healthy: how many clients read everything.
        seconds: how long the feed runs.
        rate: prices published per second.
        size: bytes per price message.
        queue_size, grace: the fanout's bound and DROP_CLIENT's grace period.
        sample: seconds between two memory samples.

    Returns:
        The measurement.

    Raises:
        TimeoutError: the child did not start, or a client could not connect, in time.
    """
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "course.measure.backpressure", "--serve", Policy(policy).name,
        "--rate", str(rate), "--size", str(size), "--queue-size", str(queue_size),
        "--grace", str(grace), "--wait-clients", str(healthy + 1),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=_ROOT)
    result = BackpressureResult(Policy(policy))
    latencies: list[float] = []
    counts = [0] * healthy
    newest = [0] * healthy
    tasks: list[asyncio.Task] = []
    stalled = None
    try:
        async with asyncio.timeout(10):
            port = int((await child.stdout.readline()).decode())
            url = f"ws://127.0.0.1:{port}/"
            ready = [asyncio.Event() for _ in range(healthy)]
            tasks = [asyncio.create_task(_healthy_client(url, latencies, counts, newest, i, e))
                     for i, e in enumerate(ready)]
            await asyncio.gather(*(e.wait() for e in ready))
            stalled = await stalled_reader("127.0.0.1", port)
            json.loads(await child.stdout.readline())  # the feed started
            stalled_name = "{}:{}".format(*stalled.getsockname()[:2])
        loop = asyncio.get_running_loop()
        start = loop.time()
        while (elapsed := loop.time() - start) < seconds:
            result.rss.append((elapsed, rss_kib(child.pid) / 1024))
            await asyncio.sleep(sample)
        child.stdin.write(f"stats {stalled_name}\n".encode())
        await child.stdin.drain()
        async with asyncio.timeout(10):
            stats = json.loads(await child.stdout.readline())  # the feed stopped
        try:
            async with asyncio.timeout(10):
                while any(seq < stats["published"] and not task.done()
                          for seq, task in zip(newest, tasks)):
                    await asyncio.sleep(0.01)                    # the last price reached everybody
        except TimeoutError:
            raise TimeoutError(f"{policy}: the healthy clients' newest prices are {newest}, "
                               f"{stats['published']} published") from None
        latencies_now = list(latencies)
        result.published = stats["published"]
        result.slow_dropped = stats["dropped"]
        result.slow_queued, result.slow_queued_bytes = stats["queued"], stats["queued_bytes"]
        result.discarded = stats["discarded"]
        result.healthy_received = list(counts)
        result.healthy_dropped = sum(task.done() for task in tasks)
        if latencies_now:
            result.healthy_p50_ms = percentile(latencies_now, 50)
            result.healthy_p99_ms = percentile(latencies_now, 99)
    finally:
        if stalled is not None:
            stalled.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if child.returncode is None:
            child.stdin.close()
            try:
                async with asyncio.timeout(5):
                    await child.wait()
            except TimeoutError:
                child.kill()
                await child.wait()
    return result


async def measure_all(policies: Sequence[Policy] = tuple(Policy), **kwargs) -> list[BackpressureResult]:
    """:func:`measure_policy` for each policy in turn (same arguments)."""
    return [await measure_policy(policy, **kwargs) for policy in policies]


def backpressure_table(results: Sequence[BackpressureResult]) -> str:
    """A plain-text table: one row per policy."""
    head = ("policy", "RSS growth", "stalled client", "healthy got (min)", "p50 ms", "p99 ms")
    rows = [head]
    for r in results:
        got = f"{min(r.healthy_received, default=0)}/{r.published}" + (
            f", {r.healthy_dropped} dropped" if r.healthy_dropped else "")
        rows.append((r.policy.value, f"{r.rss_growth_mib:+.1f} MiB", r.slow_outcome, got,
                     f"{r.healthy_p50_ms:.1f}", f"{r.healthy_p99_ms:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i in (0, 2) else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths))) for row in rows)


def plot_rss(results: Sequence[BackpressureResult], *, title: str | None = None):
    """The server's resident memory over time, one line per policy.

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for r in results:
        ax.plot([t for t, _ in r.rss], [m for _, m in r.rss], label=f"{r.policy.value}: {r.slow_outcome}")
    ax.set_xlabel("seconds since the stalled client stopped reading")
    ax.set_ylabel("server RSS (MiB)")
    ax.set_title(title or "one client stops reading: the server's memory")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


async def _serve(args: argparse.Namespace) -> None:
    """The child process: listen, print the port, wait for the clients, feed; ``stats NAME``
    stops the feed and prints what the server holds for client ``NAME``."""
    server = await PriceServer(Policy[args.serve], queue_size=args.queue_size,
                               grace=args.grace).start()
    print(server.port, flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with asyncio.timeout(10):
        while len(server.fanout) < args.wait_clients:
            await asyncio.sleep(0.01)
    feed = asyncio.create_task(server.run_feed(args.rate, args.size))
    print(json.dumps({"published": server.published}), flush=True)
    try:
        while line := await reader.readline():  # until the parent closes stdin
            command, _, name = line.decode().strip().partition(" ")
            if command == "stats":  # stop the feed, then say what is held for client ``name``
                feed.cancel()
                print(json.dumps(server.stats(name)), flush=True)
    finally:
        feed.cancel()
        server.close()
        await server.wait_closed()


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: measure every policy (or ``--serve POLICY``: be the child)."""
    parser = argparse.ArgumentParser(prog="python -m course.measure.backpressure",
                                     description="one client stops reading: each queue policy")
    parser.add_argument("--serve", choices=[p.name for p in Policy], help=argparse.SUPPRESS)
    parser.add_argument("--wait-clients", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--policy", choices=[p.name for p in Policy], action="append",
                        help="measure only this policy (repeatable)")
    parser.add_argument("--healthy", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="prices per second")
    parser.add_argument("--size", type=int, default=4096, help="bytes per price")
    parser.add_argument("--queue-size", type=int, default=16)
    parser.add_argument("--grace", type=float, default=1.0)
    parser.add_argument("--plot", type=Path, help="save the RSS plot (PNG) here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(args))
        return 0
    policies = [Policy[name] for name in args.policy] if args.policy else list(Policy)
    results = asyncio.run(measure_all(policies, healthy=args.healthy, seconds=args.seconds,
                                      rate=args.rate, size=args.size, queue_size=args.queue_size,
                                      grace=args.grace))
    if args.json:
        print(json.dumps([{**r.__dict__, "policy": r.policy.value, "slow_outcome": r.slow_outcome,
                           "rss_growth_mib": r.rss_growth_mib} for r in results]))
    else:
        print(f"{args.healthy} healthy clients + 1 stalled reader, {args.rate:g} prices/s of "
              f"{args.size} B for {args.seconds:g} s, queue bound {args.queue_size} messages")
        print(backpressure_table(results))
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        plot_rss(results).savefig(args.plot, dpi=90)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
