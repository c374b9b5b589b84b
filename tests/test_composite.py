"""Pixel-space composite of the generated character over the driving video's pixels."""

import pytest
import torch

from aa2_core.errors import AA2Error
from aa2_core.pipeline.composite import composite_environment, feathered


def test_composite_keeps_original_pixels_outside_and_generated_inside():
    gen, env = torch.rand(3, 16, 16, 3), torch.rand(3, 16, 16, 3)
    mask = torch.zeros(3, 16, 16)
    mask[:, 4:10, 5:12] = 1
    out = composite_environment(gen, env, mask, feather=0)
    inside = mask.bool()
    assert torch.equal(out[inside], gen[inside]) and torch.equal(out[~inside], env[~inside])


def test_feather_is_soft_outside_only():
    mask = torch.zeros(1, 21, 21)
    mask[0, 8:13, 8:13] = 1
    soft = feathered(mask, 3)
    assert torch.equal(soft[mask.bool()], torch.ones(25))  # the character region stays fully generated
    assert soft[0, 10, 14] > soft[0, 10, 16] > 0 and soft[0, 0, 0] == 0  # fades out over the radius
    assert soft.max() <= 1 and soft.min() >= 0


def test_composite_resizes_environment_and_checks_frames():
    gen, env, mask = torch.rand(2, 16, 16, 3), torch.rand(2, 32, 32, 3), torch.zeros(2, 32, 32)
    assert composite_environment(gen, env, mask, feather=1).shape == (2, 16, 16, 3)
    with pytest.raises(AA2Error, match="generated has 2 frames, environment 3"):
        composite_environment(gen, torch.rand(3, 16, 16, 3), torch.zeros(2, 16, 16))


def test_clip_colour_matching_removes_a_shift_between_clips():
    from aa2_core.pipeline.composite import match_clip_colors
    from aa2_core.pipeline.windows import clip_plan

    g = torch.Generator().manual_seed(0)
    frames = 0.3 + 0.2 * torch.rand(10, 8, 8, 3, generator=g)
    plan = clip_plan(10, 4, 1)  # (0,4,0) (3,7,1) (6,10,1)
    drifted = frames.clone()
    drifted[4:] += torch.tensor([0.1, -0.05, 0.08])  # later clips drift in colour
    fixed = match_clip_colors(drifted, plan)
    assert torch.equal(fixed[:4], drifted[:4])  # the first clip is the anchor
    before = (drifted[4:].mean(dim=(0, 1, 2)) - frames[:4].mean(dim=(0, 1, 2))).abs().max()
    after = (fixed[4:].mean(dim=(0, 1, 2)) - frames[:4].mean(dim=(0, 1, 2))).abs().max()
    assert after < before / 3
    assert torch.equal(match_clip_colors(drifted, plan, strength=0.0), drifted)
