"""Notebook lint: what every committed notebook must satisfy.

- every non-empty code cell executed, with execution counts 1, 2, 3... in order;
- kernelspec ``python3``;
- no error outputs (lessons, solutions and exercises alike: stubs raise only when called,
  and self-checks turn that into a ❌ line);
- no absolute paths or host names in outputs;
- output opt-outs (``NBVAL_IGNORE_OUTPUT``/``NBVAL_SKIP``) say why in a comment, and are at
  most a quarter of all code cells;
- lessons end with Recap, Check yourself and Further reading sections;
- every section heading (``##``, and subsections ``###`` and deeper) starts its own markdown
  cell, in lessons, solutions and exercises alike: a cell never holds the end of one section
  and the start of the next.

Usage: ``python -m tools.lint`` (exits 1 and lists problems if any);
``python -m tools.lint --split-sections NB...`` first splits the markdown cells of those
notebooks at their misplaced section headings.
"""

from __future__ import annotations

import argparse
import re
import socket
import sys
import uuid
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("notebooks", "solutions", "exercises")
OPT_OUT = re.compile(r"#\s*(NBVAL_IGNORE_OUTPUT|NBVAL_SKIP)")
MARKERS = {"NBVAL_IGNORE_OUTPUT", "NBVAL_SKIP"}
ABSOLUTE = re.compile(r"(?<![\w.])/(?:work|root|home|tmp|usr|opt|var)/[\w./-]+|[A-Z]:\\\\")
MAX_OPT_OUT = 0.25
LESSON_SECTIONS = ("## Recap", "## Check yourself", "## Further reading")
SECTION_HEADING = re.compile(r"^ {0,3}#{2,6}(?:[ \t]|$)")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


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


def _misplaced_heading_lines(source: str) -> list[int]:
    """Indexes (in ``source.split("\\n")``) of the section headings that do not open the cell."""
    found = []
    fence = ""          # the fence that opened the code block we are in ("" outside)
    seen_text = False
    for index, line in enumerate(source.split("\n")):
        opening = FENCE.match(line)
        if fence:
            closing = opening and opening[1].startswith(fence) and not line.strip().strip(fence[0])
            fence = "" if closing else fence
        elif opening:
            fence = opening[1]
        elif SECTION_HEADING.match(line) and seen_text:
            found.append(index)
        seen_text = seen_text or bool(line.strip())
    return found


def misplaced_headings(source: str) -> list[str]:
    """The section headings (``##`` to ``######``) of a markdown cell that are not its first line.

    Blank lines before the first heading are allowed; lines inside fenced code blocks
    (```` ``` ```` or ``~~~``) are not headings, nor is ``#hashtag`` (no space).  The title
    (``# NN · Title``) is not checked: it opens the title cell anyway.

    Returns:
        The misplaced heading lines, stripped, in order (empty when the cell is fine).
    """
    lines = source.split("\n")
    return [lines[i].strip() for i in _misplaced_heading_lines(source)]


def split_at_headings(source: str) -> list[str]:
    """``source`` cut before each misplaced section heading: one part per cell, blank edges trimmed."""
    lines = source.split("\n")
    cuts = [0, *_misplaced_heading_lines(source), len(lines)]
    return ["\n".join(lines[a:b]).strip("\n") for a, b in zip(cuts, cuts[1:])]


def split_sections(path: Path) -> int:
    """Rewrite ``path`` so that every section heading starts its own markdown cell.

    Only markdown cells are touched: the part before the first misplaced heading keeps the
    cell's id and metadata, each later part becomes a new markdown cell with a fresh id.

    Returns:
        How many cells were added (0: the file is left as it was).
    """
    nb = nbformat.read(path, as_version=4)
    taken = {cell.get("id") for cell in nb.cells}
    cells, added = [], 0
    for cell in nb.cells:
        cells.append(cell)
        if cell.cell_type != "markdown" or not _misplaced_heading_lines(cell.source):
            continue
        first, *rest = split_at_headings(cell.source)
        cell.source = first
        for part in rest:
            new = nbformat.v4.new_markdown_cell(part)
            while new.id in taken:
                new.id = uuid.uuid4().hex[:8]
            taken.add(new.id)
            cells.append(new)
            added += 1
    if added:
        nb.cells = cells
        nbformat.validate(nb)
        nbformat.write(nb, path)
    return added


def unanswered_questions(source: str) -> int:
    """How many numbered questions of a Check-yourself cell have no ``<details>`` answer.

    Each question (a line starting ``1.``, ``2.``...) must be followed by its collapsed
    answer, ``<details><summary>Answer</summary> … </details>``, before the next question.
    """
    if not source.startswith("## Check yourself"):
        return 0
    missing = 0
    blocks = re.split(r"^\s*\d+\.\s", source, flags=re.M)[1:]  # the text after each question
    for block in blocks:
        if "<details>" not in block:
            missing += 1
    return missing


def section_numbering(sources: list[str]) -> list[str]:
    """Problems with a lesson's section numbers: ``## 1. …``, ``## 2. …`` in order.

    Every ``##`` heading of the lesson's body is numbered from 1 without gaps; the closing
    sections (``## Recap``, ``## Check yourself``, ``## Further reading``) are not.
    """
    problems, expected = [], 1
    closing = tuple(heading.removeprefix("## ") for heading in LESSON_SECTIONS)
    for source in sources:
        for line in source.splitlines():
            if not line.startswith("## "):
                continue
            title = line[3:].strip()
            if title.startswith(closing):
                continue
            number = re.match(r"(\d+)\. ", title)
            if number is None or int(number[1]) != expected:
                problems.append(f"section {title!r} should be numbered '## {expected}. …'")
            expected += 1
    return problems


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
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        missing = unanswered_questions(cell.source)
        if missing:
            problems.append(f"{name}: cell #{index + 1} (Check yourself) has {missing} question(s) "
                            "without a <details><summary>Answer</summary> block")
        for heading in misplaced_headings(cell.source):
            problems.append(f"{name}: cell #{index + 1} (markdown, id {cell.get('id')}) starts the "
                            f"section {heading!r} after other text: a section heading must "
                            "start its own markdown cell (split the cell there)")
    if path.parent.name == "notebooks":
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        for heading in LESSON_SECTIONS:
            if heading not in text:
                problems.append(f"{name}: lesson lacks a '{heading}' section")
        problems += [f"{name}: {problem}" for problem in
                     section_numbering([c.source for c in nb.cells if c.cell_type == "markdown"])]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Lint the course notebooks.")
    parser.add_argument("--split-sections", nargs="+", type=Path, metavar="NB",
                        help="rewrite these notebooks so that every section heading starts its own "
                             "markdown cell (markdown cells only), then lint")
    args = parser.parse_args(argv)
    for path in args.split_sections or []:
        print(f"{path}: {split_sections(path)} markdown cells added")
    problems = lint_all()
    for problem in problems:
        print(problem)
    opted, total = opt_out_ratio(notebooks())
    print(f"{len(notebooks())} notebooks, {total} code cells, {opted} opt-outs, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
