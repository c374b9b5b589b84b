"""No node changes its inputs: every node that runs without ComfyUI's runtime is called on inputs it may
legally get (float32 frames already at a size multiple of 8 included: the case where resizing returns the
caller's own tensor) and every input is compared with a copy taken before. The nodes that need ComfyUI's
model management are checked the same way in tests/integration/test_nodes_inprocess.py.

And the flagship workflow's pixel path: Environment Mask -> Object Guider -> Composite Environment keeps the
driving video's pixels bit for bit outside the (feathered) mask.
"""

import copy

import numpy as np
import pytest
import torch

from aa2_core.conditions.environment import feathered


def frames(n=6, h=64, w=48, seed=0):
    return torch.rand(n, h, w, 3, generator=torch.Generator().manual_seed(seed))


def box_mask(n=6, h=64, w=48, y=(16, 48), x=(12, 30)):
    m = torch.zeros(n, h, w)
    m[:, y[0] : y[1], x[0] : x[1]] = 1
    return m


def keypoints(n=3, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        body = np.concatenate([rng.uniform(0.2, 0.8, (18, 2)), np.ones((18, 1))], 1)
        out.append({"people": [{"pose_keypoints_2d": body.reshape(-1).tolist()}], "canvas_height": 64, "canvas_width": 48})
    return out


def same(a, b) -> bool:
    """Deep equality with exact tensor comparison."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def calls(m):
    """(node id, method name, kwargs) for every node that needs no ComfyUI runtime, on legal inputs."""
    stitch = m["AA2StitchingOptions"]().build("motion_frames", 4, 1, 2, "pyramid")[0]
    return [
        ("AA2EnvironmentMask", dict(images=frames(), character_mask=box_mask(), grid_rows=0, grid_cols=0, threshold=0.5)),
        ("AA2EnvironmentMask", dict(images=frames(h=61, w=45), character_mask=box_mask(h=61, w=45), grid_rows=3, grid_cols=2, threshold=0.5)),
        ("AA2ObjectGuider", dict(images=frames(), object_mask=box_mask(y=(40, 56), x=(20, 40)))),
        ("AA2ObjectGuider", dict(images=frames().double(), object_mask=box_mask(y=(40, 56), x=(20, 40)))),
        ("AA2CompositeEnvironment", dict(images=frames(seed=1), environment=frames(), environment_mask=box_mask(), feather=2)),
        ("AA2CompositeEnvironment", dict(images=frames(seed=1), environment=frames(h=32, w=24), environment_mask=box_mask(h=32, w=24, y=(8, 20), x=(6, 12)), feather=0)),
        ("AA2PoseCondition", dict(pose_images=frames(), depth=frames(seed=2))),
        ("AA2ColorMatchClips", dict(images=frames(n=10), stitching=stitch, strength=0.7)),
        ("AA2RetargetPose", dict(driving=keypoints(), reference=keypoints(1, seed=1), anchor="reference")),
        ("AA2RenderPose", dict(pose_keypoint=keypoints(), width=48, height=64, draw_hands=True, draw_face=True)),
    ]


def test_every_pure_node_leaves_its_inputs_unchanged(pack):
    m = pack.NODE_CLASS_MAPPINGS
    cases = calls(m)
    assert len({node for node, _ in cases}) == 7
    for node, kwargs in cases:
        cls = m[node]
        before = copy.deepcopy(kwargs)
        getattr(cls(), cls.FUNCTION)(**kwargs)
        for name, value in kwargs.items():
            assert same(value, before[name]), f"{node} changed its input {name!r}"


@pytest.mark.parametrize("size", [(64, 48), (61, 45)])
def test_environment_object_composite_keep_the_scene_bit_exact(pack, size):
    """The flagship workflow's pixel path with the driving video as every node's input."""
    m = pack.NODE_CLASS_MAPPINGS
    h, w = size
    driving = frames(h=h, w=w)
    character, obj = box_mask(h=h, w=w), box_mask(h=h, w=w, y=(40, 56), x=(20, 40))
    original = driving.clone()
    environment, env_mask = m["AA2EnvironmentMask"]().build(driving, character, 0, 0, 0.5)
    m["AA2ObjectGuider"]().build(driving, obj)
    generated = frames(h=environment.shape[1], w=environment.shape[2], seed=5)  # stands in for the decoded video
    (out,) = m["AA2CompositeEnvironment"]().composite(generated, driving, env_mask, 2)
    assert torch.equal(driving, original)
    if (h, w) == tuple(out.shape[1:3]):
        outside = feathered(env_mask, 2) == 0
        assert outside.float().mean() > 0.5
        assert torch.equal(out[outside], original[outside])  # the driving scene, bit for bit
        inside = env_mask > 0
        assert torch.equal(out[inside], generated[inside])
