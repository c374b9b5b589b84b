"""Lint of every example workflow without ComfyUI: node types exist, links join real slots of the same
type, and our nodes carry exactly the widget values their INPUT_TYPES ask for.
(tests/integration checks the core nodes against a live ComfyUI too.)"""

import json
import os

import pytest

from test_node_contracts import ROOT

CORE_TYPES = {"LoadImage", "LoadVideo", "GetVideoComponents", "ImageToMask", "VAELoader", "VAEDecode", "CreateVideo", "SaveVideo", "Note"}
WIDGETS = {"INT", "FLOAT", "STRING", "BOOLEAN"}
WORKFLOWS = sorted(f for f in os.listdir(os.path.join(ROOT, "workflows")) if f.endswith(".json"))


def widget_count(cls) -> int:
    count = 0
    spec = cls.INPUT_TYPES()
    for section in ("required", "optional"):
        for kind, *opts in spec.get(section, {}).values():
            if isinstance(kind, list) or kind in WIDGETS:
                count += 1 + bool(opts and opts[0].get("control_after_generate"))
    return count


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_is_consistent(pack, name):
    with open(os.path.join(ROOT, "workflows", name)) as f:
        wf = json.load(f)
    nodes = {n["id"]: n for n in wf["nodes"]}
    assert len(nodes) == len(wf["nodes"]) and wf["last_node_id"] >= max(nodes)
    for node in nodes.values():
        assert node["type"] in pack.NODE_CLASS_MAPPINGS or node["type"] in CORE_TYPES, node["type"]
        if node["type"] in pack.NODE_CLASS_MAPPINGS:
            assert len(node["widgets_values"]) == widget_count(pack.NODE_CLASS_MAPPINGS[node["type"]]), node["type"]
    assert any(n["type"] == "Note" for n in nodes.values()), "every workflow explains its model files"
    assert any(n["type"] == "SaveVideo" for n in nodes.values())
    for link_id, src, src_slot, dst, dst_slot, kind in wf["links"]:
        out = nodes[src]["outputs"][src_slot]
        inp = nodes[dst]["inputs"][dst_slot]
        assert link_id in out["links"] and inp["link"] == link_id
        assert out["type"] == inp["type"] == kind, (nodes[src]["type"], nodes[dst]["type"], kind)
        if nodes[dst]["type"] in pack.NODE_CLASS_MAPPINGS:  # our input names and types are what the class declares
            spec = pack.NODE_CLASS_MAPPINGS[nodes[dst]["type"]].INPUT_TYPES()
            declared = {**spec["required"], **spec.get("optional", {})}
            assert declared[inp["name"]][0] == kind
        if nodes[src]["type"] in pack.NODE_CLASS_MAPPINGS:
            assert pack.NODE_CLASS_MAPPINGS[nodes[src]["type"]].RETURN_TYPES[src_slot] == kind
    assert os.path.isfile(os.path.join(ROOT, "workflows", name[:-5] + ".jpg")), "thumbnail"
