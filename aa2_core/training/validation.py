"""A short validation video rendered with the pack's own sampler, so what is logged is what users get."""

from __future__ import annotations

import os

import torch

from ..pipeline import images
from ..pipeline.options import SamplerSettings, Stitching
from ..families.moore import MooreModels
from ..pipeline.sampler import Sampler
from ..video_io import write_video
from .step import clip_conditions, fill_missing


@torch.no_grad()
def render_validation(models, clip, path: str, steps: int, cfg: float, device, dtype=torch.float32) -> torch.Tensor:
    """Animate ``clip``'s reference along its skeleton inside its environment; writes ``[target | render]``
    frames side by side to ``path`` (mp4) and returns them ``[F, H, 2W, 3]``."""
    clip = fill_missing([clip])[0]
    cond = clip_conditions(models, clip, device)
    frames = cond.num_frames
    settings = SamplerSettings(steps=steps, cfg=cfg, seed=0, stitching=Stitching(clip_length=frames, motion_frames=0))
    latents = Sampler(MooreModels(models.denoising, models.pose), settings, device=device, dtype=dtype).sample(cond)
    render = images.vae_decode(models.vae, latents)
    video = torch.cat([clip.frames.float(), render.float()], dim=2)
    write_video(path, video)
    return video


def validation_path(run_dir: str, step: int) -> str:
    return os.path.join(run_dir, "validation", f"step_{step:07d}.mp4")
