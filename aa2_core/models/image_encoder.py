"""The CLIP image encoder as a plain module (the cross-attention context of both UNets)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..choices import ClipPreprocess

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


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
        param = next(self.parameters())
        pixels = clip_pixels(image, self.image_size, preprocess).to(param.device, param.dtype)
        return self(pixels).float().cpu()


def clip_pixels(image: torch.Tensor, size: int = 224, preprocess: ClipPreprocess = ClipPreprocess.SQUASH) -> torch.Tensor:
    """``[1, H, W, 3]`` -> normalised CLIP input ``(1, 3, size, size)``.

    ``squash``: bicubic to a square on the float tensor. ``moore``: exactly Moore-AnimateAnyone's input,
    the image as 8-bit PIL, resized to a square by PIL, then transformers' ``CLIPImageProcessor``.
    """
    preprocess = ClipPreprocess.parse(preprocess, "clip_preprocess")
    if preprocess == ClipPreprocess.MOORE:
        return _moore_clip_pixels(image, size).to(image.device)
    x = F.interpolate(image.permute(0, 3, 1, 2).float(), size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return (x.clamp(0, 1) - mean) / std


def _moore_clip_pixels(image: torch.Tensor, size: int) -> torch.Tensor:
    from PIL import Image
    from transformers import CLIPImageProcessor

    pixels = (image[0].float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    square = Image.fromarray(pixels).resize((size, size))  # Moore: ref_image.resize((224, 224))
    processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return processor.preprocess(square, return_tensors="pt").pixel_values
