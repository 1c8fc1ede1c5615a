"""Execute notebooks in place with a fresh kernel and save their outputs.

Usage::

    python -m tools.execute notebooks/01_why_realtime.ipynb ...
    python -m tools.execute --twice NB   # run all cells twice in one kernel, save nothing
    python -m tools.execute --stress NB  # a student who pauses, then re-runs out of order

Cells run with the notebook's folder as working directory, as in JupyterLab.

``--stress`` (what ``tests/test_rerun_*.py`` run) plays a student who reads slowly and then
clicks around, in one kernel and without saving:

1. **Pauses.** A pre-cell (:data:`SHORT_KEEPALIVE`) shortens the keepalive defaults of
   ``websockets``' ``serve`` and ``connect`` (``ping_interval`` and ``ping_timeout``, 20 s
   each) to ``ping_interval`` and ``ping_timeout`` seconds; explicit arguments, such as
   ``ping_interval=None``, still win. Every cell then runs in order, and after each cell that
   leaves open a TCP connection of the kernel that has not yet sat through a pause, the run waits
   ``pause`` seconds, longer than ping interval + ping timeout: a connection that cannot survive
   a reading pause dies there (one that survived a pause is not paused for again). What each
   cell prints must still match its committed output (masked by ``tests/sanitize.cfg``, as
   nbval does).
2. **Out of order.** Section by section (``##`` headings), every cell runs twice in a row,
   and after each section the cells of the section before run once more; the last cell
   (the notebook's cleanup) runs twice at the end. Nothing may raise or hang: every cell
   must finish within :data:`STRESS_CELL_TIMEOUT` seconds. Cells slower than ``slow``
   seconds in pass 1 (measurements) are not repeated, to keep the test fast.
"""

from __future__ import annotations

import argparse
import asyncio
import configparser
import copy
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbclient import NotebookClient

KERNEL = "python3"
CELL_TIMEOUT = 300
#: Per-cell deadline in ``--stress``: a cell that hangs fails the run instead of blocking it.
STRESS_CELL_TIMEOUT = 60
#: ``--stress`` defaults (s): websockets' keepalive shortened to a ping every ``PING_INTERVAL``
#: and a pong deadline of ``PING_TIMEOUT`` (the longer one, so that a busy kernel is not taken
#: for a dead peer), and the pause after cells that leave a connection open, longer than both
#: together: a peer that answers no ping has been closed by then.
PING_INTERVAL = 0.1
PING_TIMEOUT = 0.4
PAUSE = 0.6
#: Cells slower than this (s) in pass 1 run only once in pass 2 (still a second run in the same
#: kernel): the measurements of chapters 1 and 6, a deliberate 3 s wait in chapter 3, servers
#: started in child processes; every quicker cell is repeated.
SLOW = 1.0
SANITIZE = Path(__file__).resolve().parents[1] / "tests" / "sanitize.cfg"
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colours in tracebacks

#: Run in the kernel before pass 1 of ``--stress``: websockets' keepalive, compressed so that
#: a short pause outlasts it as a long reading pause outlasts 20 s + 20 s.
SHORT_KEEPALIVE = """\
import websockets.asyncio.client as _ws_client, websockets.asyncio.server as _ws_server
for _defaults in (_ws_server.serve.__kwdefaults__, _ws_client.connect.__init__.__kwdefaults__):
    _defaults.update(ping_interval={ping_interval}, ping_timeout={ping_timeout})
del _ws_client, _ws_server, _defaults
"""


def _client(nb: nbformat.NotebookNode, path: Path,
            timeout: float = CELL_TIMEOUT) -> NotebookClient:
    return NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
        allow_errors=False,
    )


def normalize(nb: nbformat.NotebookNode) -> None:
    """Give the notebook the metadata every course notebook carries."""
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    nb.metadata.setdefault("language_info", {"name": "python"})
    for cell in nb.cells:
        cell.metadata.pop("execution", None)


def execute(path: Path) -> float:
    """Execute ``path`` in a fresh kernel and write it back with its outputs.

    Returns:
        The wall time in seconds.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell raised; the file is left unchanged.
    """
    start = time.monotonic()
    nb = nbformat.read(path, as_version=4)
    normalize(nb)
    _client(nb, path).execute()
    normalize(nb)
    nbformat.write(nb, path)
    return time.monotonic() - start


