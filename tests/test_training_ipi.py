"""The trainer trains Animate-X's Implicit Pose Indicator (``--modules ipi``): the driving video is the clip itself
(its keypoints after scale augmentation, its target frames' CLIP features), a tiny CLI run lowers the loss, and
the file it writes round-trips through the one assembly and changes what the sampler renders."""

import math
import re

import pytest
import torch

from aa2_core.__main__ import main
from aa2_core.checkpoints.aa2_file import load_aa2_file
from aa2_core.checkpoints.assembly import assemble_from_folder, build_modules
from aa2_core.conditions.pose_indicator import PoseIndicatorConfig
from aa2_core.pipeline.options import SamplerSettings, Stitching
from aa2_core.pipeline.prepare import keypoint_tensor
from aa2_core.families.moore import MooreModels as Models
from aa2_core.pipeline.sampler import Sampler
from aa2_core.pipeline.schedulers import make_scheduler
from aa2_core.training import batches
from aa2_core.training.data import TrainingSet, scale_window
from aa2_core.training.dataset_format import read_clip
from aa2_core.training.modules import select_trainable
from aa2_core.training.step import TrainStep, clip_conditions

from training_helpers import data_dir, models_dir, one_thread, train_args  # noqa: F401

SEED, BATCH, STEPS, LR = 0, 2, 6, 1e-3
# 6 AdamW steps (batch 2, lr 1e-3) on aa2+ipi+mamba bring the loss of the run's first batch (its own noise and
# timesteps) below FACTOR times its value before training (seen: 0.82x).
FACTOR = 0.9


def test_clip_keypoints_are_the_scaled_poses_and_no_new_draw(data_dir):
    """TrainingClip.keypoints: ``keypoint_tensor`` of the window's poses after scale augmentation. The EPI
    reshapes only the skeleton, so a sample with it on has the same frames and keypoints (the EPI is the last
    draw) but another skeleton."""
    plain = TrainingSet(data_dir, frames=3, scale_range=(0.6, 0.8), pose_indicator=None)
    epi = TrainingSet(data_dir, frames=3, scale_range=(0.6, 0.8), pose_indicator=PoseIndicatorConfig(transform_prob=1.0))
    a, b = (s.sample(torch.Generator().manual_seed(5)) for s in (plain, epi))
    assert a.keypoints.shape == (3, 18, 3) and a.keypoints.dtype == torch.float32
    window = read_clip(plain.clip_path([c["name"] for c in plain.clips].index(a.info["clip"])), a.info["start"], a.info["start"] + 3)
    _, _, _, _, poses = scale_window(window.frames, window.character, window.objects, window.depth, window.poses(),
                                     a.info["scale"], plain.scale_anchor)
    assert torch.equal(a.keypoints, keypoint_tensor(poses))
    assert not torch.equal(a.keypoints, keypoint_tensor(window.poses()))  # the zoom moved them
    assert torch.equal(a.frames, b.frames) and torch.equal(a.keypoints, b.keypoints)
    assert not torch.equal(a.skeleton, b.skeleton)


def test_ipi_group_builds_and_trains_in_both_stages(models_dir, one_thread):
    """--modules ipi builds the IPI at the UNet's cross-attention width and trains all of it, in stage 1 too."""
    for stage in (1, 2):
        models = assemble_from_folder(models_dir)
        chosen = select_trainable(models, ["ipi"], stage=stage)
        ipi = models.denoising.ipi
        assert ipi is not None and ipi.config.dim == models.denoising.unet.config.cross_attention_dim
        assert set(chosen) == {"denoising"} and set(chosen["denoising"]) == {"ipi." + n for n, _ in ipi.named_parameters()}


def fixed_batch(data_dir):
    """The CLI run's first micro-batch and its noise generators (the same seeds the trainer uses)."""
    source = TrainingSet(data_dir, frames=2)
    clips, _ = batches.draw(source, SEED, micro_step=0, rank=0, per_process=BATCH)
    return clips, lambda: batches.noise_generators(SEED, 0, 0, BATCH)


@torch.no_grad()
def batch_loss(models, clips, generators):
    return TrainStep(models, make_scheduler("ddim", "moore"), uncond_prob=0.0)(clips, generators()).item()


@torch.no_grad()
def render(models, cond):
    settings = SamplerSettings(steps=2, cfg=2.0, seed=0, stitching=Stitching(clip_length=cond.num_frames, motion_frames=0))
    return Sampler(Models(models.denoising, models.pose), settings).sample(cond)


