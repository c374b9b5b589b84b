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
