"""Environment formulation (AA2 section 3.2) pinned on hand-made masks: equation (2) with uneven and
capped block grids, per-frame boxes in one call, training draws, the environment frames at VAE
sizes, latent coverage, and the random scale augmentation's geometry."""

import pytest
import torch

from aa2_core.conditions.environment import (
    environment_sequence,
    inference_block_counts,
    latent_aligned_size,
    latent_mask,
    random_block_counts,
    random_scale_augment,
    scale_about_anchor,
    shape_agnostic_mask,
)
from aa2_core.errors import AA2Error


def _mask(h, w, *pixels, frames=1):
    m = torch.zeros(frames, h, w)
    for y, x in pixels:
        m[:, y, x] = 1
    return m


# --- equation (2) ----------------------------------------------------------------------------------


def test_two_pixels_in_a_ten_pixel_box_fill_their_blocks():
    # box rows 3..12, cols 4..13; kh=2, kw=5 -> blocks of 5 rows x 2 columns, aligned to the box
    out = shape_agnostic_mask(_mask(20, 20, (3, 4), (12, 13)), kh=2, kw=5)[0]
    expected = torch.zeros(20, 20)
    expected[3:8, 4:6] = 1  # block (0, 0) holds (3, 4)
    expected[8:13, 12:14] = 1  # block (1, 4) holds (12, 13)
    assert torch.equal(out, expected)


def test_uneven_blocks_split_floor_of_offset_times_count_over_length():
    # a 10-row box in 3 blocks: row offsets 0-3 | 4-6 | 7-9 (sizes 4, 3, 3)
    mask = _mask(12, 6, (1, 0), (10, 0), (5, 3))  # box rows 1..10, cols 0..3; (5, 3) is offset 4 -> block 1
    out = shape_agnostic_mask(mask, kh=3, kw=1)[0]
    expected = torch.zeros(12, 6)
    expected[1:5, 0:4] = 1  # block 0 holds (1, 0)
    expected[5:8, 0:4] = 1  # block 1 holds (5, 3)
    expected[8:11, 0:4] = 1  # block 2 holds (10, 0)
    assert torch.equal(out, expected)
    mask = _mask(12, 6, (1, 0), (10, 0))
    out = shape_agnostic_mask(mask, kh=3, kw=1)[0]
    assert out[5:8].sum() == 0 and out[1:5, 0].all() and out[8:11, 0].all() and out.sum() == 7  # middle block empty


def test_one_block_is_the_box_and_too_many_blocks_are_the_mask_itself():
    mask = _mask(16, 16, (2, 3), (9, 12), (5, 5))
    box = torch.zeros(1, 16, 16)
    box[0, 2:10, 3:13] = 1
    assert torch.equal(shape_agnostic_mask(mask, kh=1, kw=1), box)
    assert torch.equal(shape_agnostic_mask(mask, kh=1000, kw=1000), mask)  # capped at one block per pixel


def test_frames_with_different_boxes_in_one_call_match_frame_by_frame():
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(5, 40, 50)
    mask[0, 3:20, 5:17] = (torch.rand(17, 12, generator=g) > 0.6).float()
    mask[1, 10:39, 20:49] = (torch.rand(29, 29, generator=g) > 0.8).float()
    mask[2, 0:40, 0:3] = 1  # along the left border, full height
    mask[4, 30, 40] = 1  # a single pixel
    together = shape_agnostic_mask(mask)
    for t in range(5):
        assert torch.equal(together[t], shape_agnostic_mask(mask[t : t + 1])[0])
    assert torch.equal(shape_agnostic_mask(mask, chunk_size=2), together)
    assert together[3].sum() == 0 and (together >= mask).all()
    assert torch.equal(together[4], mask[4])  # 1 x 1 box: one block, the pixel


def test_inference_default_is_about_ten_pixel_blocks():
    counts = inference_block_counts(torch.tensor([0, 4, 15, 40, 95, 768]))
    assert counts.tolist() == [1, 1, 2, 4, 10, 77]
    # 40 x 30 box -> 4 x 3 blocks of 10 x 10; one pixel per block lights exactly that block
    mask = _mask(50, 50, (5, 5), (44, 34), (20, 20))
    out = shape_agnostic_mask(mask)[0]
    expected = torch.zeros(50, 50)
    expected[5:15, 5:15] = expected[35:45, 25:35] = expected[15:25, 15:25] = 1
    assert torch.equal(out, expected)


