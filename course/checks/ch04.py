"""Self-checks for chapter 4: the chat's message validation and the page's ``onmessage`` handler.

Used by ``solutions/04_browser_onmessage.ipynb``::

    check_parse_chat_message(parse_chat_message)
    check_onmessage_js(onmessage_js)

The Python function is called on real inputs, including the plausible mistakes (a blank
name kept, the length measured before stripping, a name that is not a string).

The JavaScript handler is run for real: :func:`check_onmessage_js` hands it to Node.js
(``course/ui/static/onmessage_harness.js``), which calls it as the page's widget does,
``handler({data}, log)``, on a minimal fake page, with the messages the chat server sends
(welcome, message, error), text that is not JSON and unknown types, then reads back the
lines in ``log``.  HTML sinks such as ``innerHTML`` really parse what they are given, so a
message ``<img src=x onerror=...>`` inserted as HTML shows up as an ``<img>`` element.
Without Node.js (a laptop without it), the check says so and falls back to a keyword scan
whose lines say "mentions ...": it claims nothing about behaviour.
``tests/test_checks_ch04.py`` also runs the solution's handler in a real Chromium page
against a real ``course.net.chat`` server.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from importlib import resources
from typing import Any

from course.checks import check, expect, expect_equal, summary

__all__ = ["check_parse_chat_message", "check_onmessage_js", "run_handler_in_node",
           "strip_js_comments_and_strings", "find_node", "MAX_TEXT", "NODE_TIMEOUT",
           "CALL_TIMEOUT_MS", "ADA", "BOB", "ATTACK", "HISTORY", "SERVER_ERROR", "SCENARIOS"]

MAX_TEXT = 500
NODE_TIMEOUT = 10.0   # seconds for the whole Node.js run
CALL_TIMEOUT_MS = 1000  # for one call of the handler


# --------------------------------------------------------------------------- Python exercise

def _message(**fields: Any) -> str:
    return json.dumps({"type": "message", **fields}, ensure_ascii=False)


def _raises_value_error(fn: Callable[[str], Any], data: str) -> None:
    try:
        result = fn(data)
    except ValueError as error:
        expect(str(error) != "", "the ValueError needs a message saying what is wrong")
        return
    raise AssertionError(f"parse_chat_message({data[:40]!r}) returned {result!r} "
                         "instead of raising ValueError")


def _accepted(fn: Callable[[str], Any], data: str, what: str) -> Any:
    """Call ``fn(data)``; a ValueError on this valid input is the student's mistake, said so."""
    try:
        return fn(data)
    except ValueError as error:
        raise AssertionError(f"{what} was refused (ValueError: {error})") from None


def _long_text_with_spaces(fn: Callable[[str], Any]) -> None:
    text = _accepted(fn, _message(text="  " + "x" * MAX_TEXT + "  "),
                     f"a text of {MAX_TEXT} characters with 2 spaces on each side")["text"]
    expect_equal(len(text), MAX_TEXT, "length of the accepted text")


