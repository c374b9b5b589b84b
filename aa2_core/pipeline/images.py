"""Image tensors in and out of the network: checks, resizing, CLIP and VAE helpers.

Images follow ComfyUI: ``[frames, height, width, 3]`` float 0..1.
"""

from __future__ import annotations

import logging

import torch

from ..conditions.environment import latent_aligned_size, resize_frames
from ..errors import AA2Error

log = logging.getLogger("aa2_core")

# A reference smaller than this (shorter side) or more elongated than this carries no usable character
MIN_REFERENCE_SIDE = 32
MAX_REFERENCE_ASPECT = 4.0


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


def same_aspect(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Two ``(height, width)`` sizes of one shape: within 1 %, or a pixel of rounding at either size."""
    (h, w), (hh, ww) = a, b
    return abs(h * ww - hh * w) <= max(0.01 * max(h * ww, hh * w), h, w, hh, ww)


def fit_size(have: tuple[int, int], want: tuple[int, int], what: str, of: str) -> bool:
    """Whether an input of size ``have`` must be resized to ``want`` (both ``(height, width)``).

    The same size, or one the size rule rounds to the same multiples of 8, passes quietly; the same aspect
    is resized with a warning naming both sizes; another aspect is an error, never a silent stretch.
    """
    have, want = tuple(int(v) for v in have), tuple(int(v) for v in want)
    if have == want:
        return False
    (h, w), (hh, ww) = have, want
    if not same_aspect(have, want):
        raise AA2Error(f"{what} is {w}x{h}, {of} {ww}x{hh}: another aspect ratio; expected {ww}x{hh} "
                       f"(or the same shape at another size): stretching would distort it")
    if latent_aligned_size(h, w) != latent_aligned_size(hh, ww):  # beyond the size rule's rounding: say so
        log.warning("%s is %dx%d, %s %dx%d: resizing it to %dx%d", what, w, h, of, ww, hh, ww, hh)
    return True


def check_reference(image: torch.Tensor, what: str = "reference image") -> torch.Tensor:
    """An RGB reference big and square enough to hold a character; a thumbnail or a sliver is refused."""
    image = check_rgb(image, what)
    h, w = image.shape[1:3]
    if min(h, w) < MIN_REFERENCE_SIDE:
        raise AA2Error(f"{what} is {w}x{h} pixels; expected at least {MIN_REFERENCE_SIDE} pixels on each side")
    if max(h, w) > MAX_REFERENCE_ASPECT * min(h, w):
        raise AA2Error(f"{what} is {w}x{h} pixels, an aspect ratio of {max(h, w) / min(h, w):.0f}:1; "
                       f"expected at most {MAX_REFERENCE_ASPECT:.0f}:1 (crop it to the character)")
    return image


def resize(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize an IMAGE batch (bilinear, antialiased when shrinking); a no-op at the same size. The one frame
    resize of the pack (``conditions.environment.resize_frames``)."""
    return resize_frames(images, height, width)


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
