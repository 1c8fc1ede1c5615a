"""Autobahn|Testsuite for the chapter 2 capstone and the test suite: one runner.

:func:`run_autobahn` runs Autobahn cases with the ``kosoku`` CLI (the suite's own case files,
a fast runner) against a server and reads its ``index.json`` report;
:func:`summarize_autobahn` prints the counts by status and the failed cases.

A server that owes kosoku an answer and never sends it makes a case hang until kosoku's own
timeouts.  :func:`watch_for_stall` runs the cases through a recording relay
(:class:`course.net.relay.Relay`) and notices a connection where nothing moves although the
server owes frames; :func:`report_stall` then replays the cases one by one and explains the
first one that hangs.  :func:`course.checks.ch02.check_autobahn` puts them together for the
notebook; ``tests/test_autobahn.py`` calls :func:`run_autobahn` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from course.checks import FAIL
from course.net.relay import start_relay
from course.protocol import Opcode
from course.ui.frames import frames_in, split_head

__all__ = ["AUTOBAHN_SUBSET", "STATUSES", "PASSING", "kosoku_path", "run_autobahn",
           "summarize_autobahn", "selected_cases", "watch_for_stall", "report_stall"]

#: The Autobahn subset run in the capstone: framing (1), pings (2), fragmentation (5),
#: basic closing (7.1).  About 50 cases, a few seconds.
AUTOBAHN_SUBSET = ("1.*", "2.*", "5.*", "7.1.*")

#: The statuses kosoku gives a case, in the order the summary prints them.
STATUSES = ("OK", "NON-STRICT", "INFORMATIONAL", "FAILED")

#: The statuses that pass: the RFC's MUSTs are kept (NON-STRICT misses a SHOULD;
#: INFORMATIONAL is not judged).
PASSING = ("OK", "NON-STRICT", "INFORMATIONAL")


def kosoku_path() -> str | None:
    """The ``kosoku`` command next to this Python (the virtual environment), or on PATH."""
    here = Path(sys.executable).parent / "kosoku"
    if here.exists():
        return str(here)
    return shutil.which("kosoku")


async def run_autobahn(port: int, include: Sequence[str] = AUTOBAHN_SUBSET, *,
                       host: str = "127.0.0.1", parallelism: int = 4,
                       timeout: float = 60.0) -> dict[str, dict[str, Any]]:
    """Run Autobahn cases (the ``kosoku`` CLI) against a server and read its report.

    Args:
        port: The server's TCP port.
        include: Case ids or globs (``"1.*"``...).
        host: The server's address.
        parallelism: Cases run at once.
        timeout: Seconds before kosoku is killed.

    Returns:
        ``{case_id: entry}`` from kosoku's ``index.json``; each entry has
        ``behavior`` (OK, NON-STRICT, INFORMATIONAL, FAILED...), ``behaviorClose``,
        ``remoteCloseCode``, plus ``description`` and ``result`` read from the case's
        own report file.

    Raises:
        FileNotFoundError: kosoku is not installed.
        TimeoutError: kosoku took longer than ``timeout``.
        RuntimeError: kosoku wrote no report (its stderr is in the message).
    """
    exe = kosoku_path()
    if exe is None:
        raise FileNotFoundError("the kosoku command is not installed (pip install kosoku)")
    args = [f"{host}:{port}", "-p", str(parallelism)]
    for case in include:
        args += ["-i", case]
    with tempfile.TemporaryDirectory(prefix="autobahn-") as outdir:
        process = await asyncio.create_subprocess_exec(
            exe, *args, "-o", outdir,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            async with asyncio.timeout(timeout):
                _, stderr = await process.communicate()
        finally:  # timed out or cancelled (see check_autobahn): never leave kosoku running
            if process.returncode is None:
                process.kill()
                await process.wait()
        index_path = Path(outdir) / "index.json"
        if not index_path.exists():
            raise RuntimeError(f"kosoku wrote no report: {stderr.decode(errors='replace')[-300:]}")
        index = json.loads(index_path.read_text())
        results: dict[str, dict[str, Any]] = {}
        for cases in index.values():  # one agent: the server under test
            for case_id, entry in cases.items():
                detail = json.loads((Path(outdir) / entry["reportfile"]).read_text())
                results[case_id] = {**entry, "description": detail.get("description", ""),
                                    "result": detail.get("result", "")}
    return results


def _case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(p) for p in case_id.split(".") if p.isdigit())


def summarize_autobahn(results: dict[str, dict[str, Any]], *, show_failures: int = 10) -> dict[str, int]:
    """Print counts by status (and by category), then the failed cases.

    Args:
        results: What :func:`run_autobahn` returned.
        show_failures: How many failed cases to list.

    Returns:
        ``{status: count}`` with every status of :data:`STATUSES` (plus any other seen).
    """
    counts = dict.fromkeys(STATUSES, 0)
    by_group: dict[str, dict[str, int]] = {}
    for case_id, entry in results.items():
        status = entry["behavior"]
        counts[status] = counts.get(status, 0) + 1
        parts = case_id.split(".")
        group = "7.1.*" if parts[:2] == ["7", "1"] else parts[0] + ".*"  # 7.1: basic closing
        by_group.setdefault(group, dict.fromkeys(counts, 0))
        by_group[group][status] = by_group[group].get(status, 0) + 1
    columns = [s for s in counts if counts[s] or s in STATUSES]
    print(f"{'cases':<8}" + "".join(f"{c:>15}" for c in columns))
    for group in sorted(by_group, key=_case_key):
        print(f"{group:<8}" + "".join(f"{by_group[group].get(c, 0):>15}" for c in columns))
    print(f"{'total':<8}" + "".join(f"{counts[c]:>15}" for c in columns))
    bad = sorted((c for c, e in results.items() if e["behavior"] not in PASSING),
                 key=_case_key)
    for case_id in bad[:show_failures]:
        e = results[case_id]
        print(f"{FAIL} {case_id} {e['behavior']} (close: {e['behaviorClose']}): "
              f"{e['description'][:70]} — {e['result'][:90]}")
    if len(bad) > show_failures:
        print(f"... and {len(bad) - show_failures} more failed cases")
    return counts


def selected_cases(include: Sequence[str]) -> list[str]:
    """The Autobahn case ids that ``include`` selects, in the order kosoku runs them."""
    from kosoku.cases import CASES  # kosoku's own index, sorted like its runs

    return [case for case in CASES if any(fnmatch.fnmatchcase(case, p) for p in include)]


def _frames(data: bytes) -> list[Any]:
    """The complete frames after the HTTP head of one direction of a relayed connection."""
    try:
        _, rest = split_head(bytes(data))
    except ValueError:  # the head is not complete yet
        return []
    return frames_in(rest, partial=True)


def _stalled(link: Any, stall: float) -> bool:
    """True when the server owes the client answers and nothing moved for ``stall`` s.

    The server owes one frame per complete message (its echo), per ping (a pong) and
    for a close (its close). A server that answered everything may still see an idle
    connection: kosoku waits for its own timeouts on some failing cases.
    """
    if not link.open or _idle(link) <= stall:
        return False
    return len(_frames(link.to_client)) < _owed(_frames(link.to_server))


def _owed(sent: Sequence[Any]) -> int:
    """How many frames a server owes for the client frames ``sent``: one per ping and per
    complete message, and one close however many the client sent."""
    answers = sum(1 for f in sent if f.header.opcode == Opcode.PING
                  or (f.header.fin and f.header.opcode in (Opcode.TEXT, Opcode.BINARY,
                                                           Opcode.CONTINUATION)))
    return answers + any(f.header.opcode == Opcode.CLOSE for f in sent)


async def watch_for_stall(run: asyncio.Task, relay: Any, stall: float) -> Any:
    """Wait for ``run`` to end; if a relayed connection stalls first, cancel it and return it."""
    while not run.done():
        await asyncio.wait({run}, timeout=0.2)
        stuck = next((link for link in relay.links if _stalled(link, stall)), None)
        if stuck is not None:
            run.cancel()
            return stuck
    return None


def _describe_stall(link: Any, case: str, stall: float) -> str:
    """Why the connection of a stuck Autobahn case is stuck, and what usually causes it."""
    sent, answered = _frames(link.to_server), _frames(link.to_client)
    kinds = ", ".join(Opcode(f.header.opcode).name for f in sent[:8]) + (", …" if len(sent) > 8 else "")
    try:
        from kosoku.cases import CASES

        what = " ".join(CASES[case].DESCRIPTION.split())[:160]
    except Exception:  # kosoku's index is a convenience, not a requirement
        what = ""
    text = (f"{FAIL} Autobahn stopped at case {case}{': ' + what if what else ''}\n"
            f"   kosoku sent {len(sent)} frame(s) ({kinds or 'none'}); your server answered "
            f"{len(answered)}; then nothing moved for {stall:.0f} s.")
    pings = sum(f.header.opcode == Opcode.PING for f in sent)
    pongs = sum(f.header.opcode == Opcode.PONG for f in answered)
    if not sent:
        hint = "kosoku is waiting for your server after the handshake: did you drain the 101?"
    elif pings and not pongs:
        hint = ("no ping got a pong: answer each PING at once with a PONG that carries the "
                "same payload.")
    elif (any(f.header.opcode == Opcode.CLOSE for f in sent) and len(answered) == _owed(sent) - 1
          and not any(f.header.opcode == Opcode.CLOSE for f in answered)):
        hint = ("everything got an answer but kosoku's close frame: answer a CLOSE with a "
                "CLOSE, then end the connection (or the close still waits in your FrameReader).")
    else:
        hint = ("your server waits for bytes it already has. One read() can bring several "
                "frames (or all the fragments of a message): after each read, take every frame "
                "the FrameReader holds (loop over all of frames_received()), not just one.")
    return text + f"\n   Hint: {hint}"


def _idle(link: Any) -> float:
    """Seconds since bytes last moved on a relayed connection, either way."""
    return time.monotonic() - max(link.last_to_server or 0, link.last_to_client or 0)


async def report_stall(port: int, cases: Sequence[str], stall: float,
                       server_errors: Sequence[BaseException] = ()) -> None:
    """Find the first case that hangs, alone on the connection, and explain it.

    kosoku opens the connections of its cases nearly at once, so a stuck connection does
    not tell which case it belongs to: run the cases one by one (about 0.15 s each) until
    one gets no answer within ``stall`` seconds.
    """
    for case in cases:
        relay = await start_relay("127.0.0.1", port)
        run = asyncio.create_task(run_autobahn(relay.port, [case], timeout=stall + 30))
        try:
            stuck = await watch_for_stall(run, relay, stall)
            if stuck is None and run.exception() is not None and relay.links:
                stuck = relay.links[-1]  # not stalled by our rule, but it never ended
            if stuck is not None:
                print(_describe_stall(stuck, case, stall))
                break
        finally:
            if not run.done():
                run.cancel()
            with contextlib.suppress(BaseException):
                await run
            relay.close()
            await relay.wait_closed()
    else:
        print(f"{FAIL} Autobahn stopped: a connection got no answer for {stall:.0f} s, but no "
              "case hangs when run alone (does your server handle several clients at once?)")
    if server_errors:
        cause = server_errors[-1]
        print(f"   Your server also raised {type(cause).__name__}: {cause}")
