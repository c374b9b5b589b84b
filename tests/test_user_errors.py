"""Errors reachable from user input are the pack's own, and say which input and what was expected."""

import pytest
import torch
from conftest import sampler_conditions, sampler_models
from conftest import sampler_settings as settings

from aa2_core.__main__ import main
from aa2_core.errors import AA2Error
from aa2_core.pipeline.options import SamplerSettings, Stitching
from aa2_core.pipeline.sampler import Sampler


def test_seed_at_the_top_of_the_range_samples(loaded):
    """The in-step generator is seeded with seed + 1: at 2^64 - 1 that must wrap, not overflow."""
    cond = sampler_conditions(loaded["reference"], frames=2)
    out = Sampler(sampler_models(loaded), settings(steps=1, clip_length=2, seed=2**64 - 1, scheduler="lcm")).sample(cond)
    assert out.shape == (2, 4, 8, 8) and torch.isfinite(out).all()
    with pytest.raises(AA2Error, match=r"seed must be in \[0, 2\^64\)"):
        SamplerSettings(seed=2**64)


def test_clip_longer_than_the_motion_module_is_named(loaded):
    limit = loaded["denoising"].motion.config.max_seq_length
    cond = sampler_conditions(loaded["reference"], frames=limit + 1, size=4)
    for mode in ("motion_frames", "context_windows"):
        with pytest.raises(AA2Error, match=f"clip_length {limit + 1} is longer than this motion module .* use clip_length <= {limit}"):
            Sampler(sampler_models(loaded), settings(steps=1, clip_length=limit + 1, stitching=mode)).sample(cond)


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="sliding"), r"mode must be one of \['motion_frames', 'context_windows'\], got 'sliding'"),
    (dict(clip_length=4, motion_frames=4), r"motion_frames \(4\) must be in \[0, clip_length=4\)"),
    (dict(mode="context_windows", clip_length=4, context_overlap=5), r"context_overlap \(5\) must be in \[0, clip_length=4\)"),
    (dict(fusion="gauss"), "fusion must be one of"),
])
def test_stitching_options_are_checked(kwargs, message):
    with pytest.raises(AA2Error, match=message):
        Stitching(**kwargs)


def test_options_reject_unknown_names():
    with pytest.raises(AA2Error, match=r"scheduler must be one of \['ddim', 'euler', 'dpmpp_2m', 'lcm'\], got 'pndm'"):
        SamplerSettings(scheduler="pndm")
    with pytest.raises(AA2Error, match="steps must be at least 1"):
        SamplerSettings(steps=0)


def test_animate_frames_zero_blames_frames_not_the_pose_file(tmp_path, capsys):
    assert main(["animate", "--tiny", "--frames", "0", "--out", str(tmp_path / "o.mp4")]) == 1
    out = capsys.readouterr().out
    assert "--frames must be at least 1, got 0" in out and "pose" not in out
