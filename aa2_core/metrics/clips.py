"""Frames -> network inputs for the video metrics.

Clips: each video is cut into consecutive, non-overlapping 16-frame clips from its first frame; a shorter
tail is dropped (DisCo evaluates 16-frame videos, so each of its videos is one such clip). Resizing follows
DisCo's ``DatasetFVDVideoResize``: clean-fid's "PIL bicubic" resizer, each channel resized as a float32
image (no 8-bit rounding) and clipped to 0..255, to a square (the aspect ratio is not kept).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

CLIP_FRAMES = 16


def split(frames: np.ndarray, length: int = CLIP_FRAMES) -> list[np.ndarray]:
    """``[T, H, W, 3]`` -> list of ``[length, H, W, 3]`` clips."""
    return [frames[i:i + length] for i in range(0, len(frames) - length + 1, length)]


def resize_bicubic(frame: np.ndarray, size: int) -> np.ndarray:
    """``[H, W, 3]`` uint8 -> ``[size, size, 3]`` float32 in 0..255 (clean-fid's PIL resizer, not quantised)."""
    channels = [np.asarray(Image.fromarray(frame[..., c].astype(np.float32), mode="F")
                           .resize((size, size), resample=Image.BICUBIC)) for c in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0, 255)


def clip_tensor(clip: np.ndarray, size: int) -> torch.Tensor:
    """``[T, H, W, 3]`` uint8 -> ``[3, T, size, size]`` float32 in 0..255."""
    return torch.from_numpy(np.stack([resize_bicubic(f, size) for f in clip])).permute(3, 0, 1, 2).contiguous()