def check_parse_chat_message(parse_chat_message: Callable[[str], dict[str, str]]) -> bool:
    """Check a student's ``parse_chat_message(data) -> {"name": ..., "text": ...}``.

    Args:
        parse_chat_message: the function to check; it must raise ``ValueError`` on
            invalid input.

    Returns:
        Whether every case passed (one ✅/❌ line per case is printed).
    """
    fn = parse_chat_message
    cases = [
        ("a valid message gives {'name': ..., 'text': ...}",
         lambda: expect_equal(fn(_message(text="hello", name="ada")), {"name": "ada", "text": "hello"}),
         "return a dict with exactly two keys, name and text."),
        ("whitespace around the text and the name is stripped",
         lambda: expect_equal(fn(_message(text="  hi  ", name=" ada\t")), {"name": "ada", "text": "hi"}),
         "both the text and the name lose their surrounding whitespace."),
        ("a missing name becomes 'anonymous'",
         lambda: expect_equal(fn(_message(text="hi")), {"name": "anonymous", "text": "hi"}),
         "without a name, the sender is 'anonymous'."),
        ("a blank name ('   ') becomes 'anonymous' too",
         lambda: expect_equal(fn(_message(text="hi", name="   "))["name"], "anonymous",
                              "name for a blank name"),
         "a name of only spaces is empty once stripped: it must become 'anonymous' as well."),
        ("non-ASCII text is kept as is",
         lambda: expect_equal(fn(_message(text="héllo 👋"))["text"], "héllo 👋"), ""),
        ("not JSON -> ValueError", lambda: _raises_value_error(fn, "{oops"),
         "a json.JSONDecodeError is a ValueError: let it through, or raise your own ValueError."),
        ("JSON but not an object -> ValueError",
         lambda: (_raises_value_error(fn, '["type", "message"]'), _raises_value_error(fn, '"message"')),
         "JSON can also be a list, a number or a string: only an object (a dict) is a message."),
        ("wrong or missing type -> ValueError",
         lambda: (_raises_value_error(fn, '{"text": "hi"}'),
                  _raises_value_error(fn, '{"type": "welcome", "text": "hi"}')),
         'the "type" must be "message".'),
        ("text that is not a string -> ValueError",
         lambda: (_raises_value_error(fn, _message(text=42)), _raises_value_error(fn, _message(text=None))),
         "a text of 42 or null is not a str: refuse it rather than convert it."),
        ("name that is not a string -> ValueError",
         lambda: (_raises_value_error(fn, _message(text="hi", name=42)),
                  _raises_value_error(fn, _message(text="hi", name=["ada"]))),
         "a name, when present, must be a str too: refuse 42, do not turn it into '42'."),
        ("empty or blank text -> ValueError",
         lambda: (_raises_value_error(fn, _message(text="")), _raises_value_error(fn, _message(text="   "))),
         "a text of only spaces is empty once stripped."),
        (f"{MAX_TEXT} characters accepted, {MAX_TEXT + 1} refused",
         lambda: (expect_equal(len(_accepted(fn, _message(text="x" * MAX_TEXT),
                                             f"a text of exactly {MAX_TEXT} characters")["text"]),
                               MAX_TEXT, "length of the accepted text"),
                  _raises_value_error(fn, _message(text="x" * (MAX_TEXT + 1)))),
         f"the limit is MAX_TEXT = {MAX_TEXT} characters, inclusive."),
        ("the length is measured after stripping",
         lambda: _long_text_with_spaces(fn),
         "measure the length after stripping: surrounding spaces do not count towards the limit."),
    ]
    return summary([check(name, test, hint) for name, test, hint in cases], "parse_chat_message")


# --------------------------------------------------------------------------- JavaScript: run it

ADA = {"type": "message", "id": 7, "name": "ada", "text": "hi"}
BOB = {"type": "message", "id": 9, "name": "bob", "text": "again"}
ATTACK = {"type": "message", "id": 8, "name": "<i>mallory</i>",
          "text": '<img src=x onerror="window.pwned = 1"><b>bold</b>'}
HISTORY = [{"type": "message", "id": 1, "name": "bob", "text": "first"},
           {"type": "message", "id": 2, "name": "zoé", "text": "héllo 👋"}]
SERVER_ERROR = {"type": "error", "code": "too-long", "error": "message too long: 501 characters, at most 500"}

# scenario name -> the event.data strings given to the handler, one after the other, on a fresh log
SCENARIOS: dict[str, list[str]] = {
    "welcome": [json.dumps({"type": "welcome", "history": HISTORY})],
    "empty welcome": [json.dumps({"type": "welcome", "history": []})],
    "message": [json.dumps(ADA), json.dumps(BOB)],
    "attack": [json.dumps(ATTACK)],
    "error": [json.dumps(SERVER_ERROR)],
    "not JSON": ["<<<not json>>>"],
    "cut JSON": ['{"type": "message", "text": "cut in the mid'],
    "other type": [json.dumps({"type": "typing", "name": "ada"})],
    "no type": [json.dumps({"text": "no type here"})],
}


def find_node() -> str | None:
    """Path of the ``node`` executable, or None (tests replace this to test the fallback)."""
    return shutil.which("node")


