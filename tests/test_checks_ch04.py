"""Chapter 4 self-checks, and the exercise's JavaScript handler run in a real Chromium.

The in-notebook check of ``onmessage_js`` can only read the JavaScript.  Here the
solution's handler runs in a real page against a real ``python -m course.chat`` server:
it must display history, messages and server errors as text, survive non-JSON, and
never turn a message into markup.  A handler using ``innerHTML`` must fail the same test.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from websockets.asyncio.client import connect

from course.checks import FAIL, PASS
from course.checks.ch04 import check_onmessage_js, check_parse_chat_message, strip_js_comments_and_strings

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = ROOT / "solutions" / "04_browser_onmessage.ipynb"
EXERCISE = ROOT / "exercises" / "04_browser_onmessage.ipynb"
TIMEOUT_MS = 10_000


def definitions(path: Path) -> dict:
    """Execute the notebook's import cell and the cells defining the exercise functions."""
    namespace: dict = {}
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "code" and (cell.source.startswith("import json")
                                         or cell.source.startswith("def ")):
            exec(compile(cell.source, str(path), "exec"), namespace)  # noqa: S102 - our notebook
    return namespace


def lines_of(capsys) -> dict[str, str]:
    cases = {}
    for line in capsys.readouterr().out.splitlines():
        if line.startswith((PASS, FAIL)):
            cases[line[2:].split(" — ")[0].strip()] = line
    return cases


# --------------------------------------------------------------------------- Python exercise

def test_parse_solution_passes_and_stub_fails(capsys):
    assert check_parse_chat_message(definitions(SOLUTION)["parse_chat_message"])
    assert all(line.startswith(PASS) for line in lines_of(capsys).values())
    assert not check_parse_chat_message(definitions(EXERCISE)["parse_chat_message"])
    cases = lines_of(capsys)
    assert cases and all(line.startswith(FAIL) for line in cases.values())
    assert all("not implemented yet" in line for name, line in cases.items() if "parse_chat" not in name)


@pytest.mark.parametrize("wrong, failing", [
    (lambda data: json.loads(data), "a valid message gives {'name': ..., 'text': ...}"),
    (lambda data: {"name": "anonymous", "text": json.loads(data)["text"]}, "wrong or missing type -> ValueError"),
    (lambda data: {"name": "anonymous", "text": str(json.loads(data).get("text", "")).strip()},
     "text that is not a string -> ValueError"),
])
def test_parse_wrong_implementations_fail(capsys, wrong, failing):
    assert not check_parse_chat_message(wrong)
    cases = lines_of(capsys)
    assert cases[failing].startswith(FAIL), cases[failing]


def test_parse_agrees_with_the_chat_server():
    from course.chat import ChatError, parse_client_message
    parse = definitions(SOLUTION)["parse_chat_message"]
    for data in ['{"type": "message", "text": " a ", "name": " "}', '{"type": "message", "text": ""}',
                 "[]", "{", '{"type": "message", "text": "é", "name": "n"}']:
        try:
            expected = parse_client_message(data)
        except ChatError:
            with pytest.raises(ValueError):
                parse(data)
        else:
            assert parse(data) == expected


# --------------------------------------------------------------------------- JS structure

SOLUTION_JS = definitions(SOLUTION)["onmessage_js"]()
INNERHTML_JS = SOLUTION_JS.replace("li.textContent = text;", "li.innerHTML = text;")
NO_TRY_JS = re.sub(r"try \{\s*(msg = JSON\.parse\(event\.data\);)\s*\} catch \(err\) \{[^}]*\}",
                   r"\1", SOLUTION_JS)


def test_structure_solution_passes(capsys):
    assert check_onmessage_js(lambda: SOLUTION_JS)
    assert all(line.startswith(PASS) for line in lines_of(capsys).values())


def test_structure_stub_fails_without_crashing(capsys):
    assert not check_onmessage_js(definitions(EXERCISE)["onmessage_js"])
    cases = lines_of(capsys)
    assert len(cases) == 10 and all(line.startswith(FAIL) for line in cases.values())


@pytest.mark.parametrize("source, failing", [
    (INNERHTML_JS, "never innerHTML, outerHTML, insertAdjacentHTML, document.write or eval"),
    (NO_TRY_JS, "JSON.parse inside try/catch"),
    (SOLUTION_JS[:-1], "brackets are balanced"),
    ("", "returns non-empty JavaScript source"),
    (SOLUTION_JS.replace("(event, log) =>", "(e) =>"), "a function expression taking (event, log)"),
    (42, "returns non-empty JavaScript source"),
])
def test_structure_wrong_handlers_fail(capsys, source, failing):
    assert NO_TRY_JS != SOLUTION_JS
    assert not check_onmessage_js(lambda: source)
    assert lines_of(capsys)[failing].startswith(FAIL)


def test_strings_and_comments_do_not_count():
    code = strip_js_comments_and_strings('a("innerHTML }"); // innerHTML\n/* { */ b(`x${1}`)')
    assert "innerHTML" not in code and code.count("{") == code.count("}")


# --------------------------------------------------------------------------- real Chromium

