"""One training step's forward: a batch of clips -> the denoising loss (paper eq. 1, v-prediction here).

Each clip goes through the one ``prepare`` path on its own (reference encoding, condition latents, pose
features), exactly as the sampler sees it; the per-clip network inputs are then stacked into one batch
for the DenoisingNet. ``TrainStep`` is a single ``nn.Module`` so that accelerate wraps it once (DDP,
FSDP, DeepSpeed) and its forward is the wrapped forward. The frozen VAE and image encoder are held
outside the module tree so no engine ever shards, casts or all-reduces them.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..conditions.objects import OBJECT_BACKGROUND
from ..conditions.registry import CONDITION_KINDS
from ..pipeline import images
from ..errors import AA2Error
from ..pipeline.prepare import driving_clip_features, encode_reference, prepare_conditions
from ..families.moore import MooreModels, network_inputs, uncond_inputs


def clip_conditions(models, clip, device, dtype=None):
    """A training clip -> the same ``Conditions`` the sampler gets, through the one ``prepare`` path.
    ``dtype``: the ReferenceNet's input dtype (default: its weights', which are half when it is frozen on a GPU).

    With an Implicit Pose Indicator in the DenoisingNet, the driving video is the clip itself: its keypoints
    and its target frames' CLIP features (the frozen image encoder's ``embed``, as ``driving_clip_features``
    at inference) turn the IPI on. A clip without keypoints (``keypoints=None``) leaves it off."""
    def encode(x):
        return images.vae_encode(models.vae, x)

    size = tuple(clip.frames.shape[1:3])
    reference_dtype = dtype or next(models.reference.parameters()).dtype
    reference = encode_reference(clip.reference, size, encode, models.image_encoder.embed, models.reference, device, reference_dtype)
    keypoints = driving = None
    if uses_ipi(models, clip):
        keypoints = clip.keypoints
        with torch.no_grad():
            driving = driving_clip_features(clip.frames, models.image_encoder.embed)
    inputs = {key: value for kind in CONDITION_KINDS.values() for key, value in kind.clip_inputs(clip).items()}
    return prepare_conditions(reference, clip.skeleton, encode, **inputs, keypoints=keypoints, driving_features=driving)


def uses_ipi(models, clip) -> bool:
    """The IPI is built into the net and the clip carries its keypoints."""
    return getattr(models.denoising, "ipi", None) is not None and getattr(clip, "keypoints", None) is not None


def fill_missing(clips: list) -> list:
    """A batch mixing clips with and without objects or depth: the others get the empty version
    (object frames of background only, all-zero structured depth) so every clip has the same inputs."""
    if any(c.objects is not None for c in clips):
        clips = [c if c.objects is not None else replace(c, objects=torch.full_like(c.frames, OBJECT_BACKGROUND)) for c in clips]
    if any(c.depth is not None for c in clips):
        clips = [c if c.depth is not None else replace(c, depth=torch.zeros(c.frames.shape[:3])) for c in clips]
    return clips


class _Frozen:
    """Plain holder: attributes here are not submodules (see the module doc)."""

    def __init__(self, vae, image_encoder):
        self.vae, self.image_encoder = vae, image_encoder


class TrainStep(nn.Module):
    def __init__(self, models, scheduler, uncond_prob: float):
        super().__init__()
        self.denoising, self.reference, self.pose = models.denoising, models.reference, models.pose
        self.frozen = _Frozen(models.vae, models.image_encoder)
        self.scheduler = scheduler
        self.uncond_prob = float(uncond_prob)

    @property
    def vae(self):
        return self.frozen.vae

    @property
    def image_encoder(self):
        return self.frozen.image_encoder

    def forward(self, clips: list, generators: list[torch.Generator]) -> torch.Tensor:
        """``clips``: TrainingClips of one frame count and size; ``generators``: one per clip, which draws its
        noise, timestep and condition dropout (in that order), so a sample's loss term does not depend on
        the batch it is in."""
        device = self.denoising.env_conv_in.weight.device
        clips = fill_missing(clips)
        if getattr(self.denoising, "ipi", None) is not None and any(getattr(c, "keypoints", None) is None for c in clips):
            raise AA2Error("the Implicit Pose Indicator is built, but a training clip has no keypoints (TrainingClip.keypoints); "
                           "it would see no driving video")
        reference_trains = any(p.requires_grad for p in self.reference.parameters())
        conds, inputs, videos = [], [], []
        for clip in clips:
            with torch.set_grad_enabled(reference_trains and torch.is_grad_enabled()):
                cond = clip_conditions(self, clip, device)
            conds.append(cond)
            frames = torch.arange(cond.num_frames)
            inputs.append(network_inputs(MooreModels(self.denoising, self.pose), cond, frames, device, torch.float32))
            with torch.no_grad():
                videos.append(rearrange(images.vae_encode(self.vae, clip.frames), "f c h w -> c f h w"))
        video = torch.stack(videos).to(device)

        sch = self.scheduler
        noise = torch.stack([torch.randn(video.shape[1:], generator=g) for g in generators]).to(device)
        t = torch.stack([torch.randint(0, sch.config.num_train_timesteps, (), generator=g) for g in generators]).to(device)
        # the reference and its embedding dropped together, as the sampler's unconditional branch sees them
        drop = torch.tensor([float(torch.rand((), generator=g)) < self.uncond_prob for g in generators])
        noisy = sch.add_noise(video, noise, t)
        target = sch.get_velocity(video, noise, t) if sch.config.prediction_type == "v_prediction" else noise

        embeds = torch.cat([c.reference.image_embeds for c in conds]).to(device)
        embeds = torch.where(drop.to(device)[:, None, None], torch.zeros_like(embeds), embeds)
        # a dropped clip also takes the unconditional branch's other inputs (the IPI's zero-pose tokens)
        inputs = [uncond_inputs(x)[1 if drop[i] else 0] for i, x in enumerate(inputs)]
        keep = [i for i in range(len(clips)) if not drop[i]]
        reference = None
        if keep:
            tokens = {name: torch.cat([conds[i].reference.tokens[name] for i in keep]) for name in conds[0].reference.tokens}
            reference = self.denoising.reference_kv(tokens)
        pred = self.denoising(noisy, t, embeds, reference=reference, reference_rows=None if len(keep) == len(clips) else ~drop.to(device),
                              **stack_inputs(inputs))
        return F.mse_loss(pred.float(), target.float())


def stack_inputs(inputs: list[dict]) -> dict:
    """Per-clip network inputs (frames folded into the batch, clip by clip) -> one batch: concatenated on dim 0."""
    out = {}
    for key in inputs[0]:
        values = [x[key] for x in inputs]
        out[key] = [torch.cat(level) for level in zip(*values)] if isinstance(values[0], list) else torch.cat(values)
    return out
