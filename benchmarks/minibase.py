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
3. **Contention** (``--contention``): ``--clients`` clients each run ``--each`` transactions
   ``n + 1`` on one counter at once, then the same with plain read-then-write; prints the
   final counts, how many transactions gave up after 25 retries (``maxretry``), and the
   retries in all; then ``{".sv": {"increment": 1}}`` writes (the server adds).
4. **SQLite alone**: ``Store.write`` in a loop, no network (the ceiling the server can reach
   with one commit per write).

Each part runs with ``synchronous=FULL`` (the WAL is synced at every commit: an ack means
on disk, even if the machine loses power) and ``NORMAL`` (synced at checkpoints only: an
ack survives the process crashing, not a power loss).

Usage::

    python benchmarks/minibase.py                      # ~20 s
    python benchmarks/minibase.py --writes 300 --json
    python benchmarks/minibase.py --contention --clients 50 --each 10

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


async def contention(url: str, clients: int, each: int) -> dict:
    """``clients`` x ``each`` transactions on one counter, then read-then-write."""
    dbs = [await DbClient.connect(url) for _ in range(clients)]

    async def transactions(db: DbClient) -> list:
        return [await db.transaction("bench/tx", lambda n: (n or 0) + 1) for _ in range(each)]

    async def read_then_write(db: DbClient) -> None:
        for _ in range(each):
            n = await db.get("bench/naive")
            await db.set("bench/naive", (n or 0) + 1)

    start = time.perf_counter()
    async with asyncio.timeout(300):
        results = [r for rs in await asyncio.gather(*(transactions(db) for db in dbs)) for r in rs]
        elapsed = time.perf_counter() - start
        await asyncio.gather(*(read_then_write(db) for db in dbs))
        await asyncio.gather(*(db.set("bench/sv", {".sv": {"increment": 1}}) for db in dbs for _ in range(each)))
        counts = await dbs[0].get("bench")
    for db in dbs:
        await db.close()
    return {"expected": clients * each, "transactions": counts["tx"], "read_then_write": counts["naive"],
            "server_increment": counts["sv"],
            "committed": sum(r.committed for r in results),
            "maxretry": sum(r.status == "maxretry" for r in results),
            "retries": sum(r.retries for r in results), "max_retries_one": max(r.retries for r in results),
            "seconds": elapsed}


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
    parser.add_argument("--contention", action="store_true", help="only the counter under contention")
    parser.add_argument("--each", type=int, default=10, help="transactions per client (--contention, default 10)")
    args = parser.parse_args(argv)
    if args.contention:
        if not (1 <= args.clients <= 200 and 1 <= args.each <= 200):
            parser.error("--clients 1..200, --each 1..200")
        with tempfile.TemporaryDirectory() as folder:
            process, url = start_server(Path(folder) / "c.sqlite", "FULL")
            try:
                result = asyncio.run(contention(url, args.clients, args.each))
            finally:
                process.terminate()
                process.wait(10)
        print(json.dumps(result, indent=2) if args.json else
              f"{args.clients} clients x {args.each}: transactions reached {result['transactions']} "
              f"of {result['expected']} ({result['committed']} committed, {result['maxretry']} gave up "
              f"after 25 retries; {result['retries']} retries in all, at most {result['max_retries_one']} "
              f"for one; {result['seconds']:.2f} s); read-then-write reached {result['read_then_write']}; "
              f"server-value increments reached {result['server_increment']}")
        return 0
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