def test_training_draws_lie_in_the_open_interval_and_are_seeded():
    lengths = torch.tensor([1, 2, 3, 10, 300] * 40)
    counts = random_block_counts(lengths, torch.Generator().manual_seed(0))
    assert (counts[lengths == 1] == 1).all() and (counts[lengths == 2] == 2).all() and (counts[lengths == 3] == 2).all()
    assert ((counts[lengths == 10] >= 2) & (counts[lengths == 10] <= 9)).all()
    big = counts[lengths == 300]
    # block sizes log-uniform from 8 px to a quarter of the box: counts 4..38 for a 300 px box
    assert big.min() >= 4 and big.max() <= 38 and big.unique().numel() > 10  # drawn per frame, spread out
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    mask = (torch.rand(20, 60, 60, generator=torch.Generator().manual_seed(1)) > 0.995).float()  # sparse: blocks differ
    a = shape_agnostic_mask(mask, generator=g1)
    assert torch.equal(a, shape_agnostic_mask(mask, generator=g2, chunk_size=3))  # chunking draws the same
    assert not torch.equal(a, shape_agnostic_mask(mask, generator=torch.Generator().manual_seed(6)))
    assert (a >= mask).all()


def test_threshold_binarises_soft_masks_and_2d_masks_give_one_frame():
    mask = torch.zeros(10, 10)
    mask[2, 2] = 0.4
    mask[7, 7] = 0.9
    assert torch.equal(shape_agnostic_mask(mask, kh=1, kw=1), _mask(10, 10, (7, 7)))  # 0.4 < 0.5: not the character
    low = shape_agnostic_mask(mask, kh=1, kw=1, threshold=0.3)
    assert low.shape == (1, 10, 10) and low[0, 2:8, 2:8].all() and low.sum() == 36


def test_character_leaving_the_frame():
    frames = torch.zeros(4, 12, 12)
    for t, x in enumerate([6, 9, 11, 14]):  # a 4x4 square walking out at the right edge
        frames[t, 4:8, x - 2 : min(x + 2, 12)] = 1
    out = shape_agnostic_mask(frames, kh=2, kw=2)
    assert (out >= frames).all() and out[3].sum() == 0  # gone: nothing to generate
    assert torch.equal(out[2], frames[2]) and out[2, :, 11].sum() == 4  # clipped box, blocks inside the image


def test_bad_block_counts_and_masks_are_named():
    with pytest.raises(AA2Error, match="kh must be a positive integer"):
        shape_agnostic_mask(torch.ones(1, 4, 4), kh=0)
    with pytest.raises(AA2Error, match="kw must be a positive integer"):
        shape_agnostic_mask(torch.ones(1, 4, 4), kw=2.5)
    with pytest.raises(AA2Error, match=r"mask must be a MASK tensor \[T, H, W\].*\(1, 1, 4, 4\)"):
        shape_agnostic_mask(torch.ones(1, 1, 4, 4))


# --- environment frames, sizes, latent mask ---------------------------------------------------------


def test_latent_aligned_size():
    assert latent_aligned_size(509, 766) == (512, 768)
    assert latent_aligned_size(512, 768) == (512, 768)
    assert latent_aligned_size(3, 2) == (8, 8)
    assert latent_aligned_size(100, 100, multiple=64) == (128, 128)
    with pytest.raises(AA2Error, match="positive"):
        latent_aligned_size(0, 8)


def test_environment_frames_fill_exactly_the_returned_mask():
    frames = torch.rand(3, 16, 24, 3)
    mask = torch.zeros(1, 16, 24)  # one mask for every frame
    mask[0, 4:9, 10:20] = 1
    env, removed = environment_sequence(frames, mask, fill=0.25)
    assert env.shape == (3, 16, 24, 3) and removed.shape == (3, 16, 24)
    assert torch.equal(removed, mask.expand(3, -1, -1))
    inside = removed.bool()
    assert (env[inside] == 0.25).all() and torch.equal(env[~inside], frames[~inside])


