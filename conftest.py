"""The order in which `make test` hands the suite to its xdist workers.

`make test` runs ``--dist loadscope``: a notebook's cells stay in order on one worker
(nbval needs it), a test file's module-scoped fixtures (a browser, a server) start once per
file, and the pause-and-rerun tests (tests/test_rerun_*.py, 10-40 s per notebook) are one
class per notebook, so each notebook is a unit of its own.  Here, at the top (so that it
also sees what nbval collects from notebooks/, solutions/ and exercises/), the longest units
are put first: reruns, then notebooks, then the other tests, each in its collection order.
"""

from pathlib import Path

import pytest


def _rank(item: pytest.Item) -> int:
    path = Path(str(item.path))
    if path.name.startswith("test_rerun_"):
        return 0
    return 1 if path.suffix == ".ipynb" else 2


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ranked = sorted(enumerate(items), key=lambda pair: (_rank(pair[1]), pair[0]))
    items[:] = [item for _, item in ranked]
