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

    @torch.no_grad()
    def embed(self, image: torch.Tensor, preprocess="squash") -> torch.Tensor:
        """IMAGE ``[1, H, W, 3]`` 0..1 -> projected embedding ``(1, 1, dim)`` (float32, on the CPU)."""
        from ..pipeline.images import clip_pixels

        param = next(self.parameters())
        pixels = clip_pixels(image, self.image_size, preprocess).to(param.device, param.dtype)
        return self(pixels).float().cpu()
