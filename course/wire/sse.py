"""Server-Sent Events: the ``text/event-stream`` format, sans-I/O (HTML Living Standard, 9.2).

A stream is a sequence of messages; each message is a few ``field: value`` lines ended by
a blank line::

    id: 4
    event: news
    data: {"id":4,"text":"Markets rise","t":1234}

:func:`format_sse` writes one message; :class:`SSEParser` reads a stream line by line and
returns each :class:`SSEMessage` it completes.  Strings in, strings out: the server and
the client (chapter 1's transports experiment) do the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEMessage", "SSEParser", "format_sse"]


def format_sse(data: str, *, event: str | None = None, id: str | int | None = None) -> str:
    """One Server-Sent Events message: ``id``, ``event`` and ``data`` lines, then a blank line.

    Args:
        data: the message's data; each of its lines becomes one ``data:`` line.
        event: the event type (a client dispatches ``message`` when there is none).
        id: the id a reconnecting client sends back in ``Last-Event-ID``.

    Raises:
        ValueError: ``event`` or ``id`` holds a line break (or ``id`` a NUL), which
            would end the field early.
    """
    lines = []
    if id is not None:
        id = str(id)
        if "\0" in id or "\n" in id or "\r" in id:
            raise ValueError(f"an SSE id cannot hold NUL or line breaks, got {id!r}")
        lines.append(f"id: {id}")
    if event is not None:
        if "\n" in event or "\r" in event:
            raise ValueError(f"an SSE event type cannot hold line breaks, got {event!r}")
        lines.append(f"event: {event}")
    for line in data.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        lines.append(f"data: {line}")
    return "\n".join(lines) + "\n\n"


@dataclass
class SSEMessage:
    """A dispatched Server-Sent Events message."""

    event: str
    data: str
    id: str | None


class SSEParser:
    """Sans-I/O parser of a ``text/event-stream`` (HTML Living Standard, 9.2.6), line by line.

    Feed it decoded lines (with or without their line ending); it returns a
    :class:`SSEMessage` when a blank line ends a message, else None.
    """

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self.last_id: str | None = None

    def feed_line(self, line: str) -> SSEMessage | None:
        """Process one line; return the message it completes, if any."""
        line = line.rstrip("\r\n")
        if line == "":
            if not self._data:
                self._event = ""
                return None
            message = SSEMessage(self._event or "message", "\n".join(self._data), self.last_id)
            self._data, self._event = [], ""
            return message
        if line.startswith(":"):  # a comment, e.g. a keep-alive
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        return None  # "retry" and unknown fields are ignored here
