"""The reconnect storm, for real and simulated: 1,000 clients come back after a restart.

For each jitter (none, equal, full), :func:`course.measure.storm.real_storm` connects
``--clients`` real ``websockets`` clients to a server on 127.0.0.1, restarts it on the
same port with an accept bucket (``--rate`` per second, ``--burst`` at once; the rest get
503), and counts every reconnection attempt; :func:`course.measure.storm.simulate_storm`
runs the same storm as a seeded simulation.  Printed: attempts, refusals, the peak of
attempts per 100 ms and the time until everybody was back, real beside simulated.

Loopback only; bounded (each real storm by ``--timeout`` seconds; about 30 s in all with
the defaults).  Usage::

    python benchmarks/storm.py                       # 1,000 clients, Socket.IO's delays (1 s .. 5 s)
    python benchmarks/storm.py --clients 200 --json
    python benchmarks/storm.py --plot /tmp/storm.png # the real storms' plot
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from course.measure.storm import plot_storm, real_storm, simulate_storm, storm_table  # noqa: E402
from course.wire.backoff import Jitter  # noqa: E402


async def run(args: argparse.Namespace) -> tuple[list, list]:
    settings = dict(clients=args.clients, rate=args.rate, burst=args.burst, base=args.base,
                    cap=args.cap, seed=args.seed)
    real = []
    for jitter in Jitter:
        real.append(await real_storm(jitter=jitter, timeout=args.timeout, **settings))
    simulated = [simulate_storm(jitter=jitter, **settings) for jitter in Jitter]
    return real, simulated


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=500.0, help="accepts per second")
    parser.add_argument("--burst", type=int, default=200, help="accepts at once")
    parser.add_argument("--base", type=float, default=1.0, help="first delay, seconds")
    parser.add_argument("--cap", type=float, default=5.0, help="longest delay, seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0, help="bound per real storm")
    parser.add_argument("--plot", type=Path, help="save the real storms' plot (PNG) here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    real, simulated = asyncio.run(run(args))
    if args.json:
        print(json.dumps({kind: [{**asdict(r), "jitter": r.jitter.value} for r in results]
                          for kind, results in (("real", real), ("simulated", simulated))}))
    else:
        print(f"{args.clients} clients, server accepts {args.rate:g}/s (burst {args.burst}), "
              f"backoff {args.base:g} s doubling to {args.cap:g} s")
        print("\nreal (websockets on 127.0.0.1)")
        print(storm_table(real))
        print("\nsimulated (course.measure.storm.simulate_storm)")
        print(storm_table(simulated))
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        plot_storm(real, rate=args.rate, title=f"{args.clients} real clients reconnecting "
                   f"(server takes {args.rate:g}/s)").savefig(args.plot, dpi=90)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
