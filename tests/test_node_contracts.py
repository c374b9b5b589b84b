"""Contract of every node class: literal AA2 ids, INPUT_TYPES shape and tooltips, RETURN_TYPES, FUNCTION.

ComfyUI is not needed: the ``pack`` fixture (conftest) imports the pack the way ComfyUI imports custom
nodes, with a small stand-in for ``folder_paths``.
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ids_are_prefixed_literals(pack):
    assert pack.NODE_CLASS_MAPPINGS and set(pack.NODE_DISPLAY_NAME_MAPPINGS) == set(pack.NODE_CLASS_MAPPINGS)
    source = open(os.path.join(ROOT, "nodes", "__init__.py")).read()
    mapping = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Assign) and n.targets[0].id == "NODE_CLASS_MAPPINGS")
    assert all(isinstance(k, ast.Constant) and k.value.startswith("AA2") for k in mapping.value.keys)


def test_node_classes_follow_v1_contract(pack):
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        spec = cls.INPUT_TYPES()
        assert set(spec) <= {"required", "optional", "hidden"} and "required" in spec, node_id
        for section in ("required", "optional"):
            for name, entry in spec.get(section, {}).items():
                assert isinstance(entry, tuple) and 1 <= len(entry) <= 2, (node_id, name)
                assert isinstance(entry[0], (list, str)), (node_id, name)
                assert len(entry) == 2 and entry[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
        assert isinstance(cls.RETURN_TYPES, tuple)
        assert len(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)) == len(cls.RETURN_TYPES)
        assert callable(getattr(cls, cls.FUNCTION)), node_id
        assert cls.CATEGORY.startswith("AnimateAnyone2"), node_id


def test_loader_lists_files_from_both_motion_folders(pack):
    spec = pack.NODE_CLASS_MAPPINGS["AA2ModelLoader"].INPUT_TYPES()
    assert spec["required"]["motion_module"][0] == ["denoising_unet.pth", "aa2.safetensors", "mm_sd_v15_v2.ckpt"]
    assert spec["optional"]["aa2_modules"][0][0] == "none"


def test_core_never_imports_comfy():
    for folder, _, files in os.walk(os.path.join(ROOT, "aa2_core")):
        for name in files:
            if name.endswith(".py"):
                tree = ast.parse(open(os.path.join(folder, name)).read())
                for node in ast.walk(tree):
                    mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                    assert not any(m.split(".")[0] in ("comfy", "folder_paths", "nodes") for m in mods), (name, mods)


def test_keypoint_loader_is_changed_follows_the_file(pack, tmp_path, monkeypatch):
    """An edited keypoint JSON must be read again (ComfyUI re-runs a node when IS_CHANGED's value changes)."""
    import sys

    monkeypatch.setattr(sys.modules["folder_paths"], "get_input_directory", lambda: str(tmp_path))
    node = pack.NODE_CLASS_MAPPINGS["AA2LoadPoseKeypoints"]
    (tmp_path / "pose.json").write_text('[{"people": []}]')
    first = node.IS_CHANGED("pose.json")
    assert node.IS_CHANGED("pose.json") == first
    (tmp_path / "pose.json").write_text('[{"people": []}, {"people": []}]')
    assert node.IS_CHANGED("pose.json") != first
