"""The pause and out-of-order harness (tools.execute.stress) and the raw-connection helpers.

The two small notebooks below replay the bug of issue "chapter 02 breaks after a reading pause":
a raw connection opened in one cell and used in a later one, against a server with keepalive,
and a closing-handshake cell re-run on a connection that is already closed. The harness must
catch both; the fixed pattern (no keepalive for raw clients, a connection per cell) must pass.
"""

from __future__ import annotations

import asyncio
import time

import nbformat
import pytest
from websockets.asyncio.server import serve

from course.net.rawclient import PeerClosed, raw_upgrade, read_frames
from course.protocol import Opcode, encode_frame
from tools.execute import (StressFailure, load_sanitizers, perturbed_order, printed_text,
                                  sections, stress)


def notebook(*cells: tuple[str, str] | str) -> nbformat.NotebookNode:
    """Markdown cells are plain strings; code cells are (source, committed stdout) pairs."""
    nb = nbformat.v4.new_notebook()
    for cell in cells:
        if isinstance(cell, str):
            nb.cells.append(nbformat.v4.new_markdown_cell(cell))
        else:
            source, stdout = cell
            code = nbformat.v4.new_code_cell(source)
            if stdout:
                code.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stdout)]
            nb.cells.append(code)
    return nb


# --------------------------------------------------------------------------- pure parts


def test_sections_group_code_cells_by_level_two_headings():
    nb = notebook(("a", ""), "# Title", ("b", ""), "## 1. One", "text", ("c", ""), ("d", ""),
                  "## 2. Empty", "## Recap", ("cleanup", ""))
    assert sections(nb) == [[0, 2], [5, 6], [9]]


def test_perturbed_order_repeats_cells_and_goes_back_one_section():
    order = perturbed_order([[0, 2], [5, 6], [10]])
    assert order == [0, 0, 2, 2, 5, 5, 6, 6, 0, 2, 10, 10]
    # a slow cell (6) runs once; the cleanup cell always runs last, twice
    assert perturbed_order([[0, 2], [5, 6], [10]], repeat={0, 2, 5}) == [0, 0, 2, 2, 5, 5, 6, 0, 2,
                                                                          10, 10]
    assert perturbed_order([[1, 4]]) == [1, 1, 4, 4]


def test_printed_text_masks_what_nbval_masks_and_skips_widgets():
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="server on ws://127.0.0.1:40123 in 3.2 ms\n"),
        nbformat.v4.new_output("execute_result", data={"text/plain": "'hello'"}, execution_count=1),
        nbformat.v4.new_output("execute_result", execution_count=2, data={
            "text/plain": "LiveFeed(...)", "application/vnd.jupyter.widget-view+json": {}}),
    ]
    assert printed_text(cell, load_sanitizers()) == "server on ws://127.0.0.1:PORT in T ms\n'hello'\n"


# --------------------------------------------------------------------------- raw connections


def test_read_frames_stops_at_end_of_file_with_a_clear_error():
    async def main():
        async def answer_then_hang_up(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\n\r\n"
                         + encode_frame(Opcode.TEXT, b"one"))
            writer.close()

        server = await asyncio.start_server(answer_then_hang_up, "127.0.0.1", 0)
        reader, writer, _, head = await raw_upgrade(server.sockets[0].getsockname()[1])
        start = time.monotonic()
        with pytest.raises(PeerClosed) as caught:
            await read_frames(reader, 3, timeout=5)
        elapsed = time.monotonic() - start
        with pytest.raises(PeerClosed):  # again: read() at EOF returns b"" at once, no spinning
            await read_frames(reader, 1, timeout=5)
        writer.close()
        server.close()
        return head, caught.value, elapsed

    head, error, elapsed = asyncio.run(main())
    assert head.startswith(b"HTTP/1.1 101")
    assert elapsed < 1  # at once, not after the 5 s timeout (nor never, as with a spinning loop)
    assert [f.payload for f in error.frames] == [b"one"]
    assert str(error) == "the peer closed the connection after 1 of 3 frames (received: TEXT)"


