"""Benchmark: course.net.rawserver (pure Python, from scratch) against the websockets library's echo server.

Both servers run as separate processes; the same client (the websockets library's asyncio
client, compression off) measures, for each message size:

- throughput: binary messages per second echoed with up to WINDOW messages in flight;
- latency: round-trip time of one message at a time (p50, p95).

Servers are measured in turn, size by size, for several rounds in the same run, so that
machine noise hits both; throughput is the median of the rounds.

Usage::

    python benchmarks/rawserver_vs_websockets.py            # a table
    python benchmarks/rawserver_vs_websockets.py --json     # machine-readable
    python benchmarks/rawserver_vs_websockets.py --sizes 16,1024 --seconds 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from course.measure.stats import percentile

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 32  # messages in flight during the throughput test


async def _serve_websockets(host: str) -> None:
    """Run the websockets library's echo server until SIGTERM (child process mode)."""
    from websockets.asyncio.server import serve

    from course.net.handlers import echo_handler

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(echo_handler, host, 0, max_size=None, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on ws://{host}:{port}", flush=True)
        await stop.wait()


def start(kind: str) -> tuple[subprocess.Popen, str]:
    """Start one echo server process; return it and its ws:// URL."""
    if kind == "rawserver":
        cmd = [sys.executable, "-m", "course.net.rawserver", "--host", "127.0.0.1", "--port", "0"]
    else:
        cmd = [sys.executable, __file__, "--serve-websockets"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if not line.startswith("listening on ws://"):
        process.kill()
        raise RuntimeError(f"{kind} did not start: {line!r}")
    return process, line.split()[-1]


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def measure(url: str, size: int, seconds: float) -> dict:
    """Measure throughput and latency of one server for one message size."""
    from websockets.asyncio.client import connect

    payload = os.urandom(size)
    async with connect(url, max_size=None, compression=None) as ws:
        for _ in range(10):  # warm-up
            await ws.send(payload)
            await ws.recv()

        # Latency: one message at a time.
        rtts = []
        deadline = time.perf_counter() + seconds / 2
        while time.perf_counter() < deadline and len(rtts) < 5000:
            t0 = time.perf_counter()
            await ws.send(payload)
            echo = await ws.recv()
            rtts.append(time.perf_counter() - t0)
        assert echo == payload

        # Throughput: up to WINDOW messages in flight.
        slots = asyncio.Semaphore(WINDOW)
        sent = received = 0
        done_sending = asyncio.Event()

        async def sender(until: float) -> None:
            nonlocal sent
            while time.perf_counter() < until:
                await slots.acquire()
                await ws.send(payload)
                sent += 1
            done_sending.set()

        t0 = time.perf_counter()
        task = asyncio.create_task(sender(t0 + seconds / 2))
        while not (done_sending.is_set() and received == sent):
            await ws.recv()
            received += 1
            slots.release()
        elapsed = time.perf_counter() - t0
        await task

    return {
        "msgs_per_s": received / elapsed,
        "mib_per_s": received * size / elapsed / 2**20,
        "rtts": rtts,
        "throughput_messages": received,
    }


def combine(rounds: list[dict]) -> dict:
    """Median of the rounds' throughputs; latency percentiles over all round trips pooled."""
    rtts = sorted(t for r in rounds for t in r.pop("rtts"))
    return {
        "msgs_per_s": statistics.median(r["msgs_per_s"] for r in rounds),
        "mib_per_s": statistics.median(r["mib_per_s"] for r in rounds),
        "p50_ms": statistics.median(rtts) * 1000,
        "p95_ms": percentile(rtts, 95) * 1000,
        "round_trips": len(rtts),
        "throughput_messages": sum(r["throughput_messages"] for r in rounds),
        "rounds": len(rounds),
    }


async def run(sizes: list[int], seconds: float, rounds: int) -> dict:
    """Measure every size on both servers, alternating servers round after round."""
    servers = {kind: start(kind) for kind in ("rawserver", "websockets")}
    try:
        raw: dict = {kind: {size: [] for size in sizes} for kind in servers}
        for _ in range(rounds):
            for size in sizes:
                for kind, (_, url) in servers.items():
                    async with asyncio.timeout(seconds * 4 + 20):
                        raw[kind][size].append(await measure(url, size, seconds))
    finally:
        for process, _ in servers.values():
            stop(process)
    return {kind: {size: combine(r) for size, r in by_size.items()} for kind, by_size in raw.items()}


def human(size: int) -> str:
    for unit, factor in (("MiB", 2**20), ("KiB", 2**10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} B"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16,1024,65536", help="message sizes in bytes")
    parser.add_argument("--seconds", type=float, default=1.5,
                        help="per server, size and round (half latency, half throughput)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds alternating the servers (throughput: median of rounds)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--serve-websockets", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_websockets:
        asyncio.run(_serve_websockets("127.0.0.1"))
        return 0

    sizes = [int(s) for s in args.sizes.split(",")]
    started = time.perf_counter()
    results = asyncio.run(run(sizes, args.seconds, args.rounds))
    ratios = {
        size: {
            "throughput": results["rawserver"][size]["msgs_per_s"]
            / results["websockets"][size]["msgs_per_s"],
            "p50_latency": results["rawserver"][size]["p50_ms"]
            / results["websockets"][size]["p50_ms"],
        }
        for size in sizes
    }
    if args.json:
        print(json.dumps({
            "python": platform.python_version(), "cpus": os.cpu_count(),
            "seconds_per_measure": args.seconds, "rounds": args.rounds, "window": WINDOW,
            "results": {k: {str(s): v for s, v in r.items()} for k, r in results.items()},
            "ratio_rawserver_over_websockets": {str(s): v for s, v in ratios.items()},
            "wall_s": time.perf_counter() - started,
        }, indent=2))
        return 0
    print(f"{'size':>8}  {'server':<10}  {'msgs/s':>9}  {'MiB/s':>7}  {'p50 ms':>7}  {'p95 ms':>7}")
    for size in sizes:
        for kind in ("rawserver", "websockets"):
            r = results[kind][size]
            print(f"{human(size):>8}  {kind:<10}  {r['msgs_per_s']:>9.0f}  {r['mib_per_s']:>7.1f}  "
                  f"{r['p50_ms']:>7.3f}  {r['p95_ms']:>7.3f}")
    print()
    print("rawserver / websockets:")
    for size in sizes:
        print(f"{human(size):>8}  throughput x{ratios[size]['throughput']:.2f}  "
              f"p50 latency x{ratios[size]['p50_latency']:.2f}")
    print(f"\n({os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
