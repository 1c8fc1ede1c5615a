"""Support for tests/test_rerun_*.py: each notebook runs top to bottom, then again in the same
kernel (re-runnable cells). One test file per folder, so `--dist loadfile` spreads them."""

from pathlib import Path

import pytest

from course.tools.execute import execute_twice

ROOT = Path(__file__).resolve().parent.parent


def parametrize_notebooks(folder: str):
    paths = sorted((ROOT / folder).glob("*.ipynb"))
    return pytest.mark.parametrize("path", paths, ids=lambda p: p.name)


__all__ = ["execute_twice", "parametrize_notebooks"]
