"""Chapter 4 self-checks: plausible wrong answers get ❌, and the JavaScript handler really runs.

The in-notebook check of ``onmessage_js`` runs the handler in Node.js on a minimal fake page
(``course/ui/static/onmessage_harness.js``); these tests run Node for real (a missing Node skips
loudly, or fails under CI=true).  At the end, the solution's handler also runs in a real
Chromium page against a real ``python -m course.net.chat`` server: it must display history,
messages and server errors as text, survive non-JSON, and never turn a message into markup.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from conftest import missing
from websockets.asyncio.client import connect

from course.checks import FAIL, PASS, ch04
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


def failing(cases: dict[str, str]) -> dict[str, str]:
    return {name: line for name, line in cases.items() if line.startswith(FAIL) and " — " in line}


# --------------------------------------------------------------------------- Python exercise

def test_parse_solution_passes_and_stub_fails(capsys):
    assert check_parse_chat_message(definitions(SOLUTION)["parse_chat_message"])
    assert all(line.startswith(PASS) for line in lines_of(capsys).values())
    assert not check_parse_chat_message(definitions(EXERCISE)["parse_chat_message"])
    cases = lines_of(capsys)
    assert cases and all(line.startswith(FAIL) for line in cases.values())
    assert all("not implemented yet" in line for name, line in cases.items() if "parse_chat" not in name)


def parser(*, blank_name_kept=False, length_before_strip=False, any_name=False, convert_text=False,
           no_type_check=False):
    """A parse_chat_message with the given mistakes (each one a plausible wrong answer)."""
    def parse(data: str) -> dict:
        obj = json.loads(data)
        if not isinstance(obj, dict) or (obj.get("type") != "message" and not no_type_check):
            raise ValueError("not a message")
        text, name = obj.get("text"), obj.get("name", "anonymous")
        if convert_text:
            text = "" if text is None else str(text)
        if not isinstance(text, str):
            raise ValueError("text must be a string")
        if any_name:
            name = str(name)
        elif not isinstance(name, str):
            raise ValueError("name must be a string")
        if length_before_strip and len(text) > 500:
            raise ValueError("too long")
        text = text.strip()
        name = name.strip() if blank_name_kept else (name.strip() or "anonymous")
        if not text or len(text) > 500:
            raise ValueError("empty or too long")
        return {"name": name, "text": text}
    return parse


def test_parse_mistake_free_helper_passes(capsys):
    """The helper without mistakes is right, so each mistake below is what fails."""
    assert check_parse_chat_message(parser())
    assert not failing(lines_of(capsys))


@pytest.mark.parametrize("wrong, case, named", [
    (parser(blank_name_kept=True), "a blank name ('   ') becomes 'anonymous' too", "only spaces"),
    (parser(length_before_strip=True), "the length is measured after stripping", "after stripping"),
    (parser(any_name=True), "name that is not a string -> ValueError", "name"),
    (parser(convert_text=True), "text that is not a string -> ValueError", "not a str"),
    (parser(no_type_check=True), "wrong or missing type -> ValueError", '"type"'),
    (lambda data: json.loads(data), "a valid message gives {'name': ..., 'text': ...}", "name and text"),
    (lambda data: {"name": "anonymous", "text": json.loads(data)["text"]},
     "wrong or missing type -> ValueError", '"type"'),
])
def test_parse_wrong_implementations_fail_with_a_named_mistake(capsys, wrong, case, named):
    assert not check_parse_chat_message(wrong)
    line = lines_of(capsys)[case]
    assert line.startswith(FAIL), line
    assert named in line.split("Hint:")[-1], line


def test_parse_the_issues_wrong_answer_fails_three_times(capsys):
    """From the issue: blank name kept, length checked before stripping, any name accepted."""
    wrong = parser(blank_name_kept=True, length_before_strip=True, any_name=True)
    assert not check_parse_chat_message(wrong)
    assert set(failing(lines_of(capsys))) == {
        "a blank name ('   ') becomes 'anonymous' too", "the length is measured after stripping",
        "name that is not a string -> ValueError"}


def test_parse_agrees_with_the_chat_server():
    from course.wire.chat import parse_client_message
    from course.wire.envelope import BadMessage
    parse = definitions(SOLUTION)["parse_chat_message"]
    for data in ['{"type": "message", "text": " a ", "name": " "}', '{"type": "message", "text": ""}',
                 "[]", "{", '{"type": "message", "text": "é", "name": "n"}',
                 '{"type": "message", "text": "hi", "name": 42}',
                 json.dumps({"type": "message", "text": " " + "x" * 500 + " "})]:
        try:
            expected = parse_client_message(data)
        except BadMessage:
            with pytest.raises(ValueError):
                parse(data)
        else:
            assert parse(data) == expected


# --------------------------------------------------------------------------- JS, run in Node.js

@pytest.fixture
def node():
    if ch04.find_node() is None:
        missing("Node.js (apt-get install nodejs): the check of exercise 04 runs the handler in it")


SOLUTION_JS = definitions(SOLUTION)["onmessage_js"]()
COMPILES = "your JavaScript compiles to a function"
WELCOME = "welcome: one line per message of its history, 'name: text'"
MESSAGE = "message: one line per message, 'ada: hi'"
ERROR = "error: one line 'error: ...' with the class error"
AS_TEXT = "a name or text like <img src=x onerror=...> is shown as text, never as HTML"
NOT_JSON = "not JSON: one 'unreadable message' line with the class error, no exception"
OTHER = "other types, or no type: nothing added, no exception"


def variant(old: str, new: str, source: str = SOLUTION_JS) -> str:
    assert old in source, old
    return source.replace(old, new)


INNERHTML_JS = variant("li.textContent = text;", "li.innerHTML = text;")
NO_TRY_JS = re.sub(r"try \{\s*(msg = JSON\.parse\(event\.data\);)\s*\} catch \(err\) \{[^}]*\}",
                   r"\1", SOLUTION_JS)
# Wrong logic, yet every keyword the old structural check looked for: "welcome", "message" and
# "error", event.data, JSON.parse in try/catch, textContent, log.append, no innerHTML.
KEYWORDS_ONLY_JS = r"""(event, log) => {
  // handles "welcome", "message" and "error"
  let msg;
  try {
    msg = JSON.parse(event.data);
  } catch (err) {
    return;
  }
  const li = document.createElement("li");
  li.textContent = event.data;
  log.append(li);
}"""

WRONG_HANDLERS = {
    "innerHTML with the message body": (INNERHTML_JS, AS_TEXT, ["HTML", "<img onerror>", "XSS"]),
    "innerHTML built by concatenation": (
        variant("line(`${msg.name}: ${msg.text}`);",
                'const li = document.createElement("li"); li.innerHTML = "<b>" + msg.name + "</b>: " + msg.text; '
                "log.append(li);"),
        AS_TEXT, ["inserted as HTML"]),
    "insertAdjacentHTML": (
        variant("line(`${msg.name}: ${msg.text}`);",
                'log.insertAdjacentHTML("beforeend", `<li>${msg.name}: ${msg.text}</li>`);'),
        AS_TEXT, ["inserted as HTML"]),
    "ignores the error type": (
        variant('  } else if (msg.type === "error") {\n    line(`error: ${msg.error}`, "error");\n', ""),
        ERROR, ["added 0 line(s)", "an error from the server"]),
    "error line without the class error": (
        variant('line(`error: ${msg.error}`, "error");', "line(`error: ${msg.error}`);"),
        ERROR, ["class error"]),
    "error text from the wrong field": (
        variant("line(`error: ${msg.error}`, \"error\");", "line(`error: ${msg.code}`, \"error\");"),
        ERROR, ["'error: too-long'"]),
    "crashes on bad JSON (no try/catch)": (NO_TRY_JS, NOT_JSON, ["threw SyntaxError"]),
    "catches bad JSON but shows nothing": (
        variant('line("unreadable message", "error");', ""), NOT_JSON, ["added 0 line(s)"]),
    "appends nothing for welcome": (
        variant("for (const m of msg.history) line(`${m.name}: ${m.text}`);", ""),
        WELCOME, ["added 0 line(s)", "history has 2 messages"]),
    "welcome shown as one line of JSON": (
        variant("for (const m of msg.history) line(`${m.name}: ${m.text}`);", "line(JSON.stringify(msg.history));"),
        WELCOME, ["added 1 line(s)"]),
    "wrong field names": (
        variant("line(`${msg.name}: ${msg.text}`);", "line(`${msg.user}: ${msg.message}`);"),
        MESSAGE, ["'undefined: undefined'"]),
    "throws on an unknown type": (
        variant('line(`error: ${msg.error}`, "error");\n  }',
                'line(`error: ${msg.error}`, "error");\n  } else {\n    throw new Error("unknown type " + msg.type);\n  }'),
        OTHER, ["threw Error: unknown type typing"]),
    "shows unknown types as messages": (
        variant('} else if (msg.type === "message") {', '} else if (msg.type !== "error") {'), OTHER, ["added 1 line(s)"]),
    "bare text instead of an <li>": (
        variant("log.append(li);", "log.append(text);"), MESSAGE, ["bare text, not an <li>"]),
    "replaces the log at each message": (
        variant("log.append(li);", "log.replaceChildren(li);"), MESSAGE, ["added 1 line(s)", "expected 2"]),
    "an unsupported DOM method": (
        variant("log.append(li);", "log.appendHTMLWithCare(li);"), MESSAGE,
        ["threw TypeError", "minimal page lacks it"]),
    "appends to the page instead of log": (
        variant("log.append(li);", "document.body.append(li);"), MESSAGE, ["added 0 line(s)"]),
    "every keyword, wrong logic": (KEYWORDS_ONLY_JS, MESSAGE, ["reads '{\"type\""]),
    "syntax error": (variant("if (cls) li.className = cls;", "if (cls li.className = cls;"),
                     COMPILES, ["does not compile: SyntaxError", "line 4 of your JavaScript"]),
    "a bracket left open": (SOLUTION_JS[:-1], COMPILES, ["SyntaxError", "bracket"]),
    "a statement, not an expression": ("const handler = " + SOLUTION_JS, COMPILES, ["SyntaxError"]),
    "not a function": ("42", COMPILES, ["it is a number, not a function"]),
    "empty source": ("", COMPILES, ["empty string"]),
    "not a str": (42, COMPILES, ["must return a str"]),
    "an endless loop": ("(event, log) => { while (true) {} }", WELCOME, ["did not return within 1 s"]),
}


def test_node_solution_passes(capsys, node):
    assert check_onmessage_js(lambda: SOLUTION_JS)
    cases = lines_of(capsys)
    assert len(cases) == 8 and all(line.startswith(PASS) for line in cases.values()), cases


@pytest.mark.parametrize("source", [
    SOLUTION_JS.replace("(event, log) =>", "function (event, log)").replace('"welcome"', "'welcome'"),
    r"""function onmessage(e, ul) {
  function add(text, error) {
    const li = document.createElement("li");
    if (error) li.classList.add("error");
    li.appendChild(document.createTextNode(text));
    ul.appendChild(li);
  }
  let msg = null;
  try { msg = JSON.parse(e.data); } catch (err) { return add("unreadable message", true); }
  switch (msg.type) {
    case "welcome": msg.history.forEach((m) => add(m.name + ": " + m.text)); break;
    case "message": add(msg.name + ": " + msg.text); break;
    case "error": add("error: " + msg.error, true); break;
  }
}""",
    r"""(event, log) => {
  const li = document.createElement("li");
  let msg;
  try { msg = JSON.parse(event.data); } catch { li.className = "error"; li.textContent = "unreadable message"; log.append(li); return; }
  if (msg.type !== "message") {
    if (msg.type === "welcome") for (const m of msg.history) { const x = document.createElement("li"); const b = document.createElement("b"); b.textContent = m.name; x.append(b, ": ", m.text); log.append(x); }
    if (msg.type === "error") { li.classList.toggle("error"); li.innerText = `error: ${msg.error}`; log.appendChild(li); }
    return;
  }
  const who = document.createElement("b");
  who.textContent = msg.name;
  li.append(who, `: ${msg.text}`);
  log.append(li);
}""",
], ids=["function-keyword", "switch-createTextNode", "bold-name-children"])
def test_node_other_correct_spellings_pass(capsys, node, source):
    assert check_onmessage_js(lambda: source), lines_of(capsys)
    assert not failing(lines_of(capsys))


@pytest.mark.parametrize("name", list(WRONG_HANDLERS))
def test_node_wrong_handlers_fail_with_a_named_mistake(capsys, node, name):
    source, case, named = WRONG_HANDLERS[name]
    assert source != SOLUTION_JS
    started = time.monotonic()
    assert not check_onmessage_js(lambda: source)
    assert time.monotonic() - started < ch04.NODE_TIMEOUT
    out = capsys.readouterr().out
    assert "Traceback" not in out
    cases = {line[2:].split(" — ")[0].strip(): line for line in out.splitlines() if line.startswith((PASS, FAIL))}
    assert cases[case].startswith(FAIL), out
    for words in named:
        assert words in cases[case], cases[case]


def test_node_keywords_only_handler_passed_the_old_scan(capsys, node, monkeypatch):
    """The issue's handler: every keyword, wrong logic. The scan passes it; running it does not."""
    assert not check_onmessage_js(lambda: KEYWORDS_ONLY_JS)
    ran = failing(lines_of(capsys))
    assert {WELCOME, MESSAGE, ERROR, NOT_JSON, OTHER} <= set(ran), ran
    monkeypatch.setattr(ch04, "find_node", lambda: None)
    assert check_onmessage_js(lambda: KEYWORDS_ONLY_JS)


