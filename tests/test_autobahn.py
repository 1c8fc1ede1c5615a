"""Autobahn conformance of course.net.rawserver, run by kosoku through the capstone's runner
(:func:`course.checks.autobahn.run_autobahn`).

Cases 1.* to 7.*, 9.* (big messages, up to 16 MiB) and 10.* must end OK, NON-STRICT or
INFORMATIONAL; none FAILED.  12.* and 13.* (permessage-deflate) are out of scope: the server
negotiates no extension.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import missing
from course.checks.autobahn import PASSING, kosoku_path, run_autobahn

ROOT = Path(__file__).resolve().parent.parent
CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]


@pytest.fixture
def rawserver_address():
    """``(host, port)`` of ``python -m course.net.rawserver``, run as a command."""
    process = subprocess.Popen(
        [sys.executable, "-m", "course.net.rawserver", "--host", "127.0.0.1", "--port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("listening on ws://"), (line, process.stderr.read())
        host, port = line.split("ws://")[1].strip().rsplit(":", 1)
        yield host, int(port)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            pytest.fail("rawserver did not stop within 20 s of SIGTERM")
        assert process.returncode == 0, err
        assert "Traceback" not in err, err


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_autobahn_cases(rawserver_address):
    if kosoku_path() is None:
        missing("kosoku (pip install kosoku; it is in requirements-test.txt)")
    host, port = rawserver_address
    started = time.monotonic()
    cases = asyncio.run(run_autobahn(port, CASES, host=host, parallelism=8, timeout=540))
    elapsed = time.monotonic() - started

    behaviors = collections.Counter(case["behavior"] for case in cases.values())
    closes = collections.Counter(case["behaviorClose"] for case in cases.values())
    print(f"\nAutobahn via kosoku: {len(cases)} cases in {elapsed:.1f} s")
    print("behavior:", dict(sorted(behaviors.items())))
    print("behaviorClose:", dict(sorted(closes.items())))
    not_ok = {cid: case["behavior"] for cid, case in cases.items() if case["behavior"] != "OK"}
    print("not OK:", not_ok)

    families = {cid.split(".")[0] + ".*" for cid in cases}
    assert families == set(CASES), f"ran {sorted(families)}"
    assert "9.1.6" in cases, "the 16 MiB message case did not run"
    failed = {cid: (case["behavior"], case["behaviorClose"], case["result"][:120])
              for cid, case in cases.items()
              if case["behavior"] not in PASSING or case["behaviorClose"] not in PASSING}
    assert failed == {}, f"FAILED cases: {failed}"