def run_handler_in_node(source: str, scenarios: dict[str, list[str]], node: str) -> dict[str, Any]:
    """Run a JS handler on a minimal fake page in Node.js; return what it did per scenario.

    Args:
        source: a JavaScript function expression ``(event, log) => { ... }``.
        scenarios: name -> the ``event.data`` strings for one fresh ``log``.
        node: the ``node`` executable.

    Returns:
        ``{"compile_error": str | None, "not_function": str | None, "scenarios": {name: result}}``
        where a result has ``lines`` (``tag``, ``cls``, ``text`` of each child of ``log``),
        ``errors`` (exceptions the handler threw, ``"timeout"`` for an endless loop),
        ``html`` (what went to HTML sinks) and ``markup`` (elements parsed from HTML).

    Raises:
        AssertionError: Node.js did not finish within ``NODE_TIMEOUT`` seconds or failed.
    """
    harness = resources.files("course.ui").joinpath("static/onmessage_harness.js")
    request = {"source": source, "timeout_ms": CALL_TIMEOUT_MS, "scenarios": list(scenarios.values())}
    with resources.as_file(harness) as path:
        try:
            done = subprocess.run([node, str(path)], input=json.dumps(request), capture_output=True,
                                  text=True, encoding="utf-8", timeout=NODE_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"Node.js did not finish within {NODE_TIMEOUT:.0f} s") from None
    if done.returncode != 0 or not done.stdout:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise AssertionError(f"running the handler in Node.js failed: {last}")
    result = json.loads(done.stdout)
    result["scenarios"] = dict(zip(scenarios, result["scenarios"]))
    return result


def _expect_lines(result: dict[str, Any], expected: list[tuple[str, bool]], what: str) -> None:
    """Compare the ``log`` lines of one scenario with ``(text, is_error)`` pairs."""
    for error in result["errors"]:
        expect(error != "timeout", f"for {what}, the handler did not return within "
               f"{CALL_TIMEOUT_MS / 1000:g} s (an endless loop?)")
        expect(error != "skipped", "not run, since the handler never returned from an earlier call")
        missing = " (if that is a real DOM method, the check's minimal page lacks it: " \
            "the widget below is the real test)" if "is not a function" in error else ""
        raise AssertionError(f"for {what}, the handler threw {error}{missing}")
    lines = result["lines"]
    texts = repr([line["text"] for line in lines])
    expect(len(lines) == len(expected), f"for {what}, the handler added {len(lines)} line(s) to log, "
           f"expected {len(expected)}" + (f": {texts[:120]}{'…' if len(texts) > 120 else ''}" if lines else ""))
    for number, (line, (text, is_error)) in enumerate(zip(lines, expected), 1):
        kind = "bare text" if line["tag"] == "#text" else f"a <{line['tag']}>"
        expect(line["tag"] == "li", f"for {what}, line {number} is {kind}, not an <li>")
        expect(line["text"] == text, f"for {what}, line {number} reads {line['text']!r}, expected {text!r}")
        has_error = "error" in line["cls"].split()
        expect(has_error or not is_error, f"for {what}, the line has class {line['cls']!r}: "
               "an error line needs the class error")
        expect(is_error or not has_error, f"for {what}, the line has the class error, "
               "which only error lines have")


def _expect_text_not_html(result: dict[str, Any]) -> None:
    markup = result["markup"]
    if markup:
        tags = ", ".join(f"<{m['tag']}{''.join(' ' + h for h in m['handlers'])}>" for m in markup)
        runs = " (its onerror would run code in the page: XSS)" if any(m["handlers"] for m in markup) else ""
        raise AssertionError(f"the message was inserted as HTML: it became {tags}{runs}")
    _expect_lines(result, [(f"{ATTACK['name']}: {ATTACK['text']}", False)],
                  "a message whose name and text contain HTML")


