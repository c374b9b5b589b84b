"""The long-video maths of the Sampler, checked against sums and steps written out by hand.

The DenoisingNet and the pose net are replaced by small stand-ins whose prediction is a known function
of the input latents, the timestep and the frame index (carried in through the pose images), so every
number the sampler produces can be recomputed here with explicit loops: window fusion (context
windows), the motion-frame hand-over between clips, and each scheduler's step loop against diffusers'.

Each test names the mutations of aa2_core it was seen to catch (applied one at a time, then reverted).
"""

import pytest
import torch
from conftest import sampler_settings as SamplerSettings
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, LCMScheduler
from torch import nn

from aa2_core.errors import AA2Error
from aa2_core.pipeline.prepare import Conditions, Reference
from aa2_core.families.moore import MooreModels as Models
from aa2_core.pipeline.sampler import Sampler, initial_noise
from aa2_core.pipeline.windows import clip_plan

FRAME_CODE = 1 / 16  # pose image value of frame i is i * FRAME_CODE; the stand-in pose net hands it on


def model_fn(x, t, codes, context):
    """The stand-in prediction for one window/clip ``x (1, c, f, h, w)``: depends on the latents, on the
    other frames of the window (its mean), on each frame's index, on its position in the window, on the
    timestep and on the image embedding, so a wrong slice, position, step or weight changes it."""
    f = x.shape[2]
    frame = codes.view(1, 1, f, 1, 1)
    position = torch.arange(f, dtype=x.dtype).view(1, 1, f, 1, 1)
    return 0.3 * x + 0.2 * x.mean(dim=2, keepdim=True) + frame + 0.05 * position + 1e-4 * float(t) + context.mean()


class StandInPose(nn.Module):
    def forward(self, skeleton, depth, num_frames):
        assert skeleton.shape[0] == num_frames
        return skeleton[:, 0, 0, 0].clone()  # (f,) frame codes


class StandInNet(nn.Module):
    """What the Sampler calls on a DenoisingNet; records every forward call."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def check_clip_length(self, num_frames):
        pass

    def reference_kv(self, tokens):
        return "kv"

    def encode_objects(self, object_latents):
        raise AssertionError("no objects in these tests")

    def forward(self, sample, t, context, reference=None, reference_rows=None, pose_features=None, **other):
        assert reference == "kv" and reference_rows is None and not other
        pred = model_fn(sample, t, pose_features, context)
        self.calls.append(dict(sample=sample.clone(), t=int(t), frames=(pose_features / FRAME_CODE).round().long().tolist(),
                               pred=pred.clone()))
        return pred


def stand_in(frames, h=2, w=3, seed=0):
    """Models with the stand-ins, and Conditions whose pose image of frame i is the constant i * FRAME_CODE."""
    g = torch.Generator().manual_seed(seed)
    reference = Reference(torch.randn(1, 4, h, w, generator=g), torch.randn(1, 1, 8, generator=g), {"t": torch.zeros(1)})
    skeleton = (torch.arange(frames, dtype=torch.float32) * FRAME_CODE).view(frames, 1, 1, 1).expand(frames, 8 * h, 8 * w, 3)
    return Models(StandInNet(), StandInPose()), Conditions(reference, skeleton.contiguous())


# ---- the Moore schedule's DDIM step, by hand ------------------------------------------------------
MOORE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear",
             prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing", steps_offset=1)
SD15 = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            prediction_type="epsilon", rescale_betas_zero_snr=False, timestep_spacing="leading", steps_offset=1)
ALPHAS = DDIMScheduler(**MOORE).alphas_cumprod  # zero terminal SNR: ALPHAS[999] == 0


def ddim_step(v, t, x, steps):
    """Deterministic DDIM (eta 0) for v-prediction, from t to t - 1000 // steps (alpha 1 past the end), as
    diffusers' DDIMScheduler does (with 3 trailing steps it steps 666 -> 333 though the next timestep is 332)."""
    prev = t - 1000 // steps
    a, a_prev = ALPHAS[t], (ALPHAS[prev] if prev >= 0 else torch.tensor(1.0))
    x0 = a.sqrt() * x - (1 - a).sqrt() * v
    eps = a.sqrt() * v + (1 - a).sqrt() * x
    return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps


