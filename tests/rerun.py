"""Support for tests/test_rerun_*.py: each notebook runs as a student who pauses, then clicks around.

``tools.execute.stress`` runs every notebook twice in one kernel:

1. in order, with websockets' keepalive shortened (a ping every 0.1 s, a pong within 0.4 s)
   and a 0.6 s pause after every cell that leaves a connection open that was not yet paused
   for; what each cell prints must match its committed output;
2. out of order: every cell twice in a row, each section again after the next one, the cleanup
   cell twice at the end; nothing may raise or hang (60 s per cell).

One test class per notebook (``--dist loadscope`` makes each a unit of its own, which the
top-level conftest.py hands out first).
"""

import re
from pathlib import Path

from tools.execute import stress

ROOT = Path(__file__).resolve().parent.parent


def one_class_per_notebook(folder: str, namespace: dict) -> None:
    """Define, in ``namespace``, a class ``Test_<name>`` for every notebook in ``folder``.

    Each holds ``test_survives_pauses_and_out_of_order_reruns``, which runs :func:`stress`.
    """
    for path in sorted((ROOT / folder).glob("*.ipynb")):
        def test_survives_pauses_and_out_of_order_reruns(self, path: Path = path) -> None:
            stress(path)

        name = "Test_" + re.sub(r"\W", "_", path.stem)
        namespace[name] = type(name, (), {
            "test_survives_pauses_and_out_of_order_reruns":
                test_survives_pauses_and_out_of_order_reruns})


__all__ = ["stress", "one_class_per_notebook"]
