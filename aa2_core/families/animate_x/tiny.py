"""Tiny Animate-X weights in the released layouts, for tests and parity runs.

``tiny_animate_x_state_dict(seed)`` is deterministic: every tensor of ``AnimateXUNet(TINY_CONFIG)`` is drawn in
sorted key order from one seeded generator (zero-initialised layers included, so every path carries signal);
the IPI's sinusoid table stays the sinusoid. ``write_tiny_animate_x_files`` saves it as the released
``animate-x_ckpt.pth`` is saved (a pickle of a flat ``{key: tensor}`` dict).
"""

from __future__ import annotations

import os

import torch

from .config import TINY_CONFIG, AnimateXConfig
from .unet import AnimateXUNet

POSITIONS_SUFFIX = "pos_embed.pos_table"
TINY_SEED = 0


def tiny_animate_x_state_dict(seed: int = TINY_SEED, config: AnimateXConfig = TINY_CONFIG,
                              std: float = 0.05) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)  # construction draws; every value is overwritten below
    model = AnimateXUNet(config)
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in sorted(model.state_dict().items()):
        if key.endswith(POSITIONS_SUFFIX):
            out[key] = value.clone()
        elif value.ndim == 1 and key.endswith("weight"):  # norm scales near 1
            out[key] = 1 + std * torch.randn(value.shape, generator=g)
        elif value.ndim > 1:  # fan-in scaled
            out[key] = torch.randn(value.shape, generator=g) / value[0].numel() ** 0.5
        else:
            out[key] = std * torch.randn(value.shape, generator=g)
    return out


def write_tiny_animate_x_files(folder: str, seed: int = TINY_SEED) -> dict[str, str]:
    """Write ``animate-x_ckpt.pth`` (tiny, released layout) into ``folder``; returns ``{role: path}``."""
    os.makedirs(folder, exist_ok=True)
    unet = os.path.join(folder, "animate-x_ckpt.pth")
    torch.save(tiny_animate_x_state_dict(seed), unet)
    return dict(unet=unet)
