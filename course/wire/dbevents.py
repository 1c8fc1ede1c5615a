"""Listener events of a realtime database: which listeners a write touches, and what they see.

A listener watches one path.  After a write, the database compares each touched listener's
snapshot before and after (never the write itself: an ``update`` of three paths or a write
far above give the same events as long as the snapshots agree) and raises, in the order
of firebase-js-sdk's ``core/view/EventGenerator.ts``:

1. ``child_removed`` for each child that is gone,
2. ``child_added`` for each new child (with the key of the child before it),
3. ``child_changed`` for each child whose value changed (with the key before it),
4. ``value`` last, with the whole new snapshot.

A write at ``P`` touches the listeners at ``P``, above ``P`` (their subtree changed) and
below ``P`` (their subtree may have been replaced): :func:`touches`.

:func:`child_events` is the heart, the child events of one listener for one write;
:func:`events_for` adds ``value``; :func:`initial_events` is what a new listener gets;
:func:`replay` applies events to a snapshot (they rebuild the new one).  Children are
ordered as Firebase orders keys (:func:`course.wire.tree.key_order`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from course.wire.tree import Value, get, is_prefix, parse_path, sorted_keys

__all__ = ["Kind", "DbEvent", "touches", "child_events", "events_for",
           "initial_events", "replay"]



class Kind(str, enum.Enum):
    """The listener event types, in the order they are raised for one write."""

    CHILD_REMOVED = "child_removed"
    CHILD_ADDED = "child_added"
    CHILD_CHANGED = "child_changed"
    VALUE = "value"


@dataclass(frozen=True)
class DbEvent:
    """One event raised to a listener.

    Attributes:
        kind: the event type.
        path: the listener's path (``"/rooms/lobby"``).
        key: the child's key (``None`` for ``value``).
        value: the child's new value (its old value for ``child_removed``), or the
            listener's whole snapshot for ``value``.
        previous: the key of the child just before this one (``child_added``,
            ``child_changed``), ``None`` if it is first.
    """

    kind: Kind
    path: str
    key: str | None
    value: Value
    previous: str | None = None


def touches(listener: str | tuple[str, ...], written: str | tuple[str, ...]) -> bool:
    """Whether a write at ``written`` can change what a listener at ``listener`` sees:
    the listener is at, above or below the written path."""
    a, b = parse_path(listener), parse_path(written)
    return is_prefix(a, b) or is_prefix(b, a)


def child_events(path: str, old: Value, new: Value) -> list[DbEvent]:
    """The child events of one listener for one write: removed, then added, then changed.

    Args:
        path: the listener's path (copied into each event).
        old: the listener's snapshot before the write.
        new: its snapshot after.

    Returns:
        The ``child_removed``, ``child_added`` and ``child_changed`` events, each group in
        key order; ``previous`` is the key before the child in ``new``.  A leaf has no
        children: a snapshot that is not a dict counts as having none.
    """
    old_children = old if isinstance(old, dict) else {}
    new_children = new if isinstance(new, dict) else {}
    order = sorted_keys(new_children)
    before = {key: (order[i - 1] if i else None) for i, key in enumerate(order)}
    removed = [DbEvent(Kind.CHILD_REMOVED, path, key, old_children[key])
               for key in sorted_keys(old_children) if key not in new_children]
    added = [DbEvent(Kind.CHILD_ADDED, path, key, new_children[key], before[key])
             for key in order if key not in old_children]
    changed = [DbEvent(Kind.CHILD_CHANGED, path, key, new_children[key], before[key])
               for key in order if key in old_children and old_children[key] != new_children[key]]
    return removed + added + changed


def events_for(path: str, old_tree: Value, new_tree: Value) -> list[DbEvent]:
    """Every event a listener at ``path`` gets when ``old_tree`` becomes ``new_tree``:
    :func:`child_events` then ``value``; nothing if its snapshot did not change."""
    old, new = get(old_tree, path), get(new_tree, path)
    if old == new:
        return []
    return child_events(path, old, new) + [DbEvent(Kind.VALUE, path, None, new)]


def initial_events(path: str, snapshot: Value) -> list[DbEvent]:
    """What a new listener gets first: ``child_added`` for every child, then ``value``
    (``value`` with ``None`` if there is no data)."""
    return child_events(path, None, snapshot) + [DbEvent(Kind.VALUE, path, None, snapshot)]


def replay(snapshot: Value, events: Iterable[DbEvent]) -> Value:
    """Apply events to a copy of a listener's snapshot; the result is the new snapshot.

    A ``value`` event replaces everything; child events remove, add and replace children
    (a snapshot that was a leaf becomes a dict of children).
    """
    children: dict[str, Any] = dict(snapshot) if isinstance(snapshot, dict) else {}
    result: Value = snapshot
    touched = False
    for event in events:
        if event.kind is Kind.VALUE:
            return event.value
        touched = True
        if event.kind is Kind.CHILD_REMOVED:
            children.pop(event.key, None)
        else:
            children[event.key] = event.value
    if touched:
        result = children or None
    return result
