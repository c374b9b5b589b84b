"""The denoising loop over the DenoisingNet, clip by clip (or window by window) for videos of any length.

Everything here works on latents and embeddings; VAE and CLIP encoding happen outside (ComfyUI's own
VAE/CLIP_VISION in the nodes, diffusers' in the command line). ComfyUI hooks come in as callbacks.
Memory does not grow with the video: full-video tensors stay on the CPU (``storage_device``), each
clip's slice moves to the compute device and back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..errors import AA2Error
from ..models import DenoisingNet, PoseModulation, ReferenceNet
from .schedulers import make_scheduler
from .windows import clip_plan, context_windows, fusion_weights

STITCHINGS = ("motion_frames", "context_windows")


@dataclass
class Conditions:
    """What the driving video and the reference give, for ``F`` frames at latent size ``h x w``.

    Full-video tensors may live on the CPU; only a clip's slice is moved to the device.
    """

    reference_latents: torch.Tensor  # (1, 4, h, w), already scaled by the VAE scaling factor
    image_embeds: torch.Tensor  # (1, tokens, dim) CLIP image embedding (projected)
    skeleton: torch.Tensor  # (F, H, W, 3) 0..1 pose images, H = 8h, W = 8w
    depth: torch.Tensor | None = None  # (F, H, W) 0..1 structured depth
    environment_latents: torch.Tensor | None = None  # (F, 4, h, w) scaled latents of the environment frames
    environment_mask: torch.Tensor | None = None  # (F, h, w) 1 where the character is generated
    object_latents: torch.Tensor | None = None  # (F, 4, h, w) scaled latents of the object frames
    reference_tokens: dict | None = None  # ReferenceNet output, when it already ran (the ReferenceNet node)

    @property
    def num_frames(self) -> int:
        return self.skeleton.shape[0]


@dataclass
class SamplerSettings:
    steps: int = 25
    cfg: float = 3.5
    seed: int = 0
    scheduler: str = "ddim"
    schedule: str = "moore"
    clip_length: int = 24
    stitching: str = "motion_frames"
    motion_frames: int = 4  # known frames carried into each next clip
    context_overlap: int = 4
    fusion: str = "pyramid"
    environment_mode: bool = True  # keep the driving video's scene outside the formulated mask (no AA2 weights needed)
    aa2_environment_input: bool = False  # feed environment latents + mask to the (trained) AA2 conv_in branch
    cfg_batch: bool = True  # run the CFG branches as one batch (faster) or one after the other (less memory)
    # Moore-AnimateAnyone hands the reference tokens to the denoiser in fp16 whatever the compute dtype;
    # rounding them the same way gives the same pictures as its pipeline
    reference_token_dtype: torch.dtype | None = torch.float16
    extra: dict = field(default_factory=dict)


@dataclass
class Models:
    denoising: DenoisingNet
    reference: ReferenceNet | None  # may be None when Conditions carry reference tokens
    pose: PoseModulation


StepCallback = Callable[[int, int, torch.Tensor], None]  # (steps done, total steps, current latents)


def initial_noise(conditions: Conditions, seed: int) -> torch.Tensor:
    """Noise for the whole video, drawn on the CPU so the result does not depend on the GPU.

    Drawn as ``(1, c, F, h, w)`` from ``torch.Generator("cpu").manual_seed(seed)``, as Moore-AnimateAnyone
    does, so the same seed gives the same pictures as its pipeline.
    """
    _, c, h, w = conditions.reference_latents.shape
    g = torch.Generator("cpu").manual_seed(seed)
    return torch.randn((1, c, conditions.num_frames, h, w), generator=g, dtype=torch.float32)


class Sampler:
    def __init__(self, models: Models, settings: SamplerSettings, device=None, dtype=torch.float32,
                 storage_device="cpu", on_step: StepCallback | None = None):
        if settings.stitching not in STITCHINGS:
            raise AA2Error(f"stitching must be one of {STITCHINGS}, got {settings.stitching!r}")
        self.models, self.settings = models, settings
        self.device = torch.device(device or "cpu")
        self.dtype, self.storage = dtype, torch.device(storage_device)
        self.on_step = on_step
        self.scheduler = make_scheduler(settings.scheduler, settings.schedule)

    # ---- public ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, conditions: Conditions, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Returns the final latents ``(F, 4, h, w)`` on the storage device (frames as batch, ComfyUI style).

        ``noise`` ``(1, 4, F, h, w)`` defaults to ``initial_noise(conditions, seed)``.
        """
        validate_conditions(conditions)
        s, f = self.settings, conditions.num_frames
        noise = initial_noise(conditions, s.seed) if noise is None else noise.float().cpu()
        context = conditions.image_embeds.to(self.device, self.dtype)
        tokens = conditions.reference_tokens
        if tokens is None:
            tokens = self.models.reference(conditions.reference_latents.to(self.device, self.dtype), context)
        round_to = s.reference_token_dtype or self.dtype
        tokens = {k: v.to(self.device, round_to).to(self.dtype) for k, v in tokens.items()}
        reference = self.models.denoising.reference_kv(tokens)
        self._state = dict(context=context, reference=reference, noise=noise)
        # schedulers that add noise inside a step (LCM) draw it from here, on the CPU, seeded
        self._step_generator = torch.Generator("cpu").manual_seed(s.seed + 1)
        if s.stitching == "motion_frames":
            plan = clip_plan(f, s.clip_length, s.motion_frames)
            self._total, self._done = len(plan) * s.steps, 0
            out = torch.empty((f, *noise.shape[1:2], *noise.shape[3:]), dtype=torch.float32, device=self.storage)
            for start, end, known in plan:
                known_latents = out[start : start + known] if known else None
                clip = self._sample_clip(conditions, range(start, end), known_latents)
                out[start + known : end] = clip[known:].to(self.storage)
            return out
        return self._sample_windows(conditions)

    # ---- one clip with motion frames -----------------------------------------------------------
    def _sample_clip(self, cond: Conditions, frames: range, known: torch.Tensor | None) -> torch.Tensor:
        s, sch = self.settings, self.scheduler
        sch.set_timesteps(s.steps, device=self.device)
        inputs = self._clip_inputs(cond, frames)
        noise = self._state["noise"][:, :, frames.start : frames.stop].to(self.device)
        latents = noise * sch.init_noise_sigma
        known = None if known is None else _video(known).to(self.device)
        env = inputs.pop("_env_latents"), inputs.pop("_env_mask")
        timesteps = sch.timesteps
        latents = self._keep_environment(latents, env, noise, timesteps[0])
        for i, t in enumerate(timesteps):
            if known is not None:  # frames from the previous clip, noised to the current step
                k = known.shape[2]
                latents[:, :, :k] = sch.add_noise(known, noise[:, :, :k], t.reshape(1))
            pred = self._predict(sch.scale_model_input(latents, t), t, inputs)
            latents = sch.step(pred, t, latents, generator=self._step_generator).prev_sample
            t_next = timesteps[i + 1] if i + 1 < len(timesteps) else None
            latents = self._keep_environment(latents, env, noise, t_next)
            self._tick(latents)
        if known is not None:
            latents[:, :, : known.shape[2]] = known
        return latents[0].transpose(0, 1).float()  # (f, c, h, w)

    # ---- context windows over the whole video at every step ------------------------------------
    def _sample_windows(self, cond: Conditions) -> torch.Tensor:
        s, sch, f = self.settings, self.scheduler, cond.num_frames
        sch.set_timesteps(s.steps, device=self.device)
        windows = context_windows(f, s.clip_length, s.context_overlap)
        weights = fusion_weights(windows, f, s.fusion)
        noise = self._state["noise"].to(self.storage)
        latents = noise * sch.init_noise_sigma
        self._total, self._done = s.steps, 0
        # per-window model inputs once for the whole run, parked on the storage device between uses
        window_inputs = [_moved(self._clip_inputs(cond, w), self.storage) for w in windows]
        for inputs in window_inputs:
            inputs.pop("_env_latents"), inputs.pop("_env_mask")
        env = self._environment(cond, range(0, f), self.storage)
        timesteps = sch.timesteps
        latents = self._keep_environment(latents, env, noise, timesteps[0])
        for i, t in enumerate(timesteps):
            pred = torch.zeros_like(latents)
            for window, weight, inputs in zip(windows, weights, window_inputs):
                x = latents[:, :, window.start : window.stop].to(self.device)
                p = self._predict(sch.scale_model_input(x, t), t, _moved(inputs, self.device))
                pred[:, :, window.start : window.stop] += p.to(self.storage) * weight.view(1, 1, -1, 1, 1)
            latents = sch.step(pred.to(self.device), t, latents.to(self.device), generator=self._step_generator).prev_sample
            latents = latents.to(self.storage)
            t_next = timesteps[i + 1] if i + 1 < len(timesteps) else None
            latents = self._keep_environment(latents, env, noise, t_next)
            self._tick(latents)
        return latents[0].transpose(0, 1).float()

    # ---- shared pieces ------------------------------------------------------------------------
    def _clip_inputs(self, cond: Conditions, frames: range) -> dict:
        """Per-clip model inputs, computed once per clip (pose features, object features, environment)."""
        net, pose, dev, dt = self.models.denoising, self.models.pose, self.device, self.dtype
        n = len(frames)
        skeleton = cond.skeleton[frames.start : frames.stop].to(dev, dt).permute(0, 3, 1, 2)
        depth = None if cond.depth is None else cond.depth[frames.start : frames.stop, None].to(dev, dt)
        inputs = dict(pose_features=pose(skeleton, depth, num_frames=n))
        if cond.object_latents is not None:
            inputs["object_features"] = net.encode_objects(_video(cond.object_latents[frames.start : frames.stop].to(dev, dt)))
        env_latents, env_mask = self._environment(cond, frames, dev)
        if self.settings.aa2_environment_input and env_latents is not None:
            inputs["environment"] = torch.cat([env_latents, env_mask], dim=1).to(dt)
        inputs["_env_latents"], inputs["_env_mask"] = env_latents, env_mask
        return inputs

    def _environment(self, cond: Conditions, frames: range, device):
        if cond.environment_latents is None or cond.environment_mask is None:
            return None, None
        latents = _video(cond.environment_latents[frames.start : frames.stop]).to(device, torch.float32)
        mask = cond.environment_mask[frames.start : frames.stop][None, None].to(device, torch.float32)
        return latents, mask

    def _keep_environment(self, latents, env, noise, t):
        """Outside the formulated mask, put back the environment noised to timestep ``t`` (t=None: clean)."""
        env_latents, mask = env
        if not self.settings.environment_mode or env_latents is None:
            return latents
        target = env_latents if t is None else self.scheduler.add_noise(env_latents, noise.to(env_latents.device), t.reshape(1))
        return mask * latents + (1 - mask) * target

    def _predict(self, x: torch.Tensor, t, inputs: dict) -> torch.Tensor:
        """Model output with classifier-free guidance; the unconditional branch has no reference, zero embedding."""
        net, s = self.models.denoising, self.settings
        context, reference = self._state["context"], self._state["reference"]
        x = x.to(self.dtype)
        if s.cfg == 1.0:
            return net(x, t, context, reference=reference, **inputs).float()
        zero = torch.zeros_like(context)
        if s.cfg_batch:
            batched = {k: _twice(v) for k, v in inputs.items()}
            out = net(torch.cat([x, x]), t, torch.cat([zero, context]), reference=reference,
                      reference_rows=torch.tensor([False, True], device=x.device), **batched).float()
            uncond, cond = out.chunk(2)
        else:
            uncond = net(x, t, zero, **inputs).float()
            cond = net(x, t, context, reference=reference, **inputs).float()
        return uncond + s.cfg * (cond - uncond)

    def _tick(self, latents):
        self._done += 1
        if self.on_step is not None:
            self.on_step(self._done, self._total, latents)


