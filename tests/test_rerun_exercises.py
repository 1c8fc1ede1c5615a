"""Every notebook in exercises/ runs twice in one kernel (see tests/rerun.py)."""
from rerun import execute_twice, parametrize_notebooks


@parametrize_notebooks("exercises")
def test_runs_twice_in_one_kernel(path):
    execute_twice(path)
