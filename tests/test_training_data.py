"""TrainingSet: samples of a prepared training set carry the paper's inputs, repeat with the seed, and the
augmentations move the skeleton with the character (scale) or change only the skeleton (EPI)."""

import numpy as np
import pytest
import torch

from aa2_core.conditions.depth import skeleton_mask
from aa2_core.conditions.environment import mask_bounding_boxes
from aa2_core.conditions.pose_indicator import PoseIndicatorConfig
from aa2_core.conditions.skeleton import JOINT_RADIUS
from aa2_core.errors import AA2Error
from aa2_core.training.data import TrainingClip, TrainingSet
from aa2_core.training.dataset_format import ClipRecord, write_clip, write_index

H, W = 96, 64


def stick_figure(cx: float, top: float, height: float) -> np.ndarray:
    """OpenPose-18 body ``[18, 3]``: a standing figure ``height`` px tall, centred at ``cx``."""
    u = height / 8
    xy = {0: (cx, top + 0.5 * u), 1: (cx, top + 1.5 * u), 2: (cx - u, top + 1.5 * u), 3: (cx - 1.4 * u, top + 3 * u),
          4: (cx - 1.6 * u, top + 4.3 * u), 5: (cx + u, top + 1.5 * u), 6: (cx + 1.4 * u, top + 3 * u),
          7: (cx + 1.6 * u, top + 4.3 * u), 8: (cx - 0.6 * u, top + 4.5 * u), 9: (cx - 0.7 * u, top + 6.2 * u),
          10: (cx - 0.7 * u, top + 7.8 * u), 11: (cx + 0.6 * u, top + 4.5 * u), 12: (cx + 0.7 * u, top + 6.2 * u),
          13: (cx + 0.7 * u, top + 7.8 * u), 14: (cx - 0.3 * u, top + 0.3 * u), 15: (cx + 0.3 * u, top + 0.3 * u),
          16: (cx - 0.6 * u, top + 0.4 * u), 17: (cx + 0.6 * u, top + 0.4 * u)}
    body = np.zeros((18, 3), np.float32)
    for j, (x, y) in xy.items():
        body[j] = (x, y, 1.0)
    return body


def synthetic_record(frames=12, seed=0, height=H, width=W, depth=True, objects=True, figure=40.0) -> ClipRecord:
    """A clip: noise frames, a character box that drifts right, a stick figure inside it, depth (random, or
    ``depth="mask"``: 1 on the character, 0 elsewhere), an object box."""
    g = torch.Generator().manual_seed(seed)
    video = torch.randint(0, 256, (frames, height, width, 3), generator=g, dtype=torch.uint8)
    character = torch.zeros(frames, height, width, dtype=torch.uint8)
    body = torch.zeros(frames, 18, 3)
    top = (height - figure) / 2
    for i in range(frames):
        cx = width / 2 - 4 + i * 0.5
        # a narrow head on a wide body: not a box, so the random block counts change the removed region
        character[i, int(top + figure / 5) : int(top + figure) + 1, int(cx - figure / 4) : int(cx + figure / 4) + 1] = 1
        character[i, int(top) : int(top + figure / 5), int(cx - figure / 10) : int(cx + figure / 10) + 1] = 1
        body[i] = torch.from_numpy(stick_figure(cx, top, figure))
    record = ClipRecord(frames=video, character=character, body=body, fps=24.0, source=f"synthetic{seed}.mp4")
    if objects:
        record.objects = torch.zeros(frames, height, width, dtype=torch.uint8)
        record.objects[:, int(top + figure * 0.5) : int(top + figure * 0.6), int(width / 2 + figure / 4) : int(width / 2 + figure / 4) + 6] = 1
    if depth == "mask":
        record.depth = character.to(torch.float16)
    elif depth:
        record.depth = torch.rand(frames, height, width, generator=g).to(torch.float16)
    return record


def write_set(root, records: list[ClipRecord]) -> str:
    clips = []
    for i, record in enumerate(records):
        write_clip(str(root / f"clip{i}"), record)
        clips.append({"name": f"clip{i}", "frames": record.num_frames, "fps": record.fps, "source": record.source})
    write_index(str(root), records[0].size[0], records[0].size[1], clips, [])
    return str(root)


