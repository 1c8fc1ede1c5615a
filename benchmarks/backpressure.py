"""One client stops reading a price feed: the server's memory and the others' latency, per policy.

For each queue policy of :mod:`course.wire.backpressure` (unbounded, drop the client, drop
the oldest, coalesce to the latest price per symbol), :mod:`course.measure.backpressure`
starts the price server in a child process (its RSS is its own, read from
``/proc/PID/status``), connects 4 healthy reading clients and 1 stalled reader (a real
socket with a 4 KiB receive buffer that never reads), publishes 1,000 prices of 4 KiB a
second for 6 s, and prints: the server's RSS growth, what became of the stalled client,
how many prices the healthy clients got, and their p50/p99 delivery latency.

Loopback only; about 30 s.  Usage::

    python benchmarks/backpressure.py
    python benchmarks/backpressure.py --seconds 10 --plot /tmp/rss.png
    python benchmarks/backpressure.py --policy UNBOUNDED --policy DROP_OLDEST --json
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from course.measure.backpressure import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
