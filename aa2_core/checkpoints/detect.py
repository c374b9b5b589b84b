"""Model configs read off tensor shapes, so full-size and tiny checkpoints share one loading path."""

from __future__ import annotations

import math
import re

import torch

from ..errors import CheckpointError, describe_keys
from ..models.motion_module import MotionConfig

LDM_UNET_PREFIX = "model.diffusion_model."
SD15_HEADS = 8  # SD1.5 spatial attention heads; head count is not visible in weight shapes
MOTION_HEADS = 8  # AnimateDiff temporal attention heads, likewise


def kind_of(sd: dict[str, torch.Tensor]) -> str:
    """Name the layout of a state dict; used to route files and to explain mismatches."""
    keys = sd.keys()
    if any(k.startswith(LDM_UNET_PREFIX) for k in keys):
        return "sd15_single_file"
    if any("motion_modules." in k for k in keys) and not any(".resnets." in k for k in keys):
        return "motion_module"
    if "conv_in.weight" in sd and any(k.startswith("down_blocks.") and ".resnets." in k for k in keys):
        return "unet_diffusers"
    if any(k.startswith(("up_blocks.", "mid_block.")) and ".attentions." in k for k in keys) and "conv_in.weight" not in sd:
        return "unet_diffusers"  # a ReferenceNet cut short is still a UNet
    if "conv_in.weight" in sd and any(k.startswith("blocks.") for k in keys) and len(sd) < 40:
        return "pose_guider"
    if "encoder.conv_in.weight" in sd and "decoder.conv_in.weight" in sd:
        return "vae_ldm" if any(k.startswith("encoder.down.") for k in keys) else "vae_diffusers"
    if any(k.startswith(("first_stage_model.", "vae.")) for k in keys):
        return "vae_ldm"
    if any(k.startswith("vision_model.") for k in keys):
        return "clip_vision"
    return "unknown"


def require(sd: dict[str, torch.Tensor], key: str, source: str, expected: str) -> torch.Tensor:
    """``sd[key]``, or an error naming the file, the key and what it should have been part of."""
    if key not in sd:
        raise CheckpointError(f"{source}: missing {key} (expected {expected}; file looks like: {kind_of(sd)})")
    return sd[key]


def first_ending(sd: dict[str, torch.Tensor], prefix: str, suffix: str, source: str, expected: str) -> torch.Tensor:
    """The first tensor under ``prefix`` whose key ends with ``suffix``, or an error saying which key was looked for."""
    found = next((v for k, v in sd.items() if k.startswith(prefix) and k.endswith(suffix)), None)
    if found is None:
        raise CheckpointError(f"{source}: no {prefix}*{suffix} key (expected {expected}; file looks like: {kind_of(sd)})")
    return found


def norm_groups(channels) -> int:
    """GroupNorm groups of a model with these widths: files do not store it, and SD's 32 fails on narrow models.

    The true count divides every width, so it divides their gcd; the largest such count <= 32 is SD's 32
    for SD widths and the tiny models' choice otherwise.
    """
    width = math.gcd(*channels)
    return max(g for g in range(1, 33) if width % g == 0)


def _indices(sd, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd for m in [rx.match(k)] if m})