@pytest.fixture
def data(tmp_path):
    # the second clip has a smaller figure: a distinct pose-pool anchor for EPI
    return write_set(tmp_path, [synthetic_record(seed=0), synthetic_record(seed=1, figure=28.0)])


def test_sample_has_the_papers_inputs(data):
    """Shapes, dtypes and ranges of every field; the removed region is mid grey; the objects are cut out."""
    clip = TrainingSet(data, frames=4, stride=2, scale_range=None).sample(torch.Generator().manual_seed(0))
    assert isinstance(clip, TrainingClip)
    for name in ("frames", "environment", "skeleton", "objects"):
        t = getattr(clip, name)
        assert t.shape == (4, H, W, 3) and t.dtype == torch.float32, name
        assert 0 <= t.min() and t.max() <= 1, name
    assert clip.reference.shape == (1, H, W, 3) and clip.reference.dtype == torch.float32
    assert clip.environment_mask.shape == clip.depth.shape == clip.character_mask.shape == (4, H, W)
    removed = clip.environment_mask.bool()
    assert removed.any() and (clip.environment[removed] == 0.5).all()
    assert (clip.environment_mask >= clip.character_mask).all()  # unscaled: the formulated mask holds the character
    assert (clip.objects != 0.5).any() and skeleton_mask(clip.skeleton).any()
    assert clip.info["stride"] == 2 and clip.info["start"] + 6 < 12


def test_window_and_reference_come_from_the_stored_clip(data):
    """The target is the stored frames at the drawn start and stride; the reference (not cropped here) is the
    drawn frame's character, its background one plain colour."""
    from aa2_core.training.dataset_format import read_clip

    dataset = TrainingSet(data, frames=3, stride=3, scale_range=None, reference_crop=False)
    clip = dataset.sample(torch.Generator().manual_seed(3), clip_index=1)
    stored = read_clip(data + "/clip1/clip.safetensors")
    start, ref = clip.info["start"], clip.info["reference"]
    assert torch.equal(clip.frames, stored.frames[start : start + 7 : 3].float() / 255)
    inside = stored.character[ref].bool()
    assert torch.equal(clip.reference[0][inside], stored.frames[ref][inside].float() / 255)
    outside = clip.reference[0][~inside]
    assert (outside == outside[0]).all()


def test_same_seed_same_sample(data):
    """One generator drives every draw: a seed repeats the sample (with both augmentations on); another
    seed gives another one."""
    dataset = TrainingSet(data, frames=4, scale_range=(0.7, 1.3), pose_indicator=True)
    a, b, c = (dataset.sample(torch.Generator().manual_seed(s)) for s in (5, 5, 6))
    for name in ("frames", "reference", "environment", "environment_mask", "objects", "skeleton", "depth"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.environment_mask, c.environment_mask) or not torch.equal(a.frames, c.frames)


def mask_box(mask: torch.Tensor):
    """``(height, width, centre_y, centre_x)`` of the union box of ``[F, H, W]`` masks over the frames."""
    y0, h, x0, w, _ = mask_bounding_boxes(mask.float().amax(0, keepdim=True))
    return float(h[0]), float(w[0]), float(y0[0] + h[0] / 2), float(x0[0] + w[0] / 2)


def skeleton_box(skeleton: torch.Tensor):
    return mask_box(skeleton_mask(skeleton))


