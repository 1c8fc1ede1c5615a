"""Self-checks that run inside the notebooks.

A self-check calls the student's code on several cases and prints one line per
case: ``✅ name`` when it passes, ``❌ name — what went wrong. Hint: ...`` when it
fails.  A stub that still raises ``NotImplementedError`` gives
``❌ name — not implemented yet``, never a traceback: checks never crash.

Hints come after a real attempt: the "not implemented yet" line carries no hint, so
the exercise notebook (whose committed outputs are the stub's) gives nothing away
before the student has tried.  A hint names the likely mistake; it is not the answer.

Chapter modules (``course.checks.ch01`` ...) build on :func:`check` and
:func:`acheck`; a notebook cell then reads::

    from course.checks.ch02 import check_accept_key
    check_accept_key(accept_key)
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["check", "acheck", "expect_equal", "expect", "summary", "PASS", "FAIL"]

PASS = "✅"
FAIL = "❌"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def expect_equal(actual: Any, expected: Any, what: str = "result") -> None:
    """Raise AssertionError with a readable message unless ``actual == expected``."""
    if actual != expected:
        raise AssertionError(f"{what}: expected {_short(expected)}, got {_short(actual)}")


def expect(condition: bool, message: str) -> None:
    """Raise AssertionError(message) unless ``condition`` is true."""
    if not condition:
        raise AssertionError(message)


def _line(name: str, error: BaseException | None, hint: str) -> tuple[bool, str]:
    if error is None:
        return True, f"{PASS} {name}"
    if isinstance(error, NotImplementedError):
        # No hint before a real attempt (see the module docstring).
        return False, (f"{FAIL} {name} — not implemented yet: replace "
                       "`raise NotImplementedError()` with your code.")
    elif isinstance(error, AssertionError):
        text = f"{FAIL} {name} — {error}."
    elif isinstance(error, TimeoutError):
        text = f"{FAIL} {name} — timed out (does your code wait for something that never comes?)."
    else:
        where = traceback.extract_tb(error.__traceback__)[-1]
        text = (f"{FAIL} {name} — raised {type(error).__name__}: {error} "
                f"(line {where.lineno} of {where.name})." )
    if hint:
        text += f" Hint: {hint}"
    return False, text


def check(name: str, test: Callable[[], Any], hint: str = "") -> bool:
    """Run ``test()``; print one ✅/❌ line; return whether it passed.

    Args:
        name: what this case checks, shown to the student.
        test: a callable that raises AssertionError (or anything) on failure.
        hint: shown after a failure of the student's code (not on a stub that
            still raises NotImplementedError).
    """
    try:
        test()
    except Exception as error:  # a check never crashes the notebook
        ok, text = _line(name, error, hint)
    else:
        ok, text = _line(name, None, hint)
    print(text)
    return ok


async def acheck(name: str, test: Callable[[], Awaitable[Any]], hint: str = "",
                 timeout: float = 5.0) -> bool:
    """Async twin of :func:`check`: awaits ``test()`` for at most ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            await test()
    except Exception as error:
        ok, text = _line(name, error, hint)
    else:
        ok, text = _line(name, None, hint)
    print(text)
    return ok


def summary(results: list[bool], what: str) -> bool:
    """Print a closing line for a group of checks and return whether all passed."""
    passed = sum(results)
    if passed == len(results):
        print(f"{PASS} {what}: all {len(results)} checks pass")
        return True
    print(f"{FAIL} {what}: {passed}/{len(results)} checks pass")
    return False
