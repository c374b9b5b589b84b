"""The released Animate-X network as a family of the shared sampler (``families/animate_x/family.py``).

On the tiny released-layout weights and the parity fixture's inputs (``bench/animate_x_parity.py``):
* the pack's ``Sampler`` (diffusers DDIM, ``Schedule.ANIMATE_X``, 4 steps, cfg 2.5, one clip) equals the family's
  own released-style loop (``diffusion.sample``) and the released code's own final latents;
* where the step rules differ (30 steps: the released loop runs 31) the test says which step differs;
* context windows and motion frames over a video longer than one clip call the UNet one clip at a time with that
  clip's inputs; environment mode keeps the scene.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from aa2_core.errors import AA2Error
from aa2_core.families.animate_x import diffusion
from aa2_core.families.animate_x.family import (RELEASED_EQUIVALENT_STEPS, AnimateXModels, animate_x_reference,
                                                keypoint_rows, released_equivalent)
from aa2_core.families.animate_x.loader import unet_from_state_dict
from aa2_core.families.animate_x.tiny import tiny_animate_x_state_dict
from aa2_core.pipeline.options import SamplerSettings, Schedule, StitchMode, Stitching
from aa2_core.pipeline.prepare import Conditions, Reference
from aa2_core.pipeline.sampler import Sampler
from aa2_core.pipeline.schedulers import make_scheduler

PARITY = os.path.join(os.path.dirname(__file__), "fixtures", "animate_x", "parity.safetensors")


@pytest.fixture(scope="module")
def fx():
    with safe_open(PARITY, framework="pt") as f:
        meta = json.loads(f.metadata()["animate_x_parity"])
    return load_file(PARITY), meta


@pytest.fixture(scope="module")
def unet(fx):
    return unet_from_state_dict(tiny_animate_x_state_dict(fx[1]["tiny_seed"]), "tiny Animate-X UNet")


def pack_keypoints(rows: torch.Tensor) -> torch.Tensor:
    """``(n, 2, 18)`` released rows -> the pack's ``(n, 18, 3)`` keypoint tensor (confidence 1)."""
    return torch.cat([rows.transpose(-1, -2), torch.ones(*rows.shape[:-2], rows.shape[-1], 1)], dim=-1)