def test_node_stub_fails_without_crashing(capsys, node):
    assert not check_onmessage_js(definitions(EXERCISE)["onmessage_js"])
    cases = lines_of(capsys)
    assert len(cases) == 8 and all(line.startswith(FAIL) for line in cases.values())
    assert all("not implemented yet" in line for name, line in cases.items() if "onmessage_js" not in name)


def test_node_handler_cannot_reach_node_itself(capsys, node):
    """The handler runs in a vm context: no require, no process (as in a page)."""
    source = variant("let msg;", "require('fs').writeFileSync('/tmp/pwned-by-handler', 'x'); let msg;")
    assert not check_onmessage_js(lambda: source)
    assert "ReferenceError: require is not defined" in lines_of(capsys)[WELCOME]
    assert not Path("/tmp/pwned-by-handler").exists()


# --------------------------------------------------------------------------- JS, without Node.js

def test_without_node_says_so_and_only_claims_keywords(capsys, monkeypatch):
    monkeypatch.setattr(ch04, "find_node", lambda: None)
    assert check_onmessage_js(lambda: SOLUTION_JS)
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("Node.js is not installed here")
    checks = [line for line in out.splitlines() if line.startswith(PASS)]
    assert checks[-1] == f"{PASS} onmessage_js (keyword scan only, not run): all 8 checks pass"
    behaviour = [line for line in checks[:-1] if not line.startswith(f"{PASS} mentions ")]
    assert behaviour == [f"{PASS} returns non-empty JavaScript source", f"{PASS} brackets are balanced"]