def add_noise(x0, noise, t):
    return ALPHAS[t].sqrt() * x0 + (1 - ALPHAS[t]).sqrt() * noise


def as_video(frames):  # (f, c, h, w) -> (1, c, f, h, w)
    return frames.transpose(0, 1)[None]


# ---- 1. window fusion -------------------------------------------------------------------------------
# 14 frames, windows of 6 overlapping by 2, written out by hand
WINDOWS = {
    "open": [list(range(0, 6)), list(range(4, 10)), list(range(8, 14))],
    "closed_loop": [list(range(0, 6)), list(range(4, 10)), list(range(8, 14)), [12, 13, 0, 1, 2, 3]],
}
PROFILE = {  # un-normalised weight of each window position
    "flat": [1, 1, 1, 1, 1, 1],
    "pyramid": [1, 2, 3, 3, 2, 1],  # ramps over the whole window
}


@pytest.mark.parametrize("schedule", ["open", "closed_loop"])
@pytest.mark.parametrize("fusion", ["flat", "pyramid"])
def test_window_fusion_is_the_normalised_weighted_sum(fusion, schedule):
    """Two DDIM steps over 14 frames in windows of 6 (overlap 2): at every step the sampler's fused
    prediction is sum_w weight_w(frame) * pred_w(frame) / sum_w weight_w(frame), with the windows and
    profiles written out above.

    Mutations seen failing: fusion_weights returns the raw profiles (not normalised); the sampler's
    window loop skips the last window (``zip(windows[:-1], ...)``); ``_window_profile`` returns the flat
    profile for "pyramid"; closed_loop windows built like the open ones (no wrap to the first frames).
    """
    frames, steps = 14, 2
    models, cond = stand_in(frames)
    settings = SamplerSettings(steps=steps, cfg=1.0, seed=3, clip_length=6, stitching="context_windows",
                               context_overlap=2, fusion=fusion, context_schedule=schedule)
    out = Sampler(models, settings).sample(cond)

    windows, profile = WINDOWS[schedule], PROFILE[fusion]
    # the model saw exactly these windows, in this order, at each step
    assert [c["frames"] for c in models.denoising.calls] == windows * steps
    context = cond.reference.image_embeds
    x = initial_noise(cond, 3)  # DDIM: init_noise_sigma 1
    timesteps = [999, 499]  # trailing spacing, 2 steps
    for t in timesteps:
        fused = torch.zeros_like(x)
        total = torch.zeros(frames)
        for window in windows:
            codes = torch.tensor(window, dtype=torch.float32) * FRAME_CODE
            pred = model_fn(x[:, :, window], t, codes, context)
            for position, frame in enumerate(window):
                fused[:, :, frame] += profile[position] * pred[:, :, position]
                total[frame] += profile[position]
        for frame in range(frames):
            fused[:, :, frame] /= total[frame]
        x = ddim_step(fused, t, x, steps)
    torch.testing.assert_close(out, x[0].transpose(0, 1), rtol=1e-5, atol=1e-5)


