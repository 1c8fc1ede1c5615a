"""Chapter 3: ipywidgets that show live data and send user input upstream.

These widgets know no sockets and no frames: :class:`LiveFeed` shows lines of
text handed to :meth:`LiveFeed.append` (by any task), and
:class:`UpstreamControl` calls a callback you give it when the student moves a
slider or submits a text.  ``course.live`` does the networking; the notebook
wires the two together.

Both can be updated from an asyncio task whenever the event loop is free (between cells,
or while a cell awaits): they only set ``.value`` and ``.children``, which ipywidgets syncs to the browser at once.
"""

from __future__ import annotations

import asyncio
import html
import inspect
from collections import deque
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

__all__ = ["LiveFeed", "UpstreamControl"]

_LINE_STYLE = ("font-family: var(--jp-code-font-family, monospace); line-height: 1.4; "
               "white-space: pre; overflow: hidden; text-overflow: ellipsis")


class LiveFeed(widgets.VBox):
    """A scrolling feed: one line per message, newest at the bottom, bounded.

    The box carries the CSS class ``ws-feed``.  Its first child is a status line
    (a ``Label`` with the class ``ws-status``); the second is one ``HTML`` widget
    (class ``ws-lines``) holding one ``<div class="ws-line">`` per message.  One
    widget for all lines, rather than one widget per line, keeps the number of
    widget models constant however many messages arrive: dropping the oldest
    line is just not rendering it again.

    Args:
        title: shown in the status line.
        max_lines: how many lines the feed keeps (at least 1).

    Raises:
        ValueError: ``max_lines`` below 1.
    """

    def __init__(self, title: str = "live feed", max_lines: int = 20, **kwargs: Any) -> None:
        if max_lines < 1:
            raise ValueError(f"max_lines must be at least 1, got {max_lines}")
        self.title = title
        self.max_lines = max_lines
        self.received = 0
        self.dropped = 0
        self._kept: deque[str] = deque(maxlen=max_lines)
        self._note = ""
        self._status = widgets.Label()
        self._status.add_class("ws-status")
        self._html = widgets.HTML(layout=widgets.Layout(width="100%", overflow="hidden"))
        self._html.add_class("ws-lines")
        super().__init__(children=(self._status, self._html), **kwargs)
        self.add_class("ws-feed")
        self._render()

    def __repr__(self) -> str:  # stable text/plain for nbval (no model ids)
        return f"LiveFeed(title={self.title!r}, lines={len(self._kept)}, max_lines={self.max_lines})"

    @property
    def lines(self) -> list[str]:
        """The lines currently shown, oldest first."""
        return list(self._kept)

    def append(self, text: str) -> None:
        """Add one line at the bottom; the oldest goes away beyond ``max_lines``.

        Raises:
            TypeError: ``text`` is not a string.
        """
        if not isinstance(text, str):
            raise TypeError(f"LiveFeed.append takes a str, got {type(text).__name__}")
        if len(self._kept) == self.max_lines:
            self.dropped += 1
        self._kept.append(text)
        self.received += 1
        self._render()

    def clear(self) -> None:
        """Remove every line and reset the counters."""
        self._kept.clear()
        self.received = 0
        self.dropped = 0
        self._render()

    def set_status(self, note: str) -> None:
        """Show ``note`` after the counters in the status line (e.g. ``"connected"``)."""
        self._note = note
        self._render()

    @property
    def status(self) -> str:
        """The status line's text."""
        return self._status.value

    def _render(self) -> None:
        text = f"{self.title} · {self.received} received · showing {len(self._kept)}"
        if self._note:
            text += f" · {self._note}"
        self._status.value = text
        self._html.value = "".join(
            f'<div class="ws-line" style="{_LINE_STYLE}">{html.escape(line)}</div>'
            for line in self._kept)

    def sync(self) -> None:
        """Push the current state to the front end (call before saving a notebook)."""
        self._status.send_state("value")
        self._html.send_state("value")


class UpstreamControl(widgets.VBox):
    """A slider and a text box whose changes go *upstream* through a callback.

    ``on_change(name, value)`` is called with ``("slider", int)`` when the slider
    moves and ``("text", str)`` when the student presses Enter in the text box.
    If the callback returns an awaitable (e.g. ``websocket.send(...)``) it is
    scheduled as a task on the running event loop; a failure is shown in the
    answer line instead of being lost.  :meth:`show_answer` displays what came
    back (the answer line has the CSS class ``ws-answer``; the text box
    ``ws-upstream-text``; the slider ``ws-upstream-slider``).

    Args:
        on_change: the callback, ``None`` to only display.
        value: the slider's initial value (0..100).
    """

    def __init__(self, on_change: Callable[[str, Any], Any] | None = None, value: int = 0,
                 **kwargs: Any) -> None:
        self.on_change = on_change
        self.sent = 0
        self.slider = widgets.IntSlider(value=value, min=0, max=100, description="slider")
        self.slider.add_class("ws-upstream-slider")
        self.text = widgets.Text(value="", placeholder="type, then Enter", description="text",
                                 continuous_update=False)
        self.text.add_class("ws-upstream-text")
        self.answer = widgets.Label(value="server: (nothing yet)")
        self.answer.add_class("ws-answer")
        self._pending: set[asyncio.Task] = set()
        super().__init__(children=(self.slider, self.text, self.answer), **kwargs)
        self.add_class("ws-upstream")
        self.slider.observe(self._changed, names="value")
        self.text.observe(self._changed, names="value")

    def __repr__(self) -> str:  # stable text/plain for nbval (no model ids)
        return f"UpstreamControl(slider={self.slider.value}, text={self.text.value!r})"

    def _changed(self, change: dict[str, Any]) -> None:
        name = "slider" if change["owner"] is self.slider else "text"
        if self.on_change is None:
            return
        try:
            result = self.on_change(name, change["new"])
        except Exception as error:  # a widget callback must not raise into ipywidgets
            self.show_answer(f"send failed: {type(error).__name__}: {error}")
            return
        self.sent += 1
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._pending.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future) -> None:
        self._pending.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.show_answer(f"send failed: {type(error).__name__}: {error}")

    def reset(self, value: int = 0) -> None:
        """Put the slider back to ``value`` and empty the text box, sending nothing.

        A cell that sets the slider (``control.slider.value = 42``) sends only if the value
        changes: a re-run of that cell calls ``reset()`` first, so it sends again.
        """
        self.slider.unobserve(self._changed, names="value")
        self.text.unobserve(self._changed, names="value")
        try:
            self.slider.value = value
            self.text.value = ""
        finally:
            self.slider.observe(self._changed, names="value")
            self.text.observe(self._changed, names="value")

    def show_answer(self, text: str) -> None:
        """Display ``text`` (e.g. the server's latest answer) in the answer line."""
        self.answer.value = text

    def sync(self) -> None:
        """Push the current state to the front end (call before saving a notebook)."""
        for w in (self.slider, self.text, self.answer):
            w.send_state("value")
