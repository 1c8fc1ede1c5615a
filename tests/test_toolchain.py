"""The notebook toolchain: solution regions, exercises in sync, self-checks proven, lint, navigation."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from tools import exercises, lint, nav

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
EXERCISES = sorted((ROOT / "exercises").glob("*.ipynb"))
CHECK_LINE = re.compile(r"^(✅|❌)", re.MULTILINE)


# --- solution regions -------------------------------------------------------------------------

def test_region_becomes_indented_stub():
    source = ("def unmask(p, m):\n"
              "    \"\"\"Doc.\"\"\"\n"
              "    ### BEGIN SOLUTION\n"
              "    return bytes(b ^ m[i % 4] for i, b in enumerate(p))\n"
              "    ### END SOLUTION\n"
              "\n"
              "x = 1")
    assert exercises.strip_solutions(source) == (
        "def unmask(p, m):\n"
        "    \"\"\"Doc.\"\"\"\n"
        "    # YOUR CODE HERE\n"
        "    raise NotImplementedError()\n"
        "\n"
        "x = 1")


def test_two_regions_in_one_cell_and_code_outside_kept():
    source = ("def a():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n"
              "def b():\n        ### BEGIN SOLUTION\n        return 2\n        ### END SOLUTION")
    out = exercises.strip_solutions(source)
    assert out.count("raise NotImplementedError()") == 2
    assert "return" not in out
    assert "        # YOUR CODE HERE" in out


@pytest.mark.parametrize("source, message", [
    ("### BEGIN SOLUTION\nx = 1", "never closed"),
    ("x = 1\n### END SOLUTION", "without BEGIN"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n### END SOLUTION", "nested"),
])
def test_malformed_regions_are_clear_errors(source, message):
    with pytest.raises(exercises.RegionError, match=message):
        exercises.strip_solutions(source)


def test_make_exercise_clears_outputs_and_counts():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "def f():\n    ### BEGIN SOLUTION\n    return 42\n    ### END SOLUTION",
        outputs=[nbformat.v4.new_output("stream", text="42\n")], execution_count=3)])
    ex = exercises.make_exercise(nb)
    assert ex.cells[0].outputs == [] and ex.cells[0].execution_count is None
    assert nb.cells[0].outputs, "the solution notebook itself is untouched"


# --- exercises/ is generated from solutions/ ---------------------------------------------------

def test_every_exercise_has_a_solution_and_back():
    assert [p.name for p in SOLUTIONS] == [p.name for p in EXERCISES]


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_exercise_in_sync_with_solution(solution):
    expected = exercises.make_exercise(nbformat.read(solution, as_version=4))
    actual = nbformat.read(ROOT / "exercises" / solution.name, as_version=4)
    assert [c.cell_type for c in actual.cells] == [c.cell_type for c in expected.cells]
    for index, (a, e) in enumerate(zip(actual.cells, expected.cells)):
        assert a.source == e.source, (
            f"exercises/{solution.name} cell {index} differs from its solution: run `make exercises`")


# --- each self-check fails on the stub and passes on the solution ------------------------------

def _check_lines(cell) -> list[str]:
    text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
    return [line for line in text.splitlines() if CHECK_LINE.match(line)]


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_self_checks_fail_on_stub_and_pass_on_solution(solution):
    """Committed outputs are re-made and compared by nbval, so they are real results."""
    sol = nbformat.read(solution, as_version=4)
    ex = nbformat.read(ROOT / "exercises" / solution.name, as_version=4)
    checking = [i for i, c in enumerate(sol.cells) if c.cell_type == "code" and _check_lines(c)]
    assert checking, f"{solution.name} has no self-check output at all"
    for i in checking:
        sol_lines, ex_lines = _check_lines(sol.cells[i]), _check_lines(ex.cells[i])
        assert all(line.startswith("✅") for line in sol_lines), (
            f"{solution.name} cell {i}: the solution fails its own check: {sol_lines}")
        assert any(line.startswith("❌") for line in ex_lines), (
            f"exercises/{solution.name} cell {i}: the check passes on the stub: {ex_lines}")
    stubbed = sum("raise NotImplementedError()" in c.source for c in ex.cells if c.cell_type == "code")
    assert stubbed, f"exercises/{solution.name} has no stub"


# --- lint and navigation -----------------------------------------------------------------------

def test_all_notebooks_pass_lint():
    assert lint.lint_all() == []


def test_lint_catches_each_kind_of_problem(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    cells = [
        nbformat.v4.new_code_cell("1", execution_count=1),
        nbformat.v4.new_code_cell("# NBVAL_IGNORE_OUTPUT\nx", execution_count=2,
                                  outputs=[nbformat.v4.new_output("stream", text="/root/secret\n")]),
        nbformat.v4.new_code_cell("# NBVAL_IGNORE_OUTPUT because timings vary\ny", execution_count=3),
        nbformat.v4.new_code_cell("boom", execution_count=None, outputs=[
            nbformat.v4.new_output("error", ename="ValueError", evalue="", traceback=[])]),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "other"}
    path = folder / "99_bad.ipynb"
    nbformat.write(nb, path)
    problems = "\n".join(lint.lint_notebook(path, host="testhost-name"))
    for expected in ("kernelspec", "execution_count", "without saying why", "absolute path",
                     "error output", "Recap", "marker nbval ignores"):
        assert expected in problems


def test_navigation_is_up_to_date():
    assert nav.main(["--check"]) == 0, "run `make nav`"


def test_navigation_links_neighbours():
    lessons = nav.lessons()
    assert len(lessons) >= 1
    for i, lesson in enumerate(lessons):
        text = nav.nav_markdown(lessons, i)
        if i + 1 < len(lessons):
            assert lessons[i + 1].path.name in text
        if i > 0:
            assert lessons[i - 1].path.name in text


def test_exercises_link_back_to_their_chapter():
    lessons = {lesson.number: lesson for lesson in nav.lessons()}
    for path in SOLUTIONS + EXERCISES:
        first = nbformat.read(path, as_version=4).cells[0]
        assert nav.is_nav(first), f"{path.name}: no navigation cell (run `make nav`)"
        assert f"../notebooks/{lessons[path.name[:2]].path.name}" in first.source
