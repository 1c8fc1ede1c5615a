"""`make lab`, run exactly as the README types it, serves the whole course and opens lesson 00.

Nothing is added to the command: no port, no token, no root directory. Only Jupyter's own
runtime, config and settings folders are pointed at a temporary directory (environment
variables), so the test neither reads nor writes the user's Jupyter state. The URL and
token are read from the server's runtime file, as a browser launcher would.
"""

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request

from conftest import ROOT


def _wait_for_server_file(runtime, process, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "make lab exited early"
        for path in runtime.glob("jpserver-*.json"):
            try:
                return json.loads(path.read_text())
            except ValueError:  # being written
                pass
        time.sleep(0.3)
    raise AssertionError(f"no jpserver-*.json in {runtime} after {timeout}s")


def _get(url, token, timeout=30.0):
    """GET with the token; connection refused is retried until ``timeout``: Jupyter writes
    its runtime file before its event loop binds the port (``_bind_http_server`` runs as a
    loop callback), so on a loaded machine the file can come first."""
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.URLError as error:
            if not isinstance(error.reason, ConnectionRefusedError) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_make_lab_serves_the_repository_and_opens_lesson_00(tmp_path):
    env = dict(os.environ)
    env.update({
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
    })
    log = open(tmp_path / "lab.log", "wb")
    process = subprocess.Popen(["make", "lab"], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        info = _wait_for_server_file(tmp_path / "runtime", process)
        base, token = info["url"].rstrip("/"), info["token"]
        assert info["root_dir"] == str(ROOT), "the server's root must be the repository"

        status, body = _get(f"{base}/api/contents/exercises/01_long_polling_client.ipynb", token)
        assert status == 200 and json.loads(body)["type"] == "notebook"
        status, body = _get(f"{base}/api/contents/README.md", token)
        assert status == 200 and "make lab" in json.loads(body)["content"]
        status, body = _get(f"{base}/api/contents/notebooks", token)
        names = {item["name"] for item in json.loads(body)["content"]}
        assert "00_how_to_use_this_course.ipynb" in names
        status, body = _get(f"{base}/api/kernelspecs", token)
        assert "python3" in json.loads(body)["kernelspecs"]

        # The page a browser is sent to is lesson 00 (the launcher file Jupyter writes).
        opener = next((tmp_path / "runtime").glob("jpserver-file-to-run-*-open.html"))
        target = re.search(r'href="([^"]+)"', opener.read_text()).group(1)
        assert "/lab/tree/notebooks/00_how_to_use_this_course.ipynb" in target
        status, body = _get(target.split("?")[0], token)
        assert status == 200 and b"JupyterLab" in body
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
