"""Every example workflow loads in ComfyUI's real frontend with no missing node (headless Chromium).

Needs node, Chromium and playwright-core (scripts/setup_frontend_test.sh installs them); skips otherwise.
"""

import json
import os
import shutil
import subprocess

import pytest

from conftest import ROOT, comfyui_path
from test_workflows_server import server  # noqa: F401  (the running ComfyUI with our pack)

comfyui_path()
FRONTEND = os.path.join(ROOT, "tests", "integration", "frontend")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def _requirements():
    if not shutil.which("node"):
        return "node is not installed"
    if not os.path.isfile(CHROMIUM):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if not os.path.isdir(os.path.join(FRONTEND, "node_modules", "playwright-core")):
        return "playwright-core is not installed (bash scripts/setup_frontend_test.sh)"
    return None


def load_in_frontend(url, out_dir, files):
    reason = _requirements()
    if reason:
        pytest.skip(reason)
    run = subprocess.run(["node", os.path.join(FRONTEND, "load_workflows.mjs"), url, str(out_dir), *files],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "CHROMIUM": CHROMIUM})
    assert run.returncode == 0, run.stderr[-3000:]
    return [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]


def test_every_workflow_loads_without_missing_nodes(server, tmp_path):  # noqa: F811
    url = server[0]
    folder = os.path.join(ROOT, "workflows")
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".json"))
    results = load_in_frontend(url, tmp_path, files)
    assert len(results) == len(files)
    for r in results:
        assert not r["unknown_types"] and not r["missing_dialog"], r
        assert r["nodes_loaded"] == r["nodes_expected"], r


def test_an_unknown_node_is_caught(server, tmp_path):  # noqa: F811
    """The same check fails on a workflow with a node type nobody registered."""
    with open(os.path.join(ROOT, "workflows", "aa2_moore_character_animation.json")) as f:
        workflow = json.load(f)
    workflow["nodes"][1]["type"] = "AA2NoSuchNode"
    path = tmp_path / "bogus.json"
    path.write_text(json.dumps(workflow))
    (result,) = load_in_frontend(server[0], tmp_path, [str(path)])
    assert "AA2NoSuchNode" in result["unknown_types"] or result["missing_dialog"], result
