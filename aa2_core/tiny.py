"""Tiny models with the real SD1.5 / AnimateDiff / Moore-AnimateAnyone layouts and small channels.

They are what tests and ``--tiny`` runs use: the files they are saved to have the real key names and
formats, so they go through the same loaders as full-size weights.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from .models import MotionConfig, MotionModuleSet, PoseGuider
from .models.implicit_pose_indicator import IPIConfig
from .models.mamba_temporal import MambaConfig

TINY_UNET_CONFIG = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(32, 64, 64, 64),
    layers_per_block=2,
    cross_attention_dim=32,
    attention_head_dim=8,
    norm_num_groups=32,
)
TINY_MOTION_CONFIG = MotionConfig(block_out_channels=(32, 64, 64, 64))
# Animate-X modules at the tiny width (the CLIP projection = cross-attention width, 32)
TINY_IPI_CONFIG = IPIConfig(feature_dim=32, dim=32, heads=4, layers=2, pose_layers=1)
TINY_MAMBA_CONFIG = MambaConfig(slots=("mid", "up_1_0"), d_state=8)
TINY_CLIP_CONFIG = dict(
    hidden_size=32, intermediate_size=64, projection_dim=TINY_UNET_CONFIG["cross_attention_dim"],
    num_hidden_layers=2, num_attention_heads=1, patch_size=14, image_size=224,
)


def randomize_(module: nn.Module, generator: torch.Generator, std: float = 0.05) -> nn.Module:
    """Overwrite every parameter with noise, zero-initialised layers included, so tests see real signal."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("weight") and p.ndim == 1:  # norm scales stay near 1
                p.copy_(1 + std * torch.randn(p.shape, generator=generator))
            elif p.ndim > 1:  # fan-in scaled, so activations stay O(1) through deep stacks
                p.copy_(torch.randn(p.shape, generator=generator) / p[0].numel() ** 0.5)
            else:
                p.copy_(std * torch.randn(p.shape, generator=generator))
    return module


def tiny_unet(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(**TINY_UNET_CONFIG).eval()


def tiny_motion(seed: int = 1, config: MotionConfig = TINY_MOTION_CONFIG) -> MotionModuleSet:
    g = torch.Generator().manual_seed(seed)
    return randomize_(MotionModuleSet(config), g).eval()


def tiny_pose_guider(seed: int = 2) -> PoseGuider:
    g = torch.Generator().manual_seed(seed)
    return randomize_(PoseGuider(embedding_channels=TINY_UNET_CONFIG["block_out_channels"][0]), g).eval()


def tiny_vae(seed: int = 3):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(32, 32, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
    ).eval()


def tiny_clip_vision(seed: int = 4):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    return CLIPVisionModelWithProjection(CLIPVisionConfig(**TINY_CLIP_CONFIG)).eval()


def save_tiny_clip_vision(path: str, seed: int = 4):
    """The tiny CLIP as a clip_vision file; its head count (not readable off shapes) goes in the metadata."""
    from safetensors.torch import save_file

    clip = tiny_clip_vision(seed)
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, path,
              metadata={"num_attention_heads": str(TINY_CLIP_CONFIG["num_attention_heads"])})
    return clip


def motion_to_original_keys(sd: dict[str, torch.Tensor], max_seq_length: int = 32) -> dict[str, torch.Tensor]:
    """diffusers ``MotionAdapter`` keys -> original AnimateDiff / Moore keys, with the ``pos_encoder.pe`` buffers.

    The inverse of diffusers' ``convert_animatediff_checkpoint_to_diffusers``; used to write test files
    in the layout that AnimateDiff and Moore-AnimateAnyone ship.
    """
    from diffusers.models.embeddings import SinusoidalPositionalEmbedding

    out = {}
    for k, v in sd.items():
        if k.endswith("pos_embed.pe"):
            continue
        head, _, tail = k.partition(".motion_modules.")
        index, _, rest = tail.partition(".")
        rest = (
            rest.replace("norm1", "norms.0").replace("norm2", "norms.1").replace("norm3", "ff_norm")
            .replace("attn1", "attention_blocks.0").replace("attn2", "attention_blocks.1")
        )
        out[f"{head}.motion_modules.{index}.temporal_transformer.{rest}"] = v
        if rest.endswith("attention_blocks.0.to_q.weight"):  # one positional buffer per attention block
            dim = v.shape[0]
            pe = SinusoidalPositionalEmbedding(dim, max_seq_length).pe
            for a in (0, 1):
                out[f"{head}.motion_modules.{index}.temporal_transformer.{rest.rsplit('attention_blocks', 1)[0]}attention_blocks.{a}.pos_encoder.pe"] = pe
    return out


def write_tiny_moore_files(folder: str, seed: int = 0) -> dict[str, str]:
    """The four Moore-AnimateAnyone files, tiny, as ``.pth`` with the released key layout."""
    import os

    os.makedirs(folder, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    denoising = randomize_(tiny_unet(seed), g).state_dict()
    reference = randomize_(tiny_unet(seed + 1), g).state_dict()
    reference = {k: v for k, v in reference.items() if not k.startswith(("conv_norm_out.", "conv_out."))}
    motion = motion_to_original_keys(tiny_motion(seed + 2).state_dict())
    pose = tiny_pose_guider(seed + 3).state_dict()
    paths = {}
    for name, sd in (("denoising_unet", denoising), ("reference_unet", reference), ("motion_module", motion), ("pose_guider", pose)):
        paths[name] = os.path.join(folder, f"{name}.pth")
        torch.save(sd, paths[name])
    return paths
