"""Push latency, server task -> feed widget, outside Jupyter (chapter 3).

The same code path as ``notebooks/03_live_in_the_notebook.ipynb``: a
``course.live.PushServer`` on 127.0.0.1 pushes seeded events stamped with
``sent_ns``; a client task (``course.live.read_messages``) appends each one to a
``course.ui.widgets.LiveFeed`` and records ``perf_counter_ns() - sent_ns`` right
after the append.  Outside a kernel the widget has no front end to talk to, so
this measures the socket + decoding + widget-model update, not the browser's drawing.

Usage::

    python benchmarks/push_latency.py                  # 2000 pushes, 2 ms apart
    python benchmarks/push_latency.py --messages 500 --interval 0.01 --json

Prints p50 / p95 / p99 / max in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from course.demo.feeds import demo_events, format_event
from course.measure.stats import LatencyRecorder
from course.net.handlers import PushServer, read_messages
from course.net.lifecycle import shutdown, url_of
from course.ui.widgets import LiveFeed


async def measure(messages: int, interval: float, seed: int = 0) -> LatencyRecorder:
    """Push ``messages`` events ``interval`` s apart and time each one to the feed.

    Raises:
        TimeoutError: the pushes did not all arrive in time.
    """
    events = demo_events(messages, seed=seed)
    push = PushServer(events, interval=interval)
    feed = LiveFeed("benchmark", max_lines=20)
    latency = LatencyRecorder()

    def on_push(message: dict) -> None:
        feed.append(format_event(message))
        latency.record(message)

    server = await serve(push.handler, "127.0.0.1", 0)
    client = await connect(url_of(server))
    reader = asyncio.create_task(read_messages(client, on_push))
    try:
        async with asyncio.timeout(30 + messages * interval * 3):
            while feed.received < messages:
                await asyncio.sleep(0.01)
    finally:
        await shutdown(tasks=[reader], clients=[client], servers=[server])
    return latency


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="pushes to time (default 2000)")
    parser.add_argument("--interval", type=float, default=0.002,
                        help="seconds between two pushes (default 0.002)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.interval < 0:
        parser.error("--messages must be >= 1 and --interval >= 0")
    latency = asyncio.run(measure(args.messages, args.interval))
    result = {
        "messages": len(latency.samples_ms),
        "interval_s": args.interval,
        "p50_ms": round(latency.p(50), 3),
        "p95_ms": round(latency.p(95), 3),
        "p99_ms": round(latency.p(99), 3),
        "max_ms": round(max(latency.samples_ms), 3),
        "python": platform.python_version(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"push latency, server send() -> LiveFeed.append(), {result['messages']} pushes "
              f"{args.interval * 1000:g} ms apart (Python {result['python']}):")
        print(f"  p50 {result['p50_ms']:.3f} ms   p95 {result['p95_ms']:.3f} ms   "
              f"p99 {result['p99_ms']:.3f} ms   max {result['max_ms']:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