def test_environment_resizes_to_the_requested_vae_size():
    frames = torch.zeros(2, 20, 30, 3)
    frames[..., 0] = 1  # red everywhere
    mask = torch.zeros(2, 20, 30)
    mask[:, 0:10, 0:15] = 1  # the top-left quarter
    env, removed = environment_sequence(frames, mask, size=(16, 24))
    assert env.shape == (2, 16, 24, 3) and removed.shape == (2, 16, 24)
    assert torch.equal(removed[0, :8, :12], torch.ones(8, 12)) and removed.sum() == 2 * 8 * 12
    assert (env[removed.bool()] == 0.5).all() and torch.allclose(env[~removed.bool()], torch.tensor([1.0, 0, 0]))
    # no size: aligned to multiples of 8 on its own
    env, removed = environment_sequence(torch.rand(1, 13, 21, 3), torch.zeros(1, 13, 21))
    assert env.shape == (1, 16, 24, 3) and removed.sum() == 0


def test_environment_errors_name_the_input():
    frames = torch.rand(3, 16, 16, 3)
    with pytest.raises(AA2Error, match="formulated_mask has 2 frames but frames has 3"):
        environment_sequence(frames, torch.zeros(2, 16, 16))
    with pytest.raises(AA2Error, match="multiples of 8.*15x16.*16x16"):
        environment_sequence(frames, torch.zeros(3, 16, 16), size=(15, 16))
    with pytest.raises(AA2Error, match=r"frames must be an IMAGE tensor \[T, H, W, 3\]"):
        environment_sequence(torch.rand(3, 16, 16), torch.zeros(3, 16, 16))


