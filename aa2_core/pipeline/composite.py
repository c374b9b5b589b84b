"""Pixel-space composite: the generated character over the driving video's own pixels."""

from __future__ import annotations

import torch

from ..conditions.environment import feathered, resize_frames, resize_mask
from ..errors import AA2Error
from .images import fit_size


def composite_environment(generated: torch.Tensor, environment: torch.Tensor, mask: torch.Tensor, feather: int = 2,
                          chunk: int = 32) -> torch.Tensor:
    """Generated frames inside the (feathered) mask, the original frames outside; ``[T, H, W, 3]`` each."""
    if generated.shape[0] != environment.shape[0] or mask.shape[0] != generated.shape[0]:
        raise AA2Error(
            f"composite: generated has {generated.shape[0]} frames, environment {environment.shape[0]}, "
            f"mask {mask.shape[0]}; they must match"
        )
    h, w = generated.shape[1:3]
    # another aspect is an error, another size at the same aspect a logged resize (below)
    fit_size(environment.shape[1:3], (h, w), "environment", "the generated frames")
    fit_size(mask.shape[1:], (h, w), "environment_mask", "the generated frames")
    out = torch.empty_like(generated)
    for i in range(0, generated.shape[0], chunk):
        env = resize_frames(environment[i : i + chunk].float(), h, w)
        m = mask[i : i + chunk].float()
        if m.shape[1:] != (h, w):
            m = resize_mask(m, h, w).float()
        m = feathered(m, feather)[..., None]
        out[i : i + chunk] = m * generated[i : i + chunk] + (1 - m) * env
    return out


def match_clip_colors(frames: torch.Tensor, plan: list[tuple[int, int, int]], strength: float = 1.0) -> torch.Tensor:
    """Colour drift between clips, removed: each clip's new frames get the per-channel mean and spread
    of the frames it continues from (the previous clip's last frames), blended by ``strength``.

    ``plan`` is ``windows.clip_plan(...)``; frames ``[T, H, W, 3]`` 0..1.
    """
    out = frames.clone()
    for start, end, known in plan[1:]:
        anchor = out[max(0, start + known - max(known, 1)) : start + known].float()
        new = out[start + known : end].float()
        mean_a, std_a = anchor.mean(dim=(0, 1, 2)), anchor.std(dim=(0, 1, 2)) + 1e-6
        mean_n, std_n = new.mean(dim=(0, 1, 2)), new.std(dim=(0, 1, 2)) + 1e-6
        matched = (new - mean_n) / std_n * std_a + mean_a
        out[start + known : end] = (strength * matched + (1 - strength) * new).clamp(0, 1).to(out.dtype)
    return out
