"""Frames -> network inputs for the video metrics.

Clips: each video is cut into consecutive, non-overlapping 16-frame clips from its first frame; a shorter
tail is dropped (DisCo evaluates 16-frame videos, so each of its videos is one such clip). Resizing follows
DisCo's ``DatasetFVDVideoResize`` (github:Wangt-CN/DisCo ``tool/metrics/utils.py``), which calls its copy of
clean-fid's ``make_resizer("PIL", quantize_after=False, "bicubic", (size, size))``
(``tool/metrics/resize.py``): each channel resized as a float32 ``mode="F"`` PIL image, no 8-bit rounding,
to a square (the aspect ratio is not kept), and **not clipped**: bicubic overshoots at edges (values a
little below 0 or above 255) stay, as they do in DisCo. clean-fid's later resizer clips to 0..255; with
``clip=True`` ``resize_bicubic`` does that instead (on frames with sharp edges about 8 % of the resized
values overshoot, and clipping moves FVD by several percent).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

CLIP_FRAMES = 16


def split(frames: np.ndarray, length: int = CLIP_FRAMES) -> list[np.ndarray]:
    """``[T, H, W, 3]`` -> list of ``[length, H, W, 3]`` clips."""
    return [frames[i:i + length] for i in range(0, len(frames) - length + 1, length)]


def resize_bicubic(frame: np.ndarray, size: int, clip: bool = False) -> np.ndarray:
    """``[H, W, 3]`` uint8 -> ``[size, size, 3]`` float32 (DisCo's PIL resizer: not quantised, not clipped).

    ``clip=True`` clips the result to 0..255 as clean-fid's later resizer does (not what DisCo measured).
    """
    channels = [np.asarray(Image.fromarray(frame[..., c].astype(np.float32), mode="F")
                           .resize((size, size), resample=Image.BICUBIC)) for c in range(3)]
    out = np.stack(channels, axis=-1).astype(np.float32)
    return np.clip(out, 0, 255) if clip else out


def clip_tensor(clip: np.ndarray, size: int, clip_range: bool = False) -> torch.Tensor:
    """``[T, H, W, 3]`` uint8 -> ``[3, T, size, size]`` float32, about 0..255 (``resize_bicubic``)."""
    frames = [resize_bicubic(f, size, clip=clip_range) for f in clip]
    return torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2).contiguous()
