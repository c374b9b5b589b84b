"""Issue 19: the Animate Anyone 2 recipe as the paper intends (shape-agnostic mask sizes, scale augmentation
from the unscaled mask, the reference crop and background) and the video metrics' resize as DisCo's."""

import numpy as np
import pytest
import torch

from aa2_core.metrics import clips


# ---------------------------------------------------------------------------------------------------
# Metrics: DisCo's DatasetFVDVideoResize does not clip the bicubic overshoot
# ---------------------------------------------------------------------------------------------------


def _edge_frame():
    frame = np.zeros((32, 32, 3), np.uint8)
    frame[:, 16:] = 255  # a hard black/white edge: bicubic rings on both sides
    frame[8:24, 4:10] = 255
    return frame


def test_clip_resize_keeps_the_bicubic_overshoot_as_disco():
    from PIL import Image

    frame = _edge_frame()
    out = clips.resize_bicubic(frame, 112)
    # DisCo: clean-fid's make_resizer("PIL", quantize_after=False, "bicubic") -> per channel float32 mode "F", no clip
    disco = np.concatenate([np.asarray(Image.fromarray(frame[..., c].astype(np.float32), mode="F")
                                       .resize((112, 112), resample=Image.BICUBIC)).reshape(112, 112, 1)
                            for c in range(3)], axis=2).astype(np.float32)
    assert out.dtype == np.float32 and np.array_equal(out, disco)
    assert out.min() < -1 and out.max() > 256  # the overshoot is there and kept
    clipped = clips.resize_bicubic(frame, 112, clip=True)
    assert clipped.min() == 0 and clipped.max() == 255  # clean-fid's later resizer, on request
    tensor = clips.clip_tensor(frame[None], 112)
    assert tensor.shape == (3, 1, 112, 112) and torch.equal(tensor[:, 0].permute(1, 2, 0), torch.from_numpy(disco))


# ---------------------------------------------------------------------------------------------------
# Shape-agnostic mask: block sizes, so training masks hide the shape (bench/mask_distribution.py)
# ---------------------------------------------------------------------------------------------------