def test_latent_mask_marks_every_cell_with_a_covered_pixel():
    mask = torch.zeros(2, 32, 32)
    mask[0, 9, 17] = 1  # one pixel -> cell (1, 2) only
    mask[1, 3, 3] = 0.4  # below the threshold
    cells = latent_mask(mask, 4, 4)
    expected = torch.zeros(2, 4, 4)
    expected[0, 1, 2] = 1
    assert torch.equal(cells, expected)
    # sizes that do not divide: every covered pixel still marks the cell it falls in
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(3, 30, 45, generator=g) > 0.98).float()
    cells = latent_mask(mask, 4, 6)
    assert set(cells.unique().tolist()) <= {0.0, 1.0}
    t, y, x = mask.nonzero(as_tuple=True)
    assert cells[t, y * 4 // 30, x * 6 // 45].all()
    assert cells.sum() <= mask.sum()  # ... and nothing else lights up without a pixel


# --- random scale augmentation -----------------------------------------------------------------------


def _scene(frames=2):
    video = torch.zeros(frames, 16, 16, 3)
    video[..., 2] = torch.linspace(0, 1, 16)  # a blue gradient background
    character = torch.zeros(frames, 16, 16)
    character[:, 6:10, 6:10] = 1
    video[character.bool()] = torch.tensor([1.0, 0.0, 0.0])  # a red 4x4 character, centre (7.5, 7.5)
    return video, character


def test_scale_two_about_the_centre_doubles_the_character():
    video, character = _scene()
    frames, mask, objects = scale_about_anchor(video, character, [], 2.0)
    expected = torch.zeros(2, 16, 16)
    expected[:, 4:12, 4:12] = 1
    assert torch.equal(mask, expected) and objects == []
    assert torch.allclose(frames[:, 5:11, 5:11], torch.tensor([1.0, 0, 0]), atol=1e-6)  # inner part exactly red
    assert torch.equal(frames[:, :3], video[:, :3])  # away from the cut-out: the source


def test_shrinking_keeps_the_source_in_the_vacated_pixels():
    video = torch.rand(1, 16, 16, 3)
    character = torch.zeros(1, 16, 16)
    character[0, 4:12, 4:12] = 1
    frames, mask, _ = scale_about_anchor(video, character, None, 0.5)
    expected = torch.zeros(1, 16, 16)
    expected[0, 6:10, 6:10] = 1
    assert torch.equal(mask, expected)
    assert torch.equal(frames[0, 4, 4:12], video[0, 4, 4:12])  # vacated ring: the source pixels, unchanged
    _, bottom, _ = scale_about_anchor(video, character, None, 0.5, anchor="bottom")
    expected = torch.zeros(1, 16, 16)
    expected[0, 8:12, 6:10] = 1  # bottom edge stays on row 11 (feet on the ground)
    assert torch.equal(bottom, expected)


def test_scaling_is_about_the_union_of_character_and_objects_and_the_same_for_every_frame():
    video, character = _scene(frames=3)
    obj = torch.zeros(3, 16, 16)
    obj[:, 6:10, 10:14] = 1  # right next to the character: union box cols 6..13, centre 9.5
    _, mask, (obj_out,) = scale_about_anchor(video, character, [obj], 0.5)
    expected_char = torch.zeros(3, 16, 16)
    # edges about (7.5, 9.5): rows [5.5, 9.5] -> [6.5, 8.5], cols [5.5, 9.5] -> [7.5, 9.5], [9.5, 13.5] -> [9.5, 11.5]
    expected_char[:, 7:9, 8:10] = 1
    expected_obj = torch.zeros(3, 16, 16)
    expected_obj[:, 7:9, 10:12] = 1
    assert torch.equal(mask, expected_char) and torch.equal(obj_out, expected_obj)


def test_random_scale_augment_identity_determinism_and_range():
    video, character = _scene(frames=3)
    same = random_scale_augment(video, character, [], (1.0, 1.0), generator=torch.Generator().manual_seed(0))
    assert torch.equal(same[0], video) and torch.equal(same[1], character) and same[2] == []
    doubled = random_scale_augment(video, character, None, (2.0, 2.0))
    assert torch.equal(doubled[1], scale_about_anchor(video, character, None, 2.0)[1])
    a = random_scale_augment(video, character, [character], (0.5, 1.5), generator=torch.Generator().manual_seed(7))
    b = random_scale_augment(video, character, [character], (0.5, 1.5), generator=torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for x, y in zip([a[0], a[1], *a[2]], [b[0], b[1], *b[2]]))
    assert a[0].shape == video.shape and a[1].shape == character.shape and len(a[2]) == 1
    areas = {
        random_scale_augment(video, character, None, (0.5, 2.0), generator=torch.Generator().manual_seed(s))[1].sum().item()
        for s in range(8)
    }
    assert len(areas) > 2  # the scale really varies with the seed


def test_empty_union_returns_the_inputs():
    video = torch.rand(2, 8, 8, 3)
    frames, mask, objects = scale_about_anchor(video, torch.zeros(2, 8, 8), [torch.zeros(2, 8, 8)], 1.7)
    assert torch.equal(frames, video) and mask.sum() == 0 and objects[0].sum() == 0


def test_augmentation_errors_name_the_input():
    video = torch.rand(16, 8, 8, 3)
    with pytest.raises(AA2Error, match="character_mask has 12 frames but frames has 16"):
        random_scale_augment(video, torch.zeros(12, 8, 8), [])
    with pytest.raises(AA2Error, match=r"object_masks\[1\] has 3 frames but frames has 16"):
        random_scale_augment(video, torch.zeros(16, 8, 8), [torch.zeros(16, 8, 8), torch.zeros(3, 8, 8)])
    with pytest.raises(AA2Error, match="anchor must be"):
        scale_about_anchor(video, torch.zeros(16, 8, 8), [], 1.5, anchor="feet")
    with pytest.raises(AA2Error, match="scale must be positive"):
        scale_about_anchor(video, torch.zeros(16, 8, 8), [], 0.0)


# --- fast paths: the same values as the plain whole-frame computations -------------------------------------


def _formulated_whole_frame(mask, kh, kw, draw_h, draw_w, threshold=0.5):
    """Equation (2) on the whole frames, as before the union-box crop: the reference for the fast path."""
    from aa2_core.conditions.environment import _block_counts, _block_index, _block_max, binarize, mask_bounding_boxes

    binary = binarize(mask, threshold)
    y0, box_h, x0, box_w, present = mask_bounding_boxes(binary)
    counts_h, counts_w = _block_counts(kh, box_h, draw_h, "kh"), _block_counts(kw, box_w, draw_w, "kw")
    n_rows, n_cols = int(counts_h.max()), int(counts_w.max())
    rows = _block_index(mask.shape[1], y0, box_h, counts_h, present, dummy=n_rows)
    cols = _block_index(mask.shape[2], x0, box_w, counts_w, present, dummy=n_cols)
    return _block_max(binary, rows, cols, n_rows, n_cols)


@pytest.mark.parametrize("seed", range(6))
def test_union_box_crop_of_equation_two_changes_no_value(seed):
    """shape_agnostic_mask works on the frames' union box only; random blobs (one frame empty, one at the
    border), random and fixed block counts: every value equals the whole-frame computation."""
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(5, 48, 40, generator=g) > 0.985).float()
    mask[1, 10:30, 12:25] = 0.7
    mask[2] = 0
    mask[3, 40:, 30:] = 1
    for kh, kw, random in ((None, None, True), (3, 5, False), (None, None, False)):
        fast = shape_agnostic_mask(mask, kh, kw, generator=torch.Generator().manual_seed(seed) if random else None)
        draws = torch.Generator().manual_seed(seed)  # the generator draws h, then w, for all frames
        draw_h, draw_w = (torch.rand(5, generator=draws), torch.rand(5, generator=draws)) if random else (None, None)
        expected = _formulated_whole_frame(mask, kh, kw, draw_h, draw_w)
        assert torch.equal(fast, expected), (kh, kw, random)


