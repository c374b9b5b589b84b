"""Pixel-space composite: the generated character over the driving video's own pixels."""

from __future__ import annotations

import torch

from ..conditions.environment import feathered, resize_frames, resize_mask
from ..errors import AA2Error
from .images import fit_size


def composite_environment(generated: torch.Tensor, environment: torch.Tensor, mask: torch.Tensor, feather: int = 2,
                          chunk: int = 32, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Generated frames inside the (feathered) mask, the original frames outside; ``[T, H, W, 3]`` each.

    ``keep`` (MASK ``[T, H, W]`` or one mask for every frame, e.g. the object guider's object mask): its pixels
    outside ``mask`` are the original frames' exactly, the feathered edge included, so objects next to the
    regenerated region are not blended into it (``regenerated_region`` takes them out of the region).
    """
    if generated.shape[0] != environment.shape[0] or mask.shape[0] != generated.shape[0]:
        raise AA2Error(
            f"composite: generated has {generated.shape[0]} frames, environment {environment.shape[0]}, "
            f"mask {mask.shape[0]}; they must match"
        )
    h, w = generated.shape[1:3]
    # another aspect is an error, another size at the same aspect a logged resize (below)
    fit_size(environment.shape[1:3], (h, w), "environment", "the generated frames")
    fit_size(mask.shape[1:], (h, w), "environment_mask", "the generated frames")
    if keep is not None:
        keep = keep[None] if keep.ndim == 2 else keep
        if keep.ndim != 3 or keep.shape[0] not in (1, generated.shape[0]):
            raise AA2Error(f"composite: keep (object mask) must be a MASK [T, H, W] with {generated.shape[0]} frames "
                           f"or one, got shape {tuple(keep.shape)}")
        fit_size(keep.shape[1:], (h, w), "object mask", "the generated frames")
    out = torch.empty_like(generated)
    for i in range(0, generated.shape[0], chunk):
        env = resize_frames(environment[i : i + chunk].float(), h, w)
        m = mask[i : i + chunk].float()
        if m.shape[1:] != (h, w):
            m = resize_mask(m, h, w).float()
        inside = m
        m = feathered(m, feather)
        if keep is not None:
            k = keep if keep.shape[0] == 1 else keep[i : i + chunk]
            k = resize_mask(k.float(), h, w).expand_as(m)
            m = m * (1 - k * (1 - (inside >= 0.5).float()))  # kept pixels outside the mask: alpha 0
        m = m[..., None]
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
