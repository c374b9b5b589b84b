"""Load the released ``animate-x_ckpt.pth`` (or its safetensors conversion) into ``AnimateXUNet``.

The file is read by ``aa2_core.checkpoints.io.read_state_dict`` (safetensors, or a pickle through
``weights_only=True``; ``state_dict`` / ``module.`` wrappers unwrapped), the config comes off the tensor shapes,
the network is built with its parameters on the meta device, keys and shapes are checked (an error names the
file and what it looks like), then the tensors are assigned.
"""

from __future__ import annotations

import os

import torch

from ...checkpoints.io import read_state_dict, write_safetensors
from ...checkpoints.loaders import build_loaded
from .config import AnimateXConfig
from .unet import AnimateXUNet

WHAT = "Animate-X UNet"
POSITIONS_KEY = "pose_embedding_before.pos_embed.pos_table"


def animate_x_config(sd: dict[str, torch.Tensor], source: str = WHAT, head_dim: int | None = None,
                     pool_size: tuple[int, int] | None = None) -> AnimateXConfig:
    return AnimateXConfig.from_state_dict(sd, source, head_dim=head_dim, pool_size=pool_size)


def unet_from_state_dict(sd: dict[str, torch.Tensor], source: str = WHAT, head_dim: int | None = None,
                         pool_size: tuple[int, int] | None = None, dtype: torch.dtype | None = None) -> AnimateXUNet:
    """Build ``AnimateXUNet`` for a released-layout state dict and assign its tensors (strict: every key)."""
    config = animate_x_config(sd, source, head_dim, pool_size)
    sd = dict(sd)
    if POSITIONS_KEY not in sd:  # the released entrance drops it when its length disagrees; it is a fixed sinusoid
        from .ipi import sinusoid_table

        sd[POSITIONS_KEY] = sinusoid_table(config.pose_positions, config.pose_width)
    if dtype is not None:
        sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
    return build_loaded(lambda: AnimateXUNet(config), sd, source)


def load_animate_x_unet(path: str, head_dim: int | None = None, pool_size: tuple[int, int] | None = None,
                        dtype: torch.dtype | None = None) -> AnimateXUNet:
    """``animate-x_ckpt.pth`` as released, or its ``.safetensors`` conversion -> ``AnimateXUNet`` (eval)."""
    path = os.fspath(path)
    source = f"{WHAT} ({path})"
    return unet_from_state_dict(read_state_dict(path, WHAT), source, head_dim, pool_size, dtype)


def load_animate_x_vae(path: str):
    """The SD2.1 VAE the released code uses: ``v2-1_512-ema-pruned.ckpt`` (its ``first_stage_model.*`` keys), a
    VAE-only LDM file or a diffusers/ComfyUI SD2.x VAE file -> diffusers ``AutoencoderKL`` (the pack's VAE loader).
    Latents are scaled by ``SCALE_FACTOR`` (0.18215) as in SD1.5."""
    from ...checkpoints.loaders import load_vae

    return load_vae(os.fspath(path))


def convert_to_safetensors(path: str, out: str) -> str:
    """The released pickle -> safetensors (same keys), checked to load first."""
    sd = read_state_dict(path, WHAT)
    animate_x_config(sd, f"{WHAT} ({path})")
    write_safetensors(sd, out, metadata={"format": "pt", "aa2_family": "animate_x"})
    return out
