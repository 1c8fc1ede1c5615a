"""Issue 10, item 7: the rawserver's memory under clients that never read their echo, and
under stalled frames, with the limits lifted (``before``: 64 MiB messages, no deadlines) and
with the course's defaults (``after``).  The server runs in a subprocess; its RSS is read from
/proc.  Loopback only, bounded (about 40 s)::

    python benchmarks/rawserver_memory.py [--clients 6] [--stalled 12]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from course.protocol import Opcode, encode_frame, upgrade_request
from course.wire.rfc import RFC_KEY

ROOT = Path(__file__).resolve().parent.parent
MASK = b"\x01\x02\x03\x04"
SERVER = r'''
import asyncio, math, sys
from course.net.rawserver import start_server
before = sys.argv[1] == "before"
options = dict(max_message_size=64 << 20, message_timeout=1e9, write_timeout=1e9) if before else {}
async def main():
    server = await start_server(**options)
    print(server.url, flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
'''


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


async def opened(port: int, rcvbuf: int | None = None):
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(upgrade_request(f"127.0.0.1:{port}", RFC_KEY))
    await reader.readuntil(b"\r\n\r\n")
    return reader, writer


async def scenario(mode: str, clients: int, stalled: int, size: int) -> dict:
    process = subprocess.Popen([sys.executable, "-c", SERVER, mode], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        port = int(process.stdout.readline().strip().rsplit(":", 1)[1])
        base = rss_mb(process.pid)
        big = encode_frame(Opcode.BINARY, b"z" * size, mask=MASK)
        conns = [await opened(port, rcvbuf=4096) for _ in range(clients)]

        async def push(writer):  # send messages, never read the echo
            try:
                async with asyncio.timeout(8):
                    for _ in range(4):
                        writer.write(big)
                        await writer.drain()
            except (TimeoutError, ConnectionError):
                pass

        await asyncio.gather(*(push(w) for _, w in conns))
        stall = [await opened(port) for _ in range(stalled)]
        for _, writer in stall:  # a frame announcing `size` bytes, then almost all of them
            writer.write(big[:-1])
        await asyncio.sleep(2)
        peak = rss_mb(process.pid)
        await asyncio.sleep(9)  # past the 10 s deadlines (message_timeout, write_timeout)
        held = rss_mb(process.pid)
        for _, writer in conns + stall:
            writer.transport.abort()
        await asyncio.sleep(3)
        after = rss_mb(process.pid)
    finally:
        process.terminate()
        process.communicate(timeout=10)
    return {"limits": mode, "clients_not_reading": clients, "stalled_frames": stalled, "message_mb": size >> 20,
            "rss_start_mb": base, "rss_loaded_mb": peak, "rss_12s_later_mb": held, "rss_3s_after_they_left_mb": after}


async def main(args) -> None:
    for mode in ("before", "after"):
        print(json.dumps(await scenario(mode, args.clients, args.stalled, 16 << 20)), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--stalled", type=int, default=12)
    args = parser.parse_args()
    if not (0 <= args.clients <= 50 and 0 <= args.stalled <= 50):
        parser.error("--clients and --stalled in 0..50")
    asyncio.run(main(args))
