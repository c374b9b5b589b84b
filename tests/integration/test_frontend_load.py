"""Every example workflow loads in ComfyUI's real frontend with no missing node (headless Chromium).

The frontend is the one the test server serves at its root URL (pip package comfyui_frontend_package);
tests/integration/frontend/load_workflows.mjs drives Debian's Chromium with playwright-core, loads each
workflow with app.loadGraphData in one browser session, and reports what the frontend made of it; a
screenshot per workflow lands in the test's tmp dir. A copy of one workflow with a node type nobody
registered is loaded first in the same session, to show that the checks catch it.

Needs node, Chromium and playwright-core (bash scripts/setup_frontend_test.sh installs them); skips
saying which is absent otherwise.
"""

import json
import os
import shutil
import subprocess

import pytest

from conftest import ROOT, comfyui_path

comfyui_path()
FRONTEND = os.path.join(ROOT, "tests", "integration", "frontend")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
WORKFLOWS = sorted(f[:-5] for f in os.listdir(os.path.join(ROOT, "workflows")) if f.endswith(".json"))
BOGUS = "bogus_unknown_node"
BOGUS_TYPE = "AA2NoSuchNode"


def _missing_requirement():
    if not shutil.which("node"):
        return "node is not installed (bash scripts/setup_frontend_test.sh)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (bash scripts/setup_frontend_test.sh, or apt-get install chromium)"
    if not os.path.isdir(os.path.join(FRONTEND, "node_modules", "playwright-core")):
        return "playwright-core is not installed in tests/integration/frontend (bash scripts/setup_frontend_test.sh)"
    return None


@pytest.fixture(scope="module")
def loaded(request, tmp_path_factory):
    """{name: the script's report} for every example workflow and the bogus copy, from one browser session."""
    reason = _missing_requirement()
    if reason:
        pytest.skip(reason)  # before the server starts
    url = request.getfixturevalue("server")[0]
    out = tmp_path_factory.mktemp("frontend")
    with open(os.path.join(ROOT, "workflows", "aa2_moore_character_animation.json")) as f:
        bogus = json.load(f)
    loader = next(n for n in bogus["nodes"] if n["type"] == "AA2ModelLoader")
    loader["type"] = BOGUS_TYPE
    (out / f"{BOGUS}.json").write_text(json.dumps(bogus))
    # the bogus one first: the real ones after it show its warning does not leak into their reports
    files = [str(out / f"{BOGUS}.json")] + [os.path.join(ROOT, "workflows", f"{name}.json") for name in WORKFLOWS]
    run = subprocess.run(["node", os.path.join(FRONTEND, "load_workflows.mjs"), url, str(out), *files],
                         check=False, capture_output=True, text=True, timeout=300, env={**os.environ, "CHROMIUM": CHROMIUM})
    assert run.returncode == 0, f"load_workflows.mjs exited {run.returncode}:\n{run.stderr[-3000:]}"
    reports = {}
    for line in run.stdout.splitlines():
        if line.startswith("{"):
            report = json.loads(line)
            reports[report["name"]] = report
    assert set(reports) == set(WORKFLOWS) | {BOGUS}, run.stdout[-3000:] + run.stderr[-3000:]
    return reports


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_loads_in_the_frontend_without_missing_nodes(loaded, name):
    r = loaded[name]
    assert os.path.isfile(r["screenshot"])
    assert not r["missing_dialog"], f"missing-nodes warning: {r['dialogs']}"
    assert not r["unknown_types"], f"node types the frontend does not know: {r['unknown_types']}"
    assert not r["dialogs"], f"dialogs open after loading (screenshot {r['screenshot']}): {r['dialogs']}"
    assert r["nodes_loaded"] == r["nodes_expected"], r
    assert r["links_loaded"] == r["links_expected"], r
    assert not r["type_mismatches"], r["type_mismatches"]
    assert not r["widget_mismatches"], f"widget values the frontend did not keep: {r['widget_mismatches']}"
    assert not r["page_errors"], f"uncaught errors while loading: {r['page_errors']}"
    assert not r["errors"], f"console errors while loading: {r['errors']}"


def test_an_unknown_node_type_is_caught(loaded):
    """The same checks flag a workflow with a node type nobody registered (and its dialog is its own)."""
    r = loaded[BOGUS]
    assert r["missing_dialog"], r
    assert r["unknown_types"] == [BOGUS_TYPE], r
    assert any(BOGUS_TYPE in text for text in r["dialogs"]), r["dialogs"]
    assert r["nodes_loaded"] == r["nodes_expected"]  # the frontend keeps it as a placeholder node
