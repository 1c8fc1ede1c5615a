"""Reading a self-check's ✅/❌ lines in the tests of the self-checks (chapters 6–8)."""

from __future__ import annotations

import asyncio

from course.checks import FAIL, PASS

__all__ = ["run", "failing", "stub"]


def run(result, capsys) -> tuple[bool, dict[str, str]]:
    """A check's result (awaited if needed) and {case name: its ✅/❌ line}."""
    ok = asyncio.run(result) if asyncio.iscoroutine(result) else result
    cases = {}
    for line in capsys.readouterr().out.splitlines():
        if line.startswith((PASS, FAIL)) and not line.endswith("checks pass"):  # not the summary
            cases[line[2:].split(" — ")[0].strip()] = line
    return ok, cases


def failing(cases: dict[str, str]) -> list[str]:
    """The names of the cases that printed ❌."""
    return [name for name, line in cases.items() if line.startswith(FAIL)]


def stub(*args, **kwargs):
    """An exercise not written yet."""
    raise NotImplementedError()
