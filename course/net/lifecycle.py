"""One lifecycle for every server and relay the course starts.

The shape is asyncio's and ``websockets``' own: a running service has a ``port`` and a
``url``; ``close()`` starts stopping and returns at once; ``await wait_closed()`` waits
until everything is closed, within a bound; ``async with`` does both on the way out::

    server = await start_server("127.0.0.1", 0)   # any course server or relay
    print(server.url)
    ...
    server.close()
    await server.wait_closed()

:class:`Service` is that shape, for the course's own servers.  :func:`shutdown` ends
every lesson: it stops tasks, clients and servers (the course's and ``websockets``')
in one bounded call.  :func:`run_until_signal` serves a command line until Ctrl-C or
SIGTERM.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar

from aiohttp import web

from course.net.guard import ConnectionGuard, start_app

__all__ = ["Service", "AppService", "url_of", "shutdown", "run_until_signal"]


class Service:
    """Base of the course's servers and relays: ``port``, ``url``, ``close()``,
    ``await wait_closed()``, ``async with``.

    A subclass sets :attr:`host` and :attr:`port` once it listens, and implements
    :meth:`_stop` (a bounded coroutine that closes connections and the listener).
    ``close()`` is idempotent; ``wait_closed()`` before ``close()`` returns at once.
    """

    scheme: ClassVar[str] = "ws"  #: URL scheme of :attr:`url`
    path: ClassVar[str] = ""      #: URL path of :attr:`url`

    host: str = "127.0.0.1"
    port: int = 0
    _stopping: asyncio.Task | None = None

    @property
    def url(self) -> str:
        """``scheme://host:port/path`` (the real port when started on port 0)."""
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"

    @property
    def closing(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._stopping is not None

    def close(self) -> None:
        """Start stopping: returns at once; :meth:`wait_closed` waits for the end."""
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(self._stop())

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` has closed everything (bounded by each service)."""
        if self._stopping is not None:
            await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()
        await self.wait_closed()


class AppService(Service):
    """A :class:`Service` that serves an aiohttp application (the chat, the channel server).

    A subclass builds :attr:`app` and implements :meth:`_stop`, which closes its clients
    and then calls ``await self._runner.cleanup()``; :attr:`shutdown_timeout` bounds how
    long aiohttp waits for handlers still running at that point.
    """

    app: web.Application
    shutdown_timeout: float = 60.0
    #: connection caps and handshake deadline (:class:`course.net.guard.ConnectionGuard`);
    #: a subclass that sets one also puts ``guard.middleware`` in its application
    guard: ConnectionGuard | None = None
    _runner: web.AppRunner | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> Any:
        """Listen on ``host:port`` (port 0: any free port) and return ``self``.

        Raises:
            RuntimeError: already started.
            OSError: the address is in use or cannot be bound.
        """
        if self._runner is not None:
            raise RuntimeError(f"this {type(self).__name__} is already started")
        if self.guard is not None:
            runner = await start_app(self.app, host, port, self.guard, self.shutdown_timeout)
        else:
            runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=self.shutdown_timeout)
            await runner.setup()
            await web.TCPSite(runner, host, port).start()
        self._runner = runner
        self.host, self.port = runner.addresses[0][:2]
        return self


def url_of(server: Any, scheme: str = "ws") -> str:
    """The URL of a running server: a :class:`Service`'s ``url``, or
    ``ws://HOST:PORT`` of an asyncio or ``websockets`` server (from its first socket).
    """
    if isinstance(server, Service):
        return server.url
    host, port = server.sockets[0].getsockname()[:2]
    return f"{scheme}://{host}:{port}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


async def _close(thing: Any) -> None:
    # python-socketio's clients have disconnect() where the others have close()
    result = thing.close() if hasattr(thing, "close") else thing.disconnect()
    if inspect.isawaitable(result):
        await result
    if hasattr(thing, "wait_closed"):
        await thing.wait_closed()


async def shutdown(*, tasks: Iterable[asyncio.Future | None] = (),
                   clients: Iterable[Any] = (), servers: Iterable[Any] = (),
                   timeout: float = 5.0) -> str:
    """Stop everything a notebook started, within ``timeout`` seconds.

    Cancels ``tasks``, then closes ``clients`` (``websockets`` connections, browser
    clients, python-socketio clients (``disconnect()``)...), then closes ``servers`` (:class:`Service`, ``websockets`` or asyncio
    servers) and waits for them.  ``None`` entries are skipped, so a cell can pass
    ``globals().get("name")`` and run before or after the cells that start things.

    Returns:
        A stable summary such as ``"stopped 2 tasks, 3 clients, 1 server"``.

    Raises:
        TimeoutError: something did not stop within ``timeout`` seconds.
    """
    tasks = [t for t in tasks if t is not None]
    clients = [c for c in clients if c is not None]
    servers = [s for s in servers if s is not None]
    async with asyncio.timeout(timeout):
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(_close(c) for c in clients), return_exceptions=True)
        await asyncio.gather(*(_close(s) for s in servers), return_exceptions=True)
    return (f"stopped {_plural(len(tasks), 'task')}, {_plural(len(clients), 'client')}, "
            f"{_plural(len(servers), 'server')}")


def run_until_signal(start: Callable[[], Awaitable[Any]], banner: str = "listening on {url}") -> int:
    """Command lines: start a service, print ``banner``, serve until Ctrl-C or SIGTERM.

    Args:
        start: a coroutine function that returns the running service.
        banner: printed once it listens; ``{url}`` is the service's URL.

    Returns:
        ``0`` (the exit status) once the service is closed; it then prints ``stopped``.
    """
    async def serve() -> None:
        service = await start()
        print(banner.format(url=service.url), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # Windows: Ctrl-C raises instead
                pass
        try:
            await stop.wait()
        finally:
            service.close()
            await service.wait_closed()
            print("stopped", flush=True)

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:  # only where signal handlers are unavailable
        pass
    return 0
