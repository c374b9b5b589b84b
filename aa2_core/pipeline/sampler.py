"""The denoising loop over the DenoisingNet, clip by clip (or window by window) for videos of any length.

It works on the typed network inputs that ``prepare`` builds (latents, embeddings, reference tokens);
ComfyUI hooks come in as a step callback. Memory does not grow with the video: full-video tensors stay
on the storage device (the CPU), each clip's slice moves to the compute device and back. A ``Sampler``
holds no per-call state, so one instance may serve several calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from einops import rearrange

from ..errors import AA2Error
from .denoiser import Denoiser
from .options import EnvironmentMode, SamplerSettings, StitchMode
from .prepare import Conditions, validate_conditions
from .schedulers import make_scheduler
from .windows import clip_plan, context_windows, fusion_weights

StepCallback = Callable[[int, int, torch.Tensor], None]  # (steps done, total steps, current latents)


def initial_noise(conditions: Conditions, seed: int) -> torch.Tensor:
    """Noise for the whole video, drawn on the CPU so the result does not depend on the GPU.

    Drawn as ``(1, c, F, h, w)`` from ``torch.Generator("cpu").manual_seed(seed)``, as Moore-AnimateAnyone
    does, so the same seed gives the same pictures as its pipeline.
    """
    _, c, h, w = conditions.reference.latents.shape
    g = torch.Generator("cpu").manual_seed(seed)
    return torch.randn((1, c, conditions.num_frames, h, w), generator=g, dtype=torch.float32)


def total_steps(settings: SamplerSettings, num_frames: int) -> int:
    """Denoising steps one ``sample`` call makes (each ticks the step callback once)."""
    stitching = settings.stitching
    if stitching.mode == StitchMode.CONTEXT_WINDOWS:
        return settings.steps
    return settings.steps * len(clip_plan(num_frames, stitching.clip_length, stitching.motion_frames))


@dataclass
class _ClipInputs:
    """One clip's inputs: the DenoisingNet's keyword arguments, and the environment kept in environment mode."""

    network: dict  # the family's network inputs for this clip
    environment: tuple[torch.Tensor, torch.Tensor] | None  # (latents (1, c, f, h, w), mask (1, 1, f, h, w))

    def to(self, device) -> "_ClipInputs":
        network = _to(self.network, device)
        env = None if self.environment is None else tuple(x.to(device) for x in self.environment)
        return _ClipInputs(network, env)


@dataclass
class _Run:
    """Everything one ``sample`` call computes once and carries through its steps."""

    state: object  # what the model family computed once for this video (``Denoiser.begin``)
    noise: torch.Tensor  # (1, c, F, h, w) on the CPU
    scheduler: object
    generator: torch.Generator  # for schedulers that add noise inside a step (LCM)
    on_step: StepCallback | None
    total: int
    keep_environment: bool = True  # environment mode, resolved for these models (``environment_mode_on``)
    done: int = 0

    def tick(self, latents):
        self.done += 1
        if self.on_step is not None:
            self.on_step(self.done, self.total, latents)


class Sampler:
    """The denoising loop, shared by every model family (``denoiser.Denoiser``)."""

    def __init__(self, models: Denoiser, settings: SamplerSettings, device=None, dtype=torch.float32,
                 storage_device="cpu", on_step: StepCallback | None = None):
        if not isinstance(models, Denoiser):
            raise AA2Error(f"models must be a model family's Denoiser (e.g. families.moore.MooreModels), got {type(models).__name__}")
        if not isinstance(settings, SamplerSettings):
            raise AA2Error(f"settings must be a SamplerSettings, got {type(settings).__name__}")
        self.models, self.settings = models, settings
        self.device = torch.device(device or "cpu")
        self.dtype, self.storage = dtype, torch.device(storage_device)
        self.on_step = on_step

    # ---- public ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, conditions: Conditions, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Returns the final latents ``(F, 4, h, w)`` on the storage device (frames as batch, ComfyUI style).

        ``noise`` ``(1, 4, F, h, w)`` defaults to ``initial_noise(conditions, seed)``.
        """
        validate_conditions(conditions)
        s, f = self.settings, conditions.num_frames
        self.models.check(conditions, min(f, s.stitching.clip_length))  # clips and windows alike
        noise = initial_noise(conditions, s.seed) if noise is None else noise.float().cpu()
        run = _Run(
            state=self.models.begin(conditions, self.device, self.dtype, s.reference_token_dtype),
            noise=noise,
            scheduler=make_scheduler(s.scheduler, s.schedule),
            generator=torch.Generator("cpu").manual_seed((s.seed + 1) % 2**64),
            on_step=self.on_step,
            total=total_steps(s, f),
            keep_environment=environment_mode_on(s.environment_mode, self.models),
        )
        if s.stitching.mode == StitchMode.MOTION_FRAMES:
            return self._sample_clips(run, conditions)
        return self._sample_windows(run, conditions)

    # ---- clips in turn, each continuing from the previous clip's last frames ---------------------
    def _sample_clips(self, run: _Run, cond: Conditions) -> torch.Tensor:
        st, f = self.settings.stitching, cond.num_frames
        noise = run.noise
        out = torch.empty((f, noise.shape[1], *noise.shape[3:]), dtype=torch.float32, device=self.storage)
        for start, end, known in clip_plan(f, st.clip_length, st.motion_frames):
            frames = torch.arange(start, end)
            known_latents = _video(out[start : start + known]).to(self.device) if known else None
            clip = self._sample_clip(run, self._clip_inputs(cond, frames, self.device), noise[:, :, start:end], known_latents)
            out[start + known : end] = rearrange(clip[:, :, known:], "1 c f h w -> f c h w").to(self.storage)
        return out

    def _sample_clip(self, run: _Run, inputs: _ClipInputs, noise: torch.Tensor, known: torch.Tensor | None) -> torch.Tensor:
        sch = run.scheduler
        sch.set_timesteps(self.settings.steps, device=self.device)  # also resets multistep solvers' history
        noise = noise.to(self.device)
        timesteps = sch.timesteps
        environment = inputs.environment if run.keep_environment else None
        latents = self._keep_environment(sch, noise * sch.init_noise_sigma, environment, noise, timesteps[0])
        for i, t in enumerate(timesteps):
            if known is not None:  # frames from the previous clip, noised to the current step
                k = known.shape[2]
                latents[:, :, :k] = sch.add_noise(known, noise[:, :, :k], t.reshape(1))
            pred = self._predict(run, sch.scale_model_input(latents, t), t, inputs.network)
            latents = sch.step(pred, t, latents, generator=run.generator).prev_sample
            t_next = timesteps[i + 1] if i + 1 < len(timesteps) else None
            latents = self._keep_environment(sch, latents, environment, noise, t_next)
            run.tick(latents)
        if known is not None:
            latents[:, :, : known.shape[2]] = known
        return latents.float()

    # ---- context windows over the whole video at every step ------------------------------------
    def _sample_windows(self, run: _Run, cond: Conditions) -> torch.Tensor:
        st, sch, f = self.settings.stitching, run.scheduler, cond.num_frames
        sch.set_timesteps(self.settings.steps, device=self.device)
        windows = context_windows(f, st.clip_length, st.context_overlap, st.context_schedule)
        weights = fusion_weights(windows, f, st.fusion)
        # per-window model inputs once for the whole run, parked on the storage device between uses
        window_inputs = [self._clip_inputs(cond, w, self.storage, environment=False) for w in windows]
        environment = environment_video(cond, torch.arange(f), self.storage) if run.keep_environment else None
        noise = run.noise.to(self.storage)
        timesteps = sch.timesteps
        latents = self._keep_environment(sch, noise * sch.init_noise_sigma, environment, noise, timesteps[0])
        for i, t in enumerate(timesteps):
            pred = torch.zeros_like(latents)
            for window, weight, inputs in zip(windows, weights, window_inputs):
                x = latents[:, :, window].to(self.device)
                p = self._predict(run, sch.scale_model_input(x, t), t, inputs.to(self.device).network)
                pred.index_add_(2, window, p.to(self.storage) * weight.view(1, 1, -1, 1, 1))
            latents = sch.step(pred.to(self.device), t, latents.to(self.device), generator=run.generator).prev_sample
            t_next = timesteps[i + 1] if i + 1 < len(timesteps) else None
            latents = self._keep_environment(sch, latents.to(self.storage), environment, noise, t_next)
            run.tick(latents)
        return rearrange(latents, "1 c f h w -> f c h w").float()

    # ---- shared pieces ------------------------------------------------------------------------
    def _clip_inputs(self, cond: Conditions, frames: torch.Tensor, device, environment: bool = True) -> _ClipInputs:
        """Per-clip model inputs, computed once per clip (pose features, object features, environment)."""
        network = self.models.clip_inputs(cond, frames, self.device, self.dtype)
        env = environment_video(cond, frames, device) if environment else None
        return _ClipInputs(network, env).to(device)

    def _keep_environment(self, scheduler, latents, environment, noise, t):
        """Outside the formulated mask, put back the environment noised to timestep ``t`` (t=None: clean)."""
        if environment is None:  # no scene given, or environment mode off for this run
            return latents
        env_latents, mask = environment
        target = env_latents if t is None else scheduler.add_noise(env_latents, noise.to(env_latents.device), t.reshape(1))
        return mask * latents + (1 - mask) * target

    def _predict(self, run: _Run, x: torch.Tensor, t, inputs: dict) -> torch.Tensor:
        """The family's prediction, guided: uncond + cfg * (cond - uncond)."""
        s = self.settings
        uncond, cond = self.models.predict(run.state, x.to(self.dtype), t, inputs, guided=s.cfg != 1.0, batched=s.cfg_batch)
        return cond if uncond is None else uncond + s.cfg * (cond - uncond)