def _video(frames: torch.Tensor) -> torch.Tensor:
    """``(f, c, h, w) -> (1, c, f, h, w)``."""
    return frames.transpose(0, 1)[None]


def _moved(inputs: dict, device) -> dict:
    return {k: (None if v is None else [x.to(device) for x in v] if isinstance(v, list) else v.to(device)) for k, v in inputs.items()}


def _twice(v):
    if isinstance(v, list):
        return [torch.cat([x, x]) for x in v]
    return torch.cat([v, v])


def validate_conditions(cond: Conditions) -> None:
    """Clear errors for inputs that do not fit together, before any model runs."""
    if cond.skeleton.ndim != 4 or cond.skeleton.shape[-1] != 3:
        raise AA2Error(f"pose images must be an IMAGE batch [frames, height, width, 3], got shape {tuple(cond.skeleton.shape)}")
    f, height, width, _ = cond.skeleton.shape
    if f == 0:
        raise AA2Error("the pose sequence has 0 frames; give at least one frame")
    _, c, h, w = cond.reference_latents.shape
    if (height, width) != (8 * h, 8 * w):
        raise AA2Error(
            f"pose images are {width}x{height} but the reference latent is for {8 * w}x{8 * h}; "
            "resize both to the same size (a multiple of 8)"
        )
    per_frame = {
        "depth": (cond.depth, (height, width)),
        "environment_latents": (cond.environment_latents, (c, h, w)),
        "environment_mask": (cond.environment_mask, (h, w)),
        "object_latents": (cond.object_latents, (c, h, w)),
    }
    for name, (tensor, shape) in per_frame.items():
        if tensor is None:
            continue
        if tensor.shape[0] != f:
            raise AA2Error(f"{name} has {tensor.shape[0]} frames but the pose sequence has {f}; they must match")
        if tuple(tensor.shape[1:]) != shape:
            raise AA2Error(f"{name} has per-frame shape {tuple(tensor.shape[1:])}, expected {shape}")
    if (cond.environment_latents is None) != (cond.environment_mask is None):
        raise AA2Error("environment latents and environment mask come together: give both or neither")
