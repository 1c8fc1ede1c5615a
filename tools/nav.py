"""Generate navigation: prev/contents/next cells in every lesson and the README contents table.

Navigation cells are markdown cells tagged ``nav``, first and last in each lesson; they are
rewritten on every run, so never edit them by hand. The README's table lives between
``<!-- contents:start -->`` and ``<!-- contents:end -->``.

Usage: ``python -m tools.nav`` (``--check`` exits 1 if anything is out of date).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- contents:start -->", "<!-- contents:end -->"
TAG = "nav"


@dataclass
class Lesson:
    path: Path
    title: str
    exercises: list[Path]

    @property
    def number(self) -> str:
        return self.path.name[:2]


def is_nav(cell) -> bool:
    return TAG in cell.get("metadata", {}).get("tags", [])


def title_of(path: Path) -> str:
    """The text of the first ``# `` heading of a notebook.

    Raises:
        ValueError: the notebook has no title heading.
    """
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and not is_nav(cell):
            match = re.match(r"#\s+(.+)", cell.source.strip())
            if match:
                return match.group(1).strip()
    raise ValueError(f"{path}: no '# Title' markdown cell")


def lessons(root: Path = ROOT) -> list[Lesson]:
    found = []
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        exercises = sorted((root / "exercises").glob(f"{path.name[:2]}*.ipynb"))
        found.append(Lesson(path, title_of(path), exercises))
    return found


def nav_markdown(all_lessons: list[Lesson], index: int) -> str:
    here = all_lessons[index]
    parts = []
    if index > 0:
        prev = all_lessons[index - 1]
        parts.append(f"[< {prev.title}]({prev.path.name})")
    parts.append("[Contents](../README.md#contents)")
    if index + 1 < len(all_lessons):
        nxt = all_lessons[index + 1]
        parts.append(f"[{nxt.title} >]({nxt.path.name})")
    text = "<!--NAVIGATION-->\n" + " | ".join(parts)
    if here.exercises:
        links = ", ".join(f"[{p.stem}](../exercises/{p.name})" for p in here.exercises)
        text += f"\n\nExercises for this chapter: {links}"
    return text


def exercise_nav_markdown(lesson: Lesson) -> str:
    """The navigation of an exercise notebook (the same in solutions/ and exercises/, so that
    generated exercises stay in sync): back to its chapter, and to the contents."""
    return (f"<!--NAVIGATION-->\n[< {lesson.title}](../notebooks/{lesson.path.name}) | "
            "[Contents](../README.md#contents)")


def targets(all_lessons: list[Lesson], root: Path = ROOT) -> list[tuple[Path, str]]:
    """Every notebook that carries navigation, with the text its nav cells must hold."""
    found = [(lesson.path, nav_markdown(all_lessons, i)) for i, lesson in enumerate(all_lessons)]
    for lesson in all_lessons:
        for exercise in lesson.exercises:
            for folder in ("solutions", "exercises"):
                path = root / folder / exercise.name
                if path.exists():
                    found.append((path, exercise_nav_markdown(lesson)))
    return found


def _nav_cell(text: str, cell_id: str):
    cell = nbformat.v4.new_markdown_cell(text)
    cell.metadata["tags"] = [TAG]
    cell["id"] = cell_id    # stable ids keep diffs small across runs
    return cell


def is_stale(path: Path, text: str) -> bool:
    nb = nbformat.read(path, as_version=4)
    navs = [c.source for c in nb.cells if is_nav(c)]
    return not (navs == [text, text] and is_nav(nb.cells[0]) and is_nav(nb.cells[-1]))


def update_notebook(path: Path, text: str) -> bool:
    """Put fresh nav cells first and last in one notebook. Returns whether the file changed."""
    if not is_stale(path, text):
        return False
    nb = nbformat.read(path, as_version=4)
    body = [c for c in nb.cells if not is_nav(c)]
    nb.cells = [_nav_cell(text, "nav-top"), *body, _nav_cell(text, "nav-bottom")]
    nbformat.write(nb, path)
    return True


def contents_table(all_lessons: list[Lesson]) -> str:
    rows = ["| # | Lesson | Exercises |", "|---|---|---|"]
    for lesson in all_lessons:
        ex = ", ".join(f"[{p.stem}](exercises/{p.name}) ([solution](solutions/{p.name}))"
                       for p in lesson.exercises) or "—"
        rows.append(f"| {lesson.number} | [{lesson.title}](notebooks/{lesson.path.name}) | {ex} |")
    return "\n".join(rows)


def update_readme(all_lessons: list[Lesson], readme: Path = ROOT / "README.md") -> bool:
    text = readme.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme}: missing {START} / {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{contents_table(all_lessons)}\n{END}{tail}"
    if new == text:
        return False
    readme.write_text(new)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate navigation cells and contents.")
    parser.add_argument("--check", action="store_true", help="exit 1 if anything is stale")
    args = parser.parse_args(argv)
    all_lessons = lessons()
    if args.check:
        stale = [str(path.relative_to(ROOT)) for path, text in targets(all_lessons)
                 if is_stale(path, text)]
        readme = (ROOT / "README.md").read_text()
        if f"{START}\n{contents_table(all_lessons)}\n{END}" not in readme:
            stale.append("README.md")
        if stale:
            print("stale navigation: " + ", ".join(stale) + " (run `make nav`)")
            return 1
        print("navigation up to date")
        return 0
    changed = [str(path.relative_to(ROOT)) for path, text in targets(all_lessons)
               if update_notebook(path, text)]
    if update_readme(all_lessons):
        changed.append("README.md")
    print("navigation updated: " + (", ".join(changed) if changed else "nothing to change"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
