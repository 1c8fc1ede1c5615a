"""Official JavaScript clients driven from the tests: a Node script per client in tests/js/.

Each script prints one JSON line per event (``{"event": ..., ...}``) and reads commands, one
per line, on stdin.  ``NODE_PATH`` points at ``js/node_modules`` (the ``node_modules`` fixture).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["NodeLines"]


class NodeLines:
    """Lines of JSON from a Node script, read with a bound on every wait."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.seen: list[dict] = []

    @classmethod
    async def start(cls, node_modules: Path, script: str, *args: str) -> "NodeLines":
        process = await asyncio.create_subprocess_exec(
            "node", str(ROOT / "tests/js" / script), *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, "NODE_PATH": str(node_modules)})
        return cls(process)

    async def expect(self, event: str, where=lambda line: True, timeout: float = 8.0) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    errors = (await self.process.stderr.read()).decode()[-2000:]
                    raise AssertionError(f"node exited while waiting for {event!r}; saw {self.seen}; "
                                         f"stderr: {errors}")
                line = json.loads(raw)
                self.seen.append(line)
                if line["event"] == event and where(line):
                    return line

    async def send(self, command: str) -> None:
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await asyncio.wait_for(self.process.wait(), 5)
