"""The denoising loop: determinism, CFG, environment mode, stitching, and input errors."""

import pytest
import torch
from conftest import sampler_conditions, sampler_models
from conftest import sampler_settings as SamplerSettings

from aa2_core.errors import AA2Error
from aa2_core.pipeline.sampler import Sampler, initial_noise
from aa2_core.pipeline.schedulers import make_scheduler
from aa2_core.pipeline.windows import clip_plan, context_windows, fusion_weights


@pytest.fixture(scope="module")
def models(loaded):
    return sampler_models(loaded)


@pytest.fixture(scope="module")
def conditions(loaded):
    return lambda **kw: sampler_conditions(loaded["reference"], **kw)


def test_same_seed_same_output_other_seed_differs(models, conditions):
    settings = SamplerSettings(steps=2, clip_length=6)
    a = Sampler(models, settings).sample(conditions())
    b = Sampler(models, settings).sample(conditions())
    assert torch.equal(a, b)
    c = Sampler(models, SamplerSettings(steps=2, clip_length=6, seed=1)).sample(conditions())
    assert (a - c).abs().max() > 1e-3


@torch.no_grad()
def test_cfg_one_is_the_conditional_branch_and_matches_a_plain_loop(models, conditions, loaded):
    """Sampler(cfg=1) equals a hand-written DDIM loop over the conditional branch alone."""
    cond = conditions(frames=4)
    out = Sampler(models, SamplerSettings(steps=3, cfg=1.0, clip_length=4)).sample(cond)
    net, ref, pose = models.denoising, loaded["reference"], models.pose
    sch = make_scheduler("ddim", "moore")
    sch.set_timesteps(3)
    tokens = ref(cond.reference.latents, cond.reference.image_embeds)
    kv = net.reference_kv({k: v.half().float() for k, v in tokens.items()})  # Moore's fp16 hand-over
    features = pose(cond.skeleton.permute(0, 3, 1, 2), None, num_frames=4)
    x = initial_noise(cond, 0)
    for t in sch.timesteps:
        x = sch.step(net(x, t, cond.reference.image_embeds, pose_features=features, reference=kv), t, x).prev_sample
    torch.testing.assert_close(out, x[0].transpose(0, 1), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_cfg_batched_equals_sequential(models, conditions):
    cond = conditions(frames=4, objects=True)
    batched = Sampler(models, SamplerSettings(steps=2, cfg=3.5, clip_length=4)).sample(cond)
    sequential = Sampler(models, SamplerSettings(steps=2, cfg=3.5, clip_length=4, cfg_batch=False)).sample(cond)
    # fp32 batch-size-dependent rounding, amplified by the guidance scale, stays far below the signal
    torch.testing.assert_close(batched, sequential, rtol=1e-3, atol=2e-3)
    plain = Sampler(models, SamplerSettings(steps=2, cfg=1.0, clip_length=4)).sample(cond)
    assert (batched - plain).abs().max() > 1e-3  # guidance does something


def test_environment_mode_keeps_the_noised_environment_outside_the_mask(models, conditions):
    cond = conditions(frames=4, environment=True)
    seen = []
    settings = SamplerSettings(steps=3, clip_length=4)
    sampler = Sampler(models, settings, on_step=lambda done, total, x: seen.append(x.clone()))
    out = sampler.sample(cond)
    sch = make_scheduler("ddim", "moore")
    sch.set_timesteps(3)
    env = cond.environment_latents.transpose(0, 1)[None]
    outside = cond.environment_mask[None, None].expand_as(env) == 0
    noise = initial_noise(cond, 0)
    assert len(seen) == 3
    for i, latents in enumerate(seen):
        expected = sch.add_noise(env, noise, sch.timesteps[i + 1].reshape(1)) if i < 2 else env
        assert torch.equal(latents[outside], expected[outside]), f"step {i}"
    inside = ~outside[0].transpose(0, 1)
    assert (out[inside] - cond.environment_latents[inside]).abs().max() > 1e-2  # the character region is generated


def test_three_clips_give_exactly_the_frames_asked_for(models, conditions):
    assert clip_plan(10, 4, 1) == [(0, 4, 0), (3, 7, 1), (6, 10, 1)]
    cond = conditions(frames=10)
    steps = []
    out = Sampler(models, SamplerSettings(steps=2, clip_length=4, motion_frames=1),
                  on_step=lambda d, t, x: steps.append((d, t))).sample(cond)
    assert out.shape == (10, 4, 8, 8) and torch.isfinite(out).all()
    assert steps[-1] == (6, 6)  # 3 clips x 2 steps, progress counts across clips
    # the first clip alone is unaffected by later clips
    noise = initial_noise(cond, 0)[:, :, :4]
    first = Sampler(models, SamplerSettings(steps=2, clip_length=4, motion_frames=1)).sample(conditions(frames=4), noise)
    torch.testing.assert_close(out[:4], first, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["flat", "pyramid"])
@pytest.mark.parametrize("frames, length, overlap", [(10, 4, 1), (24, 8, 4), (7, 8, 2), (50, 16, 6)])
def test_context_window_weights_sum_to_one(mode, frames, length, overlap):
    windows = context_windows(frames, length, overlap)
    assert windows[0][0] == 0 and windows[-1][-1] == frames - 1
    total = torch.zeros(frames)
    for w, weight in zip(windows, fusion_weights(windows, frames, mode)):
        assert len(w) == min(length, frames) and (weight > 0).all()
        total[w] += weight
    torch.testing.assert_close(total, torch.ones(frames))


@pytest.mark.parametrize("scheduler", ["euler", "dpmpp_2m", "lcm"])
def test_other_schedulers_run_deterministically(models, conditions, scheduler):
    settings = SamplerSettings(steps=2, clip_length=4, scheduler=scheduler)
    a = Sampler(models, settings).sample(conditions(frames=4))
    assert torch.isfinite(a).all() and torch.equal(a, Sampler(models, settings).sample(conditions(frames=4)))


@pytest.mark.parametrize("change, message", [
    (lambda c: setattr(c, "environment_latents", torch.zeros(5, 4, 8, 8)) or setattr(c, "environment_mask", torch.zeros(6, 8, 8)), "environment_latents has 5 frames but the pose sequence has 6"),
    (lambda c: setattr(c, "object_latents", torch.zeros(6, 4, 8, 7)), "object_latents has per-frame shape"),
    (lambda c: setattr(c, "skeleton", torch.zeros(6, 60, 64, 3)), "pose images are 64x60"),
    (lambda c: setattr(c, "skeleton", torch.zeros(0, 64, 64, 3)), "0 frames"),
    (lambda c: setattr(c, "environment_latents", torch.zeros(6, 4, 8, 8)), "give both or neither"),
])
def test_mismatched_inputs_are_named(models, conditions, change, message):
    cond = conditions()
    change(cond)
    with pytest.raises(AA2Error, match=message):
        Sampler(models, SamplerSettings(steps=1)).sample(cond)


def test_one_context_window_equals_one_clip(models, conditions):
    """Both stitching paths share the step logic: with a single window/clip they give the same latents."""
    cond = conditions(frames=4, environment=True)
    clip = Sampler(models, SamplerSettings(steps=2, clip_length=4)).sample(cond)
    window = Sampler(models, SamplerSettings(steps=2, clip_length=4, stitching="context_windows")).sample(cond)
    torch.testing.assert_close(window, clip, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("frames, length, overlap, expected", [
    (8, 4, 1, [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 0, 1]]),
    (30, 24, 4, [list(range(24)), list(range(20, 30)) + list(range(14))]),
    (24, 8, 4, [list(range(s, s + 8)) for s in range(0, 20, 4)] + [[20, 21, 22, 23, 0, 1, 2, 3]]),
    (6, 8, 4, [list(range(6))]),
])
def test_closed_loop_windows_are_moores(frames, length, overlap, expected):
    """Moore-AnimateAnyone's uniform schedule as its pipeline calls it (step 0, stride 1, closed loop): windows
    every ``length - overlap`` frames up to the last, the tail wrapping to the first frames (lists from running
    Moore's ``context.uniform``)."""
    windows = context_windows(frames, length, overlap, "closed_loop")
    assert [w.tolist() for w in windows] == expected
    total = sum(torch.zeros(frames).index_add_(0, w, weight) for w, weight in zip(windows, fusion_weights(windows, frames, "flat")))
    torch.testing.assert_close(total, torch.ones(frames))
