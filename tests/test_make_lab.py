"""`make lab` starts JupyterLab on the course: start it headless and fetch the notebook tree."""

import json
import urllib.request

from conftest import ROOT, start_lab, stop_lab  # noqa: E402


def test_make_lab_serves_the_course(tmp_path):
    lab = start_lab(ROOT, tmp_path, command=["make", "--no-print-directory", "lab"])
    try:
        with urllib.request.urlopen(f"{lab.url}/api/contents/notebooks", timeout=10) as r:
            listing = json.load(r)
        names = {item["name"] for item in listing["content"]}
        assert "00_how_to_use_this_course.ipynb" in names
        with urllib.request.urlopen(f"{lab.url}/lab/tree/notebooks/00_how_to_use_this_course.ipynb",
                                    timeout=10) as r:
            assert r.status == 200 and b"JupyterLab" in r.read()
        with urllib.request.urlopen(f"{lab.url}/api/kernelspecs", timeout=10) as r:
            assert "python3" in json.load(r)["kernelspecs"]
    finally:
        stop_lab(lab.process)
