"""The released entrance's use of the SD2.1 VAE, on a diffusers ``AutoencoderKL`` (``loader.load_animate_x_vae``).

* the reference latent (``latent_random_ref``): pixels in [0, 1] -> ``(x - 0.5) / 0.5`` -> posterior *sample*
  (``mean + std * randn(mean.shape)`` on the CPU generator) x 0.18215. The released YAML does not pass it to the
  network, but the draw happens, which is why ``diffusion.initial_noise`` replays it;
* decoding: latents / 0.18215, frames folded into the batch, ``chunk`` frames at a time (``decoder_bs`` 2),
  -> ``(b, 3, f, H, W)`` in about [-1, 1] (the released video writer maps it with mean = std = 0.5).
"""

from __future__ import annotations

import torch
from einops import rearrange

from .diffusion import SCALE_FACTOR


@torch.no_grad()
def posterior_moments(vae, pixels01: torch.Tensor) -> torch.Tensor:
    """``(b, 3, H, W)`` in [0, 1] -> the encoder's moments ``(b, 2 * 4, h, w)`` (mean, logvar)."""
    return vae.encode(pixels01.sub(0.5).div(0.5)).latent_dist.parameters


@torch.no_grad()
def reference_latent(vae, pixels01: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The entrance's sampled, scaled reference latent ``(b, 4, h, w)``."""
    mean, logvar = torch.chunk(posterior_moments(vae, pixels01), 2, dim=1)
    std = torch.exp(0.5 * torch.clamp(logvar, -30.0, 20.0))
    noise = torch.randn(mean.shape, generator=generator).to(mean)
    return SCALE_FACTOR * (mean + std * noise)


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor, chunk: int = 2) -> torch.Tensor:
    """``(b, 4, f, h, w)`` latents -> ``(b, 3, f, H, W)`` pixels (about [-1, 1])."""
    b = latents.shape[0]
    z = rearrange((1.0 / SCALE_FACTOR) * latents, "b c f h w -> (b f) c h w")
    frames = [vae.decode(part).sample for part in torch.split(z, max(1, chunk), dim=0)]
    return rearrange(torch.cat(frames), "(b f) c h w -> b c f h w", b=b)