def _check_by_running(get: Callable[[], str], node: str) -> list[bool]:
    runs: list[dict[str, Any]] = []

    def run() -> dict[str, Any]:
        if not runs:
            source = get()
            expect(source.strip() != "", "onmessage_js() returned an empty string")
            runs.append(run_handler_in_node(source, SCENARIOS, node))
        return runs[0]

    def compiles() -> None:
        result = run()
        expect(result["compile_error"] is None, f"it does not compile: {result['compile_error']}")
        expect(result["not_function"] is None, f"it is a {result['not_function']}, not a function")

    def ran() -> bool:
        try:
            return bool(run()["scenarios"])
        except Exception:  # stub, empty source, Node failure: reported by the first case
            return False

    def scenario(name: str) -> dict[str, Any]:
        try:
            scenarios = run()["scenarios"]
        except NotImplementedError:
            raise
        except Exception:
            scenarios = {}
        expect(bool(scenarios), "not run, since the first check failed")
        return scenarios[name]

    def lines(*pairs: tuple[str, list[tuple[str, bool]], str]) -> Callable[[], None]:
        return lambda: [_expect_lines(scenario(name), expected, what) for name, expected, what in pairs]

    results = [check("your JavaScript compiles to a function", compiles,
                     "onmessage_js() returns one function expression, (event, log) => { ... }, "
                     "with nothing before or after it.")]
    live = ran()
    cases = [
        ("welcome: one line per message of its history, 'name: text'",
         lines(("welcome", [(f"{m['name']}: {m['text']}", False) for m in HISTORY],
                "a welcome whose history has 2 messages"),
               ("empty welcome", [], "a welcome with an empty history")),
         "see the table: a welcome carries a history, an array of messages like the one in the next row."),
        ("message: one line per message, 'ada: hi'",
         lines(("message", [("ada: hi", False), ("bob: again", False)],
                f"the messages {json.dumps(ADA)} then {json.dumps(BOB)}")),
         "see the table's message row: the field names are those of the JSON the server sends."),
        ("error: one line 'error: ...' with the class error",
         lines(("error", [(f"error: {SERVER_ERROR['error']}", True)], "an error from the server")),
         "see the table's error row: the explanation is in the message's error field."),
        ("a name or text like <img src=x onerror=...> is shown as text, never as HTML",
         lambda: _expect_text_not_html(scenario("attack")),
         "text from the network goes into the page as text (textContent), never through innerHTML."),
        ("not JSON: one 'unreadable message' line with the class error, no exception",
         lines(("not JSON", [("unreadable message", True)], "event.data '<<<not json>>>'"),
               ("cut JSON", [("unreadable message", True)], "JSON cut in the middle")),
         "JSON.parse throws on text that is not JSON: catch it and add that line instead."),
        ("other types, or no type: nothing added, no exception",
         lines(("other type", [], 'a message of type "typing"'),
               ("no type", [], "a JSON object without a type")),
         "only the three types of the table add lines."),
    ]
    return results + [check(name, test, hint if live else "") for name, test, hint in cases]


# --------------------------------------------------------------------------- JavaScript: keyword scan

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


def _scan_by_keywords(get: Callable[[], str]) -> list[bool]:
    def code() -> str:
        return strip_js_comments_and_strings(get())

    unsafe = lambda: (_UNSAFE.search(code()) or [""])[0]  # noqa: E731
    cases = [
        ("returns non-empty JavaScript source", lambda: expect(get().strip() != "", "the source is empty"),
         'return """(event, log) => { ... }""".'),
        ("brackets are balanced", lambda: _balanced(code()), "count your ( [ { and } ] )."),
        ("mentions event.data", lambda: expect("event.data" in code(), "event.data is never mentioned"),
         "the message text is in event.data."),
        ("mentions JSON.parse inside a try/catch",
         lambda: expect(_parse_in_try(code()), "no JSON.parse inside a try { ... } catch (...) { ... }"),
         "JSON.parse throws on text that is not JSON."),
        ("mentions textContent (or createTextNode)",
         lambda: expect(re.search(r"\.textContent\s*=|createTextNode\s*\(", code()) is not None,
                        "nothing is assigned to .textContent"), "text from the network goes in as text."),
        ("mentions none of innerHTML, outerHTML, insertAdjacentHTML, document.write, eval",
         lambda: expect(unsafe() == "", f"found {unsafe()}: a message is data, not markup (XSS)"),
         "a message <img src=x onerror=...> would run code in the page."),
        ("mentions \"welcome\", \"message\" and \"error\"",
         lambda: expect(all(_quoted(get(), t) for t in ("welcome", "message", "error")),
                        "not all three type names appear as strings"), ""),
        ("mentions log.append (or appendChild)",
         lambda: expect(re.search(r"\blog\.(append|appendChild)\s*\(", code()) is not None,
                        "log.append(...) is never mentioned"), "lines go into log."),
    ]
    return [check(name, test, hint) for name, test, hint in cases]


def check_onmessage_js(onmessage_js: Callable[[], str]) -> bool:
    """Run the JavaScript handler returned by ``onmessage_js()`` in Node.js and check what it does.

    Without Node.js, say so in one line and only scan the source for keywords (every line of
    that scan says "mentions ...": nothing about behaviour is claimed).

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

    node = find_node()
    if node is None:
        print("Node.js is not installed here, so your handler cannot be run: this is only a keyword "
              "scan (the widget below runs it for real).")
        return summary(_scan_by_keywords(get), "onmessage_js (keyword scan only, not run)")
    ok = summary(_check_by_running(get, node), "onmessage_js (run in Node.js on a minimal page)")
    if ok:
        print("   Now see it in a real page: the widget below uses your handler.")
    return ok
