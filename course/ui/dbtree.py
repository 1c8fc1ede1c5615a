"""Chapter 8: a widget that shows a database path as a tree, live, with its last events.

::

    view = TreeView("todos")
    display(view)                       # before data arrives
    listener = view.watch(db, "todos")  # db: a course.net.dbclient.DbClient
    ...
    listener.close()

The tree is drawn by :func:`course.wire.tree.format_tree` (children in Firebase's key
order) and the events by the listener (:mod:`course.wire.dbevents`): ``child_removed``,
``child_added``, ``child_changed``, then ``value``, as the client raised them.  Every text
is escaped before it goes into the ``HTML`` widget: data never becomes markup.
"""

from __future__ import annotations

import html
import json
from collections import deque
from typing import Any

import ipywidgets as widgets

from course.wire.dbevents import DbEvent, Kind
from course.wire.tree import Value, format_tree

__all__ = ["TreeView", "describe"]

_PRE = ("font-family: var(--jp-code-font-family, monospace); line-height: 1.35; white-space: pre; "
        "margin: 0")


def describe(event: DbEvent, max_chars: int = 50) -> str:
    """One line for an event: ``child_added -Nd… {"text": "milk"} (after -Nc…)``."""
    value = json.dumps(event.value, ensure_ascii=False, sort_keys=True)
    value = value if len(value) <= max_chars else value[:max_chars - 1] + "…"
    if event.kind is Kind.VALUE:
        return f"value {value}"
    after = f" (after {event.previous})" if event.previous else ""
    shown = "" if event.kind is Kind.CHILD_REMOVED else f" {value}"
    return f"{event.kind.value} {event.key}{shown}{after}"


class TreeView(widgets.VBox):
    """The tree at one path and the last ``max_events`` events, updated by :meth:`show`
    and :meth:`add_event` (or by :meth:`watch`).

    Args:
        title: the name shown on top (usually the path).
        max_events: how many events it keeps (at least 1).

    Raises:
        ValueError: ``max_events`` below 1.
    """

    def __init__(self, title: str = "/", max_events: int = 8, **kwargs: Any) -> None:
        if max_events < 1:
            raise ValueError(f"max_events must be at least 1, got {max_events}")
        self.title = title
        self.value: Value = None
        self.events: deque[str] = deque(maxlen=max_events)
        self.count = 0
        self._tree = widgets.HTML()
        self._log = widgets.HTML()
        self._tree.add_class("db-tree")
        self._log.add_class("db-events")
        super().__init__(children=(self._tree, self._log), **kwargs)
        self._render()

    def __repr__(self) -> str:  # stable text/plain for nbval
        return f"TreeView(title={self.title!r}, events={self.count})"

    def show(self, value: Value) -> None:
        """Draw ``value`` as the tree."""
        self.value = value
        self._render()

    def add_event(self, event: DbEvent) -> None:
        """Log one event; a ``value`` event also redraws the tree."""
        self.count += 1
        self.events.append(describe(event))
        if event.kind is Kind.VALUE:
            self.value = event.value
        self._render()

    def watch(self, client: Any, path: str) -> Any:
        """Listen at ``path`` with ``client`` (a ``DbClient``) and show every event.

        Returns:
            The client's listener (``close()`` it to stop).
        """
        return client.listen(path, self.add_event)

    @property
    def text(self) -> str:
        """The tree as text, as drawn."""
        return format_tree(self.value, name=self.title)

    def _render(self) -> None:
        self._tree.value = f'<pre style="{_PRE}">{html.escape(self.text)}</pre>'
        log = "\n".join(self.events) or "(no events yet)"
        self._log.value = f'<pre style="{_PRE}; color: var(--jp-ui-font-color2, #666)">{html.escape(log)}</pre>'
