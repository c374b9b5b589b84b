"""Tiny Animate-X weights in the released layouts, for tests and parity runs.

``tiny_animate_x_state_dict(seed)`` is deterministic: every tensor of ``AnimateXUNet(TINY_CONFIG)`` is drawn in
sorted key order from one seeded generator (zero-initialised layers included, so every path carries signal);
the IPI's sinusoid table stays the sinusoid. ``write_tiny_animate_x_files`` saves it as the released
``animate-x_ckpt.pth`` is saved (a pickle of a flat ``{key: tensor}`` dict), and a tiny SD2.1-style checkpoint
``v2-1_512-ema-pruned.ckpt`` (``{"state_dict": {"first_stage_model.*": ...}}``, the LDM VAE layout the released
``AutoencoderKL.init_from_ckpt`` reads; only the VAE part, no UNet; ``text_tower=True`` adds a tiny OpenCLIP text
tower under ``cond_stage_model.model.*`` as SD2.1's file holds it).

``tiny_open_clip_state_dict`` is a tiny ``open_clip_pytorch_model.bin`` in OpenCLIP's key layout (``visual.*`` ViT
image tower, text tower, ``logit_scale``): every key ``open_clip.CLIP`` has, drawn the same way in sorted key order
(``bench/animate_x_clip_parity.py`` loads it into the real open_clip model with ``strict=True``). The vocabulary is
OpenCLIP's 49408 tokens (the empty prompt reads ids 49406, 49407 and 0) and the context 77.
"""

from __future__ import annotations

import math
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


# the LDM ``ddconfig`` of the tiny VAE (SD2.1: ch 128, ch_mult [1, 2, 4, 4], num_res_blocks 2)
TINY_VAE_DDCONFIG = dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=32,
                         ch_mult=[1, 2, 2, 2], num_res_blocks=1, attn_resolutions=[], dropout=0.0)
VAE_PREFIX = "first_stage_model."


def ldm_vae_shapes(ch: int, ch_mult, num_res_blocks: int, in_channels: int = 3, out_ch: int = 3,
                   z_channels: int = 4, embed_dim: int = 4) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of an LDM ``AutoencoderKL`` (no attention outside the mid blocks, ``double_z``)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name, cout, cin, k=3):
        shapes[name + ".weight"], shapes[name + ".bias"] = (cout, cin, k, k), (cout,)

    def norm(name, c):
        shapes[name + ".weight"], shapes[name + ".bias"] = (c,), (c,)

    def resnet(name, cin, cout):
        norm(name + ".norm1", cin), conv(name + ".conv1", cout, cin)
        norm(name + ".norm2", cout), conv(name + ".conv2", cout, cout)
        if cin != cout:
            conv(name + ".nin_shortcut", cout, cin, 1)

    def mid(name, c):
        resnet(name + ".block_1", c, c)
        norm(name + ".attn_1.norm", c)
        for q in ("q", "k", "v", "proj_out"):
            conv(f"{name}.attn_1.{q}", c, c, 1)
        resnet(name + ".block_2", c, c)

    levels = len(ch_mult)
    conv("encoder.conv_in", ch, in_channels)
    width = ch
    for i, m in enumerate(ch_mult):
        for j in range(num_res_blocks):
            resnet(f"encoder.down.{i}.block.{j}", width, ch * m)
            width = ch * m
        if i != levels - 1:
            conv(f"encoder.down.{i}.downsample.conv", width, width)
    mid("encoder.mid", width)
    norm("encoder.norm_out", width)
    conv("encoder.conv_out", 2 * z_channels, width)
    width = ch * ch_mult[-1]
    conv("decoder.conv_in", width, z_channels)
    mid("decoder.mid", width)
    for i in reversed(range(levels)):
        for j in range(num_res_blocks + 1):
            resnet(f"decoder.up.{i}.block.{j}", width, ch * ch_mult[i])
            width = ch * ch_mult[i]
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", width, width)
    norm("decoder.norm_out", width)
    conv("decoder.conv_out", out_ch, width)
    conv("quant_conv", 2 * embed_dim, 2 * z_channels, 1)
    conv("post_quant_conv", z_channels, embed_dim, 1)
    return shapes


def tiny_sd21_vae_state_dict(seed: int = TINY_SEED + 3, std: float = 0.05) -> dict[str, torch.Tensor]:
    """Random weights with ``first_stage_model.*`` keys (the VAE part of ``v2-1_512-ema-pruned.ckpt``)."""
    d = TINY_VAE_DDCONFIG
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in sorted(ldm_vae_shapes(d["ch"], d["ch_mult"], d["num_res_blocks"], d["in_channels"],
                                            d["out_ch"], d["z_channels"]).items()):
        if len(shape) == 1 and key.endswith("weight") and ("norm" in key):
            value = 1 + std * torch.randn(shape, generator=g)
        elif len(shape) > 1:
            value = torch.randn(shape, generator=g) / (shape[1] * shape[2] * shape[3]) ** 0.5
        else:
            value = std * torch.randn(shape, generator=g)
        out[VAE_PREFIX + key] = value
    return out


