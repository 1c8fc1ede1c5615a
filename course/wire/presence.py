"""Who is online, in Phoenix Presence's documented format; sans-I/O.

A presence *state* maps a key (here the nickname) to that key's metas, one per
connection (one per browser tab)::

    {"ada": {"metas": [{"phx_ref": "p1"}, {"phx_ref": "p3"}]},
     "bob": {"metas": [{"phx_ref": "p2"}]}}

Two tabs of one user are one key with two metas, so ``len(state)`` counts users once.
A change travels as a *diff*, ``{"joins": {...}, "leaves": {...}}``, in the same shape:
the joins carry the metas added, the leaves the metas removed (matched by ``phx_ref``).

The server computes a diff with :func:`join` or :func:`leave`, applies it to its own
state with :func:`apply_diff` and sends it; a client applies the diffs it receives with
the same :func:`apply_diff` (the rule of ``Presence.syncDiff`` in Phoenix's
``presence.js``: a join adds metas whose ``phx_ref`` is new, a leave removes metas by
``phx_ref``, a key with no metas left is gone).  Functions never modify their arguments.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["State", "Diff", "meta", "join", "leave", "apply_diff", "keys", "count"]

State = dict[str, dict[str, list[dict[str, Any]]]]  #: key -> {"metas": [meta, ...]}
Diff = dict[str, State]                             #: {"joins": State, "leaves": State}


def meta(phx_ref: str, **fields: Any) -> dict[str, Any]:
    """One connection's meta: ``{"phx_ref": phx_ref, **fields}``.

    Raises:
        ValueError: ``phx_ref`` is not a non-empty string.
    """
    if not isinstance(phx_ref, str) or not phx_ref:
        raise ValueError("phx_ref must be a non-empty string")
    return {"phx_ref": phx_ref, **fields}


def join(state: State, key: str, new_meta: dict[str, Any]) -> Diff:
    """The diff that adds one connection (``new_meta``) under ``key``.

    Raises:
        ValueError: ``new_meta`` has no ``phx_ref``, or one already present under ``key``.
    """
    ref = new_meta.get("phx_ref")
    if not isinstance(ref, str) or not ref:
        raise ValueError("a meta needs a phx_ref")
    if any(m.get("phx_ref") == ref for m in state.get(key, {}).get("metas", [])):
        raise ValueError(f"{key!r} already has a meta with phx_ref {ref!r}")
    return {"joins": {key: {"metas": [dict(new_meta)]}}, "leaves": {}}


def leave(state: State, key: str, phx_ref: str) -> Diff:
    """The diff that removes the connection ``phx_ref`` from ``key``.

    Returns:
        ``{"joins": {}, "leaves": {key: {"metas": [that meta]}}}``, or an empty diff
        (both maps empty) if no such meta is present.
    """
    for m in state.get(key, {}).get("metas", []):
        if m.get("phx_ref") == phx_ref:
            return {"joins": {}, "leaves": {key: {"metas": [dict(m)]}}}
    return {"joins": {}, "leaves": {}}


def apply_diff(state: State, diff: Diff) -> State:
    """The state after ``diff`` (a new dict; ``state`` is unchanged).

    Joins first, then leaves, as Phoenix's client does.  A joined meta whose ``phx_ref``
    is already present replaces it; a leave for an unknown key or ref changes nothing.

    Raises:
        ValueError: ``diff`` is not ``{"joins": {...}, "leaves": {...}}`` of metas lists.
    """
    if not isinstance(diff, dict) or not set(diff) <= {"joins", "leaves"}:
        raise ValueError('a diff is {"joins": {...}, "leaves": {...}}')
    result = copy.deepcopy(state)
    for part in ("joins", "leaves"):
        entries = diff.get(part, {})
        if not isinstance(entries, dict) or not all(
                isinstance(v, dict) and isinstance(v.get("metas"), list) for v in entries.values()):
            raise ValueError(f'"{part}" must map keys to {{"metas": [...]}}')
    for key, entry in diff.get("joins", {}).items():
        joined = copy.deepcopy(entry["metas"])
        refs = {m.get("phx_ref") for m in joined}
        kept = [m for m in result.get(key, {}).get("metas", []) if m.get("phx_ref") not in refs]
        result[key] = {"metas": kept + joined}
    for key, entry in diff.get("leaves", {}).items():
        if key not in result:
            continue
        refs = {m.get("phx_ref") for m in entry["metas"]}
        metas = [m for m in result[key]["metas"] if m.get("phx_ref") not in refs]
        if metas:
            result[key] = {"metas": metas}
        else:
            del result[key]
    return result


def keys(state: State) -> list[str]:
    """The keys present (the users online), sorted."""
    return sorted(state)


def count(state: State) -> dict[str, int]:
    """How many connections each key has: ``{"ada": 2, "bob": 1}``."""
    return {key: len(entry["metas"]) for key, entry in sorted(state.items())}