def _bench():
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "mask_distribution.py")
    spec = importlib.util.spec_from_file_location("mask_distribution", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_training_masks_add_a_fifth_to_three_fifths_of_the_silhouette():
    """40 training draws on a 768x512 walking person: median added area 20-60 %, 10th percentile >= 5 %
    (the former uniform block counts: median ~3 %, most draws under 5 %), and some masks near-silhouette and
    some coarse (the spread of block sizes)."""
    bench = _bench()
    sil = bench.silhouette(768, 512, "walking")
    area = bench.added_area(sil, 40, seed=0)
    p10, median, p90 = (float(torch.quantile(area.double(), q)) for q in (0.1, 0.5, 0.9))
    assert 0.20 <= median <= 0.60, median
    assert p10 >= 0.05, p10
    assert area.min() < 0.30 and area.max() > 0.80  # from near the silhouette to a few coarse blocks
    assert p90 - p10 > 0.3


def test_inference_readings_give_the_documented_added_area():
    """The default reading is "pixels" (k = h/10 blocks, ~10 px): +15.1 % on the standing 768x512 person; the
    "grid" reading (10 x 10 blocks over the box): +40.2 %, as the docstring of shape_agnostic_mask says."""
    from aa2_core.conditions import environment as env

    bench = _bench()
    sil = bench.silhouette(768, 512, "standing")
    assert env.INFERENCE_READING == "pixels"
    default = env.shape_agnostic_mask(sil[None])
    assert torch.equal(default, env.shape_agnostic_mask(sil[None], inference="pixels"))
    assert float(default.sum() / sil.sum() - 1) == pytest.approx(0.151, abs=0.002)
    grid = env.shape_agnostic_mask(sil[None], inference="grid")
    assert float(grid.sum() / sil.sum() - 1) == pytest.approx(0.402, abs=0.002)
    y0, h, x0, w, _ = env.mask_bounding_boxes(sil[None])
    assert torch.equal(grid, env.shape_agnostic_mask(sil[None], kh=10, kw=10))
    with pytest.raises(Exception, match="inference"):
        env.shape_agnostic_mask(sil[None], inference="blocks")


# ---------------------------------------------------------------------------------------------------
# The training recipe: mask from the unscaled source, defaults on, the reference's crop and background
# ---------------------------------------------------------------------------------------------------

H, W = 96, 64


def _figure_record(frames=6, seed=0, shift=0, pose="walking", fill=0.7, colour=None):
    """A clip of noise frames with a human silhouette (bench) standing ``shift`` px right of the centre."""
    from aa2_core.training.dataset_format import ClipRecord

    bench = _bench()
    g = torch.Generator().manual_seed(seed)
    video = torch.randint(0, 256, (frames, H, W, 3), generator=g, dtype=torch.uint8)
    person = torch.roll(bench.silhouette(H, W, pose, fill=fill), shifts=shift, dims=1).to(torch.uint8)
    if colour is not None:
        video[:, person.bool()] = torch.tensor(colour, dtype=torch.uint8)
    body = torch.zeros(frames, 18, 3)
    body[:, :, 0], body[:, :, 1], body[:, :, 2] = W / 2 + shift, torch.linspace(H * 0.2, H * 0.8, 18), 1.0
    return ClipRecord(frames=video, character=person[None].expand(frames, -1, -1).contiguous(), body=body, fps=24.0,
                      source=f"figure{seed}.mp4")


def _write_set(root, records):
    from aa2_core.training.dataset_format import write_clip, write_index

    clips = []
    for i, record in enumerate(records):
        write_clip(str(root / f"clip{i}"), record)
        clips.append({"name": f"clip{i}", "frames": record.num_frames, "fps": record.fps, "source": record.source})
    write_index(str(root), H, W, clips, [])
    return str(root)


def test_formulated_mask_comes_from_the_unscaled_source(tmp_path):
    """Scale 1.2: part of the zoomed character lies outside the formulated mask (and shows in the environment);
    scale 0.8: the mask holds the character and is larger than at scale 1 relative to it."""
    from aa2_core.training.data import TrainingSet

    root = _write_set(tmp_path, [_figure_record()])
    outside, ratio = {}, {}
    for s in (0.8, 1.0, 1.2):
        clip = TrainingSet(root, frames=4, scale_range=(s, s), pose_indicator=None).sample(torch.Generator().manual_seed(1), 0)
        person, removed = clip.character_mask.bool(), clip.environment_mask.bool()
        outside[s] = int((person & ~removed).sum())
        ratio[s] = float(removed.sum() / person.sum())
        shown = person & ~removed
        assert torch.equal(clip.environment[shown], clip.frames[shown])  # the overflow stays in the environment
    assert outside[1.2] > 0.02 * float(TrainingSet(root, frames=4, scale_range=None, pose_indicator=None)
                                        .sample(torch.Generator().manual_seed(1), 0).character_mask.sum())
    assert outside[1.0] == 0 and outside[0.8] == 0
    assert ratio[0.8] > ratio[1.0] * 1.2  # below 1 the mask is much larger than the character


def test_scale_augmentation_and_pose_indicator_are_on_by_default_with_off_switches(tmp_path):
    from aa2_core.conditions.pose_indicator import PoseIndicatorConfig
    from aa2_core.training import train
    from aa2_core.training.data import TrainingSet

    root = _write_set(tmp_path, [_figure_record(), _figure_record(seed=1, pose="standing")])
    on = TrainingSet(root, frames=2)
    assert on.scale_range == (0.8, 1.2) and isinstance(on.pose_indicator, PoseIndicatorConfig)
    assert on.reference_background == "colour" and on.reference_crop
    off = TrainingSet(root, frames=2, scale_range=None, pose_indicator=None)
    assert off.scale_range is None and off.pose_indicator is None
    assert off.sample(torch.Generator().manual_seed(0)).info["scale"] == 1.0

    base = ["--data", root, "--models", str(tmp_path), "--out", str(tmp_path / "o.safetensors"), "--frames", "2"]
    args = train.parser().parse_args(base)
    assert args.scale_range == (0.8, 1.2) and args.pose_indicator and args.reference_background == "colour"
    source = train.training_set(args)
    assert source.scale_range == (0.8, 1.2) and source.pose_indicator is not None
    args = train.parser().parse_args(base + ["--scale-range", "off", "--no-pose-indicator", "--reference-background", "other_clip"])
    source = train.training_set(args)
    assert source.scale_range is None and source.pose_indicator is None and source.reference_background == "other_clip"
    assert train.parser().parse_args(base + ["--scale-range", "0.9,1.1"]).scale_range == (0.9, 1.1)


def test_reference_is_centre_cropped_on_the_character(tmp_path):
    """A small character right of the centre: in the reference it is centred and larger (a crop of the frame's
    aspect around its box), the rest one plain colour; reference_crop=False keeps it where it stood."""
    from aa2_core.conditions.environment import mask_bounding_boxes
    from aa2_core.training.data import TrainingSet

    root = _write_set(tmp_path, [_figure_record(shift=14, fill=0.45, colour=(250, 20, 20))])
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    cropped = TrainingSet(root, frames=2, reference_crop=True).sample(g(), 0).reference[0]
    plain = TrainingSet(root, frames=2, reference_crop=False).sample(g(), 0).reference[0]

    def red_box(image):
        red = (image[..., 0] > 0.9) & (image[..., 1] < 0.2)
        y0, h, x0, w, _ = mask_bounding_boxes(red[None].float())
        return float(h[0]), float(x0[0] + w[0] / 2), float(y0[0] + h[0] / 2)

    h_plain, cx_plain, _ = red_box(plain)
    h_crop, cx_crop, cy_crop = red_box(cropped)
    assert abs(cx_plain - W / 2) > 10  # stood right of the centre
    assert abs(cx_crop - W / 2) <= 1.5 and abs(cy_crop - H / 2) <= 1.5  # centred
    assert h_crop > 1.4 * h_plain  # enlarged: the crop holds the box plus its margin
    corner = cropped[:4, :4].reshape(-1, 3)
    assert (corner == corner[0]).all()  # the new plain background


def test_reference_background_from_another_clip(tmp_path):
    """reference_background="other_clip": outside the character the reference is a frame of another clip, that
    clip's own character painted out with the mean of the rest of its frame."""
    from aa2_core.training.data import TrainingSet, painted_out
    from aa2_core.training.dataset_format import read_clip

    root = _write_set(tmp_path, [_figure_record(seed=0), _figure_record(seed=1, pose="arms_out", colour=(0, 0, 255))])
    dataset = TrainingSet(root, frames=2, reference_background="other_clip", reference_crop=False)
    clip = dataset.sample(torch.Generator().manual_seed(3), 0)
    name, frame = clip.info["background"]
    assert name == "clip1"
    background = painted_out(read_clip(dataset.clip_path(1), frame, frame + 1))
    person1 = read_clip(dataset.clip_path(1), frame, frame + 1).character[0].bool()
    assert not (background[person1] == torch.tensor([0.0, 0.0, 1.0])).all(dim=-1).any()  # no second character
    own = read_clip(dataset.clip_path(0), clip.info["reference"], clip.info["reference"] + 1).character[0].bool()
    assert torch.allclose(clip.reference[0][~own], background[~own])
    colour = TrainingSet(root, frames=2, reference_crop=False).sample(torch.Generator().manual_seed(3), 0)
    assert colour.info["background"] == "colour"
