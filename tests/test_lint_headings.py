"""The lint rule: every section heading starts its own markdown cell.

A cell that holds the end of one section and the start of the next cannot be folded, moved or
linked to as a section, and is longer than a screen. ``tools.lint`` reports each such
heading; these tests prove the rule on small notebooks written here, then on the real ones.
"""

from __future__ import annotations

import nbformat
import pytest

from tools import lint


@pytest.mark.parametrize("source", [
    "## Recap\n\n- one\n- two",
    "\n\n## A heading after blank lines\ntext",
    "### A subsection\ntext",
    "text only, no heading",
    "# 01 · A title\n\nIntroduction text",                    # the title is not a section
    "text\n\n```python\n## a comment in a fenced code block\n```\nmore text",
    "text\n\n~~~\n## not a heading either\n~~~",
    "text\n#hashtag is not a heading",
    "text\n##no-space is not a heading either (CommonMark)",
    "text with ## in the middle of a line",
    "<details><summary>Answer</summary>\n\nThe answer, with **Markdown**.\n\n</details>",
])
def test_cells_that_pass(source):
    assert lint.misplaced_headings(source) == []


@pytest.mark.parametrize("source, expected", [
    ("Text of section 1.\n\n## 2. The next section\nIts text.", ["## 2. The next section"]),
    ("## Recap\n\n- a point\n\n## Check yourself\n\n1. Q?\n\n## Further reading\n\n- a link",
     ["## Check yourself", "## Further reading"]),
    ("The fix is simply to drop it.\n\n### A subsection\ntext", ["### A subsection"]),
    ("text\n   ## indented up to three spaces is still a heading", ["## indented up to three spaces is still a heading"]),
    ("text\n##\n", ["##"]),                                     # an empty heading is a heading
    ("text\n```\ncode\n```\n## after the fence", ["## after the fence"]),
    ("text\n~~~~\n~~~\n## inside: a shorter fence does not close\n~~~~\n## outside",
     ["## outside"]),
])
def test_cells_that_fail(source, expected):
    assert lint.misplaced_headings(source) == expected


def _notebook(tmp_path, folder: str, *markdown: str):
    (tmp_path / folder).mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(s) for s in markdown])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    path = tmp_path / folder / "99_x.ipynb"
    nbformat.write(nb, path)
    return path, nb


@pytest.mark.parametrize("folder", ["notebooks", "solutions", "exercises"])
def test_lint_reports_the_cell_and_the_heading_in_every_folder(tmp_path, folder):
    path, nb = _notebook(tmp_path, folder, "# 99 · Title\n\nIntro.",
                         "## 1. First\n\nText of the first section.\n\n## 2. Second\nMore.")
    problems = [p for p in lint.lint_notebook(path, host="testhost-name") if "section heading" in p]
    assert len(problems) == 1, problems
    assert "cell #2" in problems[0] and nb.cells[1].id in problems[0]
    assert "'## 2. Second'" in problems[0] and "split the cell" in problems[0]


def test_lint_accepts_one_heading_per_cell(tmp_path):
    path, _ = _notebook(tmp_path, "solutions", "# 99 · Title\n\nIntro.",
                        "## 1. First\n\nText.", "## 2. Second\n\nMore.")
    assert not [p for p in lint.lint_notebook(path, host="testhost-name") if "section heading" in p]


def test_every_committed_notebook_starts_each_section_in_its_own_cell():
    problems = [p for path in lint.notebooks() for p in lint.lint_notebook(path)
                if "section heading" in p]
    assert problems == [], "\n".join(problems)


# --- the fixer: ``python -m tools.lint --split-sections NB`` ----------------------------

def test_split_at_headings_cuts_before_each_misplaced_heading_only():
    source = ("End of section 1.\n\n```\n## not a heading\n```\n\n## 2. Next\nText.\n\n"
              "### 2.1 Sub\nMore.\n")
    assert lint.split_at_headings(source) == [
        "End of section 1.\n\n```\n## not a heading\n```", "## 2. Next\nText.", "### 2.1 Sub\nMore."]
    assert lint.split_at_headings("## Fine\ntext") == ["## Fine\ntext"]


def test_split_sections_touches_markdown_only_and_keeps_ids(tmp_path):
    (tmp_path / "solutions").mkdir()
    code = nbformat.v4.new_code_cell("x = 1  # ## not markdown\n## nor this", execution_count=1)
    cells = [nbformat.v4.new_markdown_cell("# 99 · Title\n\nIntro."),
             nbformat.v4.new_markdown_cell("## Recap\n\n- a\n\n## Check yourself\n\n1. Q?\n\n"
                                           "## Further reading\n\n- link"),
             code]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    path = tmp_path / "solutions" / "99_x.ipynb"
    nbformat.write(nb, path)

    assert lint.split_sections(path) == 2
    after = nbformat.read(path, as_version=4)
    assert [c.source.split("\n")[0] for c in after.cells] == [
        "# 99 · Title", "## Recap", "## Check yourself", "## Further reading", code.source.split("\n")[0]]
    assert after.cells[1].id == cells[1].id and after.cells[4] == code
    assert len({c.id for c in after.cells}) == 5
    assert not [p for p in lint.lint_notebook(path, host="testhost-name") if "section heading" in p]
    assert lint.split_sections(path) == 0, "a second run changes nothing"


def test_every_check_yourself_question_needs_an_answer():
    from tools.lint import unanswered_questions

    answered = ("## Check yourself\n\n1. Why?\n\n<details><summary>Answer</summary>\n\nBecause.\n\n"
                "</details>\n2. How?\n<details><summary>Answer</summary>\n\nSo.\n\n</details>\n")
    assert unanswered_questions(answered) == 0
    assert unanswered_questions(answered.replace("<details>", "<p>", 1)) == 1
    assert unanswered_questions("## Check yourself\n\n1. One?\n2. Two?\n") == 2
    assert unanswered_questions("## Recap\n\n1. not a question\n") == 0


def test_lesson_sections_are_numbered_in_order():
    good = ["# 05 · Title", "## 1. One\ntext", "## 2. Two", "### a sub-section", "## Recap",
            "## Check yourself", "## Further reading"]
    assert lint.section_numbering(good) == []
    assert lint.section_numbering(["## 1. One", "## Two"]) == [
        "section 'Two' should be numbered '## 2. …'"]
    assert lint.section_numbering(["## 1. One", "## 3. Three"]) == [
        "section '3. Three' should be numbered '## 2. …'"]
