"""A Moore-family node given the Animate-X model says so, naming the node, the input and the node to use instead,
before it looks anything up (it has no ReferenceNet and no Moore IPI: without the check a bare KeyError)."""

import pytest
import torch


@pytest.fixture
def animate_x_model():
    return {"family": "animate-x", "patchers": {}, "dtype": torch.float32}


def test_reference_net_refuses_the_animate_x_model(pack, animate_x_model):
    node = pack.NODE_CLASS_MAPPINGS["AA2ReferenceNet"]()
    with pytest.raises(ValueError, match="^AA2 ReferenceNet: aa2_model comes from AA2 Animate-X Loader.*AA2 Animate-X Reference"):
        node.encode(animate_x_model, None, torch.rand(1, 16, 16, 3), 16, 16)


def test_moore_implicit_pose_indicator_refuses_the_animate_x_model(pack, animate_x_model):
    node = pack.NODE_CLASS_MAPPINGS["AA2ImplicitPoseIndicator"]()
    pose = {"skeleton": torch.rand(2, 16, 16, 3), "depth": None}
    with pytest.raises(ValueError, match="^AA2 Implicit Pose Indicator: aa2_model comes from AA2 Animate-X Loader"):
        node.build(animate_x_model, pose, torch.rand(2, 16, 16, 3), [{}, {}])
    # also when the IPI is switched off: the wrong model is still the wrong model
    with pytest.raises(ValueError, match="Animate-X Loader"):
        node.build(animate_x_model, pose, torch.rand(2, 16, 16, 3), [{}, {}], enabled=False)