def test_environment_sequence_one_pass_fill_equals_masked_fill():
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(3, 32, 24, 3, generator=g)
    mask = (torch.rand(3, 32, 24, generator=g) > 0.6).float()
    env, removed = environment_sequence(frames, mask)
    assert torch.equal(removed, mask) and torch.equal(env, frames.masked_fill(mask[..., None].bool(), 0.5))


def _random_window(seed, height=40, width=36, frames=4, border=False):
    g = torch.Generator().manual_seed(seed)
    video = torch.randint(0, 256, (frames, height, width, 3), generator=g, dtype=torch.uint8)
    character = (torch.rand(frames, height, width, generator=g) > 0.995).to(torch.uint8)
    character[:, 8:30, 10:22] = 1
    objects = torch.zeros(frames, height, width, dtype=torch.uint8)
    objects[:, 15:20, 22:27] = 1
    if border:  # the union box touches the frame's edges
        character[1, 0:5, 0:4] = 1
        objects[2, -3:, -6:] = 1
    depth = torch.rand(frames, height, width, generator=g).half()
    return video, character, objects, depth


@pytest.mark.parametrize("scale", [0.2, 0.55, 0.8, 1.0, 1.17, 1.5, 3.0])
@pytest.mark.parametrize("anchor", ["center", "bottom"])
@pytest.mark.parametrize("border", [False, True])
def test_fused_window_scaling_is_bit_identical_to_scale_about_anchor(scale, anchor, border):
    """scale_clip_about_anchor (one warp of frames, masks and depth over the pixels that can change) gives
    exactly what scale_about_anchor gives on the frames and, a second time, on the depth as a grey image."""
    from aa2_core.conditions.environment import scale_clip_about_anchor, scaling_anchor

    video, character, objects, depth = _random_window(int(scale * 100), border=border)
    frames = video.float() / 255
    ref_frames, ref_mask, ref_objects = scale_about_anchor(frames, character.float(), [objects.float()], scale, anchor)
    ref_depth = scale_about_anchor(depth.float()[..., None].expand(-1, -1, -1, 3), character.float(), [objects.float()],
                                   scale, anchor)[0][..., 0]
    out_frames, out_mask, out_objects, out_planes, point = scale_clip_about_anchor(
        video, character, [objects], scale, anchor, planes=[depth])
    assert torch.equal(out_frames, ref_frames)
    assert torch.equal(out_mask, ref_mask) and torch.equal(out_objects[0], ref_objects[0])
    assert torch.equal(out_planes[0], ref_depth)
    assert point == scaling_anchor(frames, character.float(), [objects.float()], anchor)
    # float frames in, the same
    assert torch.equal(scale_clip_about_anchor(frames, character, [objects], scale, anchor)[0], ref_frames)


def test_fused_window_scaling_without_a_character_moves_nothing():
    from aa2_core.conditions.environment import scale_clip_about_anchor

    video, character, objects, depth = _random_window(1)
    zero = torch.zeros_like(character)
    out_frames, out_mask, out_objects, out_planes, point = scale_clip_about_anchor(video, zero, [zero], 1.3, planes=[depth])
    assert point is None and torch.equal(out_frames, video.float() / 255) and not out_mask.any()
    assert torch.equal(out_planes[0], depth.float())
