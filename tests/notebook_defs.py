"""The definitions of a solution notebook, for the tests of its self-checks.

The checks must pass the instructor's answers, which live in ``solutions/`` only.  This
runs a notebook's top-level imports, functions and classes (not the cells' other
statements: no servers, no awaits) and returns the one asked for.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Any

import nbformat

ROOT = Path(__file__).resolve().parent.parent
_KEEP = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)

__all__ = ["defined_in"]


@functools.cache
def _namespace(path: str) -> dict[str, Any]:
    notebook = nbformat.read(ROOT / path, as_version=4)
    namespace: dict[str, Any] = {"__name__": f"solution:{path}"}
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        tree = compile(cell.source, path, "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        kept = ast.Module(body=[node for node in tree.body if isinstance(node, _KEEP)], type_ignores=[])
        exec(compile(kept, f"{path}:cell", "exec"), namespace)
    return namespace


def defined_in(path: str, name: str) -> Any:
    """The function or class ``name`` as defined in the notebook at ``path`` (from the top)."""
    return _namespace(path)[name]
