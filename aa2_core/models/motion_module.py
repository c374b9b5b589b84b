"""AnimateDiff temporal layers (v1, v2, v3 and the Moore-AnimateAnyone motion module).

The layers are diffusers' ``AnimateDiffTransformer3D`` (state-dict keys of diffusers' ``MotionAdapter``,
which diffusers converts from the original AnimateDiff files). One deviation from diffusers is
deliberate: the original AnimateDiff code (and Moore-AnimateAnyone) group-normalises each frame on its
own before the temporal attention, while diffusers normalises over all frames together. The weights
were trained with the former, so ``FramewiseTemporalTransformer`` restores it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D
from einops import rearrange
from torch import nn

from ..errors import AA2Error


@dataclass(frozen=True)
class MotionConfig:
    """What a motion-module file holds, as read off its tensor shapes."""

    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2  # motion modules per down block; up blocks have one more
    transformer_layers: int = 1
    mid_block: bool = True
    max_seq_length: int = 32
    num_attention_heads: int = 8
    norm_num_groups: int = 32

    @property
    def version(self) -> str:
        """AnimateDiff generation these shapes match (v1: 24 positions; v2: mid block; v3: neither)."""
        if self.mid_block:
            return "v2"
        return "v1" if self.max_seq_length == 24 else "v3"

    def to_dict(self) -> dict:
        return asdict(self)


class FramewiseTemporalTransformer(AnimateDiffTransformer3D):
    """``AnimateDiffTransformer3D`` with the original per-frame group norm."""

    def forward(self, hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:
        residual = hidden_states
        _, _, height, width = hidden_states.shape
        hidden_states = self.norm(hidden_states)
        # attention runs along the frame axis at each pixel
        hidden_states = rearrange(hidden_states, "(b f) c h w -> (b h w) f c", f=num_frames)
        hidden_states = self.proj_in(hidden_states)
        for block in self.transformer_blocks:
            hidden_states = block(hidden_states)
        hidden_states = self.proj_out(hidden_states)
        return rearrange(hidden_states, "(b h w) f c -> (b f) c h w", h=height, w=width) + residual


class _ModuleList(nn.Module):
    """Holds ``motion_modules`` so that keys read ``<block>.motion_modules.<i>`` as in diffusers."""

    def __init__(self, modules):
        super().__init__()
        self.motion_modules = nn.ModuleList(modules)


class MotionModuleSet(nn.Module):
    """All temporal layers of a 3D UNet, laid out like diffusers' ``MotionAdapter``.

    ``down_blocks[i].motion_modules[j]`` follows the j-th resnet/attention of down block i,
    ``mid_block.motion_modules[0]`` sits between the mid block's attention and its second resnet,
    ``up_blocks[i].motion_modules[j]`` follows the j-th resnet/attention of up block i.
    """

    def __init__(self, config: MotionConfig):
        super().__init__()
        self.config = config

        def make(channels, count):
            return _ModuleList(
                FramewiseTemporalTransformer(
                    num_attention_heads=config.num_attention_heads,
                    attention_head_dim=channels // config.num_attention_heads,
                    in_channels=channels,
                    num_layers=config.transformer_layers,
                    norm_num_groups=config.norm_num_groups,
                    activation_fn="geglu",
                    attention_bias=False,
                    double_self_attention=True,
                    positional_embeddings="sinusoidal",
                    num_positional_embeddings=config.max_seq_length,
                )
                for _ in range(count)
            )

        channels = config.block_out_channels
        self.down_blocks = nn.ModuleList(make(c, config.layers_per_block) for c in channels)
        self.mid_block = make(channels[-1], 1) if config.mid_block else None
        self.up_blocks = nn.ModuleList(make(c, config.layers_per_block + 1) for c in reversed(channels))

    def check_frames(self, num_frames: int) -> None:
        if num_frames > self.config.max_seq_length:
            raise AA2Error(
                f"clip_length {num_frames} is longer than this motion module ({self.config.version}) holds: its "
                f"positional encoding has {self.config.max_seq_length} frames; use clip_length <= {self.config.max_seq_length}"
            )

