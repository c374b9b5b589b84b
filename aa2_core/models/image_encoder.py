"""The CLIP image encoder as a plain module (the cross-attention context of both UNets)."""

from __future__ import annotations

import torch
from torch import nn


class ImageEncoder(nn.Module):
    """Wraps a transformers ``CLIPVisionModelWithProjection``: pixels -> projected embedding ``(b, 1, dim)``.

    A plain ``nn.Module`` around it, so host model managers (ComfyUI's ``ModelPatcher``) can set their
    own attributes on it; transformers models have a read-only ``device``.
    """

    def __init__(self, clip):
        super().__init__()
        self.clip = clip
        self.image_size = clip.config.image_size

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.clip(pixel_values=pixel_values).image_embeds[:, None]