# ---- 2. motion frames ---------------------------------------------------------------------------------
def test_each_clip_continues_from_the_previous_clips_last_frames():
    """11 frames in clips of 4 with 2 motion frames, 3 DDIM steps per clip. For every clip: the model sees
    the clip's frames; at each step its first ``known`` frames are the already generated output frames
    noised to that step with the same noise slice, the other frames start as that clip's noise slice and
    then follow the DDIM steps; the output's new frames are the clip's last step.

    Mutations seen failing: later clips ignore their known frames (``known_latents = None``); the known
    frames noised with the noise of the clip's start (``noise[:, :, :k]`` of the whole video); each clip
    written over its known frames too (``out[start:end] = clip``, with the restore of known frames removed).
    """
    frames, steps = 11, 3
    plan = [(0, 4, 0), (2, 6, 2), (4, 8, 2), (6, 10, 2), (7, 11, 3)]  # the last clip starts earlier, not short
    assert clip_plan(frames, 4, 2) == plan
    models, cond = stand_in(frames)
    out = Sampler(models, SamplerSettings(steps=steps, cfg=1.0, seed=7, clip_length=4, motion_frames=2)).sample(cond)
    noise = initial_noise(cond, 7)
    calls = models.denoising.calls
    assert len(calls) == len(plan) * steps and [c["t"] for c in calls] == [999, 666, 332] * len(plan)  # trailing spacing
    for k, (start, end, known) in enumerate(plan):
        clip_calls = calls[k * steps : (k + 1) * steps]
        clip_noise = noise[:, :, start:end]
        assert all(c["frames"] == list(range(start, end)) for c in clip_calls), f"clip {k}"
        generated = as_video(out[start : start + known])  # frames made by earlier clips
        x = clip_noise
        for i, c in enumerate(clip_calls):
            if known:
                expected_known = add_noise(generated, clip_noise[:, :, :known], c["t"])
                torch.testing.assert_close(c["sample"][:, :, :known], expected_known, rtol=1e-5, atol=1e-5,
                                           msg=f"clip {k} step {i}: known frames")
            torch.testing.assert_close(c["sample"][:, :, known:], x[:, :, known:], rtol=1e-5, atol=1e-5,
                                       msg=f"clip {k} step {i}: new frames")
            x = ddim_step(c["pred"], c["t"], c["sample"], steps)
        torch.testing.assert_close(as_video(out[start + known : end]), x[:, :, known:], rtol=1e-5, atol=1e-5,
                                   msg=f"clip {k}: output")
    # the known frames really steer: at the last step their signal weight is sqrt(alpha) ~ 0.62
    assert ALPHAS[332] > 0.35


# ---- 3. each scheduler's loop is diffusers' loop ----------------------------------------------------
SCHEDULERS = {
    "ddim": lambda cfg: DDIMScheduler(clip_sample=False, **cfg),
    "euler": lambda cfg: EulerDiscreteScheduler(**cfg),
    "dpmpp_2m": lambda cfg: DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, **cfg),
    "lcm": lambda cfg: LCMScheduler(clip_sample=False, **cfg),
}


@pytest.mark.parametrize("schedule", ["moore", "sd15"])
@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_sampler_loop_is_the_diffusers_loop(name, schedule):
    """One clip, cfg 1, no environment: the sampler equals diffusers' own loop (a fresh scheduler configured
    as the weights were trained, ``scale_model_input`` then ``step`` with the in-step noise generator seeded
    ``seed + 1``) on the same stand-in model.

    Mutations seen failing: no ``scale_model_input`` before the model (euler; the others scale by 1);
    the in-step generator seeded ``seed`` (lcm); in make_scheduler: DDIM ``set_alpha_to_one=False``, the sd15
    ``beta_schedule="linear"``, DPM++ ``solver_order=1``.
    """
    seed, steps = 11, 3
    models, cond = stand_in(4, seed=1)
    out = Sampler(models, SamplerSettings(steps=steps, cfg=1.0, seed=seed, clip_length=4, scheduler=name,
                                          schedule=schedule)).sample(cond)
    sch = SCHEDULERS[name](dict(MOORE if schedule == "moore" else SD15))
    sch.set_timesteps(steps)
    generator = torch.Generator("cpu").manual_seed(seed + 1)
    codes = torch.arange(4, dtype=torch.float32) * FRAME_CODE
    x = initial_noise(cond, seed) * sch.init_noise_sigma
    for t in sch.timesteps:
        pred = model_fn(sch.scale_model_input(x, t), t, codes, cond.reference.image_embeds)
        x = sch.step(pred, t, x, generator=generator).prev_sample
    assert [c["t"] for c in models.denoising.calls] == [int(t) for t in sch.timesteps]
    torch.testing.assert_close(out, x[0].transpose(0, 1), rtol=1e-5, atol=1e-5)


