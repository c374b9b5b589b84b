"""ComfyUI's real frontend lists every model file a workflow needs when it is absent, and none when present.

A ComfyUI server of its own (``--base-directory`` in tmp, so its models folders are empty and nothing of the
ComfyUI checkout's models is seen) with the pack in custom_nodes; tests/integration/frontend/missing_models.mjs
loads each example workflow in headless Chromium and reads the "Missing Models" dialog, which the frontend
(comfyui_frontend_package 1.27, ComfyUI 0.3.64) builds from each node's ``properties.models`` that match its
widget values, checked against ``/experiment/models/<folder>``.

Absent: each workflow's dialog lists exactly the manifest's files of its set (Moore's; animate-x's for
animate_x_official), as "<folder> / <name>" with the
manifest's URL, and no entry says its folder is invalid. The frontend offers its Download button only for
``.safetensors``/``.sft`` names: the ``.pth`` entries carry its "Only allowed suffixes" note (the download
command fetches them). Present (empty files with those names in the server's models folders): no dialog at
all. Every request the page tries outside 127.0.0.1 is aborted and reported (the panel asks each URL for its
size); the test shows they were the manifest URLs only.
"""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT, STARTUP_S, _free_port, comfyui_path, get_json

comfyui_path()
sys.path.insert(0, ROOT)
from aa2_core import model_manifest as mm  # noqa: E402

FRONTEND = os.path.join(ROOT, "tests", "integration", "frontend")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
WORKFLOWS = sorted(f[:-5] for f in os.listdir(os.path.join(ROOT, "workflows")) if f.endswith(".json"))
MOORE = mm.select("moore")
# the released Animate-X files (DWPose's .onnx files are in its Note only: ComfyUI's model listing, which the panel
# checks, shows no .onnx file); the others: Moore's
WORKFLOW_FILES = {"animate_x_official": [e for e in mm.select("animate-x") if not e.name.endswith(".onnx")]}


def files_of(name):
    return WORKFLOW_FILES.get(name, MOORE)
DOWNLOADABLE = (".safetensors", ".sft")  # the frontend's allowedSuffixes


def _missing_requirement():
    if not shutil.which("node"):
        return "node is not installed (bash scripts/setup_frontend_test.sh)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (bash scripts/setup_frontend_test.sh, or apt-get install chromium)"
    if not os.path.isdir(os.path.join(FRONTEND, "node_modules", "playwright-core")):
        return "playwright-core is not installed in tests/integration/frontend (bash scripts/setup_frontend_test.sh)"
    return None


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory):
    """(url, models folder) of a ComfyUI server whose models folders hold no file."""
    reason = _missing_requirement()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("bare_comfy")
    (base / "custom_nodes").mkdir()
    (base / "models").mkdir()
    (base / "user").mkdir()
    os.symlink(ROOT, base / "custom_nodes" / "aa2_pack_under_test")
    port = _free_port()
    log = open(base / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
         "--base-directory", str(base), "--database-url", f"sqlite:///{base}/comfyui.db"],
        cwd=comfyui_path(), stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(STARTUP_S):
            try:
                get_json(url + "/object_info/AA2ModelLoader")
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail("ComfyUI exited:\n" + (base / "server.log").read_text()[-3000:])
                time.sleep(1)
        else:
            pytest.fail(f"ComfyUI did not answer within {STARTUP_S} s:\n" + (base / "server.log").read_text()[-3000:])
        yield url, base / "models"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def panels(url):
    """{workflow: the script's report} for every example workflow, from one browser session."""
    files = [os.path.join(ROOT, "workflows", f"{name}.json") for name in WORKFLOWS]
    run = subprocess.run(["node", os.path.join(FRONTEND, "missing_models.mjs"), url, *files], check=False,
                         capture_output=True, text=True, timeout=300, env={**os.environ, "CHROMIUM": CHROMIUM})
    assert run.returncode == 0, f"missing_models.mjs exited {run.returncode}:\n{run.stderr[-3000:]}"
    reports = {}
    for line in run.stdout.splitlines():
        if line.startswith("{"):
            report = json.loads(line)
            reports[report["name"]] = report
    assert set(reports) == set(WORKFLOWS), run.stdout[-3000:] + run.stderr[-3000:]
    return reports


@pytest.fixture(scope="module")
def absent_then_present(bare_server):
    url, models = bare_server
    absent = panels(url)
    for e in {e.key: e for name in WORKFLOWS for e in files_of(name)}.values():  # empty files with the right names:
        # the frontend only looks at the names
        path = models.joinpath(*e.target.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    present = panels(url)
    return absent, present


@pytest.mark.parametrize("name", WORKFLOWS)
def test_absent_files_are_each_listed_with_their_url_and_folder(absent_then_present, name):
    r = absent_then_present[0][name]
    assert not r["page_errors"], r["page_errors"]
    assert r["dialogs"] and any("Missing Models" in d for d in r["dialogs"]), r["dialogs"]
    listed = {m["label"]: m for m in r["missing"]}
    assert sorted(listed) == sorted(f"{e.folder} / {e.name}" for e in files_of(name)), r["missing"]
    for e in files_of(name):
        m = listed[f"{e.folder} / {e.name}"]
        assert m["url"] == e.url, m
        assert not (m["error"] or "").startswith("Invalid directory"), m  # the folder is one the server knows
        if e.name.endswith(DOWNLOADABLE):
            assert m["error"] is None, m  # the Download button is live
        else:
            assert m["error"] == "Only allowed suffixes are: '.safetensors', '.sft'", m
    # nothing left 127.0.0.1: the only outside requests (aborted) were the panel's size queries of these URLs
    assert set(r["blocked"]) <= {e.url for e in files_of(name)}, r["blocked"]


@pytest.mark.parametrize("name", WORKFLOWS)
def test_present_files_list_nothing(absent_then_present, name):
    r = absent_then_present[1][name]
    assert r["missing"] == [] and r["dialogs"] == [], r
    assert not r["page_errors"] and not r["blocked"], r
