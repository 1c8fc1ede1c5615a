"""Execute notebooks in place with a fresh kernel and save their outputs.

Usage::

    python -m course.tools.execute notebooks/01_why_realtime.ipynb ...
    python -m course.tools.execute --twice NB   # run all cells twice in one kernel, save nothing

Cells run with the notebook's folder as working directory, as in JupyterLab.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

KERNEL = "python3"
CELL_TIMEOUT = 300


def _client(nb: nbformat.NotebookNode, path: Path) -> NotebookClient:
    return NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--twice", action="store_true",
                        help="run all cells twice in one kernel and save nothing")
    args = parser.parse_args(argv)
    failed = 0
    for path in args.notebooks:
        try:
            if args.twice:
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