@pytest.mark.parametrize("source, case", [
    (INNERHTML_JS, "mentions none of innerHTML, outerHTML, insertAdjacentHTML, document.write, eval"),
    (NO_TRY_JS, "mentions JSON.parse inside a try/catch"),
    (SOLUTION_JS[:-1], "brackets are balanced"),
    ("", "returns non-empty JavaScript source"),
    (42, "returns non-empty JavaScript source"),
])
def test_without_node_the_scan_still_catches_missing_keywords(capsys, monkeypatch, source, case):
    monkeypatch.setattr(ch04, "find_node", lambda: None)
    assert not check_onmessage_js(lambda: source)
    assert lines_of(capsys)[case].startswith(FAIL)


def test_without_node_stub_fails_without_crashing(capsys, monkeypatch):
    monkeypatch.setattr(ch04, "find_node", lambda: None)
    assert not check_onmessage_js(definitions(EXERCISE)["onmessage_js"])
    cases = lines_of(capsys)
    assert len(cases) == 9 and all(line.startswith(FAIL) for line in cases.values())


def test_strings_and_comments_do_not_count():
    code = strip_js_comments_and_strings('a("innerHTML }"); // innerHTML\n/* { */ b(`x${1}`)')
    assert "innerHTML" not in code and code.count("{") == code.count("}")


