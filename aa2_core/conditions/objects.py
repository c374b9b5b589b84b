"""Object sequence (Animate Anyone 2, section 3.3): the interacting objects cut out of the driving frames."""

from __future__ import annotations

import torch

from ..errors import AA2Error

OBJECT_BACKGROUND = 0.5  # 0 in the VAE's [-1, 1] range: "nothing here" for the object guider


def object_sequence(frames: torch.Tensor, object_masks: list[torch.Tensor], background: float = OBJECT_BACKGROUND,
                    threshold: float = 0.5, chunk: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """``[T, H, W, 3]`` frames and one ``[T, H, W]`` mask per object -> (object frames, stacked masks ``[N, T, H, W]``).

    All objects share one image per frame (their union is kept, the rest is ``background``), while each
    object's own mask is returned too. Masks of another size than the frames are resized (nearest).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise AA2Error(f"frames must be [frames, height, width, 3], got shape {tuple(frames.shape)}")
    if not object_masks:
        raise AA2Error("object_sequence needs at least one object mask")
    t, h, w, _ = frames.shape
    stacked = []
    for i, mask in enumerate(object_masks):
        if mask.ndim == 2:
            mask = mask[None].expand(t, -1, -1)
        if mask.ndim != 3 or mask.shape[0] != t:
            raise AA2Error(f"object mask {i} has shape {tuple(mask.shape)}; expected [{t}, height, width] to match the frames")
        if mask.shape[1:] != (h, w):
            mask = torch.nn.functional.interpolate(mask[:, None].float(), size=(h, w), mode="nearest")[:, 0]
        stacked.append((mask >= threshold).float())
    masks = torch.stack(stacked)
    out = torch.empty(frames.shape, dtype=torch.float32)
    for i in range(0, t, chunk):  # chunks keep the working memory flat on long videos
        union = masks[:, i : i + chunk].amax(dim=0)[..., None]
        out[i : i + chunk] = torch.lerp(torch.full_like(union, background), frames[i : i + chunk].float(), union)
    return out, masks
