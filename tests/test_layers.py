"""The package's shape: layers import only downwards, and every module says what it exports.

The layer map is in ``course/__init__.py`` and CONTRIBUTING.md.  Imports are read from the
source (``ast``), so an import inside a function counts too.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "course"

#: Layers from the bytes up: each may import its own layer and the ones before it.
LAYERS = ["protocol", "wire", "demo", "net", "measure", "ui", "checks"]

SOCKETS = {"socket", "selectors", "ssl", "websockets", "aiohttp", "redis"}
WIDGETS = {"ipywidgets", "anywidget", "traitlets", "IPython"}
#: Third-party or standard modules each layer must not touch, beyond the layer rule.
FORBIDDEN = {
    "protocol": SOCKETS | WIDGETS | {"asyncio"},
    "wire": SOCKETS | WIDGETS | {"asyncio"},
    "demo": SOCKETS | WIDGETS,
    "net": WIDGETS,
    "measure": WIDGETS,
}
#: Modules with a stricter rule than their layer: the widgets know no sockets and no frames.
STRICT = {
    "course.ui.widgets": SOCKETS | {"course.protocol", "course.net", "course.wire"},
}


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found.append((".".join(parts), path))
    return found


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            if node.module == "course":  # from course import wire
                names.update(f"course.{alias.name}" for alias in node.names)
    return names


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


MODULES = modules()


def test_the_tree_shows_the_layers():
    layers = {layer_of(name) for name, _ in MODULES} - {None}
    assert layers == set(LAYERS), f"course/ holds {sorted(layers)}; the map says {LAYERS}"
    assert not (PACKAGE / "tools").exists(), "the notebook toolchain lives in the top-level tools/"
    doc = importlib.import_module("course").__doc__
    for layer in LAYERS:
        assert f"course.{layer}" in doc, f"course/__init__.py does not describe course.{layer}"
    contributing = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    for layer in LAYERS:
        assert f"course/{layer}" in contributing, f"CONTRIBUTING.md does not map course/{layer}"


@pytest.mark.parametrize("module,path", MODULES, ids=[name for name, _ in MODULES])
def test_imports_go_down_the_layers(module, path):
    layer = layer_of(module)
    if layer is None:
        return
    allowed = LAYERS[:LAYERS.index(layer) + 1]
    bad = []
    for name in sorted(imports_of(path)):
        if _matches(name, "tools"):
            bad.append(f"{name} (the toolchain is not part of the package)")
        elif _matches(name, "course") and name != "course":
            target = layer_of(name)
            if target not in allowed:
                bad.append(f"{name} (layer {target!r} is above {layer!r})")
        root = name.split(".")[0]
        if root in FORBIDDEN.get(layer, ()):
            bad.append(f"{name} (the {layer} layer does no {root})")
        for prefix in STRICT.get(module, ()):
            if _matches(name, prefix):
                bad.append(f"{name} ({module} must not know it)")
    assert not bad, f"{module} imports " + "; ".join(bad)


def test_the_rule_catches_a_bad_import(tmp_path):
    """The scanner sees imports anywhere in a file, including inside functions."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from course.net.hub import Hub\n    import websockets\n")
    assert {"course.net.hub", "websockets"} <= imports_of(bad)


def _defined_here(module) -> set[str]:
    """Public names whose definition is in this module (not imported into it)."""
    tree = ast.parse(inspect.getsource(module))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return {n for n in names if not n.startswith("_") and n not in {"logger"}}


@pytest.mark.parametrize("module", [name for name, path in MODULES if path.name != "__init__.py"]
                         + ["course.checks"])
def test_exports_are_declared_and_not_borrowed(module):
    mod = importlib.import_module(module)
    exported = getattr(mod, "__all__", None)
    assert exported is not None, f"{module} has no __all__"
    assert len(exported) == len(set(exported)), f"{module}.__all__ lists a name twice"
    missing = [n for n in exported if not hasattr(mod, n)]
    assert not missing, f"{module}.__all__ names what it does not define: {missing}"
    here = _defined_here(mod)
    borrowed = sorted(set(exported) - here)
    assert not borrowed, f"{module} re-exports {borrowed}: import them from where they are defined"
    undeclared = sorted(here - set(exported))
    assert not undeclared, (f"{module} defines public names missing from __all__: {undeclared} "
                            "(export them, or prefix them with _)")


def test_subpackages_export_nothing():
    """``course.net`` etc. are folders, not facades: import from the module that defines a name."""
    for name, path in MODULES:
        if path.name == "__init__.py" and name not in ("course", "course.checks"):
            source = path.read_text(encoding="utf-8")
            assert "import" not in source, f"{name}/__init__.py re-exports; keep it a docstring"
