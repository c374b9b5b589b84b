"""Object sequence (Animate Anyone 2, section 3.3): the interacting objects cut out of the driving frames.

The object guider reads the VAE latents of an image per frame that shows only the objects the
character touches (masks from SAM2 or any other MASK source). All objects share that one image; their
own masks are returned as well, for nodes that need them one by one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import AA2Error
from .environment import (
    _target_size,
    as_mask_batch,
    check_frames,
    frame_chunks,
    mask_chunk,
    resize_frames,
    resize_mask,
)

OBJECT_BACKGROUND = 0.5  # 0 in the VAE's [-1, 1] range: "nothing here" for the object guider


def _as_mask_list(object_masks) -> list[torch.Tensor]:
    """A list of per-object masks; a ``[N, T, H, W]`` tensor is N objects, a ``[T, H, W]`` tensor one."""
    if isinstance(object_masks, torch.Tensor):
        return list(object_masks) if object_masks.ndim == 4 else [object_masks]
    if not isinstance(object_masks, (list, tuple)):
        raise AA2Error(f"object_masks must be a list of MASK tensors [T, H, W], got {type(object_masks).__name__}")
    return list(object_masks)


def _check_object_mask(mask, index: int, num_frames: int) -> torch.Tensor:
    """One object's masks as ``[T, h, w]`` (a single mask, 2-D or one frame, stands for every frame)."""
    mask = as_mask_batch(mask, f"object mask {index}")
    if mask.shape[0] not in (1, num_frames):
        raise AA2Error(
            f"object mask {index} has shape {tuple(mask.shape)}; expected [{num_frames}, height, width] "
            f"to match the frames (object mask {index} has {mask.shape[0]} frames but frames has {num_frames})"
        )
    return mask


def object_sequence(
    frames: torch.Tensor,
    object_masks: Sequence[torch.Tensor] | torch.Tensor,
    background: float = OBJECT_BACKGROUND,
    threshold: float = 0.5,
    chunk: int = 32,
    size: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The object sequence ``I_o``: object pixels kept, everything else ``background``.

    Args:
        frames: driving video ``[T, H, W, 3]``, 0..1.
        object_masks: one mask sequence ``[T, h, w]`` per object (a list, or a ``[N, T, h, w]``
            tensor); a single mask stands for every frame. Masks of another size than the frames are
            resized to them (bilinear + ``>= threshold``, as in ``environment_sequence``).
        background: value outside the objects; 0.5 is 0 in the VAE's [-1, 1] range.
        chunk: frames processed at once (bounds working memory on long videos).
        size: output ``(height, width)``, multiples of 8; ``None`` keeps the frame size. Give the
            environment sequence's size so both encode to latents of one shape.

    Returns:
        ``(object_frames [T, H', W', 3], masks [N, T, H', W'])``: the frames show the union of the
        objects; ``masks`` keeps each object's own 0/1 mask.
    """
    check_frames(frames)
    masks_in = _as_mask_list(object_masks)
    if not masks_in:
        raise AA2Error("object_sequence needs at least one object mask")
    num_frames, height, width = frames.shape[:3]
    masks_in = [_check_object_mask(m, i, num_frames) for i, m in enumerate(masks_in)]
    out_h, out_w = (height, width) if size is None else _target_size(size, height, width)

    images = torch.empty(num_frames, out_h, out_w, 3, dtype=torch.float32, device=frames.device)
    masks = torch.empty(len(masks_in), num_frames, out_h, out_w, dtype=torch.float32, device=frames.device)
    for start, stop in frame_chunks(num_frames, chunk):
        for i, mask in enumerate(masks_in):
            masks[i, start:stop] = resize_mask(mask_chunk(mask, start, stop, height, width, threshold), out_h, out_w, threshold)
        images[start:stop] = _cut_out_chunk(frames[start:stop], masks[:, start:stop], background, out_h, out_w)
    return images, masks


def _cut_out_chunk(frames: torch.Tensor, masks: torch.Tensor, background: float, height: int, width: int) -> torch.Tensor:
    """Frames resized to ``height x width``, ``background`` outside the union of 0/1 ``masks [N, t, h, w]``."""
    # out of place: at the same size ``resize_frames`` returns the caller's own tensor
    resized = resize_frames(frames.to(torch.float32), height, width)
    return resized.masked_fill(masks.amax(dim=0)[..., None] == 0, float(background))
