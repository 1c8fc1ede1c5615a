"""Generate student notebooks in ``exercises/`` from the instructor's ``solutions/``.

nbgrader-style regions in code cells::

    def unmask(payload, mask):
        ### BEGIN SOLUTION
        return bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        ### END SOLUTION

become, indented like the region::

    def unmask(payload, mask):
        # YOUR CODE HERE
        raise NotImplementedError()

Outputs are cleared; the generated notebook is then executed (unless ``--no-execute``),
so its committed outputs show what a student sees before writing any code.

Usage::

    python -m tools.exercises                 # every notebook in solutions/
    python -m tools.exercises solutions/NB.ipynb
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
EXERCISES = ROOT / "exercises"

BEGIN = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION\s*$")
END = re.compile(r"^[ \t]*### END SOLUTION\s*$")


class RegionError(ValueError):
    """A solution region is not closed, nested, or closed without being opened."""


def strip_solutions(source: str) -> str:
    """Replace each solution region of one cell's source by a stub.

    Raises:
        RegionError: unbalanced or nested markers.
    """
    out: list[str] = []
    indent: str | None = None
    for number, line in enumerate(source.splitlines(), 1):
        begin = BEGIN.match(line)
        if begin:
            if indent is not None:
                raise RegionError(f"line {number}: nested ### BEGIN SOLUTION")
            indent = begin["indent"]
            out.append(f"{indent}# YOUR CODE HERE")
            out.append(f"{indent}raise NotImplementedError()")
        elif END.match(line):
            if indent is None:
                raise RegionError(f"line {number}: ### END SOLUTION without BEGIN")
            indent = None
        elif indent is None:
            out.append(line)
    if indent is not None:
        raise RegionError("### BEGIN SOLUTION never closed")
    return "\n".join(out)


def has_solution(source: str) -> bool:
    return any(BEGIN.match(line) for line in source.splitlines())


def make_exercise(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return the student version of a solution notebook, outputs cleared."""
    nb = copy.deepcopy(solution)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source)
            cell.outputs = []
            cell.execution_count = None
    nb.metadata.pop("widgets", None)
    return nb


def generate(solution_path: Path, execute: bool = True) -> Path:
    """Write ``exercises/<name>`` from ``solutions/<name>`` and execute it.

    Raises:
        RegionError: the solution has badly formed regions.
        ValueError: the solution has no region at all.
    """
    solution = nbformat.read(solution_path, as_version=4)
    if not any(c.cell_type == "code" and has_solution(c.source) for c in solution.cells):
        raise ValueError(f"{solution_path} has no ### BEGIN SOLUTION region")
    target = EXERCISES / solution_path.name
    target.parent.mkdir(exist_ok=True)
    nbformat.write(make_exercise(solution), target)
    if execute:
        from tools.execute import execute as run

        run(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate exercises/ from solutions/.")
    parser.add_argument("solutions", nargs="*", type=Path)
    parser.add_argument("--no-execute", action="store_true")
    args = parser.parse_args(argv)
    paths = args.solutions or sorted(SOLUTIONS.glob("*.ipynb"))
    for path in paths:
        target = generate(path, execute=not args.no_execute)
        print(f"generated {target.relative_to(ROOT)} from {path.resolve().relative_to(ROOT)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
