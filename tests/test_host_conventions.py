"""ComfyUI host conventions: the Registry metadata and its icon, ComfyUI's size limit, no test doubles in
production code."""

import os
import sys
import tomllib
import types

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_registry_metadata_is_complete_and_the_icon_is_in_the_repository():
    config = tomllib.load(open(os.path.join(ROOT, "pyproject.toml"), "rb"))
    comfy, project = config["tool"]["comfy"], config["project"]
    assert comfy["PublisherId"] and comfy["DisplayName"] and isinstance(comfy["includes"], list)
    assert comfy["requires-comfyui"].startswith(">=")
    repo = project["urls"]["Repository"].removeprefix("https://github.com/")
    prefix = f"https://raw.githubusercontent.com/{repo}/main/"
    assert comfy["Icon"].startswith(prefix), comfy["Icon"]  # served from this repository's own file
    from PIL import Image

    icon = Image.open(os.path.join(ROOT, comfy["Icon"].removeprefix(prefix)))
    assert icon.format == "PNG" and icon.size[0] == icon.size[1] <= 400  # the Registry's square icon


@pytest.mark.parametrize("node_id", ["AA2ReferenceNet", "AA2RenderPose"])
def test_size_widgets_take_comfyuis_max_resolution(pack, monkeypatch, node_id):
    cls = pack.NODE_CLASS_MAPPINGS[node_id]
    assert cls.INPUT_TYPES()["required"]["width"][1]["max"] == 16384  # without ComfyUI: its value
    host = types.ModuleType("nodes")
    host.MAX_RESOLUTION = 8192  # what ComfyUI's nodes module says, whatever it is
    monkeypatch.setitem(sys.modules, "nodes", host)
    spec = cls.INPUT_TYPES()["required"]
    assert spec["width"][1]["max"] == spec["height"][1]["max"] == 8192


def test_no_unittest_mock_in_production_code():
    for folder in ("aa2_core", "nodes"):
        for base, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                if name.endswith(".py"):
                    assert "unittest" not in open(os.path.join(base, name)).read(), os.path.join(base, name)
