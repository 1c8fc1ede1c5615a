"""Chapter 4 in a real JupyterLab driven by a real Chromium.

The notebook's widget (course.browser.BrowserClient) must open a WebSocket *from the page*
to the server the notebook starts in the kernel, show the kernel's pushes, send what is typed
in the page and show the echo; the page's state must reach Python; the chat page shown twice
in the notebook must carry a message from one frame to the other.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "notebooks/04_the_browser_side.ipynb"
TIMEOUT_MS = 60_000

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def cell_number(fragment: str) -> int:
    """1-based index (as in JupyterLab's status bar) of the first cell containing ``fragment``."""
    nb = nbformat.read(ROOT / NOTEBOOK, as_version=4)
    for i, cell in enumerate(nb.cells, start=1):
        if fragment in cell.source:
            return i
    raise AssertionError(f"no cell contains {fragment!r}")


def selected_cell(page) -> tuple[int, int]:
    text = page.get_by_text(re.compile(r"^Cell \d+/\d+$")).text_content()
    current, total = text.split()[1].split("/")
    return int(current), int(total)


def select_cell(page, number: int) -> None:
    """Select cell ``number`` in command mode with the arrow keys (works with windowed notebooks)."""
    # Take the keyboard back from whatever has it (the widget's text box, a chat frame).
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.locator(".jp-Notebook .jp-Cell.jp-mod-selected .jp-InputPrompt").first.click()
    page.keyboard.press("Escape")
    for _ in range(200):
        current, _total = selected_cell(page)
        if current == number:
            return
        page.keyboard.press("ArrowDown" if current < number else "ArrowUp")
    raise AssertionError(f"could not select cell {number}; at {selected_cell(page)}")


def run_menu(page, item: str) -> None:
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_text(item, exact=True).click()


def log_lines(page) -> list[str]:
    return page.locator(".ws-browser-log li").all_text_contents()


def wait_log_line(page, text: str) -> None:
    page.wait_for_function(
        "t => [...document.querySelectorAll('.ws-browser-log li')].some(e => e.textContent === t)",
        arg=text, timeout=TIMEOUT_MS)


def test_browser_client_talks_to_the_kernel(chromium, jupyterlab):
    total = len(nbformat.read(ROOT / NOTEBOOK, as_version=4).cells)
    summary_cell = cell_number("print(client.summary())")
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(jupyterlab.notebook_url(NOTEBOOK))
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=TIMEOUT_MS)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=TIMEOUT_MS)

        # Everything but the last cell, which stops the servers.
        select_cell(page, total)
        run_menu(page, "Run All Above Selected Cell")

        # The kernel's pushes arrive in the page, over the page's own WebSocket.
        page.wait_for_function(
            "document.querySelectorAll('.ws-browser-log li.ws-browser-received').length >= 3",
            timeout=TIMEOUT_MS)
        lines = log_lines(page)
        assert lines[0].startswith("open: ws://127.0.0.1:"), lines
        received = page.locator(".ws-browser-log li.ws-browser-received").all_text_contents()
        assert received[:3] == ["← hello from the kernel (1/3)", "← hello from the kernel (2/3)",
                                "← [binary, 4 bytes]"], received

        # The page sends; the kernel's handler echoes.
        page.locator(".ws-browser-input").fill("ping from the page")
        page.locator(".ws-browser-input").press("Enter")
        wait_log_line(page, "→ ping from the page")
        wait_log_line(page, "← echo: ping from the page")
        assert page.locator(".ws-browser-input").input_value() == ""
        status = page.locator(".ws-browser-state").text_content()
        assert status.startswith("readyState 1 (OPEN) · ws://127.0.0.1:"), status
        assert "sent 1" in status and not page.locator(".ws-browser .ws-browser-error").is_visible()

        # The page's state reached Python: re-run the summary cell.
        select_cell(page, summary_cell)
        page.keyboard.press("Shift+Enter")
        output = page.locator(".jp-Notebook .jp-Cell").filter(has_text="print(client.summary())") \
            .locator(".jp-OutputArea-output")
        page.wait_for_function(
            "el => el.textContent.includes('readyState 1 (OPEN)')",
            arg=output.element_handle(timeout=TIMEOUT_MS), timeout=TIMEOUT_MS)
        text = output.text_content()
        assert re.search(r"readyState 1 \(OPEN\), received [4-9]\d*, sent 1", text), text

        # The chat shown twice in the notebook: frame A -> frame B, live.
        page.wait_for_function(
            "() => document.querySelectorAll('iframe').length >= 2", timeout=TIMEOUT_MS)
        frames = [f for f in page.frames if re.fullmatch(r"http://127\.0\.0\.1:\d+/", f.url)]
        assert len(frames) == 2, [f.url for f in page.frames]
        for frame in frames:
            frame.wait_for_selector("#status.open", timeout=TIMEOUT_MS)
        frames[0].fill("#name", "tab A")
        frames[0].fill("#text", "hello tab B")
        frames[0].press("#text", "Enter")
        frames[1].wait_for_function(
            "[...document.querySelectorAll('#log li.chat-message')].some(e => e.textContent === 'tab Ahello tab B')",
            timeout=TIMEOUT_MS)

        # Last cell: everything stops.
        select_cell(page, total)
        page.keyboard.press("Shift+Enter")
        page.get_by_text("kernel server, chat server and widget stopped").first.wait_for(timeout=TIMEOUT_MS)
        page.wait_for_selector(".ws-browser-log", state="detached", timeout=TIMEOUT_MS)
    except Exception:
        page.screenshot(path=str(jupyterlab.root.parent / "failure.png"), full_page=True)
        raise
    finally:
        page.close()
