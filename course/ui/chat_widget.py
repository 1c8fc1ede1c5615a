"""Chapter 5: the kernel joins the messenger as one more participant, in a widget.

:class:`ChatWidget` is an ipywidgets box: the room's messages, who is online, who is
typing, and a text box with a Send button.  It talks to a Phoenix-style channel server
(:mod:`course.net.messenger` or :mod:`course.net.channels`) through the kernel's
:class:`course.net.channels_client.ChannelClient`, exactly as a browser tab of the
messenger page does::

    server = await start_messenger("127.0.0.1", 0)
    chat = ChatWidget(room="lobby", name="kernel")
    display(chat)                       # display first: it fills in as data arrives
    await chat.join(server.socket_url)  # joins room:lobby; the history is shown at once
    message_id = await chat.send("hello from the kernel")   # the server's ok reply
    chat                                # ChatWidget(room='lobby', name='kernel', messages=1, online=['kernel'])
    print(await shutdown(clients=[chat], servers=[server]))  # close() is a coroutine

The API:

- ``ChatWidget(room="lobby", name="kernel", *, max_messages=50, typing_ttl=3.0,
  typing_throttle=1.0)``: builds the widget, connects to nothing.
- ``await chat.join(url, *, timeout=5.0, heartbeat_interval=30.0)``: connect and join
  ``room:<room>`` with ``{"name": name}``; raises :class:`RuntimeError` if the server
  refuses the join, :class:`TimeoutError`/:class:`OSError` if it is not there.  Joining
  again closes the previous connection first.
  ``await ChatWidget.connect(url, room=..., name=..., **options)`` does both.
- ``await chat.send(body)``: push ``new_msg``; returns the message ``id`` from the
  server's ok reply (the message then shows a delivered mark).  Raises
  :class:`RuntimeError` on an error reply, :class:`TimeoutError` without a reply.
  The Send button does the same and shows a failure in the status line.
- ``await chat.typing(True | False)``: tell the others (ephemeral; the text box does it
  by itself, at most once per ``typing_throttle`` seconds).
- Read-only state: ``chat.messages`` (dicts with ``id``, ``name``, ``body``, oldest
  first, at most ``max_messages``), ``chat.online`` (sorted nicknames),
  ``chat.typing_names`` (others typing, each forgotten ``typing_ttl`` seconds after its
  last ``typing``), ``chat.status`` (the status line), ``chat.joined`` (bool).
- ``await chat.close()``: leave, close the connection, stop the background task;
  idempotent and bounded.  ``course.net.lifecycle.shutdown(clients=[chat])`` calls it.
  ``close()`` returns at once (a task to await, or ``None`` if nothing was running), so
  ipywidgets' own synchronous callers (``Widget.close_all``) work too; the views stay.
- ``chat.sync()``: push the widgets' values to the front end (before saving a notebook).

Updates come from a background task while the kernel is idle (between cells, or while a
cell awaits): it only sets ``.value`` on child widgets, which ipywidgets sends at once.
Text from the network is escaped before it goes into the HTML of the message list.
The text/plain repr is stable (no model ids, no times) for nbval.
"""

from __future__ import annotations

import asyncio
import html
import time
from collections import deque
from typing import Any

import ipywidgets as widgets

from course.net.channels_client import ChannelClient
from course.wire import presence

__all__ = ["ChatWidget"]

_LINE_STYLE = "line-height: 1.4; overflow-wrap: anywhere"


