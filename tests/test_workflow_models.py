"""The example workflows say which released files they need, from the model manifest (no ComfyUI needed).

Each loader node carries ``properties.models`` (``[{name, url, directory}]``, what the ComfyUI frontend's
missing-models panel reads): exactly the manifest's files among its widget values, with the manifest's URL
and folder. The committed workflows are what scripts/build_workflows.py writes from the manifest today.
tests/integration/test_frontend_models.py shows the real frontend listing them.
"""

import importlib.util
import json
import os
import sys

import pytest

from aa2_core import model_manifest as mm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKFLOWS = sorted(f[:-5] for f in os.listdir(os.path.join(ROOT, "workflows")) if f.endswith(".json"))
MODEL_SET = {"animate_x_official": "animate-x"}  # the released Animate-X files and DWPose's; the others: Moore's


def build_script():
    spec = importlib.util.spec_from_file_location("build_workflows", os.path.join(ROOT, "scripts", "build_workflows.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return build_script()


def load(name):
    with open(os.path.join(ROOT, "workflows", f"{name}.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("name", WORKFLOWS)
def test_each_loader_lists_the_released_files_its_widgets_name(script, name):
    listed = []
    for node in load(name)["nodes"]:
        models = node["properties"].get("models", [])
        folders = script.NODE_FOLDERS.get(node["type"], ())
        expected = []
        for value in node.get("widgets_values", []):
            entry = next((e for f in folders if (e := mm.find(f, value)) is not None), None) if isinstance(value, str) else None
            if entry and not entry.name.endswith(".onnx"):  # ComfyUI's model listing cannot show .onnx files
                expected.append({"name": entry.name, "url": entry.url, "directory": entry.folder})
        assert models == expected, (node["type"], models)
        listed += models
    # each example names every file of its set (the Moore set, or animate-x's with DWPose), with the hub URL of
    # the pinned revision
    assert {(m["directory"], m["name"]) for m in listed} == {(e.folder, e.name) for e in mm.select(MODEL_SET.get(name, "moore"))
                                                             if not e.name.endswith(".onnx")}
    for m in listed:
        assert m["url"].startswith("https://huggingface.co/") and "/resolve/" in m["url"]


@pytest.mark.parametrize("name", WORKFLOWS)
def test_the_committed_workflow_is_what_the_script_writes_from_the_manifest(script, name):
    assert script.to_ui(*script.WORKFLOWS[name]()) == load(name), \
        "workflows/ are stale: run .venv/bin/python scripts/build_workflows.py"


def test_the_note_names_the_download_command_and_every_moore_file(script):
    assert "python -m aa2_core download --models ComfyUI/models" in script.MODEL_NOTE
    for e in mm.select("moore"):
        assert e.name in script.MODEL_NOTE and e.repo_id in script.MODEL_NOTE


def test_the_loader_node_names_the_download_command_for_a_missing_released_file(pack, monkeypatch):
    folders = sys.modules[f"{pack.__name__}.nodes.folders"]
    monkeypatch.setattr(sys.modules["folder_paths"], "get_full_path", lambda folder, name: None, raising=False)
    with pytest.raises(FileNotFoundError) as e:
        folders.full_path("AA2 Model Loader", "pose_guider", "pose_guider.pth", ("animate_anyone2",))
    assert str(e.value) == ("AA2 Model Loader: pose_guider 'pose_guider.pth' was not found in models/animate_anyone2; "
                            "fetch it with: python -m aa2_core download --models /models --set moore")
    with pytest.raises(FileNotFoundError) as e:
        folders.full_path("AA2 SAM2 Loader", "model", "sam2.1_hiera_large.pt", ("sam2",))
    assert str(e.value).endswith("fetch it with: python -m aa2_core download --models /models --set none --with sam2")
    with pytest.raises(FileNotFoundError) as e:  # a file of the user's own: no command to offer
        folders.full_path("AA2 Model Loader", "aa2_modules", "mine.safetensors", ("animate_anyone2",))
    assert "download" not in str(e.value)


def test_the_animate_x_note_names_its_download_command_and_every_file(script):
    note = next(n for n in load("animate_x_official")["nodes"] if n["type"] == "Note")["widgets_values"][0]
    assert "python -m aa2_core download --models ComfyUI/models --set animate-x" in note
    for e in mm.select("animate-x"):
        assert f"{e.folder}/{e.name}" in note, e
