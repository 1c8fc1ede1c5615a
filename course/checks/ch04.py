"""Self-checks for chapter 4: the chat's message validation and the page's ``onmessage`` handler.

Used by ``solutions/04_browser_onmessage.ipynb``::

    check_parse_chat_message(parse_chat_message)
    check_onmessage_js(onmessage_js)

The Python function is called on real inputs.  The JavaScript handler cannot run in
the kernel (there is no browser there), so :func:`check_onmessage_js` only checks its
*structure*: a function expression ``(event, log) => ...`` that reads ``event.data``,
parses it with ``JSON.parse`` inside ``try``/``catch``, shows text with
``textContent`` and never with ``innerHTML``, handles the three message types and
appends to ``log``.  ``tests/test_checks_ch04.py`` runs the solution's handler in a
real Chromium page against a real ``course.chat`` server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from course.checks import check, expect, expect_equal, summary

__all__ = ["check_parse_chat_message", "check_onmessage_js", "strip_js_comments_and_strings"]

MAX_TEXT = 500


def _raises_value_error(fn: Callable[[str], Any], data: str) -> None:
    try:
        result = fn(data)
    except ValueError as error:
        expect(str(error) != "", "the ValueError needs a message saying what is wrong")
        return
    raise AssertionError(f"parse_chat_message({data[:40]!r}) returned {result!r} "
                         "instead of raising ValueError")


def check_parse_chat_message(parse_chat_message: Callable[[str], dict[str, str]]) -> bool:
    """Check a student's ``parse_chat_message(data) -> {"name": ..., "text": ...}``.

    Args:
        parse_chat_message: the function to check; it must raise ``ValueError`` on
            invalid input.

    Returns:
        Whether every case passed (one ✅/❌ line per case is printed).
    """
    good = '{"type": "message", "text": "hello", "name": "ada"}'
    cases = [
        ("a valid message gives {'name': ..., 'text': ...}",
         lambda: expect_equal(parse_chat_message(good), {"name": "ada", "text": "hello"}),
         "return a dict with exactly the keys name and text."),
        ("name is optional and defaults to 'anonymous'; whitespace is stripped",
         lambda: expect_equal(parse_chat_message('{"type": "message", "text": "  hi  "}'),
                              {"name": "anonymous", "text": "hi"}),
         "obj.get('name', 'anonymous') and str.strip()."),
        ("non-ASCII text is kept as is",
         lambda: expect_equal(parse_chat_message(json.dumps({"type": "message", "text": "héllo 👋"}))["text"],
                              "héllo 👋"),
         ""),
        ("not JSON -> ValueError", lambda: _raises_value_error(parse_chat_message, "{oops"),
         "json.loads raises json.JSONDecodeError, which is a ValueError: let it through or re-raise."),
        ("JSON but not an object -> ValueError",
         lambda: _raises_value_error(parse_chat_message, '["type", "message"]'),
         "check isinstance(obj, dict) before using obj.get."),
        ("wrong or missing type -> ValueError",
         lambda: _raises_value_error(parse_chat_message, '{"text": "hi"}'),
         'obj.get("type") must be "message".'),
        ("text that is not a string -> ValueError",
         lambda: _raises_value_error(parse_chat_message, '{"type": "message", "text": 42}'),
         "isinstance(text, str)."),
        ("empty or blank text -> ValueError",
         lambda: _raises_value_error(parse_chat_message, '{"type": "message", "text": "   "}'),
         "strip first, then refuse an empty text."),
        (f"{MAX_TEXT} characters accepted, {MAX_TEXT + 1} refused",
         lambda: (expect_equal(len(parse_chat_message(json.dumps({"type": "message", "text": "x" * MAX_TEXT}))["text"]),
                               MAX_TEXT, "length of the accepted text"),
                  _raises_value_error(parse_chat_message, json.dumps({"type": "message", "text": "x" * (MAX_TEXT + 1)}))),
         f"the limit is MAX_TEXT = {MAX_TEXT} characters, inclusive."),
    ]
    return summary([check(name, test, hint) for name, test, hint in cases], "parse_chat_message")


def strip_js_comments_and_strings(source: str) -> str:
    """Return ``source`` with JS comments removed and string/template literals emptied.

    A rough lexer (no regex literals), enough to count brackets and look for
    identifiers without being fooled by ``"innerHTML"`` inside a string or comment.
    """
    out: list[str] = []
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if source.startswith("//", i):
            end = source.find("\n", i)
            i = n if end < 0 else end
        elif source.startswith("/*", i):
            end = source.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif ch in "'\"`":
            j = i + 1
            while j < n and source[j] != ch:
                j += 2 if source[j] == "\\" else 1
            out.append(ch + ch)
            i = j + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


_PAIRS = {")": "(", "]": "[", "}": "{"}
_FUNCTION = re.compile(
    r"^\s*(?:function\s*\w*\s*\(\s*event\s*,\s*log\s*\)|\(\s*event\s*,\s*log\s*\)\s*=>)")
_UNSAFE = re.compile(r"\b(innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval)\b")


def _balanced(code: str) -> None:
    stack: list[str] = []
    for ch in code:
        if ch in "([{":
            stack.append(ch)
        elif ch in ")]}":
            expect(bool(stack) and stack.pop() == _PAIRS[ch], f"unbalanced brackets: unexpected {ch!r}")
    expect(not stack, f"unbalanced brackets: {len(stack)} not closed")


def _parse_in_try(code: str) -> bool:
    """Whether some ``try { ... }`` block (brackets matched) calls JSON.parse and is followed by catch."""
    for match in re.finditer(r"\btry\s*\{", code):
        depth, i = 1, match.end()
        while i < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            i += 1
        if "JSON.parse" in code[match.end():i] and re.match(r"\s*catch\b", code[i:]):
            return True
    return False


def _quoted(source: str, word: str) -> bool:
    return re.search(rf"""(["'`]){word}\1""", source) is not None


def check_onmessage_js(onmessage_js: Callable[[], str]) -> bool:
    """Check the structure of the JavaScript returned by ``onmessage_js()``.

    Args:
        onmessage_js: a function returning the source of a JS function expression
            ``(event, log) => { ... }``.

    Returns:
        Whether every case passed (one ✅/❌ line per case is printed).
    """
    source: list[str] = []

    def get() -> str:
        if not source:
            value = onmessage_js()
            expect(isinstance(value, str), f"onmessage_js() must return a str, got {type(value).__name__}")
            source.append(value)
        return source[0]

    def code() -> str:
        return strip_js_comments_and_strings(get())

    cases = [
        ("returns non-empty JavaScript source", lambda: expect(get().strip() != "", "the source is empty"),
         'return """(event, log) => { ... }""".'),
        ("a function expression taking (event, log)",
         lambda: expect(bool(_FUNCTION.match(get())), "it should start with `(event, log) =>` "
                        "or `function (event, log)`"), ""),
        ("brackets are balanced", lambda: _balanced(code()), "count your ( [ { and } ] )."),
        ("reads event.data", lambda: expect("event.data" in code(), "event.data is never read"),
         "the message text is in event.data."),
        ("JSON.parse inside try/catch",
         lambda: expect(_parse_in_try(code()),
                        "JSON.parse(event.data) is not inside a try { ... } catch (...) { ... }"),
         "a server (or a bug) can send something that is not JSON; JSON.parse then throws."),
        ("shows text with textContent (or createTextNode)",
         lambda: expect(re.search(r"\.textContent\s*=|createTextNode\s*\(", code()) is not None,
                        "nothing is assigned to .textContent"), "li.textContent = ..."),
        ("never innerHTML, outerHTML, insertAdjacentHTML, document.write or eval",
         lambda: expect(_UNSAFE.search(code()) is None,
                        f"found {(_UNSAFE.search(code()) or [''])[0]}: a message is data, not markup (XSS)"),
         "a message <img src=x onerror=...> would run code in the page."),
        ("handles welcome, message and error",
         lambda: expect(all(_quoted(get(), t) for t in ("welcome", "message", "error")),
                        "compare msg.type with \"welcome\", \"message\" and \"error\""), ""),
        ("appends lines to log",
         lambda: expect(re.search(r"\blog\.(append|appendChild)\s*\(", code()) is not None,
                        "log.append(...) is never called"), "create an <li>, fill it, log.append(li)."),
    ]
    results = [check(name, test, hint) for name, test, hint in cases]
    ok = summary(results, "onmessage_js (structure)")
    if ok:
        print("   The real test is the browser: run the demo cell below in JupyterLab and watch the widget.")
    return ok