class ChatWidget(widgets.VBox):
    """A chat room in the kernel; see the module docstring for the whole API.

    Args:
        room: the room's name (topic ``room:<room>``).
        name: the kernel's nickname in the room.
        max_messages: how many messages the widget keeps and shows (at least 1).
        typing_ttl: seconds after which someone's "typing" is forgotten.
        typing_throttle: at least this many seconds between two "typing" the box sends.

    Raises:
        ValueError: ``max_messages`` below 1, or a non-positive ``typing_ttl``.
    """

    def __init__(self, room: str = "lobby", name: str = "kernel", *, max_messages: int = 50,
                 typing_ttl: float = 3.0, typing_throttle: float = 1.0, **kwargs: Any) -> None:
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, got {max_messages}")
        if not typing_ttl > 0:
            raise ValueError(f"typing_ttl must be > 0 seconds, got {typing_ttl}")
        self.room = room
        self.name = name
        self.topic = f"room:{room}"
        self.typing_ttl = typing_ttl
        self.typing_throttle = typing_throttle
        self.client: ChannelClient | None = None
        self._messages: deque[dict[str, Any]] = deque(maxlen=max_messages)
        self._delivered: set[Any] = set()
        self._presence: presence.State = {}
        self._typists: dict[str, asyncio.TimerHandle] = {}
        self._typing_sent_at: float | None = None
        self._reader: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._note = "not connected"

        self._title = widgets.Label()
        self._title.add_class("ws-chat-status")
        self._list = widgets.HTML(layout=widgets.Layout(width="100%", max_height="20em",
                                                        overflow="auto"))
        self._list.add_class("ws-chat-messages")
        self._online = widgets.Label()
        self._online.add_class("ws-chat-online")
        self._typing = widgets.Label()
        self._typing.add_class("ws-chat-typing")
        self.text = widgets.Text(placeholder="message", continuous_update=True,
                                 layout=widgets.Layout(flex="1"))
        self.text.add_class("ws-chat-text")
        self.button = widgets.Button(description="Send")
        self.button.add_class("ws-chat-send")
        super().__init__(children=(self._title, self._list, self._online, self._typing,
                                   widgets.HBox((self.text, self.button))), **kwargs)
        self.add_class("ws-chat")
        self.text.observe(self._text_changed, names="value")
        self.button.on_click(self._send_clicked)
        self._render()

    def __repr__(self) -> str:  # stable text/plain for nbval (no model ids)
        return (f"ChatWidget(room={self.room!r}, name={self.name!r}, "
                f"messages={len(self._messages)}, online={self.online!r})")

    # --- state -----------------------------------------------------------------------

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The messages kept, oldest first (``id``, ``name``, ``body``)."""
        return list(self._messages)

    @property
    def online(self) -> list[str]:
        """The nicknames online in the room, sorted (the kernel's included once joined)."""
        return presence.keys(self._presence)

    @property
    def typing_names(self) -> list[str]:
        """The others typing right now, sorted."""
        return sorted(self._typists)

    @property
    def status(self) -> str:
        """The status line's text."""
        return self._title.value

    @property
    def joined(self) -> bool:
        """Whether the widget is in the room (joined and the connection is open)."""
        return self.client is not None and not self.client.closed.is_set() and self._reader is not None

    # --- connecting ------------------------------------------------------------------

    @classmethod
    async def connect(cls, url: str, room: str = "lobby", name: str = "kernel", *,
                      timeout: float = 5.0, heartbeat_interval: float | None = 30.0,
                      **options: Any) -> "ChatWidget":
        """Build a widget and :meth:`join` ``url``; ``options`` go to the constructor."""
        chat = cls(room, name, **options)
        await chat.join(url, timeout=timeout, heartbeat_interval=heartbeat_interval)
        return chat

    async def join(self, url: str, *, timeout: float = 5.0,
                   heartbeat_interval: float | None = 30.0) -> "ChatWidget":
        """Connect to ``url`` (``ws://HOST:PORT/socket/websocket``) and join the room.

        Raises:
            RuntimeError: the server refused the join (its reason is in the message).
            TimeoutError, OSError: no server, or no answer within ``timeout``.
        """
        closing = self.close()
        if closing is not None:
            await closing
        self._set_note("connecting…")
        client = await ChannelClient.connect(url, heartbeat_interval=heartbeat_interval,
                                             timeout=timeout)
        try:
            reply = await client.join(self.topic, {"name": self.name})
        except BaseException:
            await client.close()
            raise
        if reply.get("status") != "ok":
            await client.close()
            response = reply.get("response", {})
            self._set_note("join refused")
            raise RuntimeError(f"cannot join {self.topic}: "
                               f"{response.get('detail') or response.get('reason') or reply}")
        self.client = client
        self._messages.clear()
        self._delivered.clear()
        self._presence = {}
        self._messages.extend(reply.get("response", {}).get("history", []))
        self._loop = asyncio.get_running_loop()
        self._reader = asyncio.create_task(self._read(client), name=f"chat widget {self.topic}")
        self._set_note("connected")
        return self

    async def _read(self, client: ChannelClient) -> None:
        while True:
            try:
                message = await client.next_event(timeout=0.5)
            except TimeoutError:
                if client.closed.is_set():
                    self._set_note("disconnected")
                    return
                continue
            if message.topic == self.topic:
                self._handle(message.event, message.payload)

    def _handle(self, event: str, payload: dict[str, Any]) -> None:
        if event == "new_msg":
            self._forget_typist(payload.get("name"), render=False)
            self._messages.append(payload)
        elif event == "presence_state":
            self._presence = payload
        elif event == "presence_diff":
            try:
                self._presence = presence.apply_diff(self._presence, payload)
            except ValueError:
                return
        elif event == "typing":
            who = payload.get("name")
            if not isinstance(who, str) or who == self.name:
                return
            if payload.get("typing", True):
                self._forget_typist(who, render=False)
                loop = asyncio.get_running_loop()
                self._typists[who] = loop.call_later(self.typing_ttl, self._forget_typist, who)
            else:
                self._forget_typist(who, render=False)
        else:
            return
        self._render()

    def _forget_typist(self, who: Any, render: bool = True) -> None:
        handle = self._typists.pop(who, None)
        if handle is not None:
            handle.cancel()
            if render:
                self._render()

    # --- sending ---------------------------------------------------------------------

    async def send(self, body: str) -> Any:
        """Post ``body`` to the room; returns the message id of the server's ok reply.

        Raises:
            RuntimeError: not joined, or the server answered with an error.
            TimeoutError: no reply in time.
        """
        if self.client is None:
            raise RuntimeError("join a room first: await chat.join(url)")
        self._typing_sent_at = None
        reply = await self.client.push(self.topic, "new_msg", {"body": body})
        response = reply.get("response", {})
        if reply.get("status") != "ok":
            raise RuntimeError(f"not sent: {response.get('detail') or response.get('reason')}")
        self._delivered.add(response.get("id"))
        self._render()
        return response.get("id")

    async def typing(self, typing: bool = True) -> None:
        """Tell the others that the kernel is (or stopped) typing; no reply comes."""
        if self.client is None:
            raise RuntimeError("join a room first: await chat.join(url)")
        await self.client.cast(self.topic, "typing", {"typing": typing})

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            self._set_note(f"send failed: {type(error).__name__}: {error}")

    def _send_clicked(self, _button: Any = None) -> None:
        body = self.text.value.strip()
        if not body or self.client is None:
            return
        self.text.unobserve(self._text_changed, names="value")
        try:
            self.text.value = ""
        finally:
            self.text.observe(self._text_changed, names="value")
        self._spawn(self.send(body))

    def _text_changed(self, change: dict[str, Any]) -> None:
        if self.client is None:
            return
        now = time.monotonic()
        if not change["new"].strip():
            if self._typing_sent_at is not None:
                self._typing_sent_at = None
                self._spawn(self.typing(False))
        elif self._typing_sent_at is None or now - self._typing_sent_at >= self.typing_throttle:
            self._typing_sent_at = now
            self._spawn(self.typing(True))

    # --- display ---------------------------------------------------------------------

    def _set_note(self, note: str) -> None:
        self._note = note
        self._render()

    def _render(self) -> None:
        self._title.value = f"#{self.room} as {self.name} · {self._note}"
        lines = []
        for message in self._messages:
            mark = " ✓" if message.get("id") in self._delivered else ""
            lines.append(f'<div class="ws-chat-line" style="{_LINE_STYLE}">'
                         f'<b>{html.escape(str(message.get("name", "?")))}</b> '
                         f'{html.escape(str(message.get("body", "")))}{mark}</div>')
        self._list.value = "".join(lines)
        self._online.value = "online: " + (", ".join(self.online) or "nobody")
        names = self.typing_names
        if not names:
            self._typing.value = ""
        elif len(names) == 1:
            self._typing.value = f"{names[0]} is typing…"
        else:
            self._typing.value = f"{', '.join(names[:-1])} and {names[-1]} are typing…"

    def sync(self) -> None:
        """Push the current state to the front end (call before saving a notebook)."""
        for w in (self._title, self._list, self._online, self._typing, self.text):
            w.send_state("value")

    # --- stopping --------------------------------------------------------------------

    def close(self) -> asyncio.Task | None:
        """Leave the room, close the connection and stop every task (bounded, idempotent).

        Returns at once, like :meth:`course.net.lifecycle.Service.close`: the result is a
        task to await for the end (``await chat.close()``; :func:`shutdown` awaits it), or
        ``None`` when there was nothing to stop.  Called from another thread than the
        widget's event loop (ipywidgets' ``Widget.close_all``), it schedules the stop on
        that loop and returns ``None``.  The widget's views stay on the page, showing the
        last state; ``ipywidgets.Widget.close(chat)`` removes them.
        """
        if self._closing is not None and not self._closing.done():
            return self._closing
        loop, self._loop = self._loop, None
        reader, self._reader = self._reader, None
        client, self.client = self.client, None
        tasks = [t for t in (reader, *self._tasks) if t is not None]
        self._tasks.clear()
        if client is None and not tasks:
            return None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is not None and running is not loop:
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(self._stop(tasks, client), loop)
            return None
        self._closing = asyncio.ensure_future(self._stop(tasks, client))
        return self._closing

    async def _stop(self, tasks: list[asyncio.Task], client: ChannelClient | None) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for handle in self._typists.values():
            handle.cancel()
        self._typists.clear()
        if client is not None:
            try:
                await client.close()
            except (OSError, TimeoutError):
                pass
        self._presence = {}
        self._set_note("closed")

    def __del__(self) -> None:  # garbage: close the comm, as ipywidgets does
        widgets.Widget.close(self)