def conditions(t: dict, frames: int | None = None, ipi: bool = True) -> Conditions:
    """The fixture's inputs as ``Conditions``; ``frames`` > the fixture's repeats its driving frames cyclically."""
    n = t["pose_u8"].shape[0] - 1
    frames = frames or n
    index = torch.arange(frames) % n + 1
    ref = Reference(
        latents=t["ref_posterior"][:, :4] * 0.18215,
        image_embeds=t["image"],
        tokens=dict(local_image=t["ref_u8"][None].float() / 255, pose=t["pose_u8"][:1].float() / 255,
                    keypoints=pack_keypoints(t["keypoints"][0, :1]), feature=t["driving_features"][:1]),
    )
    cond = Conditions(ref, t["pose_u8"][index].permute(0, 2, 3, 1).float() / 255)
    if ipi:
        moved = t["keypoints"][0, index] + 1e-3 * (torch.arange(frames) // n)[:, None, None]  # each frame its own
        cond.driving_keypoints = pack_keypoints(moved)
        cond.driving_features = t["driving_features"][index]
    return cond


def released_kwargs(t: dict, frames: int) -> tuple[dict, dict]:
    """The entrance's inputs built straight from the fixture (as tests/test_animate_x_parity.py does)."""
    local = (t["ref_u8"].float() / 255)[None, :, None].repeat(1, 1, frames, 1, 1)
    dwpose = (t["pose_u8"].float() / 255).permute(1, 0, 2, 3)[None]
    cond = dict(text=t["zero_y"], image_embed=t["image"], local_image=local, dwpose=dwpose,
                keypoints=t["keypoints"], driving_features=t["driving_features"])
    return cond, dict(text=t["zero_y"])


def settings(steps: int, clip: int, **kw) -> SamplerSettings:
    stitching = kw.pop("stitching", None) or Stitching(clip_length=clip, motion_frames=0)
    return SamplerSettings(steps=steps, cfg=2.5, scheduler="ddim", schedule=Schedule.ANIMATE_X,
                           stitching=stitching, environment_mode=kw.pop("environment_mode", False), **kw)


def released_noise(t, meta, frames=None):
    return diffusion.initial_noise(torch.Generator().manual_seed(meta["seed"]), frames or meta["frames"],
                                   *t["x"].shape[-2:])


def maxdiff(a, b) -> float:
    return float((a.double() - b.double()).abs().max())


def as_video(latents: torch.Tensor) -> torch.Tensor:
    return latents.permute(1, 0, 2, 3)[None]  # (F, c, h, w) -> (1, c, F, h, w)


# ---- the schedule -----------------------------------------------------------------------------------
def test_animate_x_schedule_is_the_released_one_and_moore_is_not():
    released = diffusion.Schedule.released().alphas_cumprod
    ours = make_scheduler("ddim", Schedule.ANIMATE_X)
    assert maxdiff(ours.alphas_cumprod, released) < 1e-6  # float32 table
    assert maxdiff(make_scheduler("ddim", Schedule.MOORE).alphas_cumprod, released) > 0.1  # linear, not linear_sd
    assert float(ours.final_alpha_cumprod) == pytest.approx(0.99915, abs=1e-7)  # the last step ends at alpha_bar[0]
    for n in (4, 5, 10, 25, 30):
        ours.set_timesteps(n)
        released_ts = diffusion.ddim_timesteps(n)
        if released_equivalent(n):
            assert ours.timesteps.tolist() == released_ts, n
        else:  # 30: the released loop runs 31 steps; diffusers' DDIM runs the same minus the first (t = 991)
            assert len(released_ts) == n + 1 and ours.timesteps.tolist() == released_ts[1:], n
    assert 30 not in RELEASED_EQUIVALENT_STEPS and {4, 5, 10, 20, 25, 50} <= set(RELEASED_EQUIVALENT_STEPS)


# ---- one clip: the sampler path is the released loop -----------------------------------------------
def test_sampler_equals_released_loop_on_one_clip(unet, fx):
    """(``cfg_batch`` does not matter here: the family runs its two branches as two passes either way.)"""
    t, meta = fx
    f = meta["frames"]
    models = AnimateXModels(unet, text=t["zero_y"])
    noise = released_noise(t, meta)
    ours = as_video(Sampler(models, settings(meta["steps"], f)).sample(conditions(t), noise=noise))
    cond, uncond = released_kwargs(t, f)
    loop = diffusion.sample(lambda x, ts, kw: unet(x, ts, **kw), noise, cond, uncond, steps=meta["steps"],
                            guide_scale=meta["guide_scale"])
    assert maxdiff(ours, loop) <= 1e-4, maxdiff(ours, loop)
    assert maxdiff(ours, t["ddim_final"]) <= meta["ddim_tolerance"]  # the released code's own final latents


def test_sampler_path_catches_wrong_cfg_inputs(unet, fx):
    """Keeping the IPI inputs in the unconditional branch, or zeros for zero_y, moves the result far off."""
    t, meta = fx
    f, noise = meta["frames"], released_noise(t, meta)
    expected = t["ddim_final"]

    class KeepsPoseInUncond(AnimateXModels):
        def predict(self, state, x, tt, inputs, guided, batched):
            ts = torch.as_tensor(tt).reshape(-1).long()
            kw = self.network_kwargs(state, inputs, x.shape[2])
            unc = self.unet(x, ts, text=state.text, keypoints=kw["keypoints"], driving_features=kw["driving_features"])
            return unc.float(), self.unet(x, ts, **kw).float()

    wrong = {"uncond keeps the IPI": (KeepsPoseInUncond(unet, text=t["zero_y"]), conditions(t)),
             "zero text stand-in": (AnimateXModels(unet), conditions(t))}
    for name, (models, cond) in wrong.items():
        out = as_video(Sampler(models, settings(meta["steps"], f)).sample(cond, noise=noise))
        assert maxdiff(out, expected) > 100 * meta["ddim_tolerance"], name


@torch.no_grad()
def test_reference_latent_mode_passes_randomref(unet, fx):
    """``reference_latent=True`` stacks the reference latent in the time slot (``randomref``, the released
    ``forward_cond_randomref`` input); the default leaves it at zeros as the released YAML does."""
    t, meta = fx
    f = meta["frames"]
    cond = conditions(t)
    ts = torch.tensor(meta["timestep"])
    for flag, expected in ((False, "forward_cond"), (True, "forward_cond_randomref")):
        models = AnimateXModels(unet, text=t["zero_y"], reference_latent=flag)
        state = models.begin(cond, "cpu", torch.float32)
        _, out = models.predict(state, t["x"], ts, models.clip_inputs(cond, torch.arange(f), "cpu", torch.float32),
                                guided=False, batched=False)
        assert maxdiff(out, t[expected]) <= meta["forward_tolerance"], flag


# ---- long videos at bounded memory ------------------------------------------------------------------
def _recording(unet):
    calls = []

    def hook(module, args, kwargs):
        calls.append(dict(frames=args[0].shape[2], keypoints=kwargs.get("keypoints"),
                          dwpose=kwargs.get("dwpose")))

    return calls, unet.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("mode", [StitchMode.CONTEXT_WINDOWS, StitchMode.MOTION_FRAMES])
def test_long_video_runs_clip_by_clip(unet, fx, mode):
    t, meta = fx
    frames, clip = 10, 4
    cond = conditions(t, frames)
    stitching = Stitching(mode=mode, clip_length=clip, motion_frames=1, context_overlap=2)
    calls, handle = _recording(unet)
    try:
        out = Sampler(AnimateXModels(unet, text=t["zero_y"]), settings(2, clip, stitching=stitching)).sample(
            cond, noise=released_noise(t, meta, frames))
    finally:
        handle.remove()
    assert out.shape == (frames, 4, *t["x"].shape[-2:]) and torch.isfinite(out).all()
    assert calls and max(c["frames"] for c in calls) <= clip  # never the whole video in one pass
    # every conditional call carries the reference first, then exactly its clip's frames
    ref_rows = keypoint_rows(cond.reference.tokens["keypoints"])
    seen = set()
    for c in calls:
        if c["keypoints"] is None:
            continue
        assert torch.equal(c["keypoints"][0, :1], ref_rows)
        rows = c["keypoints"][0, 1:]
        matches = [s for s in range(frames - c["frames"] + 1)
                   if torch.equal(rows, keypoint_rows(cond.driving_keypoints[s:s + c["frames"]]))]
        assert matches, "a clip's IPI rows are not a run of the video's frames"
        start = matches[0]
        pose = cond.skeleton[start:start + c["frames"]].permute(3, 0, 1, 2)[None]
        assert torch.equal(c["dwpose"][:, :, 1:], pose)
        seen.update(range(start, start + c["frames"]))
    assert seen == set(range(frames))


def test_context_windows_of_one_window_equal_one_clip(unet, fx):
    t, meta = fx
    f, noise = meta["frames"], released_noise(t, meta)
    models = AnimateXModels(unet, text=t["zero_y"])
    one = Sampler(models, settings(2, f)).sample(conditions(t), noise=noise)
    windows = Stitching(mode=StitchMode.CONTEXT_WINDOWS, clip_length=f, context_overlap=1)
    win = Sampler(models, settings(2, f, stitching=windows)).sample(conditions(t), noise=noise)
    assert maxdiff(one, win) <= 1e-5


# ---- environment mode ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [StitchMode.CONTEXT_WINDOWS, StitchMode.MOTION_FRAMES])
def test_environment_mode_keeps_the_scene(unet, fx, mode):
    t, meta = fx
    frames, clip = 6, 4
    cond = conditions(t, frames)
    h, w = t["x"].shape[-2:]
    env = torch.randn(frames, 4, h, w, generator=torch.Generator().manual_seed(5))
    mask = torch.zeros(frames, h, w)
    mask[:, 4:12, 2:6] = 1
    cond.environment_latents, cond.environment_mask = env, mask
    stitching = Stitching(mode=mode, clip_length=clip, motion_frames=1, context_overlap=2)
    models = AnimateXModels(unet, text=t["zero_y"])
    noise = released_noise(t, meta, frames)
    kept = Sampler(models, settings(3, clip, stitching=stitching, environment_mode=True)).sample(cond, noise=noise)
    free = Sampler(models, settings(3, clip, stitching=stitching, environment_mode=False)).sample(cond, noise=noise)
    outside = (mask == 0)[:, None].expand_as(env)
    assert torch.equal(kept[outside], env[outside])
    assert maxdiff(free[outside], env[outside]) > 0.1
    assert maxdiff(kept[~outside], free[~outside]) > 1e-3  # the character region is generated, with the scene around


# ---- half precision ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_weights_sample_near_fp32(fx, dtype):
    """A GPU runs the family in fp16/bf16 weights (the sampler's dtype): every input the UNet makes for itself (the
    timestep sinusoid, zero slots, motion tokens) must follow that dtype. On an H200 the timestep embedding once
    stayed fp32 and fp16 weights failed at the first step; fp16 and bf16 run on this CPU too."""
    t, meta = fx
    f = meta["frames"]
    noise = released_noise(t, meta)
    runs = []
    for d in (torch.float32, dtype):
        half = unet_from_state_dict(tiny_animate_x_state_dict(meta["tiny_seed"]), "tiny Animate-X UNet", dtype=d)
        assert all(p.dtype == d for p in half.parameters())
        runs.append(Sampler(AnimateXModels(half, text=t["zero_y"]), settings(2, f), dtype=d).sample(
            conditions(t), noise=noise))
    full, low = runs
    assert torch.isfinite(low).all()
    tolerance = {torch.float16: 0.02, torch.bfloat16: 0.2}[dtype] * float(full.std())
    assert maxdiff(full, low) < tolerance


# ---- refusals --------------------------------------------------------------------------------------
def test_family_refuses_what_it_cannot_read(unet, fx):
    t, meta = fx
    models = AnimateXModels(unet, text=t["zero_y"])
    run = Sampler(models, settings(2, meta["frames"]))
    cond = conditions(t)
    cond.object_latents = torch.zeros(meta["frames"], 4, *t["x"].shape[-2:])
    with pytest.raises(AA2Error, match="does not read the condition.*objects"):
        run.sample(cond)
    cond = conditions(t)
    del cond.reference.tokens["keypoints"]
    with pytest.raises(AA2Error, match="reference's keypoints"):
        run.sample(cond)
    cond = conditions(t)
    cond.reference.tokens.pop("local_image")
    with pytest.raises(AA2Error, match="animate_x_reference"):
        run.sample(cond)


def test_animate_x_reference_builds_the_family_reference():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 96, 64, 3, generator=g)
    pose = torch.rand(1, 96, 64, 3, generator=g)
    kp = torch.rand(18, 3, generator=g)
    ref = animate_x_reference(image, (128, 64), lambda x: torch.zeros(x.shape[0], 4, 16, 8),
                              lambda x: torch.ones(1, 32), pose=pose, keypoints=kp)
    assert ref.size == (128, 64) and ref.image_embeds.shape == (1, 1, 32)
    assert ref.tokens["local_image"].shape == (1, 3, 128, 64) and ref.tokens["pose"].shape == (1, 3, 128, 64)
    assert torch.equal(ref.tokens["keypoints"], kp[None])
    assert torch.equal(keypoint_rows(ref.tokens["keypoints"])[0], kp[:, :2].T)
