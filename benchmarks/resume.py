"""Resume through forced disconnects: ours against python-socketio, same relay, same cuts.

Loopback only, bounded in count and time.  One workload (``course.measure.resume``):
``ada`` sends ``--messages`` messages in bursts; every message comes back to ``ada`` and
``bob``; the fault relay applies ``--cuts`` cuts of every kind (clean, abrupt,
blackholed) from a seeded plan (``--seed``), at the same marks for both systems.

* **ours**: the channel server with resume (``TopicLog`` replay, ``Deduplicator``) and two
  ``ResumingClient`` (heartbeat ``--heartbeat`` s, outbox re-sent after every rejoin);
* **python-socketio** (the version in requirements.txt), default delivery, heartbeat
  shortened to ``--heartbeat`` (its default, 25 + 20 s, would leave a blackhole unnoticed
  for 45 s): once with its default reconnection delay (1 s, up to 5 s, ±0.5 s jitter)
  and once with ``--fast-reconnect`` s.

Both directions are counted: *up* (what the server received of ada's messages) and
*down* (what both clients delivered of what the server sent).

Usage::

    python benchmarks/resume.py                                   # 10,000 messages, 20 cuts
    python benchmarks/resume.py --messages 2000 --cuts 6 --seed 3
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from course.measure.resume import run_channels, run_socketio, table  # noqa: E402


async def main(args: argparse.Namespace) -> int:
    common = dict(messages=args.messages, cuts=args.cuts, seed=args.seed, burst=args.burst,
                  pause=args.pause)
    reports = [await run_channels(heartbeat=args.heartbeat, **common)]
    reports.append(await run_socketio(ping=args.heartbeat, **common))
    fast = await run_socketio(ping=args.heartbeat, reconnection_delay=args.fast_reconnect, **common)
    fast.system += f" (reconnect {args.fast_reconnect} s)"
    reports.append(fast)
    print(f"{args.messages} messages, {args.cuts} cuts, seed {args.seed}, bursts of {args.burst} "
          f"every {args.pause} s")
    print(table(reports))
    return 0 if reports[0].exact else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--cuts", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--burst", type=int, default=20, help="messages per burst (default 20)")
    parser.add_argument("--pause", type=float, default=0.02, help="seconds between bursts (default 0.02)")
    parser.add_argument("--heartbeat", type=float, default=0.1,
                        help="heartbeat interval and timeout, both systems (default 0.1 s)")
    parser.add_argument("--fast-reconnect", type=float, default=0.05,
                        help="python-socketio's reconnection delay in the second run (default 0.05 s)")
    sys.exit(asyncio.run(main(parser.parse_args())))