def test_scale_augmentation_moves_the_skeleton_with_the_character(data):
    """With a fixed zoom (scale_range (s, s)) the skeleton's box scales by s like the character mask's, and
    both stay centred together: the keypoints moved with the pixels."""
    g = lambda: torch.Generator().manual_seed(2)
    plain = TrainingSet(data, frames=4, scale_range=None, pose_indicator=None).sample(g(), clip_index=0)
    for s in (0.6, 1.4):
        scaled = TrainingSet(data, frames=4, scale_range=(s, s), pose_indicator=None).sample(g(), clip_index=0)
        assert scaled.info["scale"] == pytest.approx(s)
        mh0, _, my0, mx0 = mask_box(plain.character_mask)
        mh1, _, my1, mx1 = mask_box(scaled.character_mask)
        sh0, sw0, sy0, sx0 = skeleton_box(plain.skeleton)
        sh1, sw1, sy1, sx1 = skeleton_box(scaled.skeleton)
        assert mh1 / mh0 == pytest.approx(s, rel=0.06)
        # joints are dots of a fixed radius: the box minus one dot scales by s
        dot = 2 * JOINT_RADIUS + 1
        assert (sh1 - dot) / (sh0 - dot) == pytest.approx(s, rel=0.06), (s, sh0, sh1)
        assert (sw1 - dot) / (sw0 - dot) == pytest.approx(s, rel=0.08), (s, sw0, sw1)
        # still where the character is: the offsets between the two boxes' centres scale with it
        assert abs((sx1 - mx1) - s * (sx0 - mx0)) <= 1.5 and abs((sy1 - my1) - s * (sy0 - my0)) <= 1.5


def test_scale_augmentation_moves_the_depth(tmp_path):
    """The depth is warped with the character: with depth = 1 on the character (0 elsewhere) and a zoom of
    1.5, the skeleton inside the grown character mask reads depth 1 (unwarped depth would read 0 on the part
    of the grown character outside the old one); off the skeleton it is 0."""
    root = write_set(tmp_path, [synthetic_record(depth="mask")])
    clip = TrainingSet(root, frames=4, scale_range=(1.5, 1.5), pose_indicator=None).sample(torch.Generator().manual_seed(2), clip_index=0)
    on = skeleton_mask(clip.skeleton)
    inner = (-torch.nn.functional.max_pool2d(-clip.character_mask[:, None], 3, 1, 1))[:, 0] > 0.5  # away from the soft edge
    assert (on & inner).sum() > 100
    assert (clip.depth[on & inner] > 0.9).all() and (clip.depth[~on] == 0).all()


def test_pose_indicator_changes_the_skeleton_not_the_frames(data):
    """EPI with lambda = 1 reshapes the skeleton; frames, reference, environment and objects are bit for bit
    those of the sample without it (EPI draws come after all the others)."""
    config = PoseIndicatorConfig(transform_prob=1.0, op_prob=1.0)
    g = lambda: torch.Generator().manual_seed(4)
    plain = TrainingSet(data, frames=4, pose_indicator=None).sample(g(), clip_index=0)
    epi = TrainingSet(data, frames=4, pose_indicator=config).sample(g(), clip_index=0)
    for name in ("frames", "reference", "environment", "environment_mask", "objects"):
        assert torch.equal(getattr(plain, name), getattr(epi, name)), name
    assert epi.info["epi"].transform and epi.info["epi"].anchor_index == 0
    assert not torch.equal(plain.skeleton, epi.skeleton)
    off = TrainingSet(data, frames=4, pose_indicator=PoseIndicatorConfig(transform_prob=0.0)).sample(g(), clip_index=0)
    assert torch.equal(plain.skeleton, off.skeleton)  # lambda = 0: unchanged


def test_structured_depth_is_zero_off_the_skeleton(data):
    clip = TrainingSet(data, frames=6).sample(torch.Generator().manual_seed(1))
    on = skeleton_mask(clip.skeleton)
    assert on.any() and (clip.depth[~on] == 0).all() and (clip.depth[on] > 0).any()


def test_optional_tensors_absent(tmp_path):
    """A set without depth or objects gives None for them."""
    root = write_set(tmp_path, [synthetic_record(depth=False, objects=False)])
    clip = TrainingSet(root, frames=2, scale_range=(0.8, 1.2), pose_indicator=True).sample(torch.Generator().manual_seed(0))
    assert clip.depth is None and clip.objects is None and clip.skeleton.shape == (2, H, W, 3)


def test_clips_too_short_for_a_window_are_left_out(tmp_path):
    root = write_set(tmp_path, [synthetic_record(frames=12), synthetic_record(frames=5, seed=1)])
    assert len(TrainingSet(root, frames=4, stride=2)) == 1  # clip1 has 5 < 7 frames
    with pytest.raises(AA2Error, match="20 frames"):
        TrainingSet(root, frames=20)


