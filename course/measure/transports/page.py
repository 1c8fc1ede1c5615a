"""The HTML page of the ``reload`` strategy: :func:`render_page` writes it, :func:`parse_page`
reads the events back.  Pure functions: strings in, strings and events out.
"""

from __future__ import annotations

import html
from html.parser import HTMLParser

from course.demo.news import Event

__all__ = ["render_page", "parse_page"]

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh:g}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Live news (reloads every {refresh:g} s)</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 40rem; }}
header, footer {{ color: #555; border-bottom: 1px solid #ddd; padding: .5rem 0; }}
ol {{ padding-left: 1.5rem; }} li {{ margin: .25rem 0; }}
</style>
</head>
<body>
<header><h1>Live news</h1><nav><a href="/">Home</a> · <a href="/about">About</a></nav></header>
<main><ol reversed>
{items}
</ol></main>
<footer>This page reloads itself every {refresh:g} s. {count} headlines so far.</footer>
</body>
</html>
"""


def render_page(events: list[Event], *, refresh: float, count: int) -> str:
    """A whole page listing ``events`` newest first, reloading itself every ``refresh`` s.

    Args:
        events: the events to list (oldest first, as a source holds them).
        refresh: the page's meta-refresh period, in seconds.
        count: how many headlines exist in all (the footer says it).
    """
    items = "\n".join(f'<li data-id="{e.id}" data-t="{e.t}">{html.escape(e.text)}</li>'
                      for e in reversed(events))
    return _PAGE.format(refresh=refresh, items=items, count=count)


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []
        self._current: dict[str, str] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "li" and "data-id" in values and "data-t" in values:
            self._current, self._text = values, []

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "li" and self._current is not None:
            self.events.append(Event(int(self._current["data-id"]), "".join(self._text).strip(),
                                     int(self._current["data-t"])))
            self._current = None


def parse_page(page: str) -> list[Event]:
    """The events listed in a page written by :func:`render_page` (oldest first).

    Raises:
        ValueError: a ``<li>`` carries a non-integer ``data-id`` or ``data-t``.
    """
    parser = _PageParser()
    parser.feed(page)
    parser.close()
    return sorted(parser.events, key=lambda e: e.id)