def test_pyramid_fusion_cross_fades_linearly_over_each_overlap():
    """Across an overlap of o frames the incoming window's normalised weight is (k + 1) / (o + 1) at its k-th
    shared frame, and a frame covered once has weight 1. ("linear" was removed: it gave these same weights.)"""
    from aa2_core.pipeline.windows import context_windows, fusion_weights

    for frames, length, overlap in [(14, 6, 2), (39, 16, 4), (20, 8, 5)]:
        windows = context_windows(frames, length, overlap)
        weights = fusion_weights(windows, frames, "pyramid")
        for (a, wa), (b, wb) in zip(zip(windows, weights), zip(windows[1:], weights[1:])):
            shared = sorted(set(a.tolist()) & set(b.tolist()))
            if len(shared) * 2 > length:
                continue  # a third window covers these frames too
            o = len(shared)
            incoming = torch.stack([wb[b.tolist().index(f)] for f in shared])
            torch.testing.assert_close(incoming, torch.arange(1, o + 1) / (o + 1))
            outgoing = torch.stack([wa[a.tolist().index(f)] for f in shared])
            torch.testing.assert_close(outgoing + incoming, torch.ones(o))
    with pytest.raises(AA2Error, match="fusion must be one of"):
        fusion_weights(context_windows(14, 6, 2), 14, "linear")


# ---- classifier-free guidance --------------------------------------------------------------------------
class GuidedStandInNet(StandInNet):
    """The stand-in, in batches: each row gets its own image embedding, and the reference (ReferenceNet
    K/V) adds 0.1 to the rows it is applied to, so a branch with or without it tells apart."""

    def forward(self, sample, t, context, reference=None, reference_rows=None, pose_features=None, **other):
        assert not other
        rows = sample.shape[0]
        with_reference = torch.ones(rows, dtype=torch.bool) if reference_rows is None else reference_rows.cpu()
        if reference is None:
            with_reference = torch.zeros(rows, dtype=torch.bool)
        codes = pose_features[: sample.shape[2]]  # the batched path repeats the per-frame inputs per row
        out = [model_fn(sample[i : i + 1], t, codes, context[i]) + 0.1 * with_reference[i] for i in range(rows)]
        return torch.cat(out)


@pytest.mark.parametrize("cfg_batch", [True, False])
def test_guidance_is_uncond_plus_scale_times_the_difference(cfg_batch):
    """cfg 3.5, one clip, two DDIM steps: the guided prediction is uncond + 3.5 (cond - uncond), where the
    unconditional branch has a zero image embedding and no reference. Mutation it catches: the combine written
    cond + s (cond - uncond); the reference applied to both rows."""
    frames, steps, scale = 4, 2, 3.5
    models, cond = stand_in(frames)
    models = Models(GuidedStandInNet(), models.pose)
    out = Sampler(models, SamplerSettings(steps=steps, cfg=scale, seed=5, clip_length=4, cfg_batch=cfg_batch)).sample(cond)

    context = cond.reference.image_embeds[0]
    codes = torch.arange(frames, dtype=torch.float32) * FRAME_CODE
    x = initial_noise(cond, 5)
    for t in [999, 499]:
        uncond = model_fn(x, t, codes, torch.zeros_like(context))
        conditional = model_fn(x, t, codes, context) + 0.1
        x = ddim_step(uncond + scale * (conditional - uncond), t, x, steps)
    torch.testing.assert_close(out, x[0].transpose(0, 1), rtol=1e-5, atol=1e-5)