def reference_sample(dataset: TrainingSet, seed: int, clip_index=None) -> TrainingClip:
    """The sampling recipe written plainly on whole float clips, the way data.py did before its fast paths:
    two ``scale_about_anchor`` warps (frames, then the depth as a grey image), ``object_sequence``, a float
    skeleton. The fast sampler must give these values bit for bit."""
    from aa2_core.conditions.depth import structured_depth
    from aa2_core.conditions.environment import environment_sequence, scale_about_anchor, scaling_anchor, shape_agnostic_mask
    from aa2_core.conditions.objects import object_sequence
    from aa2_core.conditions.skeleton import render_skeleton
    from aa2_core.training.data import composite_reference, scale_pose
    from aa2_core.training.dataset_format import read_clip

    generator = torch.Generator().manual_seed(seed)
    if clip_index is None:
        clip_index = int(torch.randint(0, len(dataset), (), generator=generator))
    path, count = dataset.clip_path(clip_index), int(dataset.clips[clip_index]["frames"])
    start = int(torch.randint(0, count - dataset.span + 1, (), generator=generator))
    window = read_clip(path, start, start + dataset.span, indices=np.arange(start, start + dataset.span, dataset.stride))
    ref_index = int(torch.randint(0, count, (), generator=generator))
    reference = composite_reference(read_clip(path, ref_index, ref_index + 1), torch.rand(3, generator=generator),
                                    crop=dataset.reference_crop, margin=dataset.reference_margin)
    target, mask = window.frames.float() / 255, window.character.float()
    source_mask = mask
    objects = None if window.objects is None else window.objects.float()
    depth = None if window.depth is None else window.depth.float()
    poses = window.poses()
    if dataset.scale_range is not None:
        low, high = dataset.scale_range
        scale = low + (high - low) * float(torch.rand((), generator=generator))
        others = [] if objects is None else [objects]
        point = scaling_anchor(target, mask, others, dataset.scale_anchor)
        if point is not None:
            if depth is not None:
                depth = scale_about_anchor(depth[..., None].expand(-1, -1, -1, 3), mask, others, scale, dataset.scale_anchor)[0][..., 0]
            target, mask, moved = scale_about_anchor(target, mask, others, scale, dataset.scale_anchor)
            objects = moved[0] if moved else None
            poses = [scale_pose(p, scale, point) for p in poses]
    # equation (2) on the unscaled source mask
    environment, env_mask = environment_sequence(target, shape_agnostic_mask(source_mask, generator=generator), size=dataset.size)
    if dataset.pose_indicator is not None:
        poses, _ = dataset._pose_indicator(poses, clip_index, generator)
    skeleton = torch.from_numpy(render_skeleton(poses, dataset.height, dataset.width, dataset.draw_hands, dataset.draw_face, as_float=True))
    return TrainingClip(frames=target, reference=reference, environment=environment, environment_mask=env_mask,
                        objects=None if objects is None else object_sequence(target, [objects])[0], skeleton=skeleton,
                        depth=None if depth is None else structured_depth(depth, skeleton), character_mask=mask)


@pytest.mark.parametrize("options", [{}, {"scale_range": (0.4, 1.8)}, {"scale_range": (0.7, 1.3), "scale_anchor": "bottom"},
                                     {"scale_range": (0.8, 1.2), "pose_indicator": True, "stride": 2}])
def test_fast_sampler_is_bit_identical_to_the_plain_recipe(tmp_path, options):
    """The fused warp, the cropped equation (2), the one-pass fills and the uint8 skeleton change no value."""
    root = write_set(tmp_path, [synthetic_record(seed=0), synthetic_record(seed=1, figure=28.0),
                                synthetic_record(seed=2, depth="mask", figure=70.0)])
    dataset = TrainingSet(root, frames=4, **options)
    for seed in range(6):
        fast, plain = dataset.sample(torch.Generator().manual_seed(seed)), reference_sample(dataset, seed)
        for name in ("frames", "reference", "environment", "environment_mask", "objects", "skeleton", "depth", "character_mask"):
            assert torch.equal(getattr(fast, name), getattr(plain, name)), (seed, name)
