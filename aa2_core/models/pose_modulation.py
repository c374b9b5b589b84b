"""Pose guider (Animate Anyone) and depth-wise pose modulation (Animate Anyone 2, section 3.4).

``PoseGuider`` keeps Moore-AnimateAnyone's layout and key names (``conv_in``, ``blocks.*``,
``conv_out``), so ``pose_guider.pth`` loads as it is. ``PoseModulation`` wraps it with the two AA2
additions, each starting as an exact no-op:

* a depth branch (same conv stack as the guider) merged into the skeleton features by
  cross-attention, whose output projection starts at zero;
* a Conv3D over time on the merged features, added as a residual whose weights start at zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from einops import rearrange
from torch import nn

MOORE_POSE_CHANNELS = (16, 32, 96, 256)


class PoseTrunk(nn.Module):
    """The guider's conv stack before ``conv_out``: conv_in, then (conv, stride-2 conv) per level, SiLU after each."""

    def __init__(self, in_channels: int, block_out_channels=MOORE_POSE_CHANNELS):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, padding=1)
        self.blocks = nn.ModuleList()
        for c_in, c_out in zip(block_out_channels[:-1], block_out_channels[1:]):
            self.blocks.append(nn.Conv2d(c_in, c_in, kernel_size=3, padding=1))
            self.blocks.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.conv_in(x))
        for block in self.blocks:
            x = F.silu(block(x))
        return x


class PoseGuider(PoseTrunk):
    """Skeleton image (0..1, 3 channels) -> features added to the DenoisingNet after ``conv_in``."""

    def __init__(self, embedding_channels: int = 320, in_channels: int = 3, block_out_channels=MOORE_POSE_CHANNELS):
        super().__init__(in_channels, block_out_channels)
        self.conv_out = nn.Conv2d(block_out_channels[-1], embedding_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(super().forward(x))


class DepthCrossAttention(nn.Module):
    """Skeleton features (queries) attend to structured-depth features (keys/values) within a frame."""

    def __init__(self, channels: int, heads: int = 8):
        super().__init__()
        self.norm_skeleton = nn.GroupNorm(_groups(channels), channels)
        self.norm_depth = nn.GroupNorm(_groups(channels), channels)
        self.attn = Attention(query_dim=channels, cross_attention_dim=channels, heads=heads, dim_head=channels // heads)
        nn.init.zeros_(self.attn.to_out[0].weight)
        nn.init.zeros_(self.attn.to_out[0].bias)

    def forward(self, skeleton: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        h = skeleton.shape[2]
        # contiguous: PyTorch's CPU GroupNorm backward segfaults on a channels-last input that needs no
        # gradient (a frozen guider fed the skeleton as a permuted [F, H, W, 3] view)
        skeleton, depth = skeleton.contiguous(), depth.contiguous()
        q = rearrange(self.norm_skeleton(skeleton), "n c h w -> n (h w) c")
        kv = rearrange(self.norm_depth(depth), "n c h w -> n (h w) c")
        return rearrange(self.attn(q, encoder_hidden_states=kv), "n (h w) c -> n c h w", h=h)


class TemporalConv(nn.Module):
    """Conv3D over (frames, h, w) as a zero-initialised residual: smooths per-frame pose errors."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        video = rearrange(x, "(b f) c h w -> b c f h w", f=num_frames)
        return rearrange(self.conv(video), "b c f h w -> (b f) c h w")


class PoseModulation(nn.Module):
    """Depth-wise pose modulation: skeleton + structured depth -> DenoisingNet pose features.

    ``guider`` is the (Moore-compatible) skeleton pose guider; ``depth_trunk``, ``depth_attention``
    and ``temporal`` are the AA2 modules. With no depth given, or with untrained AA2 modules, the
    output equals ``guider(skeleton)`` exactly.
    """

    def __init__(self, guider: PoseGuider, depth_channels: int = 1, heads: int = 8):
        super().__init__()
        channels = guider.conv_out.in_channels
        trunk_channels = (guider.conv_in.out_channels,) + tuple(b.out_channels for b in guider.blocks[1::2])
        self.guider = guider
        self.depth_trunk = PoseTrunk(depth_channels, trunk_channels)
        self.depth_attention = DepthCrossAttention(channels, heads)
        self.temporal = TemporalConv(channels)

    def forward(self, skeleton: torch.Tensor, depth: torch.Tensor | None, num_frames: int) -> torch.Tensor:
        """``skeleton`` ``(b*f, 3, H, W)`` and ``depth`` ``(b*f, 1, H, W)`` in 0..1; returns ``(b*f, C, H/8, W/8)``."""
        features = PoseTrunk.forward(self.guider, skeleton)
        if depth is not None:
            features = features + self.depth_attention(features, self.depth_trunk(depth))
        features = features + self.temporal(features, num_frames)
        return self.guider.conv_out(features)


def _groups(channels: int) -> int:
    for groups in (32, 16, 8, 4, 2):
        if channels % groups == 0:
            return groups
    return 1