@pytest.fixture(scope="module")
def chat_url():
    proc = subprocess.Popen([sys.executable, "-m", "course.chat", "--host", "127.0.0.1", "--port", "0"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving on http://127.0.0.1:"), line
        yield line.split()[-1]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def post(ws_url: str, *messages: dict) -> None:
    """Send chat messages from a Python client (in its own thread: Playwright owns this one)."""
    async def scenario():
        async with connect(ws_url) as ws:
            await ws.recv()  # welcome
            for message in messages:
                await ws.send(json.dumps({"type": "message", **message}))
                await ws.recv()  # our own broadcast: the server has handled it

    with ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: asyncio.run(asyncio.wait_for(scenario(), 10))).result()


# Runs in the chat's own page (same origin, so the chat's Origin check lets it in; a page
# made up by Playwright's route() would count as "public" and Chromium's Local Network
# Access checks would block its connection to 127.0.0.1).
TEST_SCRIPT = """() => {
  const handler = (%s);
  const log = document.createElement("ul");
  log.id = "handler-log";
  document.body.replaceChildren(log);
  window.handlerErrors = [];
  const call = (event) => {
    try { handler(event, log); } catch (err) { window.handlerErrors.push(String(err)); }
  };
  const url = new URL("ws", location.href);
  url.protocol = "ws:";
  window.testWs = new WebSocket(url.href);
  window.testWs.addEventListener("message", call);
  window.callHandler = (data) => call({ data });
}"""


def run_handler_in_chromium(chromium, chat_url: str, source: str) -> list[tuple[str, str]]:
    """Serve a page running ``source`` as onmessage, on the chat's origin; drive a scenario.

    Returns the (class, text) of every line the handler added.
    """
    ws_url = chat_url.replace("http://", "ws://") + "ws"
    marker = f"history-{id(source)}"
    post(ws_url, {"text": marker, "name": "earlier"})
    page = chromium.new_page()
    try:
        page.goto(chat_url)
        page.wait_for_selector("#status.open", timeout=TIMEOUT_MS)
        page.evaluate(TEST_SCRIPT % source)
        # the welcome's history is drawn as soon as the page connects
        page.wait_for_function("t => document.getElementById('handler-log').textContent.includes(t)",
                               arg=marker, timeout=TIMEOUT_MS)
        count = page.evaluate("document.querySelectorAll('#handler-log li').length")
        post(ws_url, {"text": "hello from python", "name": "bob"},
             {"text": '<img src=x onerror="window.pwned=1"><b>bold</b>', "name": "<i>mallory</i>"})
        page.wait_for_function("n => document.querySelectorAll('#handler-log li').length >= n",
                               arg=count + 2, timeout=TIMEOUT_MS)
        # the page itself sends something invalid: the server answers with an error message
        page.evaluate("window.testWs.send('not json at all')")
        page.wait_for_function("n => document.querySelectorAll('#handler-log li').length >= n",
                               arg=count + 3, timeout=TIMEOUT_MS)
        # a message that is not JSON must not throw
        page.evaluate("window.callHandler('<<<not json>>>')")
        page.wait_for_timeout(200)  # let an <img onerror> fire, if the handler created one
        assert page.evaluate("window.handlerErrors") == []
        assert page.evaluate("window.pwned") is None, "a message was run as code (XSS)"
        assert page.evaluate("document.querySelectorAll('#handler-log img, #handler-log b, #handler-log i').length") == 0, \
            "a message was turned into markup"
        return [tuple(x) for x in page.eval_on_selector_all(
            "#handler-log li", "els => els.map(e => [e.className, e.textContent])")]
    finally:
        page.close()


@pytest.mark.browser
def test_solution_handler_in_chromium(chromium, chat_url):
    lines = run_handler_in_chromium(chromium, chat_url, SOLUTION_JS)
    assert any(text.startswith("earlier: history-") for _cls, text in lines), lines
    tail = lines[-4:]
    assert tail[0] == ("", "bob: hello from python"), lines
    assert tail[1] == ("", '<i>mallory</i>: <img src=x onerror="window.pwned=1"><b>bold</b>'), lines
    assert tail[2][0] == "error" and tail[2][1].startswith("error: message is not valid JSON"), lines
    assert tail[3] == ("error", "unreadable message"), lines


@pytest.mark.browser
def test_innerhtml_handler_fails_in_chromium(chromium, chat_url):
    """The same scenario catches a handler that uses innerHTML: the test can fail."""
    with pytest.raises(AssertionError, match="markup|XSS"):
        run_handler_in_chromium(chromium, chat_url, INNERHTML_JS)


@pytest.mark.browser
def test_handler_without_try_fails_in_chromium(chromium, chat_url):
    with pytest.raises(AssertionError):
        run_handler_in_chromium(chromium, chat_url, NO_TRY_JS)


def test_structure_accepts_other_valid_spellings(capsys):
    """Mixed quote styles, and a `}` inside the try block before JSON.parse, are still correct."""
    variant = SOLUTION_JS.replace('"welcome"', "'welcome'").replace('"error"', "`error`")
    variant = variant.replace("msg = JSON.parse(event.data);",
                              "const seen = {count: 1}; msg = JSON.parse(event.data);")
    assert variant != SOLUTION_JS
    assert check_onmessage_js(lambda: variant)
    assert all(line.startswith(PASS) for line in lines_of(capsys).values())


def test_structure_parse_after_the_try_block_fails(capsys):
    moved = NO_TRY_JS.replace("msg = JSON.parse(event.data);",
                              "try { log.hidden = false; } catch (e) {} msg = JSON.parse(event.data);")
    assert not check_onmessage_js(lambda: moved)
    assert lines_of(capsys)["JSON.parse inside try/catch"].startswith(FAIL)
