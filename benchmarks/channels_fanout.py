"""Fan-out: messages per second delivered to N clients in one room, channel server vs hub.

Loopback only, bounded in count and time.  Two servers, measured in the same run:

* ``channels``: chapter 5's :class:`course.net.channels.ChannelServer` (aiohttp), Phoenix
  V2 JSON at ``/socket/websocket``: every client joins ``room:bench``; one of them pushes
  ``new_msg`` and the room broadcasts each message (id, name, body) to every member, the
  sender included, plus a ``phx_reply`` to the sender;
* ``hub``: chapter 3's :class:`course.net.hub.Hub` behind :func:`course.net.hub.serve_hub`
  (``websockets``, the Gorilla-style hub): one client sends envelope messages and the hub
  relays each to every client, the sender included.

The clients are raw ``websockets`` connections in the same process and event loop as the
server (so the figure is what one Python process does for both ends; a server alone
does more).  The sender keeps at most ``--window`` messages ahead of its own echo, so
that no healthy client's queue stays full (the slow-client rule would drop it); both
servers get the same ``queue_size``.  Timing starts at the first send and stops when every
client has received every message; deliveries = clients × messages.  Any client dropped
is reported (there should be none).

Usage::

    python benchmarks/channels_fanout.py                     # 100 clients, 500 messages each
    python benchmarks/channels_fanout.py --clients 50 --messages 500 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from course.net.channels import ChannelServer  # noqa: E402
from course.net.hub import Hub, serve_hub  # noqa: E402

ROOM = "room:bench"


@dataclass
class Result:
    server: str
    clients: int
    messages: int
    seconds: float
    deliveries_per_second: float
    dropped: int


async def measure(name: str, url: str, clients: int, messages: int, window: int,
                  join: Callable[[websockets.ClientConnection, int], Awaitable[None]],
                  frame: Callable[[int], str], is_message: Callable[[str], bool],
                  dropped: Callable[[], int], timeout: float) -> Result:
    """Connect ``clients``, let client 0 send ``messages``; time until all have them all."""
    connections = []
    for i in range(clients):
        ws = await websockets.connect(url, open_timeout=5, ping_interval=None, max_queue=None)
        await join(ws, i)
        connections.append(ws)
    got = [0] * clients
    done = [asyncio.Event() for _ in range(clients)]
    room = asyncio.Semaphore(window)

    async def read(i: int, ws) -> None:
        async for text in ws:
            if is_message(text):
                got[i] += 1
                if i == 0:
                    room.release()
                if got[i] == messages:
                    done[i].set()
                    return

    readers = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(connections)]
    try:
        async with asyncio.timeout(timeout):
            started = time.perf_counter()
            for n in range(messages):
                await room.acquire()
                await connections[0].send(frame(n))
            for event in done:
                await event.wait()
            seconds = time.perf_counter() - started
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await asyncio.gather(*(ws.close() for ws in connections), return_exceptions=True)
    return Result(name, clients, messages, round(seconds, 3), round(clients * messages / seconds), dropped())


async def channels(clients: int, messages: int, window: int, queue_size: int, timeout: float) -> Result:
    async with await ChannelServer(queue_size=queue_size, action_cable=False, socket_io=False).start() as server:
        async def join(ws, i: int) -> None:
            await ws.send(json.dumps(["1", "1", ROOM, "phx_join", {"name": f"c{i}"}]))
            async with asyncio.timeout(5):
                while '"phx_reply"' not in (text := await ws.recv()) or json.loads(text)[1] != "1":
                    pass

        return await measure(
            "channels (Phoenix V2, aiohttp)", f"{server.url}?vsn=2.0.0", clients, messages, window, join,
            lambda n: json.dumps(["1", str(n + 2), ROOM, "new_msg", {"body": f"message {n}"}]),
            lambda text: '"new_msg"' in text,  # the broadcasts; the replies are phx_reply
            lambda: len(server.fanout.dropped), timeout)


async def hub(clients: int, messages: int, window: int, queue_size: int, timeout: float) -> Result:
    the_hub = Hub(queue_size)
    async with await serve_hub(the_hub, ping_interval=None, ping_timeout=None) as server:
        async def join(ws, i: int) -> None:
            pass

        return await measure(
            "hub (chapter 3, websockets)", server.url, clients, messages, window, join,
            lambda n: json.dumps({"type": "chat", "text": f"message {n}"}),
            lambda text: '"chat"' in text,
            lambda: len(the_hub.dropped), timeout)


def table(results: list[Result]) -> str:
    rows = [("server", "clients", "messages", "seconds", "deliveries/s", "dropped")]
    rows += [(r.server, str(r.clients), str(r.messages), f"{r.seconds:.2f}", f"{r.deliveries_per_second:,}",
              str(r.dropped)) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=100, help="clients in the room (default 100)")
    parser.add_argument("--messages", type=int, default=500, help="messages sent (default 500)")
    parser.add_argument("--window", type=int, default=8, help="messages the sender may be ahead (default 8)")
    parser.add_argument("--queue-size", type=int, default=64, help="per-client queue of both servers (default 64)")
    parser.add_argument("--timeout", type=float, default=30.0, help="bound on each measurement, seconds")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)

    async def both() -> list[Result]:
        return [await channels(args.clients, args.messages, args.window, args.queue_size, args.timeout),
                await hub(args.clients, args.messages, args.window, args.queue_size, args.timeout)]

    results = asyncio.run(both())
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print(f"fan-out to {args.clients} clients in one room, loopback, clients and server in one process "
              f"(sender window {args.window}, queue_size {args.queue_size})")
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
