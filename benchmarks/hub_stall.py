"""One client stops reading, or one client bursts: what the others see (hub and chat).

Loopback only, bounded in count and time.  Two servers are measured, each with the code
of this tree or of a git revision (``--rev``, e.g. the commit before the fix):

* ``hub``: ``course.net.hub.Hub`` (``websockets``) with ``queue_size=8`` as in notebook 03;
* ``chat``: ``course.net.chat`` (``aiohttp``) with its defaults.

Scenarios:

* **stall**: three healthy clients (client 0 sends as fast as its own echo comes back,
  at most ``WINDOW`` messages ahead: a sender the healthy readers keep up with) and one
  stalled reader (a real socket with a tiny receive window that completes the handshake,
  then never reads) for ``--seconds``.  Reported: the longest and the p95 gap between two
  deliveries to a healthy client (a client still waiting at the end counts the wait),
  how many messages the healthy clients got out of those sent, whether the stalled client
  was dropped, and how long stopping the server took with it still connected.
* **burst**: client 0 of three sends N small messages back to back; the largest N (of
  ``--bursts``) delivered to everybody with nobody dropped.
* **idle**: ``--idle`` clients that never read, beside one that sends a burst of 12.

Usage::

    python benchmarks/hub_stall.py                       # this tree's code
    python benchmarks/hub_stall.py --rev 7cec617         # the code of a revision
    python benchmarks/hub_stall.py --seconds 4 --idle 100 --json
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from course.net.fanout import stalled_reader
from course.measure.stats import percentile

ROOT = Path(__file__).resolve().parent.parent
HUB_QUEUE = 8            #: as in notebook 03
HUB_TEXT = 32 * 1024     #: the notebook's big messages (random: compression cannot shrink them)
CHAT_TEXT = "€" * 500    #: the chat's longest text: 3000 bytes once JSON-escaped
STOP_BOUND = 20.0        #: seconds after which stopping counts as hung
WINDOW = 32              #: the sender stays at most this many messages ahead of its own echo


def load() -> tuple[SimpleNamespace, SimpleNamespace]:
    """The hub's and the chat's API, from the ``course`` package that is importable.

    With ``--rev``, :func:`main` runs this script again in a child process whose
    ``PYTHONPATH`` holds that revision's ``course/``: revisions before the layered package
    (flat ``course/live.py`` and ``course/chat.py``) and after it both work.
    """
    try:
        from course.demo.feeds import noise
        from course.net.chat import start_chat
        from course.net.hub import Hub, serve_hub
    except ImportError:  # a revision before the layered package
        from course import chat, live
        return (SimpleNamespace(Hub=live.Hub, serve_hub=live.serve_hub, noise=live.noise),
                SimpleNamespace(start=chat.start))
    return SimpleNamespace(Hub=Hub, serve_hub=serve_hub, noise=noise), SimpleNamespace(start=start_chat)


def run_at_revision(rev: str, argv: list[str]) -> int:
    """Run this script with the ``course/`` of git revision ``rev`` (exported to a temp dir).

    Raises:
        subprocess.CalledProcessError: ``rev`` is not a revision of this repository.
    """
    with tempfile.TemporaryDirectory(prefix="hub_stall_") as folder:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "course"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        for helper in ("course/net/__init__.py", "course/net/fanout.py",  # this script's own tools,
                       "course/measure/__init__.py", "course/measure/stats.py"):  # if missing there
            target = Path(folder) / helper
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text((ROOT / helper).read_text(encoding="utf-8"), encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": folder, "HUB_STALL_REV": rev}
        return subprocess.run([sys.executable, __file__, *argv], env=env).returncode


class Target:
    """One running server (hub or chat) and how to talk to it."""

    def __init__(self, kind: str, live: SimpleNamespace, chat: SimpleNamespace):
        self.kind, self.live, self.chat = kind, live, chat
        self.server = self.hub = None

    async def start(self) -> None:
        if self.kind == "hub":
            self.hub = self.live.Hub(queue_size=HUB_QUEUE)
            self.server = await self.live.serve_hub(self.hub)
            self.port = getattr(self.server, "port", None) or self.server.sockets[0].getsockname()[1]
            self.url, self.path = f"ws://127.0.0.1:{self.port}", "/"
        else:
            self.server = await self.chat.start("127.0.0.1", 0)
            self.port, self.url, self.path = self.server.port, self.server.ws_url, "/ws"

    def message(self, i: int, big: bool) -> str:
        if self.kind == "hub":
            text = f"{i}:" + (self.live.noise(HUB_TEXT, seed=i % 7) if big else "x" * 20)
            return json.dumps({"type": "chat", "text": text})
        text = f"{i}:" + (CHAT_TEXT if big else "x" * 20)
        return json.dumps({"type": "message", "text": text[:500]})

    @staticmethod
    def seq(frame: str) -> int | None:
        message = json.loads(frame)
        text = message.get("text")
        if message.get("type") in ("chat", "message") and isinstance(text, str) and ":" in text:
            return int(text.split(":", 1)[0])
        return None

    def dropped(self) -> int | None:
        if self.kind == "hub":
            return len(self.hub.dropped)
        room = getattr(self.server, "room", None)
        return None if room is None else len(room.dropped)

    async def stop(self) -> None:
        if self.kind == "chat" and not hasattr(self.server, "wait_closed"):
            await self.server.stop()  # the chat's API before the one lifecycle
            return
        self.server.close()
        await self.server.wait_closed()


class Reader:
    """A healthy client: records when each numbered message arrives."""

    def __init__(self, ws: ClientConnection):
        self.ws, self.times, self.seqs = ws, [], []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for frame in self.ws:
                seq = Target.seq(frame)
                if seq is not None:
                    self.times.append(time.perf_counter())
                    self.seqs.append(seq)
        except ConnectionClosed:
            pass


async def healthy_clients(target: Target, n: int) -> list[Reader]:
    readers = [Reader(await connect(target.url, max_size=None, compression=None)) for _ in range(n)]
    await asyncio.sleep(0.1)  # joined, welcome read
    return readers


async def close_all(readers: list[Reader]) -> None:
    for reader in readers:
        reader.task.cancel()
    await asyncio.gather(*(r.task for r in readers), return_exceptions=True)
    await asyncio.gather(*(asyncio.wait_for(r.ws.close(), 2) for r in readers), return_exceptions=True)
    for reader in readers:
        reader.ws.transport.abort()


async def stall(target: Target, seconds: float) -> dict:
    """Healthy chatters beside a stalled reader for ``seconds``; then stop the server."""
    await target.start()
    readers = await healthy_clients(target, 3)
    stalled = await stalled_reader("127.0.0.1", target.port, target.path)
    sender, sent = readers[0].ws, 0
    start = time.perf_counter()
    try:
        async with asyncio.timeout(seconds):
            while True:
                sent += 1  # counted first: a send cut short by the timeout has written its frame
                await sender.send(target.message(sent - 1, big=True))
                while sent - len(readers[0].seqs) > WINDOW:  # as fast as the readers drain
                    await asyncio.sleep(0.001)
    except TimeoutError:
        pass
    try:
        async with asyncio.timeout(3):
            while any(len(r.seqs) < sent for r in readers):
                await asyncio.sleep(0.01)
    except TimeoutError:
        pass
    end = time.perf_counter()
    gaps = []
    for reader in readers:
        marks = [start, *reader.times]
        if len(reader.seqs) < sent:
            marks.append(end)  # still waiting: the wait counts
        gaps += [b - a for a, b in zip(marks, marks[1:])]
    delivered = min(len(r.seqs) for r in readers)
    dropped = target.dropped()
    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(target.stop(), STOP_BOUND)
        stop_s = round(time.perf_counter() - t0, 2)
    except TimeoutError:
        stop_s = f">{STOP_BOUND:.0f}"
    stalled.close()
    await close_all(readers)
    return {"server": target.kind, "scenario": "stall", "seconds": seconds, "sent": sent,
            "delivered_min": delivered, "max_gap_s": round(max(gaps), 3),
            "p95_gap_s": round(percentile(gaps, 95), 4),
            "stalled_dropped": None if dropped is None else dropped >= 1, "stop_s": stop_s}


async def burst(target: Target, n: int, idle: int = 0) -> dict:
    """Client 0 sends ``n`` small messages back to back; did everybody get them, nobody dropped?"""
    await target.start()
    readers = await healthy_clients(target, 3)
    idlers = [await connect(target.url) for _ in range(idle)]
    await asyncio.sleep(0.1 + idle * 0.002)
    before = target.dropped()
    ok = True
    try:
        async with asyncio.timeout(10 + n / 500):
            for i in range(n):
                await readers[0].ws.send(target.message(i, big=False))
            while any(len(r.seqs) < n for r in readers):
                await asyncio.sleep(0.01)
                if target.dropped() not in (before, None):
                    break
    except TimeoutError:
        ok = False
    await asyncio.sleep(0.2)  # a late verdict would show here
    dropped = target.dropped()
    dropped = None if dropped is None else dropped - (before or 0)
    complete = ok and all(r.seqs == list(range(n)) for r in readers)
    await asyncio.gather(*(asyncio.wait_for(w.close(), 2) for w in idlers), return_exceptions=True)
    try:
        await asyncio.wait_for(target.stop(), STOP_BOUND)
    except TimeoutError:
        pass
    await close_all(readers)
    return {"server": target.kind, "scenario": f"burst {n}" + (f" + {idle} idle" if idle else ""),
            "delivered_to_all": complete, "dropped": dropped}


async def run(kinds: list[str], rev: str | None, seconds: float, bursts: list[int],
              idle: int) -> list[dict]:
    live, chat = load()
    rows = []
    for kind in kinds:
        rows.append(await stall(Target(kind, live, chat), seconds))
        largest = 0
        for n in sorted(bursts):
            row = await burst(Target(kind, live, chat), n)
            rows.append(row)
            if not (row["delivered_to_all"] and not row["dropped"]):
                break
            largest = n
        rows.append({"server": kind, "scenario": "largest burst absorbed", "n": largest})
        if idle:
            rows.append(await burst(Target(kind, live, chat), 12, idle=idle))
    return rows


def table(rows: list[dict]) -> str:
    lines = []
    for row in rows:
        detail = ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("server", "scenario"))
        lines.append(f"{row['server']:<5} {row['scenario']:<24} {detail}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=["hub", "chat", "both"], default="both")
    parser.add_argument("--rev", help="measure the code of this git revision instead of the tree's")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of the stall (default 6)")
    parser.add_argument("--bursts", default="12,100,1000,10000",
                        help="burst sizes to try, comma-separated (default 12,100,1000,10000)")
    parser.add_argument("--idle", type=int, default=300, help="idle clients beside a burst of 12 (0: skip)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per row")
    args = parser.parse_args(argv)
    bursts = [int(n) for n in args.bursts.split(",") if n]
    if not 0 < args.seconds <= 60 or any(not 0 < n <= 100_000 for n in bursts) or not 0 <= args.idle <= 1000:
        parser.error("--seconds in (0, 60], bursts in 1..100000, --idle in 0..1000")
    if args.rev and "HUB_STALL_REV" not in os.environ:
        return run_at_revision(args.rev, sys.argv[1:] if argv is None else list(argv))
    rev = os.environ.get("HUB_STALL_REV")
    kinds = ["hub", "chat"] if args.server == "both" else [args.server]
    rows = asyncio.run(run(kinds, rev, args.seconds, bursts, args.idle))
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print(f"code: {rev or 'this tree'}; hub queue_size={HUB_QUEUE}; "
              f"grace={getattr(inspect.signature(load()[0].Hub).parameters.get('grace'), 'default', 'none')}")
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