def write_tiny_animate_x_files(folder: str, seed: int = TINY_SEED, text_tower: bool = False) -> dict[str, str]:
    """Write ``animate-x_ckpt.pth`` and ``v2-1_512-ema-pruned.ckpt`` (tiny, released layouts) into ``folder``;
    returns ``{role: path}``. ``text_tower``: the ckpt also holds ``tiny_open_clip_state_dict(seed + 5)``'s text
    tower under ``cond_stage_model.model.*`` (as SD2.1's)."""
    os.makedirs(folder, exist_ok=True)
    unet = os.path.join(folder, "animate-x_ckpt.pth")
    torch.save(tiny_animate_x_state_dict(seed), unet)
    vae = os.path.join(folder, "v2-1_512-ema-pruned.ckpt")
    sd = tiny_sd21_vae_state_dict(seed + 3)
    if text_tower:
        sd.update({SD2_TEXT_PREFIX + k: v for k, v in tiny_open_clip_state_dict(seed + 5).items()
                   if not k.startswith("visual.")})
    torch.save({"state_dict": sd}, vae)
    return dict(unet=unet, vae=vae)


# OpenCLIP ViT-H/14 is embed 1024, vision 1280 x 32 (patch 14, 224), text 1024 x 24; the tiny tower reads as the
# tiny UNet does (``TINY_CONFIG.context_dim`` 32 = text width = embedding width)
SD2_TEXT_PREFIX = "cond_stage_model.model."
OPEN_CLIP_VOCAB, OPEN_CLIP_CONTEXT = 49408, 77
TINY_OPEN_CLIP = dict(embed_dim=TINY_CONFIG.context_dim, vision_width=64, vision_layers=2, patch_size=14,
                      image_size=224, text_width=TINY_CONFIG.context_dim, text_layers=2)


def open_clip_shapes(embed_dim: int, vision_width: int, vision_layers: int, patch_size: int, image_size: int,
                     text_width: int, text_layers: int, mlp_ratio: int = 4) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of ``open_clip.CLIP`` (ViT image tower, token pooling, no biases on the projections)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def blocks(prefix: str, width: int, layers: int):
        for i in range(layers):
            b = f"{prefix}transformer.resblocks.{i}."
            for norm in ("ln_1", "ln_2"):
                shapes[b + norm + ".weight"] = shapes[b + norm + ".bias"] = (width,)
            shapes[b + "attn.in_proj_weight"], shapes[b + "attn.in_proj_bias"] = (3 * width, width), (3 * width,)
            shapes[b + "attn.out_proj.weight"], shapes[b + "attn.out_proj.bias"] = (width, width), (width,)
            hidden = mlp_ratio * width
            shapes[b + "mlp.c_fc.weight"], shapes[b + "mlp.c_fc.bias"] = (hidden, width), (hidden,)
            shapes[b + "mlp.c_proj.weight"], shapes[b + "mlp.c_proj.bias"] = (width, hidden), (width,)

    grid = image_size // patch_size
    shapes["visual.class_embedding"] = (vision_width,)
    shapes["visual.positional_embedding"] = (grid * grid + 1, vision_width)
    shapes["visual.proj"] = (vision_width, embed_dim)
    shapes["visual.conv1.weight"] = (vision_width, 3, patch_size, patch_size)
    for norm in ("visual.ln_pre", "visual.ln_post", "ln_final"):
        width = text_width if norm == "ln_final" else vision_width
        shapes[norm + ".weight"] = shapes[norm + ".bias"] = (width,)
    blocks("visual.", vision_width, vision_layers)
    shapes["token_embedding.weight"] = (OPEN_CLIP_VOCAB, text_width)
    shapes["positional_embedding"] = (OPEN_CLIP_CONTEXT, text_width)
    shapes["text_projection"] = (text_width, embed_dim)
    shapes["logit_scale"] = ()
    blocks("", text_width, text_layers)
    return shapes


def tiny_open_clip_state_dict(seed: int = TINY_SEED + 5, std: float = 0.05, **config) -> dict[str, torch.Tensor]:
    """Random weights in ``open_clip_pytorch_model.bin``'s layout (``TINY_OPEN_CLIP`` unless ``config`` says)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in sorted(open_clip_shapes(**{**TINY_OPEN_CLIP, **config}).items()):
        if len(shape) == 1 and key.endswith("weight"):  # norm scales near 1
            out[key] = 1 + std * torch.randn(shape, generator=g)
        elif len(shape) > 1:  # fan-in scaled
            out[key] = torch.randn(shape, generator=g) / math.prod(shape[1:]) ** 0.5
        else:
            out[key] = std * torch.randn(shape, generator=g)
    return out


def write_tiny_open_clip_bin(path: str, seed: int = TINY_SEED + 5, **config) -> str:
    """A tiny ``open_clip_pytorch_model.bin`` (a pickled flat ``{key: tensor}``, as open_clip's own)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save(tiny_open_clip_state_dict(seed, **config), path)
    return path
