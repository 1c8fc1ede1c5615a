"""Chapter 8's realtime database: write-to-listener latency, and durable writes per second.

The server runs in its own process (``python -m course.net.minibase``) on a temporary
SQLite file, so the clients' event loop does not share its time with the server's.

1. **Latency**: client A sets ``bench/ping`` to ``{"sent_ns": perf_counter_ns()}``; client B
   listens there and records ``perf_counter_ns() - sent_ns`` when its ``value`` event fires
   (both clients in this process, one clock).  One write at a time: the next write starts
   when B has seen the previous one.  Each write is committed to SQLite before the server
   pushes it, so the latency includes one commit.
2. **Writes per second, acknowledged**: ``--clients`` clients each send writes and wait for
   the server's ``ok`` (= committed) before the next one; the count of acknowledged writes
   divided by the elapsed time.  Then the same writes with ``--pipeline`` writes in flight
   per client.
3. **SQLite alone**: ``Store.write`` in a loop, no network (the ceiling the server can reach
   with one commit per write).

Each part runs with ``synchronous=FULL`` (the WAL is synced at every commit: an ack means
on disk, even if the machine loses power) and ``NORMAL`` (synced at checkpoints only: an
ack survives the process crashing, not a power loss).

Usage::

    python benchmarks/minibase.py                      # ~20 s
    python benchmarks/minibase.py --writes 300 --json

Numbers depend on the disk (fsync) far more than on the CPU: quote the machine with them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from course.measure.stats import percentile
from course.net.dbclient import DbClient
from course.net.minibase import Store
from course.wire.dbevents import Kind

ROOT = Path(__file__).resolve().parent.parent


def start_server(database: Path, synchronous: str) -> tuple[subprocess.Popen, str]:
    """Start the server in a process; return it and its WebSocket URL."""
    process = subprocess.Popen([sys.executable, "-m", "course.net.minibase", "--port", "0", "--db",
                                str(database), "--synchronous", synchronous],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = process.stdout.readline()
    match = re.search(r"ws://\S+", line)
    if not match:
        process.kill()
        raise RuntimeError(f"the server did not start: {line!r}")
    return process, match.group()


async def latency(url: str, writes: int) -> list[float]:
    """Milliseconds from A's set to B's value event, one write at a time."""
    a, b = await DbClient.connect(url), await DbClient.connect(url)
    samples: list[float] = []
    seen = asyncio.Event()

    def on_event(event) -> None:
        if event.kind is Kind.VALUE and isinstance(event.value, dict):
            samples.append((time.perf_counter_ns() - event.value["sent_ns"]) / 1e6)
            seen.set()

    listener = b.listen("bench/ping", on_event)
    await listener.ready.wait()
    async with asyncio.timeout(60):
        for _ in range(writes):
            seen.clear()
            a.set("bench/ping", {"sent_ns": time.perf_counter_ns()})
            await seen.wait()
    await a.close()
    await b.close()
    return samples


async def acknowledged(url: str, clients: int, writes: int, pipeline: int) -> float:
    """Acknowledged writes per second: ``clients`` x ``writes``, ``pipeline`` in flight each."""
    dbs = [await DbClient.connect(url) for _ in range(clients)]

    async def one(i: int, db: DbClient) -> None:
        in_flight: list = []
        for n in range(writes):
            in_flight.append(db.set(f"bench/w/{i}/{n % 50}", {"n": n, "text": "x" * 40}))
            if len(in_flight) >= pipeline:
                await in_flight.pop(0)
        await asyncio.gather(*in_flight)

    start = time.perf_counter()
    async with asyncio.timeout(120):
        await asyncio.gather(*(one(i, db) for i, db in enumerate(dbs)))
    elapsed = time.perf_counter() - start
    for db in dbs:
        await db.close()
    return clients * writes / elapsed


def sqlite_alone(database: Path, synchronous: str, writes: int) -> float:
    """``Store.write`` per second, one commit per write, no network."""
    store = Store(database, synchronous=synchronous)
    start = time.perf_counter()
    for n in range(writes):
        store.write([(("bench", "alone", str(n % 50)), {"n": n, "text": "x" * 40})])
    elapsed = time.perf_counter() - start
    store.close()
    return writes / elapsed


def measure(writes: int, clients: int, pipeline: int) -> dict:
    results = {"machine": platform.platform(), "python": platform.python_version(), "writes": writes,
               "clients": clients, "pipeline": pipeline}
    with tempfile.TemporaryDirectory() as folder:
        for synchronous in ("FULL", "NORMAL"):
            database = Path(folder) / f"{synchronous}.sqlite"
            process, url = start_server(database, synchronous)
            try:
                samples = asyncio.run(latency(url, writes))
                sequential = asyncio.run(acknowledged(url, clients, writes // clients or 1, 1))
                pipelined = asyncio.run(acknowledged(url, clients, writes // clients or 1, pipeline))
            finally:
                process.terminate()
                process.wait(10)
            results[synchronous] = {
                "latency_ms": {"p50": percentile(samples, 50), "p99": percentile(samples, 99),
                               "max": max(samples)},
                "acked_writes_per_s": {"one_at_a_time": sequential, "pipelined": pipelined},
                "sqlite_alone_writes_per_s": sqlite_alone(Path(folder) / f"alone-{synchronous}.sqlite",
                                                          synchronous, writes),
            }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=500, help="writes per measurement (default 500)")
    parser.add_argument("--clients", type=int, default=4, help="writing clients (default 4)")
    parser.add_argument("--pipeline", type=int, default=16, help="writes in flight per client (default 16)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    if not (1 <= args.writes <= 20000 and 1 <= args.clients <= 50 and 1 <= args.pipeline <= 256):
        parser.error("--writes 1..20000, --clients 1..50, --pipeline 1..256")
    results = measure(args.writes, args.clients, args.pipeline)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{results['machine']}, Python {results['python']}; {args.writes} writes per measurement")
    for synchronous in ("FULL", "NORMAL"):
        r = results[synchronous]
        lat, acked = r["latency_ms"], r["acked_writes_per_s"]
        print(f"synchronous={synchronous:6} write->listener p50 {lat['p50']:.2f} ms  p99 {lat['p99']:.2f} ms"
              f"  max {lat['max']:.2f} ms | acked writes/s: {acked['one_at_a_time']:.0f} "
              f"({args.clients} clients, 1 in flight), {acked['pipelined']:.0f} ({args.pipeline} in flight)"
              f" | SQLite alone {r['sqlite_alone_writes_per_s']:.0f}/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