def test_scan_accepts_other_valid_spellings(capsys, monkeypatch):
    """Mixed quote styles, and a `}` inside the try block before JSON.parse, are still correct."""
    monkeypatch.setattr(ch04, "find_node", lambda: None)
    changed = SOLUTION_JS.replace('"welcome"', "'welcome'").replace('"error"', "`error`")
    changed = changed.replace("msg = JSON.parse(event.data);",
                              "const seen = {count: 1}; msg = JSON.parse(event.data);")
    assert changed != SOLUTION_JS
    assert check_onmessage_js(lambda: changed)
    assert all(line.startswith(PASS) for line in lines_of(capsys).values())


def test_scan_parse_after_the_try_block_fails(capsys, monkeypatch):
    monkeypatch.setattr(ch04, "find_node", lambda: None)
    moved = NO_TRY_JS.replace("msg = JSON.parse(event.data);",
                              "try { log.hidden = false; } catch (e) {} msg = JSON.parse(event.data);")
    assert not check_onmessage_js(lambda: moved)
    assert lines_of(capsys)["mentions JSON.parse inside a try/catch"].startswith(FAIL)


# --------------------------------------------------------------------------- real Chromium

@pytest.fixture(scope="module")
def chat_url():
    proc = subprocess.Popen([sys.executable, "-m", "course.net.chat", "--host", "127.0.0.1", "--port", "0"],
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
    assert tail[2][0] == "error" and tail[2][1].startswith("error: bad JSON"), lines
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
