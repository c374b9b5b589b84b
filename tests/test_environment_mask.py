"""Equation (2) of the AA2 paper and the environment sequence, on hand-made and random masks."""

import pytest
import torch

from aa2_core.conditions.environment import environment_sequence, latent_mask, shape_agnostic_mask
from aa2_core.conditions.objects import object_sequence
from aa2_core.errors import AA2Error


def test_block_max_on_a_hand_made_mask():
    # character box rows 2..11, cols 4..13 (10 x 10); 2 x 2 blocks of 5 x 5 pixels
    mask = torch.zeros(1, 16, 20)
    mask[0, 2, 4] = mask[0, 11, 13] = 1  # the box's corners: top-left and bottom-right blocks
    mask[0, 8, 6] = 1  # bottom-left block
    out = shape_agnostic_mask(mask, kh=2, kw=2)[0]
    expected = torch.zeros(16, 20)
    expected[2:7, 4:9] = 1  # top-left block
    expected[7:12, 9:14] = 1  # bottom-right
    expected[7:12, 4:9] = 1  # bottom-left; top-right stays empty
    assert torch.equal(out, expected)


def test_inference_default_is_about_ten_pixel_blocks():
    mask = torch.zeros(1, 64, 64)
    mask[0, 10:50, 20:40] = 1  # 40 x 20 box -> 4 x 2 blocks of 10 x 10
    mask[0, 10, 20] = 1
    hole = mask.clone()
    hole[0, 12:18, 22:28] = 0  # a hole inside one block is filled
    out = shape_agnostic_mask(hole)[0]
    assert torch.equal(out, mask[0])


@pytest.mark.parametrize("seed", range(4))
def test_random_masks_covered_and_blockwise_constant(seed):
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(3, 40, 30, generator=g) > 0.97).float()
    mask[:, 5:9, 7:11] = 1
    kh, kw = 3, 4
    out = shape_agnostic_mask(mask, kh=kh, kw=kw)
    assert (out >= mask).all()  # covers the character
    for t in range(3):
        ys, xs = torch.nonzero(mask[t], as_tuple=True)
        y0, y1, x0, x1 = ys.min().item(), ys.max().item() + 1, xs.min().item(), xs.max().item() + 1
        assert out[t, :y0].sum() == 0 and out[t, y1:].sum() == 0 and out[t, :, :x0].sum() == 0 and out[t, :, x1:].sum() == 0
        h, w = y1 - y0, x1 - x0
        # the box tiled into kh x kw blocks: pixel offset p belongs to block floor(p * k / length)
        by = torch.arange(h)[:, None] * kh // h
        bx = torch.arange(w)[None, :] * kw // w
        block_id = (by * kw + bx).flatten()
        values = out[t, y0:y1, x0:x1].flatten()
        assert block_id.unique().numel() == kh * kw
        for b in range(kh * kw):
            v = values[block_id == b]
            assert v.min() == v.max()  # constant on each block
            assert v.max() == mask[t, y0:y1, x0:x1].flatten()[block_id == b].max()  # ... and equal to its max


def test_edge_cases_empty_frames_and_border():
    mask = torch.zeros(3, 20, 20)
    mask[1, 0:5, 15:20] = 1  # touches the top and right border
    out = shape_agnostic_mask(mask, kh=2, kw=2)
    assert out[0].sum() == 0 and out[2].sum() == 0  # the character left the frame: nothing to generate
    assert torch.equal(out[1], mask[1])  # a full box stays itself, clipped by nothing


def test_training_draws_are_seeded():
    mask = torch.zeros(4, 40, 40)
    mask[:, 5:35, 10:30] = (torch.rand(4, 30, 20, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    a = shape_agnostic_mask(mask, generator=torch.Generator().manual_seed(1))
    b = shape_agnostic_mask(mask, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and (a >= mask).all()


def test_environment_sequence_fills_the_mask_with_neutral_grey():
    frames = torch.rand(2, 16, 24, 3)
    mask = torch.zeros(2, 8, 12)  # another size than the frames: resized to them
    mask[:, 2:4, 3:6] = 1
    env, removed = environment_sequence(frames, mask)
    assert env.shape == (2, 16, 24, 3) and removed.shape == (2, 16, 24)
    inside = removed.bool()
    assert inside[:, 4:8, 6:12].all() and inside.sum() == 2 * 4 * 6
    assert (env[inside] == 0.5).all() and torch.equal(env[~inside], frames[~inside])
    cells = latent_mask(removed, 2, 3)
    assert cells.shape == (2, 2, 3) and set(cells.unique().tolist()) <= {0.0, 1.0} and cells.sum() > 0


def test_object_sequence_keeps_only_object_pixels():
    frames = torch.rand(3, 8, 8, 3)
    a, b = torch.zeros(3, 8, 8), torch.zeros(3, 8, 8)
    a[:, 0:2, 0:2], b[:, 5:7, 5:7] = 1, 1
    objects, masks = object_sequence(frames, [a, b])
    union = (a + b).bool()
    assert masks.shape == (2, 3, 8, 8)
    assert torch.equal(objects[union], frames[union]) and (objects[~union] == 0.5).all()
    with pytest.raises(AA2Error, match="object mask 1 has shape"):
        object_sequence(frames, [a, torch.zeros(2, 8, 8)])


def test_random_scale_augmentation():
    from aa2_core.conditions.environment import random_scale_augment, scale_about_anchor

    frames = torch.rand(3, 32, 32, 3)
    char = torch.zeros(3, 32, 32)
    char[:, 8:24, 12:20] = 1
    obj = torch.zeros(3, 32, 32)
    obj[:, 20:24, 20:26] = 1
    same = scale_about_anchor(frames, char, [obj], 1.0, "center", 0.5, 16)
    assert torch.allclose(same[0], frames, atol=1e-5) and torch.equal(same[1], char)  # scale 1 is the identity
    a = random_scale_augment(frames, char, [obj], (0.5, 0.7), generator=torch.Generator().manual_seed(3))
    b = random_scale_augment(frames, char, [obj], (0.5, 0.7), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # seeded
    assert a[0].shape == frames.shape and a[1].shape == char.shape and len(a[2]) == 1
    assert 0.2 * char.sum() < a[1].sum() < 0.6 * char.sum()  # shrunk by 0.5..0.7 in each direction
    with pytest.raises(AA2Error, match="scale_range"):
        random_scale_augment(frames, char, [obj], (1.2, 0.8))
