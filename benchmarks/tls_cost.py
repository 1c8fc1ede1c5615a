"""What ``wss://`` costs on loopback: handshake time and echo round trips, ws vs wss.

Loopback only, bounded in count.  One ``websockets`` echo server
(:func:`course.net.handlers.echo_handler`) listens twice, plain and with a certificate
from a local CA (:mod:`course.net.tls`, made by trustme).  The client, in the same process
and event loop, measures:

* ``connect``: ``--connections`` sequential connections, each from TCP connect to the
  end of the WebSocket handshake (TLS handshake included for wss), then closed;
* ``echo``: on one connection, ``--messages`` sequential round trips of ``--size`` bytes.

It prints p50 and p95 of each (nearest rank) and the ratio wss/ws.  Both ends share one
Python process, so the figures say what TLS adds here, not what a server alone does.

Usage::

    python benchmarks/tls_cost.py                          # 200 connections, 2000 round trips
    python benchmarks/tls_cost.py --connections 100 --messages 1000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from course.measure.stats import percentile  # noqa: E402
from course.net.handlers import echo_handler  # noqa: E402
from course.net.tls import client_context, local_ca, server_context  # noqa: E402


async def measure(url: str, ssl_context, connections: int, messages: int, size: int) -> dict:
    connects = []
    for _ in range(connections):
        start = time.perf_counter()
        async with connect(url, ssl=ssl_context, compression=None):
            connects.append(time.perf_counter() - start)
    rtts = []
    payload = "x" * size
    async with connect(url, ssl=ssl_context, compression=None) as ws:
        for _ in range(messages):
            start = time.perf_counter()
            await ws.send(payload)
            await ws.recv()
            rtts.append(time.perf_counter() - start)
    return {"connect_p50_ms": percentile(connects, 50) * 1e3, "connect_p95_ms": percentile(connects, 95) * 1e3,
            "echo_p50_us": percentile(rtts, 50) * 1e6, "echo_p95_us": percentile(rtts, 95) * 1e6}


async def main(connections: int, messages: int, size: int) -> dict:
    ca = local_ca()
    async with serve(echo_handler, "127.0.0.1", 0, compression=None) as plain, \
            serve(echo_handler, "127.0.0.1", 0, compression=None, ssl=server_context(ca)) as secure:
        ports = [s.sockets[0].getsockname()[1] for s in (plain, secure)]
        async with asyncio.timeout(300):
            ws = await measure(f"ws://127.0.0.1:{ports[0]}/", None, connections, messages, size)
            wss = await measure(f"wss://127.0.0.1:{ports[1]}/", client_context(ca), connections, messages, size)
    return {"ws": ws, "wss": wss, "connections": connections, "messages": messages, "size": size}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=100, help="bytes per message")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(main(args.connections, args.messages, args.size))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.connections} connections, {args.messages} round trips of {args.size} bytes, loopback")
        for key, unit in (("connect_p50_ms", "ms"), ("connect_p95_ms", "ms"),
                          ("echo_p50_us", "µs"), ("echo_p95_us", "µs")):
            ws, wss = result["ws"][key], result["wss"][key]
            print(f"{key:15} ws {ws:8.2f} {unit}   wss {wss:8.2f} {unit}   ×{wss / ws:.1f}")