def unet_config(sd: dict[str, torch.Tensor], source: str = "UNet") -> dict:
    """diffusers ``UNet2DConditionModel`` config of an SD1.5-style UNet state dict (diffusers keys)."""
    blocks = _indices(sd, r"down_blocks\.(\d+)\.")
    if not blocks or "conv_in.weight" not in sd:
        raise CheckpointError(
            f"{source}: does not look like a diffusers SD1.5 UNet (kind: {kind_of(sd)}; keys: {describe_keys(sd)})"
        )
    resnet = "a ResNet at the start of each down block"
    block_out = [require(sd, f"down_blocks.{i}.resnets.0.conv1.weight", source, resnet).shape[0] for i in blocks]
    layers = len(_indices(sd, r"down_blocks\.0\.resnets\.(\d+)\."))
    up_blocks = _indices(sd, r"up_blocks\.(\d+)\.")

    def has_attn(prefix):
        return any(k.startswith(prefix + ".attentions.") for k in sd)

    attn2 = next((v for k, v in sd.items() if k.endswith("attn2.to_k.weight")), None)
    proj_in = next((v for k, v in sd.items() if k.endswith("attentions.0.proj_in.weight")), None)
    depth = len(_indices(sd, r"(?:down|mid|up)_blocks?\.(?:\d+\.)?attentions\.0\.transformer_blocks\.(\d+)\."))
    return dict(
        sample_size=64,
        in_channels=sd["conv_in.weight"].shape[1],
        out_channels=sd["conv_out.weight"].shape[0] if "conv_out.weight" in sd else 4,
        down_block_types=tuple("CrossAttnDownBlock2D" if has_attn(f"down_blocks.{i}") else "DownBlock2D" for i in blocks),
        up_block_types=tuple("CrossAttnUpBlock2D" if has_attn(f"up_blocks.{i}") else "UpBlock2D" for i in up_blocks),
        block_out_channels=tuple(block_out),
        layers_per_block=layers,
        cross_attention_dim=attn2.shape[1] if attn2 is not None else 768,
        attention_head_dim=SD15_HEADS,
        use_linear_projection=proj_in is not None and proj_in.ndim == 2,
        transformer_layers_per_block=max(depth, 1),
    )


