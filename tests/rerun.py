"""Support for tests/test_rerun_*.py: each notebook runs as a student who pauses, then clicks around.

``tools.execute.stress`` runs every notebook twice in one kernel:

1. in order, with websockets' keepalive shortened (a ping every 0.1 s, a pong within 0.4 s)
   and a 0.6 s pause after every cell that leaves a connection open; what each cell prints
   must match its committed output;
2. out of order: every cell twice in a row, each section again after the next one, the cleanup
   cell twice at the end; nothing may raise or hang (60 s per cell).

One test file per folder, so that ``--dist loadfile`` spreads them over the workers.
"""

from pathlib import Path

import pytest

from tools.execute import stress

ROOT = Path(__file__).resolve().parent.parent


def parametrize_notebooks(folder: str):
    paths = sorted((ROOT / folder).glob("*.ipynb"))
    return pytest.mark.parametrize("path", paths, ids=lambda p: p.name)


__all__ = ["stress", "parametrize_notebooks"]
