"""Servers in processes of their own: ``python -m MODULE …`` started from a notebook or a test.

Scaling out means several processes; a notebook starts them as subprocesses and reads the
URL each prints (every course command line prints ``serving on URL`` once it listens)::

    one = await spawn("course.net.pusher_server", "--port", "0", "--redis", redis.url)
    print(one.url, one.pid)
    one.kill()                 # a crash: SIGKILL, nothing cleaned up
    one.close()                # or a clean stop: SIGTERM, then SIGKILL after a bound
    await one.wait_closed()
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from course.net.lifecycle import Service

__all__ = ["ServerProcess", "spawn"]

_ROOT = Path(__file__).resolve().parents[2]


class ServerProcess(Service):
    """A course server running in its own process.

    ``close()`` sends SIGTERM (the server closes its connections with 1001 and leaves
    cleanly), then SIGKILL after ``stop_timeout``; :meth:`kill` is SIGKILL at once.

    Attributes:
        process: the ``asyncio.subprocess.Process``.
        output: what it printed after its URL (the last 50 lines; read continuously so
            that a chatty child never blocks on a full pipe).
    """

    def __init__(self, process: asyncio.subprocess.Process, url: str, stop_timeout: float = 5.0) -> None:
        self.process = process
        self.stop_timeout = stop_timeout
        self.scheme, rest = url.split("://", 1)
        address, _, path = rest.partition("/")
        self.path = f"/{path}" if path else ""
        self.host, port = address.rsplit(":", 1)
        self.port = int(port)
        self.output: list[str] = []
        self._drain = asyncio.create_task(self._read_output(), name=f"process {process.pid} output")

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    async def _read_output(self) -> None:
        while line := await self.process.stdout.readline():
            self.output = [*self.output[-49:], line.decode(errors="replace").rstrip()]

    def kill(self) -> None:
        """SIGKILL now (idempotent): the process gets no chance to clean up."""
        if self.process.returncode is None:
            self.process.kill()

    async def _stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(self.stop_timeout):
                    await self.process.wait()
            except TimeoutError:
                self.kill()
        await asyncio.wait_for(self.process.wait(), self.stop_timeout)
        try:
            await asyncio.wait_for(self._drain, self.stop_timeout)
        except TimeoutError:
            pass


async def spawn(module: str, *args: str, timeout: float = 30.0) -> ServerProcess:
    """Run ``python -m MODULE ARGS...`` (this interpreter) and wait for its ``serving on URL`` line.

    Args:
        module: a course command line, e.g. ``"course.net.pusher_server"``.
        args: its options (``"--port", "0"`` lets it pick a free port).
        timeout: seconds to wait for the URL.

    Raises:
        RuntimeError: the process exited or printed something else first (its output
            is in the message); it is killed.
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=str(_ROOT))
    try:
        async with asyncio.timeout(timeout):
            line = (await process.stdout.readline()).decode(errors="replace")
    except TimeoutError:
        line = ""
    if not line.startswith("serving on "):
        if process.returncode is None:
            process.kill()
        rest = (await asyncio.wait_for(process.stdout.read(), 5)).decode(errors="replace")
        await process.wait()
        raise RuntimeError(f"python -m {module} did not start: {line}{rest[-2000:]}")
    return ServerProcess(process, line.split()[-1])
