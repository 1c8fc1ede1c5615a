"""The JSON tree of a realtime database in the style of Firebase, sans-I/O.

The whole database is one JSON value; every node has a slash path (``"rooms/lobby/title"``,
``""`` or ``"/"`` is the root).  A tree is made of dicts, strings, numbers and booleans:

* ``None`` (JSON ``null``) means *no data*: writing it deletes, and a dict never holds it;
* an empty dict is no data either: deleting the last child of a node deletes the node
  (empty nodes are **pruned** all the way up);
* a list is stored as a dict keyed ``"0"``, ``"1"``... (as Firebase does);
* a float with no fraction is stored as an int (JavaScript has one number type: ``2.0`` is ``2``).

Writes never change their argument: :func:`set_at`, :func:`update` and :func:`remove` return
a new tree that shares the untouched branches with the old one (so the old tree is a free
snapshot, which the event generator of :mod:`course.wire.dbevents` diffs).

Paths and values are checked first (:func:`parse_path`, :func:`normalize`), with Firebase's
limits: keys cannot hold ``. $ # [ ] /`` or control characters, at most 768 bytes of UTF-8,
at most 32 levels; a value is bounded by ``max_bytes`` of canonical JSON.  A refusal is a
:class:`TreeError` whose ``code`` (a :class:`TreeErrorCode`) says why.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "Value", "TreeErrorCode", "TreeError", "MAX_DEPTH", "MAX_KEY_BYTES", "MAX_VALUE_BYTES",
    "FORBIDDEN_KEY_CHARS", "parse_path", "join_path", "check_key", "normalize", "canonical",
    "check_size", "get", "set_at", "update", "remove", "is_prefix", "leaves", "key_order", "sorted_keys",
    "format_tree", "resolve_server_values", "has_server_values",
]

Value = Any  #: ``None``, a bool, a number, a string, or a dict of them (never empty, never holding None)

MAX_DEPTH = 32              #: levels below the root (Firebase: 32)
MAX_KEY_BYTES = 768         #: UTF-8 bytes in one key (Firebase: 768)
MAX_VALUE_BYTES = 1 << 20   #: default bound of one written value, canonical JSON bytes
FORBIDDEN_KEY_CHARS = ".$#[]/"  #: plus ASCII control characters (0-31, 127)
_INT_MIN, _INT_MAX = -(2 ** 31), 2 ** 31 - 1
_INTEGER = re.compile(r"-?0*[0-9]{1,10}", re.ASCII)


class TreeErrorCode(str, enum.Enum):
    """Why a path or a value is refused."""

    BAD_PATH = "bad-path"      #: a key holds a forbidden character, or is too long
    TOO_DEEP = "too-deep"      #: more than MAX_DEPTH levels
    BAD_VALUE = "bad-value"    #: not JSON (NaN, a set, a non-string key...)
    TOO_BIG = "too-big"        #: more than the size bound


class TreeError(ValueError):
    """A refused path or value.

    Args:
        code: why, for programs.
        text: why, for people.
    """

    def __init__(self, code: TreeErrorCode, text: str) -> None:
        super().__init__(text)
        self.code = TreeErrorCode(code)


def check_key(key: str) -> str:
    """Return ``key`` if it may name a child, else raise.

    Raises:
        TreeError: empty, a forbidden character (``. $ # [ ] /``, control characters),
            or more than :data:`MAX_KEY_BYTES` bytes (code ``bad-path``).
    """
    if not isinstance(key, str) or key == "":
        raise TreeError(TreeErrorCode.BAD_PATH, f"a key must be a non-empty string, got {key!r}")
    for char in key:
        if char in FORBIDDEN_KEY_CHARS or ord(char) < 32 or ord(char) == 127:
            raise TreeError(TreeErrorCode.BAD_PATH,
                            f"key {key[:40]!r} holds {char!r}; keys cannot hold . $ # [ ] / "
                            "or control characters")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise TreeError(TreeErrorCode.BAD_PATH,
                        f"key {key[:40]!r}... is longer than {MAX_KEY_BYTES} bytes")
    return key


def parse_path(path: str | tuple[str, ...]) -> tuple[str, ...]:
    """The keys of a slash path: ``"/a/b/"`` → ``("a", "b")``; ``""`` and ``"/"`` → ``()``.

    Repeated slashes count as one (Firebase's own rule).  A tuple is checked and returned.

    Raises:
        TreeError: not a string, a bad key (``bad-path``), more than :data:`MAX_DEPTH`
            keys (``too-deep``).
    """
    if isinstance(path, tuple):
        keys = path
    elif isinstance(path, str):
        keys = tuple(part for part in path.split("/") if part != "")
    else:
        raise TreeError(TreeErrorCode.BAD_PATH, f"a path must be a string, got {type(path).__name__}")
    if len(keys) > MAX_DEPTH:
        raise TreeError(TreeErrorCode.TOO_DEEP, f"a path has at most {MAX_DEPTH} keys, got {len(keys)}")
    for key in keys:
        check_key(key)
    return keys


def join_path(keys: tuple[str, ...] | list[str]) -> str:
    """The slash path of ``keys``: ``("a", "b")`` → ``"/a/b"``; ``()`` → ``"/"``."""
    return "/" + "/".join(keys)


def is_prefix(prefix: tuple[str, ...], keys: tuple[str, ...]) -> bool:
    """Whether ``prefix`` is ``keys`` or one of its ancestors."""
    return keys[:len(prefix)] == prefix


def normalize(value: Any, *, depth: int = 0) -> Value:
    """The tree form of a JSON-like value: ``None`` and empty dicts pruned, lists as dicts.

    Args:
        value: what a client wants to write (parsed JSON).
        depth: the levels above it (a value written at ``a/b`` starts at 2).

    Returns:
        A new value that holds no ``None`` and no empty dict (``None`` if nothing is left).

    Raises:
        TreeError: a NaN or infinite number, a type JSON does not have, a non-string or
            forbidden key (``bad-value``/``bad-path``), deeper than :data:`MAX_DEPTH`
            (``too-deep``).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise TreeError(TreeErrorCode.BAD_VALUE, f"{value} is not a JSON number")
        if isinstance(value, float) and value.is_integer() and abs(value) <= 2 ** 53:
            return int(value)  # one number type, as in JavaScript: 2.0 is stored (and hashed) as 2
        return value
    if isinstance(value, (list, tuple)):
        value = {str(i): item for i, item in enumerate(value)}
    if isinstance(value, Mapping):
        if depth >= MAX_DEPTH:
            raise TreeError(TreeErrorCode.TOO_DEEP, f"a value nests at most {MAX_DEPTH} levels")
        out = {}
        for key, child in value.items():
            if not isinstance(key, str):
                raise TreeError(TreeErrorCode.BAD_VALUE, f"keys must be strings, got {key!r}")
            check_key(key)
            child = normalize(child, depth=depth + 1)
            if child is not None:
                out[key] = child
        return out or None
    raise TreeError(TreeErrorCode.BAD_VALUE, f"{type(value).__name__} is not a JSON value")


def resolve_server_values(value: Any, current: Value, now_ms: int) -> Any:
    """Replace Firebase's server values in a value about to be written at a path.

    ``{".sv": "timestamp"}`` becomes ``now_ms``; ``{".sv": {"increment": n}}`` becomes the
    number at that path plus ``n`` (``n`` if there is no number there), so that two
    clients incrementing at once both count, with no transaction.

    Args:
        value: what the client wrote (not normalized yet: this runs first).
        current: the value at the same path now (children are matched key by key).
        now_ms: the server's clock (the client's estimate, for latency compensation).

    Raises:
        TreeError: a ``.sv`` that is neither of the two (code ``bad-value``).
    """
    if isinstance(value, Mapping):
        if ".sv" in value:
            sv = value[".sv"]
            if len(value) == 1 and sv == "timestamp":
                return now_ms
            if (len(value) == 1 and isinstance(sv, Mapping) and set(sv) == {"increment"}
                    and isinstance(sv["increment"], (int, float)) and not isinstance(sv["increment"], bool)):
                base = current if isinstance(current, (int, float)) and not isinstance(current, bool) else 0
                return base + sv["increment"]
            raise TreeError(TreeErrorCode.BAD_VALUE,
                            'a server value is {".sv": "timestamp"} or {".sv": {"increment": n}}')
        children = current if isinstance(current, dict) else {}
        return {key: resolve_server_values(child, children.get(key) if isinstance(key, str) else None, now_ms)
                for key, child in value.items()}
    return value


def has_server_values(value: Any) -> bool:
    """Whether ``value`` holds a ``{".sv": ...}`` somewhere."""
    if isinstance(value, Mapping):
        return ".sv" in value or any(has_server_values(child) for child in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_server_values(child) for child in value)
    return False


def canonical(value: Value) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 kept (the bytes a hash is taken of)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def check_size(value: Value, max_bytes: int = MAX_VALUE_BYTES) -> int:
    """The size of ``value`` in canonical JSON bytes, if at most ``max_bytes``.

    Raises:
        TreeError: larger than ``max_bytes`` (code ``too-big``).
    """
    size = len(canonical(value).encode())
    if size > max_bytes:
        raise TreeError(TreeErrorCode.TOO_BIG, f"the value is {size} bytes; at most {max_bytes} are accepted")
    return size


def get(tree: Value, path: str | tuple[str, ...]) -> Value:
    """The value at ``path``, or ``None`` if there is none."""
    node = tree
    for key in parse_path(path):
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _put(node: Value, keys: tuple[str, ...], value: Value) -> Value:
    # returns the new node; copies only the dicts along ``keys``; prunes empty dicts
    if not keys:
        return value
    children = dict(node) if isinstance(node, dict) else {}
    child = _put(children.get(keys[0]), keys[1:], value)
    if child is None:
        children.pop(keys[0], None)
    else:
        children[keys[0]] = child
    return children or None


def set_at(tree: Value, path: str | tuple[str, ...], value: Any) -> Value:
    """Firebase's ``set()``: replace the subtree at ``path`` (``None`` deletes it).

    Returns:
        The new tree (``tree`` is not changed).

    Raises:
        TreeError: a bad path or value (see :func:`parse_path`, :func:`normalize`).
    """
    keys = parse_path(path)
    return _put(tree, keys, normalize(value, depth=len(keys)))


def update(tree: Value, path: str | tuple[str, ...], changes: Mapping[str, Any]) -> Value:
    """Firebase's ``update()``: several relative paths set at once (all or nothing).

    ``update(t, "users/ada", {"name": "Ada", "links/github": None})`` sets one child and
    deletes another; the siblings not named keep their values.

    Returns:
        The new tree.

    Raises:
        TreeError: any bad path or value (nothing is applied), or one relative path that
            is an ancestor of another (``bad-path``, as Firebase refuses it).
    """
    base = parse_path(path)
    if not isinstance(changes, Mapping):
        raise TreeError(TreeErrorCode.BAD_VALUE, "an update is an object of relative paths")
    resolved = []
    for relative, value in changes.items():
        keys = base + parse_path(relative)
        if len(keys) > MAX_DEPTH:
            raise TreeError(TreeErrorCode.TOO_DEEP, f"a path has at most {MAX_DEPTH} keys")
        resolved.append((keys, normalize(value, depth=len(keys))))
    paths = sorted(keys for keys, _ in resolved)
    for first, second in zip(paths, paths[1:]):
        if is_prefix(first, second):
            raise TreeError(TreeErrorCode.BAD_PATH,
                            f"update paths {join_path(first)} and {join_path(second)} overlap")
    for keys, value in resolved:
        tree = _put(tree, keys, value)
    return tree


def remove(tree: Value, path: str | tuple[str, ...]) -> Value:
    """Firebase's ``remove()``: ``set_at(tree, path, None)``."""
    return set_at(tree, path, None)


def leaves(value: Value, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Value]]:
    """Every leaf of ``value`` with its path: ``{"a": {"b": 1}}`` → ``[(("a", "b"), 1)]``."""
    if value is None:
        return []
    if not isinstance(value, dict):
        return [(prefix, value)]
    out = []
    for key, child in value.items():
        out.extend(leaves(child, prefix + (key,)))
    return out


def key_order(key: str) -> tuple[int, int, int, str]:
    """Sort key of a child key, as Firebase's ``nameCompare``: keys that are 32-bit integers
    (``-?0*[0-9]{1,10}``) first, by number (then the shorter first), then the others as strings."""
    if _INTEGER.fullmatch(key) and _INT_MIN <= int(key) <= _INT_MAX:
        return (0, int(key), len(key), "")
    return (1, 0, 0, key)


def sorted_keys(node: Value) -> list[str]:
    """The child keys of ``node`` in Firebase's order (``[]`` for a leaf or ``None``)."""
    return sorted(node, key=key_order) if isinstance(node, dict) else []


def format_tree(value: Value, *, name: str = "/", max_lines: int = 200, max_chars: int = 60) -> str:
    """The tree as indented text, children in key order, leaves as JSON::

        /
        ├─ n: 3
        └─ todos
           └─ a
              ├─ done: false
              └─ text: "milk"

    Args:
        value: the tree (or a subtree).
        name: the first line.
        max_lines: lines at most; the rest is summed up in one last line.
        max_chars: a leaf longer than this is cut, with ``…``.
    """
    def leaf(v: Value) -> str:
        text = json.dumps(v, ensure_ascii=False)
        return text if len(text) <= max_chars else text[:max_chars - 1] + "…"

    lines = [name if not isinstance(value, (str, int, float, bool)) else f"{name}: {leaf(value)}"]

    def walk(node: Value, indent: str) -> None:
        keys = sorted_keys(node)
        for i, key in enumerate(keys):
            last = i == len(keys) - 1
            child = node[key]
            branch = "└─ " if last else "├─ "
            lines.append(indent + branch + (key if isinstance(child, dict) else f"{key}: {leaf(child)}"))
            if isinstance(child, dict):
                walk(child, indent + ("   " if last else "│  "))

    if isinstance(value, dict):
        walk(value, "")
    if value is None:
        lines[0] += ": null"
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"… {len(lines) - max_lines} more lines"]
    return "\n".join(lines)