async def _run_twice(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    client = _client(nb, path)
    async with client.async_setup_kernel():
        for _round in range(2):
            for index, cell in enumerate(nb.cells):
                await client.async_execute_cell(cell, index)


def execute_twice(path: Path) -> None:
    """Run every cell, then every cell again, in one kernel (re-runnability); save nothing.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell raised on either round.
    """
    asyncio.run(_run_twice(path))


def sections(nb: nbformat.NotebookNode) -> list[list[int]]:
    """Indices of the code cells, grouped by section (a markdown cell starting with ``## ``).

    Code cells before the first heading form the first section; empty sections are dropped.
    """
    groups: list[list[int]] = [[]]
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and cell.source.startswith("## "):
            groups.append([])
        elif cell.cell_type == "code":
            groups[-1].append(index)
    return [group for group in groups if group]


def perturbed_order(groups: list[list[int]], repeat: set[int] | None = None) -> list[int]:
    """Pass 2 of ``--stress``: the order in which a student who clicks around re-runs cells.

    Each section's cells run twice in a row, then the previous section's cells run once
    more (an earlier section after a later one); the last cell, the notebook's cleanup,
    is kept for the end and runs twice.

    Args:
        groups: From :func:`sections`.
        repeat: Cells that may run more than once here (all when ``None``): leaving out
            the slow ones keeps the test fast.

    Returns:
        Cell indices; each cell appears at least once.
    """
    groups = [list(group) for group in groups if group]
    if not groups:
        return []
    last = groups[-1].pop()
    groups = [group for group in groups if group]
    again = (lambda i: True) if repeat is None else (lambda i: i in repeat)
    order: list[int] = []
    for number, group in enumerate(groups):
        for index in group:
            order += [index, index] if again(index) else [index]
        if number:
            order += [index for index in groups[number - 1] if again(index)]
    return order + [last, last]


def load_sanitizers(path: Path = SANITIZE) -> list[tuple[re.Pattern, str]]:
    """The (regex, replacement) pairs of an nbval sanitize file."""
    config = configparser.ConfigParser(interpolation=None)
    config.read(path, encoding="utf-8")
    return [(re.compile(config[name]["regex"]), config[name]["replace"])
            for name in config.sections()]


def printed_text(cell: nbformat.NotebookNode, sanitizers: list[tuple[re.Pattern, str]]) -> str:
    """What a cell printed (streams and plain-text results, no widgets), masked like nbval."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type == "execute_result" and not any(
                "widget" in mime for mime in output.get("data", {})):
            parts.append(output.data.get("text/plain", "") + "\n")
    text = "".join(parts)
    for regex, replacement in sanitizers:
        text = regex.sub(replacement, text)
    return text


def _ignores_output(cell: nbformat.NotebookNode) -> bool:
    return any(line.strip() in ("# NBVAL_IGNORE_OUTPUT", "# NBVAL_SKIP")
               for line in cell.source.splitlines())


class StressFailure(AssertionError):
    """A ``--stress`` run found a cell that broke after a pause or an out-of-order re-run."""


@dataclass
class StressReport:
    """What a ``--stress`` run did (for the test's message and the CLI)."""

    path: Path
    paused_after: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def _open_connections(pid: int, zmq_ports: set[int]) -> set[tuple]:
    """TCP connections the kernel process holds open, apart from its own ZMQ channels,
    as ``(local address, remote address)`` pairs."""
    import psutil  # an ipykernel dependency

    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return set()
    return {(tuple(c.laddr), tuple(c.raddr)) for c in connections
            if c.status == psutil.CONN_ESTABLISHED and c.raddr
            and c.laddr.port not in zmq_ports and c.raddr.port not in zmq_ports}


async def _stress(path: Path, keepalive: tuple[float, float], pause: float, slow: float,
                  pause_all: bool) -> StressReport:
    original = nbformat.read(path, as_version=4)
    sanitizers = load_sanitizers()
    pre = nbformat.v4.new_code_cell(
        SHORT_KEEPALIVE.format(ping_interval=keepalive[0], ping_timeout=keepalive[1]))
    work = copy.deepcopy(original)
    work.cells = [pre] + work.cells  # nbclient stores each executed cell back at its index
    client = _client(work, path, timeout=STRESS_CELL_TIMEOUT)
    report = StressReport(path)
    label = lambda i: original.cells[i].get("id", str(i))  # noqa: E731

    async def run(index: int) -> nbformat.NotebookNode:
        cell = copy.deepcopy(original.cells[index])
        cell.outputs = []
        try:
            return await client.async_execute_cell(cell, index + 1)
        except Exception as error:
            message = ANSI.sub("", str(error))[-1500:]
            raise StressFailure(f"{path.name}: cell {label(index)} failed "
                                f"({'pass 1' if not report.order else 'pass 2'}): "
                                f"{type(error).__name__}: {message}") from None

    async with client.async_setup_kernel():
        pid = client.km.provisioner.process.pid
        zmq_ports = {client.km.shell_port, client.km.iopub_port, client.km.stdin_port,
                     client.km.control_port, client.km.hb_port}
        await client.async_execute_cell(pre, 0)
        groups = sections(original)
        code = [i for group in groups for i in group]
        paused: set[tuple] = set()  # connections that already sat through a pause
        for index in code:  # pass 1: in order, pausing while new connections are open
            start = time.monotonic()
            cell = await run(index)
            report.seconds[label(index)] = time.monotonic() - start
            expected = original.cells[index]
            if not _ignores_output(expected):
                want, got = printed_text(expected, sanitizers), printed_text(cell, sanitizers)
                if want != got:
                    raise StressFailure(
                        f"{path.name}: cell {label(index)} printed other text after pauses "
                        f"of {pause} s (keepalive: ping every {keepalive[0]} s, pong within "
                        f"{keepalive[1]} s)\n--- committed:\n{want}"
                        f"--- this run:\n{got}")
            if index == code[-1]:
                continue
            connections = _open_connections(pid, zmq_ports)
            if pause_all or connections - paused:
                report.paused_after.append(label(index))
                await asyncio.sleep(pause)
                paused |= connections
        fast = {i for i in code if report.seconds[label(i)] < slow}
        for index in perturbed_order(groups, fast):  # pass 2: out of order
            report.order.append(label(index))
            await run(index)
    return report


def stress(path: Path, keepalive: tuple[float, float] = (PING_INTERVAL, PING_TIMEOUT),
           pause: float = PAUSE, slow: float = SLOW, pause_all: bool = False) -> StressReport:
    """Run ``path`` as a student who pauses between cells, then re-runs them out of order.

    See the module docstring for the two passes. Nothing is saved.

    Args:
        path: The notebook.
        keepalive: websockets' default ``(ping_interval, ping_timeout)`` in the kernel (s).
        pause: Wait after each cell that leaves a new TCP connection open (s); keep it above
            ``sum(keepalive)`` so that an unanswered ping has timed out by then.
        slow: Cells that took longer than this in pass 1 are not repeated in pass 2 (s).
        pause_all: Pause after every cell, not only while a connection is open (slower).

    Returns:
        What was run, for messages.

    Raises:
        StressFailure: a cell raised, hung, or printed other text than its committed output.
    """
    return asyncio.run(_stress(path, keepalive, pause, slow, pause_all))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--twice", action="store_true",
                        help="run all cells twice in one kernel and save nothing")
    parser.add_argument("--stress", action="store_true",
                        help="pause between cells with short keepalives, then re-run cells "
                             "out of order; save nothing")
    parser.add_argument("--pause-all", action="store_true",
                        help="with --stress: pause after every cell, not only while a "
                             "connection is open")
    args = parser.parse_args(argv)
    failed = 0
    for path in args.notebooks:
        try:
            if args.stress:
                start = time.monotonic()
                report = stress(path, pause_all=args.pause_all)
                print(f"survived pauses and out-of-order re-runs: {path} in "
                      f"{time.monotonic() - start:.1f} s (paused after {len(report.paused_after)} "
                      f"cells, pass 2 ran {len(report.order)} cells)", flush=True)
            elif args.twice:
                execute_twice(path)
                print(f"re-ran twice: {path}")
            else:
                print(f"executed {path} in {execute(path):.1f} s", flush=True)
        except Exception as error:  # report every notebook, then fail
            failed += 1
            print(f"FAILED {path}: {type(error).__name__}: {str(error)[-2000:]}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