def test_read_frames_gives_up_after_its_timeout_and_raw_upgrade_reports_a_refusal():
    async def main():
        server = await serve(lambda ws: ws.wait_closed(), "127.0.0.1", 0, ping_interval=None)
        port = server.sockets[0].getsockname()[1]
        reader, writer, _, head = await raw_upgrade(port)
        with pytest.raises(TimeoutError):
            await read_frames(reader, 1, timeout=0.2)  # the server has nothing to say
        writer.close()
        server.close()
        await server.wait_closed()

        async def hang_up(reader, writer):
            writer.close()

        silent = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        with pytest.raises(ConnectionError):  # reset, or closed "before answering the upgrade"
            await raw_upgrade(silent.sockets[0].getsockname()[1])
        silent.close()
        return head

    assert asyncio.run(main()).startswith(b"HTTP/1.1 101 Switching Protocols")


# --------------------------------------------------------------------------- the harness catches the bug

SETUP = """\
from websockets.asyncio.server import serve
from course.net.handlers import echo_handler
from course.net.rawclient import raw_upgrade, read_frames
from course.protocol import Opcode, encode_frame

server = await serve(echo_handler, "127.0.0.1", 0{options})
reader, writer, _, _ = await raw_upgrade(server.sockets[0].getsockname()[1])
"""
CLEANUP = ("writer.close()\nserver.close()\nawait server.wait_closed()", "")


@pytest.mark.parametrize("options, fails", [
    ("", True),                      # keepalive on: the pause kills the raw connection
    (", ping_interval=None", False),  # what chapter 02 does now
], ids=["keepalive", "no-keepalive"])
def test_a_raw_connection_used_after_a_pause(tmp_path, options, fails):
    path = tmp_path / "pause.ipynb"
    ping = "writer.write(encode_frame(Opcode.PING, b'hi', mask=b'abcd'))\n" \
           "frame = (await read_frames(reader, 1))[0]\nprint(frame.opcode.name, frame.payload)"
    nbformat.write(notebook((SETUP.format(options=options), ""), (ping, "PONG b'hi'\n"), CLEANUP),
                   path)
    if fails:
        with pytest.raises(StressFailure, match="(?s)printed other text.*PING"):
            stress(path)
    else:
        report = stress(path)
        assert report.paused_after  # it did pause while the connection was open


def test_pauses_only_for_connections_not_yet_paused_for(tmp_path):
    path = tmp_path / "pauses.ipynb"
    second = "reader2, writer2, _, _ = await raw_upgrade(server.sockets[0].getsockname()[1])"
    nb = notebook((SETUP.format(options=", ping_interval=None"), ""),   # connection 1: pause
                  ("x = 1", ""),                                         # nothing new: no pause
                  (second, ""),                                          # connection 2: pause
                  ("y = 2", ""),                                         # nothing new: no pause
                  ("writer2.close()\n" + CLEANUP[0], ""))
    for number, cell in enumerate(nb.cells):
        cell.id = f"c{number}"
    nbformat.write(nb, path)
    assert stress(path).paused_after == ["c0", "c2"]


def test_a_closing_handshake_cell_run_twice(tmp_path):
    path = tmp_path / "rerun.ipynb"
    close = "writer.write(encode_frame(Opcode.CLOSE, b'\\x03\\xe8', mask=b'abcd'))\n" \
            "[frame] = await read_frames(reader, 1)\nprint(frame.opcode.name)"
    nbformat.write(notebook((SETUP.format(options=", ping_interval=None"), ""), "## Closing",
                            (close, "CLOSE\n"), CLEANUP), path)
    with pytest.raises(StressFailure, match="(?s)pass 2.*PeerClosed: the peer closed the connection"):
        stress(path)
