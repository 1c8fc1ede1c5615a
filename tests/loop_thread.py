"""An asyncio loop on a thread of its own, for browser tests: while a module's Chromium is
open, Playwright's sync API owns the test thread's loop, so servers run here."""

from __future__ import annotations

import asyncio
import threading

__all__ = ["LoopThread"]


class LoopThread:
    """An asyncio loop on a daemon thread; :meth:`run` waits for a coroutine, bounded."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine, timeout: float = 10.0):
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coroutine, timeout), self.loop)
        return future.result(timeout + 1)

    def call(self, function, *args):
        """Run a plain function on the loop's thread (the rooms are not thread-safe)."""
        async def call():
            return function(*args)
        return self.run(call())

    def until(self, predicate, timeout: float = 10.0, what: str = "condition"):
        """Poll ``predicate()`` on the loop's thread until it is true, within ``timeout``."""
        async def poll():
            while not predicate():
                await asyncio.sleep(0.02)
        try:
            self.run(poll(), timeout)
        except TimeoutError:
            raise AssertionError(f"not within {timeout} s: {what}") from None

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
