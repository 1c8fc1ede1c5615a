"""Issue 10, item 7, before and after: can a legitimate client still get in and get an echo
while an attacker holds about 1,020 half-open upgrades (slowloris) against a server whose
process has the usual open-file limit of 1,024?  And what does a flood of empty
continuation frames cost the other clients?

Each server runs in a subprocess with ``RLIMIT_NOFILE`` = 1024, either with the course's
default limits (``after``) or with the limits lifted (``before``: no cap, no deadline,
no frame bucket, as the servers were).  Loopback only, bounded (about a minute in all)::

    python benchmarks/attack_lockout.py [--half-open 1020] [--servers rawserver,chat,hub]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect

from course.protocol import Opcode, encode_frame, upgrade_request
from course.wire.rfc import RFC_KEY

ROOT = Path(__file__).resolve().parent.parent

SERVER = r'''
import asyncio, math, sys
from course.net.guard import ConnectionGuard
mode, kind = sys.argv[1], sys.argv[2]
lifted = dict(max_connections=10**6, max_per_address=10**6, max_pending=10**6, handshake_timeout=1e9)
guard = ConnectionGuard(**lifted) if mode == "before" else ConnectionGuard()
async def main():
    if kind == "rawserver":
        from course.net.rawserver import start_server
        extra = dict(frame_burst=math.inf, frame_rate=1e12, ping_burst=math.inf, ping_rate=1e12) if mode == "before" else {}
        server = await start_server(guard=guard, **extra)
        url = server.url
    elif kind == "chat":
        from course.net.chat import start_chat
        server = await start_chat(guard=guard)
        url = server.ws_url
    else:
        from course.net.hub import Hub, serve_hub
        server = await serve_hub(Hub(), guard=guard, open_timeout=None if mode == "before" else 10)
        url = server.url
    print(url, flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
'''


def limit_fds() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


async def legit(url: str, kind: str, timeout: float = 5.0) -> float | None:
    """Seconds for a legitimate client to connect and get an answer; None if it could not."""
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            async with connect(url, open_timeout=timeout) as ws:
                if kind == "chat":
                    await ws.recv()  # welcome
                    await ws.send('{"type": "message", "text": "hi", "name": "ada"}')
                elif kind == "hub":
                    await ws.send('{"type": "chat", "text": "hi"}')
                else:
                    await ws.send("hi")
                await ws.recv()
    except Exception:
        return None
    return time.perf_counter() - start


async def lockout(kind: str, mode: str, half_open: int, complete: bool = False) -> dict:
    log = tempfile.TemporaryFile("w+")  # not a pipe: a full pipe would block the server
    process = subprocess.Popen([sys.executable, "-c", SERVER, mode, kind], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=log, text=True, preexec_fn=limit_fds)
    try:
        url = process.stdout.readline().strip()
        port = int(url.split(":")[2].split("/")[0])
        held, failed = [], 0
        for _ in range(half_open):
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
                if complete:  # a finished upgrade, then silence (no pong either)
                    path = "/ws" if kind == "chat" else "/"
                    writer.write(upgrade_request(f"127.0.0.1:{port}", RFC_KEY, path))
                    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
                else:
                    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
                held.append(writer)
            except asyncio.IncompleteReadError:
                failed += 1
            except (OSError, TimeoutError):
                failed += 1
        await asyncio.sleep(0.5)
        tries = [await legit(url, kind) for _ in range(5)]
        ok = [t for t in tries if t is not None]
        later = None
        if complete:  # the hub pings every 5 s and gives up 5 s later; the chat every 30 s
            await asyncio.sleep(11)
            later = sum([await legit(url, kind) is not None for _ in range(5)])
        for writer in held:
            writer.transport.abort()
        await asyncio.sleep(0.5)
    finally:
        process.terminate()
        process.communicate(timeout=10)
        log.seek(0)
        err = log.read()
    return {"server": kind, "limits": mode, "attack": "idle upgraded" if complete else "half-open",
            "held": len(held), "refused_or_failed": failed, "legit_ok": f"{len(ok)}/5",
            "legit_ok_11s_later": None if later is None else f"{later}/5",
            "legit_p50_ms": round(statistics.median(ok) * 1000, 1) if ok else None,
            "stderr_bytes": len(err), "too_many_open_files": err.count("Too many open files")}


async def flood(mode: str, seconds: float = 3.0) -> dict:
    """A healthy client's echo round trip while another floods empty continuation frames."""
    process = subprocess.Popen([sys.executable, "-c", SERVER, mode, "rawserver"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(upgrade_request(f"127.0.0.1:{port}", RFC_KEY))
        await reader.readuntil(b"\r\n\r\n")
        mask = b"\x01\x02\x03\x04"
        writer.write(encode_frame(Opcode.TEXT, b"", fin=False, mask=mask))
        chunk = encode_frame(Opcode.CONTINUATION, b"", fin=False, mask=mask) * 10_000
        stop = time.monotonic() + seconds
        sent = 0
        rtts = []
        cut_after = None

        async def attacker():
            nonlocal sent, cut_after
            began = time.monotonic()
            try:
                while time.monotonic() < stop:
                    writer.write(chunk)
                    await writer.drain()
                    sent += 10_000
            except (ConnectionError, OSError):
                cut_after = round(time.monotonic() - began, 2)

        task = asyncio.create_task(attacker())
        async with connect(url) as ws:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                await ws.send("ping")
                await ws.recv()
                rtts.append(time.perf_counter() - t0)
                await asyncio.sleep(0.05)
        await task
        writer.transport.abort()
    finally:
        process.terminate()
        process.communicate(timeout=10)
    rtts.sort()
    return {"limits": mode, "empty_frames_sent": sent, "attacker_cut_after_s": cut_after, "healthy_rtt_p50_ms": round(rtts[len(rtts) // 2] * 1000, 2),
            "healthy_rtt_max_ms": round(rtts[-1] * 1000, 2)}


async def main(args: argparse.Namespace) -> None:
    if args.flood_only:
        for mode in ("before", "after"):
            print(json.dumps(await flood(mode)), flush=True)
        return
    for kind in args.servers.split(","):
        for mode in ("before", "after"):
            print(json.dumps(await lockout(kind, mode, args.half_open)), flush=True)
    if args.idle:
        for kind in args.servers.split(","):
            for mode in ("before", "after"):
                print(json.dumps(await lockout(kind, mode, args.half_open, complete=True)), flush=True)
    for mode in ("before", "after"):
        print(json.dumps(await flood(mode)), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--half-open", type=int, default=1020)
    parser.add_argument("--servers", default="rawserver,chat,hub")
    parser.add_argument("--flood-only", action="store_true")
    parser.add_argument("--idle", action="store_true", help="also hold completed, silent upgrades")
    args = parser.parse_args()
    if not 1 <= args.half_open <= 5000:
        parser.error("--half-open in 1..5000")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.half_open + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.half_open + 1000), hard))
    asyncio.run(main(args))