def test_cli_trains_ipi_and_mamba_and_the_file_changes_the_render(tmp_path, models_dir, data_dir, one_thread, capsys):
    """``train --modules aa2,ipi,mamba`` (6 steps, 2 clips of 2 frames): the loss of the first batch falls below
    FACTOR x its start; the file holds the IPI and Mamba with their configs, their weights moved from their
    initial values; loaded by ``assemble_from_folder`` the IPI is rebuilt with those weights, and the sampler's
    output on a clip with keypoints + driving features differs from the untrained modules' (= no file) and
    from the same file with the IPI off.

    Mutation seen failing: ``clip_conditions`` not passing the keypoints (and driving features) to
    ``prepare_conditions`` (the IPI's weights stay at their initial values)."""
    out = tmp_path / "animate_x.safetensors"
    args = train_args(data_dir, models_dir, out, "--modules", "aa2,ipi,mamba", "--steps", STEPS, "--frames", 2,
                      "--batch-size", BATCH, "--lr", LR, "--uncond-prob", 0, "--seed", SEED)
    assert main(args) == 0
    log = capsys.readouterr().out
    losses = [float(v) for v in re.findall(r"^step \d+/\d+ loss (\S+)", log, flags=re.M)]
    assert len(losses) == STEPS and all(math.isfinite(v) for v in losses), log

    # the initial weights, as the trainer built them (seeded with --seed before assembling)
    torch.manual_seed(SEED)
    start = assemble_from_folder(models_dir)
    select_trainable(start, ["aa2", "ipi", "mamba"], stage=2)
    initial = {k: v for k, v in start.denoising.state_dict().items() if k.startswith(("ipi.", "mamba."))}

    parts, meta = load_aa2_file(str(out))
    assert set(meta["module_groups"]) == {"aa2", "ipi", "mamba"}
    assert meta["ipi"] == start.denoising.ipi.config.to_dict() and meta["mamba"] == start.denoising.mamba.config.to_dict()
    for group in ("ipi.", "mamba."):
        saved = {k: v for k, v in parts["denoising"].items() if k.startswith(group)}
        assert set(saved) == {k for k in initial if k.startswith(group)}
        moved = [k for k, v in saved.items() if not torch.equal(v, initial[k])]
        assert len(moved) > 0.9 * len(saved), (group, len(moved), len(saved))
    assert parts["denoising"]["ipi.indicator.queries"].ne(initial["ipi.indicator.queries"]).any()

    trained = assemble_from_folder(models_dir, aa2_modules=str(out))
    state = trained.denoising.state_dict()
    assert all(torch.equal(state[k], v) for k, v in parts["denoising"].items())

    clips, generators = fixed_batch(data_dir)
    before = batch_loss(start, clips, generators)  # untrained AA2 / IPI / Mamba modules: exact no-ops
    assert before == pytest.approx(losses[0], rel=1e-6)  # the same batch, noise and timesteps as the run's first step
    after = batch_loss(trained, clips, generators)
    assert after < FACTOR * before, (before, after, losses)

    untrained = assemble_from_folder(models_dir)  # no file: the modules built untrained
    build_modules(untrained, ["ipi", "mamba"])
    cond = clip_conditions(trained, clips[0], "cpu")
    assert cond.driving_keypoints is not None and cond.driving_features is not None
    base = render(untrained, clip_conditions(untrained, clips[0], "cpu"))
    on = render(trained, cond)
    cond.driving_keypoints = cond.driving_features = None
    off = render(trained, cond)
    assert (on - base).abs().max() > 1e-3
    assert (on - off).abs().max() > 1e-5  # the trained IPI itself moves the output


def test_lr_scale_gives_a_group_its_own_rate(models_dir, one_thread):
    """--lr-scale ipi=0.01: the IPI's parameters form their own optimizer group at lr/100 (Animate-X's ratio), and
    an SGD step moves them exactly 100x less than at the full rate; every other trainable parameter keeps lr."""
    import argparse

    from aa2_core.training.modules import parameter_groups, parse_lr_scales
    from aa2_core.training.optim import make_optimizer

    assert parse_lr_scales("ipi=0.01, mamba=2") == {"ipi": 0.01, "mamba": 2.0}
    with pytest.raises(argparse.ArgumentTypeError, match="GROUP=FACTOR"):
        parse_lr_scales("nose=0.1")
    moved = {}
    for scales in ({}, {"ipi": 0.01}):
        torch.manual_seed(0)
        models = assemble_from_folder(models_dir)
        select_trainable(models, ["aa2", "ipi"], stage=1)
        groups = parameter_groups(models, 0.5, scales)
        ipi = {id(p) for p in models.denoising.ipi.parameters()}
        if scales:
            assert [(g["name"], g["lr"]) for g in groups] == [("default", 0.5), ("ipi", 0.005)]
            assert {id(p) for p in groups[1]["params"]} == ipi and not ipi & {id(p) for p in groups[0]["params"]}
        optimizer, _ = make_optimizer(groups, "sgd", 0.5)
        query = models.denoising.ipi.indicator.queries
        before = query.detach().clone()
        query.grad = torch.ones_like(query)
        optimizer.step()
        moved[bool(scales)] = (query.detach() - before).abs().max().item()
    assert moved[False] == pytest.approx(0.5) and moved[True] == pytest.approx(0.005)
