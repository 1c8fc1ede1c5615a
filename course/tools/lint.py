"""Notebook lint: what every committed notebook must satisfy.

- every non-empty code cell executed, with execution counts 1, 2, 3... in order;
- kernelspec ``python3``;
- no error outputs (lessons, solutions and exercises alike: stubs raise only when called,
  and self-checks turn that into a ❌ line);
- no absolute paths or host names in outputs;
- output opt-outs (``NBVAL_IGNORE_OUTPUT``/``NBVAL_SKIP``) say why in a comment, and are at
  most a quarter of all code cells;
- lessons end with Recap, Check yourself and Further reading sections.

Usage: ``python -m course.tools.lint`` (exits 1 and lists problems if any).
"""

from __future__ import annotations

import re
import socket
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("notebooks", "solutions", "exercises")
OPT_OUT = re.compile(r"#\s*(NBVAL_IGNORE_OUTPUT|NBVAL_SKIP)")
MARKERS = {"NBVAL_IGNORE_OUTPUT", "NBVAL_SKIP"}
ABSOLUTE = re.compile(r"(?<![\w.])/(?:work|root|home|tmp|usr|opt|var)/[\w./-]+|[A-Z]:\\\\")
MAX_OPT_OUT = 0.25
LESSON_SECTIONS = ("## Recap", "## Check yourself", "## Further reading")


def notebooks(root: Path = ROOT) -> list[Path]:
    return [p for folder in FOLDERS for p in sorted((root / folder).glob("*.ipynb"))]


def _output_text(output) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    if output.get("output_type") == "error":
        return "\n".join(output.get("traceback", []))
    data = output.get("data", {})
    return "\n".join(str(v) for k, v in data.items() if k.startswith("text/"))


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]


def opt_out_reason(source: str) -> str | None:
    """None when the cell does not opt out; else the reason (the comment line after the marker).

    nbval honours a marker only when it is the whole comment (``# NBVAL_IGNORE_OUTPUT``),
    so the reason goes on the next comment line.
    """
    lines = [line.strip() for line in source.splitlines()]
    for index, line in enumerate(lines):
        if line.startswith("#") and line.lstrip("#").strip() in MARKERS:
            following = lines[index + 1] if index + 1 < len(lines) else ""
            return following.lstrip("# ").strip() if following.startswith("#") else ""
    return None


def misplaced_marker(source: str) -> bool:
    """A marker nbval will not honour: words on the same line as NBVAL_IGNORE_OUTPUT/NBVAL_SKIP."""
    return any(OPT_OUT.search(line) and line.strip().lstrip("#").strip() not in MARKERS
               for line in source.splitlines())


def lint_notebook(path: Path, host: str | None = None) -> list[str]:
    """Return the problems of one notebook, each a readable line."""
    host = host or socket.gethostname()
    problems = []
    nb = nbformat.read(path, as_version=4)
    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    if nb.metadata.get("kernelspec", {}).get("name") != "python3":
        problems.append(f"{name}: kernelspec is not python3")
    expected = 1
    for index, cell in enumerate(code_cells(nb)):
        if cell.execution_count != expected:
            problems.append(f"{name}: code cell {index + 1} has execution_count "
                            f"{cell.execution_count}, expected {expected} (run `make notebooks`)")
            break
        expected += 1
    for index, cell in enumerate(code_cells(nb)):
        why = opt_out_reason(cell.source)
        if why is not None and len(why) < 8:
            problems.append(f"{name}: code cell {index + 1} opts out of nbval without saying why "
                            "(put the reason on the comment line after the marker)")
        if misplaced_marker(cell.source):
            problems.append(f"{name}: code cell {index + 1} has an NBVAL marker nbval ignores "
                            "(the marker must be alone on its comment line)")
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                problems.append(f"{name}: code cell {index + 1} saved an error output "
                                f"({output.get('ename')})")
            text = _output_text(output)
            found = ABSOLUTE.search(text)
            if found:
                problems.append(f"{name}: code cell {index + 1} prints an absolute path {found[0]!r}")
            if host and len(host) > 3 and host in text:
                problems.append(f"{name}: code cell {index + 1} prints the host name {host!r}")
    if path.parent.name == "notebooks":
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        for heading in LESSON_SECTIONS:
            if heading not in text:
                problems.append(f"{name}: lesson lacks a '{heading}' section")
    return problems


def opt_out_ratio(paths: list[Path]) -> tuple[int, int]:
    """(cells opting out, code cells) over all the given notebooks."""
    opted = total = 0
    for path in paths:
        for cell in code_cells(nbformat.read(path, as_version=4)):
            total += 1
            opted += opt_out_reason(cell.source) is not None
    return opted, total


def lint_all(root: Path = ROOT) -> list[str]:
    paths = notebooks(root)
    problems = [p for path in paths for p in lint_notebook(path)]
    opted, total = opt_out_ratio(paths)
    if total and opted / total > MAX_OPT_OUT:
        problems.append(f"{opted}/{total} code cells opt out of nbval (max {MAX_OPT_OUT:.0%}): sanitize instead")
    return problems


def main() -> int:
    problems = lint_all()
    for problem in problems:
        print(problem)
    opted, total = opt_out_ratio(notebooks())
    print(f"{len(notebooks())} notebooks, {total} code cells, {opted} opt-outs, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