def environment_modules_trained(models) -> bool:
    """Whether ``models`` (a family's ``Denoiser``) hold trained AA2 environment modules.

    A family may say so itself with an ``environment_trained()`` method; otherwise the DenoisingNet's environment
    branch of ``conv_in`` (``denoising.env_conv_in``) is read: it starts at zero, where the environment input is an
    exact no-op (``tests/test_noop_invariant.py``), and any non-zero weight means it was trained. A family without
    that branch (the released Animate-X) has no trained environment modules.
    """
    own = getattr(models, "environment_trained", None)
    if callable(own):
        return bool(own())
    conv = getattr(getattr(models, "denoising", None), "env_conv_in", None)
    weight = getattr(conv, "weight", None)
    return isinstance(weight, torch.Tensor) and bool(weight.detach().ne(0).any())


def environment_mode_on(mode, models) -> bool:
    """Environment mode for a run: ``on`` / ``off`` (True / False) as given; ``auto`` on while the environment
    modules are untrained (the public weights keep the scene only this way), off once trained ones are loaded (they
    read the scene through their own input, and pasting it back would fight them)."""
    mode = EnvironmentMode.parse(mode, "environment_mode")
    if mode == EnvironmentMode.AUTO:
        return not environment_modules_trained(models)
    return mode == EnvironmentMode.ON


def environment_video(cond: Conditions, frames: torch.Tensor, device):
    """``(latents (1, c, f, h, w), mask (1, 1, f, h, w))`` of the environment for ``frames``, or None."""
    if cond.environment_latents is None:
        return None
    latents = _video(cond.environment_latents[frames]).to(device, torch.float32)
    mask = cond.environment_mask[frames][None, None].to(device, torch.float32)
    return latents, mask


def _to(value, device):
    """Network inputs (tensors, lists of them, dicts of them) on ``device``."""
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    if isinstance(value, list):
        return [_to(v, device) for v in value]
    return value.to(device)


def _video(frames: torch.Tensor) -> torch.Tensor:
    return rearrange(frames, "f c h w -> 1 c f h w")
