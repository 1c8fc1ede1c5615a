"""How long a blackholed peer goes unnoticed: WebSocket ping/pong and the channel heartbeat.

Loopback only, bounded in count and time.  The fault relay blackholes an idle connection
(both TCP legs stay open, bytes go nowhere, no FIN), at a seeded random moment of the
heartbeat cycle (``--trials`` per setting, run side by side).  Measured, from the cut to
the moment each end gives the connection up (``course.measure.dead_peer``):

* ``websockets`` keepalive, ``ping_interval`` = I, ``ping_timeout`` = T, both ends
  (each sends 1011 "keepalive ping timeout");
* the Phoenix channel heartbeat: the client (``ChannelClient``) beats every I and gives
  up after T without a reply; the server (``ChannelServer``, ``heartbeat_timeout`` = I + T)
  closes a connection silent that long (1000 "heartbeat timeout").

The bound is I + T (the next heartbeat leaves within I, its answer is awaited T); the
mean, for a cut at a random moment, is about I/2 + T.  Without heartbeats nobody notices
(``--idle`` seconds are waited to show it).

Usage::

    python benchmarks/dead_peer.py                       # 0.2+0.2, 0.5+0.5, 1+1 s
    python benchmarks/dead_peer.py --settings 0.1 2 --trials 8
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from course.measure.dead_peer import channels_blackhole, websockets_blackhole  # noqa: E402


async def measure(settings: list[float], trials: int, seed: int, idle: float) -> None:
    rng = random.Random(seed)
    print(f"without heartbeats, after {idle:g} s:")
    for name, probe in (("websockets", websockets_blackhole), ("channels", channels_blackhole)):
        ends = await probe(None, None, wait=idle)
        print(f"  {name:10}  " + ", ".join(f"{e.side}: {e.reason}" for e in ends))
    print()
    header = (f"{'heartbeat I+T':>14}  {'what':<29} {'bound I+T':>9}  {'min':>6}  {'mean':>6}  "
              f"{'max':>6}  {'detected':>8}  close sent")
    print(header)
    print("-" * len(header))
    for interval in settings:
        phases = [rng.uniform(0, interval) for _ in range(trials)]
        for name, probe in (("websockets ping/pong", websockets_blackhole),
                            ("channel heartbeat", channels_blackhole)):
            runs = await asyncio.gather(*(probe(interval, interval, settle=phase,
                                                wait=4 * interval + 1) for phase in phases))
            for index, side in enumerate(("client", "server")):
                ends = [r[index] for r in runs]
                times = [e.seconds for e in ends if e.seconds is not None]
                codes = sorted({f"{e.code} {e.reason}" if e.code else e.reason for e in ends})
                stats = (f"{min(times):6.2f}  {statistics.mean(times):6.2f}  {max(times):6.2f}"
                         if times else f"{'-':>6}  {'-':>6}  {'-':>6}")
                print(f"{f'{interval:g}+{interval:g} s':>14}  {f'{name}, {side}':<29} "
                      f"{2 * interval:9.2f}  {stats}  {len(times):>4}/{len(ends):<3}  {'; '.join(codes)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", type=float, nargs="+", default=[0.2, 0.5, 1.0],
                        help="heartbeat intervals I (the timeout T = I), seconds")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--idle", type=float, default=3.0,
                        help="seconds to wait without heartbeats (default 3)")
    args = parser.parse_args()
    asyncio.run(measure(args.settings, args.trials, args.seed, args.idle))
