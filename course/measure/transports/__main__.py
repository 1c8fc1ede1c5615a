"""``python -m course.measure.transports``: chapter 1's five transports, measured and printed."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time

from course.measure.transports.config import Settings
from course.measure.transports.report import table
from course.measure.transports.trial import measure_all

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """``python -m course.measure.transports [--json] [--duration S] [--seed N] [--sequential]``."""
    parser = argparse.ArgumentParser(prog="python -m course.measure.transports",
                                     description="Chapter 1: five ways to get server events to "
                                                 "a client, measured on real sockets.")
    parser.add_argument("--json", action="store_true", help="print a JSON list, one object per strategy")
    parser.add_argument("--duration", type=float, default=12.0,
                        help="seconds of events (default 12; total run about duration + 4 s)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the event schedule (default 1)")
    parser.add_argument("--sequential", action="store_true",
                        help="one strategy after the other (5x slower, no interference)")
    args = parser.parse_args(argv)
    if not (math.isfinite(args.duration) and 0 < args.duration <= 120):
        parser.error(f"--duration must be within (0, 120] seconds, got {args.duration}")
    start = time.perf_counter()
    results = asyncio.run(measure_all(args.duration, args.seed, concurrent=not args.sequential))
    wall = time.perf_counter() - start
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        settings = Settings()
        mode = "one after the other" if args.sequential else "all at once on one source"
        print(f"{len(results)} strategies, {mode}: events for {args.duration:g} s, "
              f"seed {args.seed}, mean {settings.mean_interval * 1000:.0f} ms between events")
        print(table(results))
        print(f"bytes are counted at the TCP level, both ways, headers included; wall time {wall:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
