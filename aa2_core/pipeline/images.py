"""Image tensors in and out of the network: checks, resizing, CLIP and VAE helpers.

Images follow ComfyUI: ``[frames, height, width, 3]`` float 0..1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import AA2Error
from .options import ClipPreprocess

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def check_rgb(images: torch.Tensor, what: str) -> torch.Tensor:
    """Refuse what is not an RGB IMAGE batch; an alpha channel is an error, not silently dropped."""
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4:
        raise AA2Error(f"{what} must be an image batch [frames, height, width, 3], got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise AA2Error(f"{what} has 0 frames")
    channels = images.shape[-1]
    if channels == 4:
        raise AA2Error(f"{what} has an alpha channel (4 channels); composite it onto a background first (e.g. a 'Join Image with Alpha' node) so the character's edges are what you expect")
    if channels != 3:
        raise AA2Error(f"{what} must have 3 colour channels, got {channels}")
    return images


def resize(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize an IMAGE batch (bilinear, antialiased when shrinking); a no-op at the same size."""
    if images.shape[1:3] == (height, width):
        return images
    x = images.permute(0, 3, 1, 2)
    x = F.interpolate(x.float(), size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return x.permute(0, 2, 3, 1).clamp(0, 1)


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


@torch.no_grad()
def vae_encode(vae, images: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """diffusers ``AutoencoderKL``: IMAGE batch -> scaled latents ``(frames, 4, h, w)`` (distribution mean)."""
    out = []
    param = next(vae.parameters())
    for i in range(0, images.shape[0], chunk):
        x = images[i : i + chunk].permute(0, 3, 1, 2).to(param.device, param.dtype) * 2 - 1
        out.append(vae.encode(x).latent_dist.mean.float().cpu() * vae.config.scaling_factor)
    return torch.cat(out)


@torch.no_grad()
def vae_decode(vae, latents: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """Scaled latents ``(frames, 4, h, w)`` -> IMAGE batch on the CPU, a chunk at a time (bounded memory)."""
    out = []
    param = next(vae.parameters())
    for i in range(0, latents.shape[0], chunk):
        z = latents[i : i + chunk].to(param.device, param.dtype) / vae.config.scaling_factor
        out.append(((vae.decode(z).sample.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).cpu())
    return torch.cat(out)