def ldm_original_config(sd: dict[str, torch.Tensor], source: str = "SD1.5 single file") -> dict:
    """The ``v1-inference.yaml``-shaped config diffusers' LDM converters expect, read off an SD1.5 file."""
    p, expected = LDM_UNET_PREFIX, "an SD1.5 UNet in the single-file (LDM) layout"
    conv_in = require(sd, p + "input_blocks.0.0.weight", source, expected)
    model_channels = conv_in.shape[0]
    level, channel_mult, attention_res, res_blocks = 0, [], [], {}
    for i in _indices(sd, re.escape(p) + r"input_blocks\.(\d+)\.")[1:]:
        if p + f"input_blocks.{i}.0.op.weight" in sd:  # downsampler: next level
            level += 1
            continue
        res_blocks[level] = res_blocks.get(level, 0) + 1
        out = require(sd, p + f"input_blocks.{i}.0.out_layers.3.weight", source, expected).shape[0]
        if len(channel_mult) == level:
            channel_mult.append(out // model_channels)
        if p + f"input_blocks.{i}.1.proj_in.weight" in sd and 2**level not in attention_res:
            attention_res.append(2**level)
    if 0 not in res_blocks:
        raise CheckpointError(f"{source}: no ResBlock in {p}input_blocks.1 (expected {expected})")
    attention = "the cross-attention layers of " + expected
    context = first_ending(sd, p, "attn2.to_k.weight", source, attention).shape[1]
    proj_in = first_ending(sd, p, ".proj_in.weight", source, attention)
    depth = len(_indices(sd, re.escape(p) + r"input_blocks\.1\.1\.transformer_blocks\.(\d+)\."))
    unet = dict(
        in_channels=conv_in.shape[1],
        out_channels=require(sd, p + "out.2.weight", source, expected).shape[0],
        model_channels=model_channels,
        channel_mult=channel_mult,
        attention_resolutions=attention_res,
        num_res_blocks=res_blocks[0],
        num_heads=SD15_HEADS,
        transformer_depth=max(depth, 1),
        context_dim=context,
        use_linear_in_transformer=proj_in.ndim == 2,
    )
    vae = vae_ldm_params(sd)
    return {"model": {"params": {"unet_config": {"params": unet}, "first_stage_config": {"params": {"ddconfig": vae}}}}}


def vae_ldm_params(sd: dict[str, torch.Tensor]) -> dict:
    prefix = next((p for p in ("first_stage_model.", "vae.") if p + "encoder.conv_in.weight" in sd), "")
    ch = sd[prefix + "encoder.conv_in.weight"].shape[0] if prefix + "encoder.conv_in.weight" in sd else 128
    levels = _indices(sd, re.escape(prefix) + r"encoder\.down\.(\d+)\.") or [0, 1, 2, 3]
    ch_mult = [
        sd[prefix + f"encoder.down.{i}.block.0.conv2.weight"].shape[0] // ch
        if prefix + f"encoder.down.{i}.block.0.conv2.weight" in sd
        else 1
        for i in levels
    ]
    res = len(_indices(sd, re.escape(prefix) + r"encoder\.down\.0\.block\.(\d+)\.")) or 2
    return dict(
        ch=ch,
        ch_mult=ch_mult,
        num_res_blocks=res,
        in_channels=sd.get(prefix + "encoder.conv_in.weight", torch.empty(0, 3)).shape[1],
        out_ch=sd.get(prefix + "decoder.conv_out.weight", torch.empty(3)).shape[0],
        z_channels=sd.get(prefix + "decoder.conv_in.weight", torch.empty(0, 4)).shape[1],
    )


def motion_config(sd: dict[str, torch.Tensor], source: str = "motion module") -> MotionConfig:
    """Config of a motion-module state dict in diffusers ``MotionAdapter`` key layout."""
    blocks = _indices(sd, r"down_blocks\.(\d+)\.motion_modules\.")
    if not blocks:
        raise CheckpointError(f"{source}: no AnimateDiff motion-module keys found (keys: {describe_keys(sd)})")
    first = "the first motion module of each down block"
    channels = tuple(require(sd, f"down_blocks.{i}.motion_modules.0.proj_in.weight", source, first).shape[1] for i in blocks)
    pe = next((v for k, v in sd.items() if k.endswith("pos_embed.pe")), None)
    mid = any(k.startswith("mid_block.motion_modules.") for k in sd)
    # without the (fixed) positional buffers, v2/v3 files have 32 positions and only v1 has no mid block and 24
    default_len = 32
    return MotionConfig(
        block_out_channels=channels,
        layers_per_block=len(_indices(sd, r"down_blocks\.0\.motion_modules\.(\d+)\.")),
        transformer_layers=len(_indices(sd, r"down_blocks\.0\.motion_modules\.0\.transformer_blocks\.(\d+)\.")),
        mid_block=mid,
        max_seq_length=pe.shape[1] if pe is not None else default_len,
        num_attention_heads=MOTION_HEADS,
        norm_num_groups=32 if min(channels) % 32 == 0 else 1,
    )


def original_motion_pe_length(sd: dict[str, torch.Tensor]) -> int | None:
    """Positions of the original-format ``pos_encoder.pe`` buffers, if the file kept them."""
    pe = next((v for k, v in sd.items() if k.endswith("pos_encoder.pe")), None)
    return None if pe is None else pe.shape[1]


def pose_guider_config(sd: dict[str, torch.Tensor], source: str = "pose guider") -> dict:
    """Channels of a Moore-layout pose guider (conv_in, blocks.0..2n-1, conv_out)."""
    need = ("conv_in.weight", "conv_out.weight", "blocks.0.weight")
    missing = [k for k in need if k not in sd]
    if missing:
        raise CheckpointError(
            f"{source}: not a Moore-AnimateAnyone pose guider (missing {', '.join(missing)}; kind: {kind_of(sd)})"
        )
    blocks = _indices(sd, r"blocks\.(\d+)\.weight")
    return dict(
        in_channels=sd["conv_in.weight"].shape[1],
        block_out_channels=(sd["conv_in.weight"].shape[0],) + tuple(sd[f"blocks.{i}.weight"].shape[0] for i in blocks[1::2]),
        embedding_channels=sd["conv_out.weight"].shape[0],
    )
