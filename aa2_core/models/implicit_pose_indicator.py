"""Animate-X's Implicit Pose Indicator (IPI, section 3.2 and Fig. 2b) and its motion attention.

* ``PoseIndicator``: keypoints ``(b*f, 18, 3)`` -> a transformer over frames -> ``num_tokens`` query tokens
  per frame (``q_p``), plus learnable queries ``q_l`` (``q_m = q_p + q_l``); N layers of cross-attention
  (keys/values: the CLIP features of the driving frame and the queries, as the authors' Perceiver layers)
  and FFN -> the motion tokens ``f_i`` ``(b*f, num_tokens, dim)``.
* ``MotionAttention``: after each spatial attention of the UNet, ``x = x + alpha * CA(x, f_i)`` per frame.
  Its ``proj_out`` starts at zero, so an untrained IPI is an exact no-op.

The authors' ``SpatialTransformer_pose`` is a whole transformer block (self-attention too); we keep what
the paper writes, cross-attention and a feed-forward, which halves the cost at full resolution.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import get_1d_sincos_pos_embed_from_grid
from einops import rearrange
from torch import nn

KEYPOINT_FEATURES = 3  # x / width, y / height, confidence (0 for a missing joint)


@dataclass(frozen=True)
class IPIConfig:
    feature_dim: int = 768  # the CLIP projected image embedding (the UNet's cross-attention width)
    keypoints: int = 18  # OpenPose-18 body joints, as the authors' no-hand setting
    dim: int = 768  # width of the queries and of the motion tokens
    num_tokens: int = 4  # motion tokens per frame
    pose_layers: int = 3  # transformer layers over frames in the keypoint encoder
    layers: int = 4  # N: stacked cross-attention + FFN layers (the authors use 8 at width 1024)
    heads: int = 8
    alpha: float = 1.0  # weight of the motion attention (the paper's ablation picks 1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "IPIConfig":
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


def sinusoidal_positions(frames: int, dim: int, device=None) -> torch.Tensor:
    """``(frames, dim)`` fixed positions, so any clip length works."""
    table = get_1d_sincos_pos_embed_from_grid(dim, torch.arange(frames, dtype=torch.float32), output_type="pt")
    return table.to(device)


class KeypointEncoder(nn.Module):
    """DWPose keypoints of a clip -> ``q_p``: embed each frame, a transformer along the frames, then
    ``num_tokens`` tokens per frame (last layer zero, as the authors' ``DwposeEncoder``)."""

    def __init__(self, config: IPIConfig):
        super().__init__()
        dim = config.dim
        self.embed = nn.Sequential(nn.Linear(config.keypoints * KEYPOINT_FEATURES, dim // 2), nn.Linear(dim // 2, dim))
        layer = nn.TransformerEncoderLayer(dim, config.heads, dim_feedforward=dim, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.pose_layers, enable_nested_tensor=False)
        self.to_tokens = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim * config.num_tokens))
        nn.init.zeros_(self.to_tokens[-1].weight)
        nn.init.zeros_(self.to_tokens[-1].bias)
        self.num_tokens, self.dim = config.num_tokens, dim

    def forward(self, keypoints: torch.Tensor, num_frames: int) -> torch.Tensor:
        x = self.embed(rearrange(keypoints, "(b f) k c -> b f (k c)", f=num_frames))
        x = self.encoder(x + sinusoidal_positions(num_frames, self.dim, x.device).to(x.dtype))
        return rearrange(self.to_tokens(x), "b f (n d) -> (b f) n d", n=self.num_tokens)


class PerceiverLayer(nn.Module):
    """Queries attend to [features, queries] (the authors' ``PerceiverAttention``), then an FFN; both residual."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm_features = nn.LayerNorm(dim)
        self.norm_queries = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads=heads, dim_head=dim // heads, bias=False)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, mult=4, activation_fn="gelu", bias=False)

    def forward(self, queries: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        q = self.norm_queries(queries)
        context = torch.cat([self.norm_features(features), q], dim=1)
        queries = queries + self.attn(q, encoder_hidden_states=context)
        return queries + self.ff(self.norm_ff(queries))


class PoseIndicator(nn.Module):
    """The IPI extractor ``P``: (keypoints, CLIP features of the driving frames) -> motion tokens ``f_i``."""

    def __init__(self, config: IPIConfig):
        super().__init__()
        self.config = config
        self.keypoint_encoder = KeypointEncoder(config)
        self.queries = nn.Parameter(torch.randn(1, config.num_tokens, config.dim) / config.dim**0.5)  # q_l
        self.proj_in = nn.Linear(config.feature_dim, config.dim)
        self.layers = nn.ModuleList(PerceiverLayer(config.dim, config.heads) for _ in range(config.layers))
        self.proj_out = nn.Linear(config.dim, config.dim)
        self.norm_out = nn.LayerNorm(config.dim)

    def forward(self, keypoints: torch.Tensor, features: torch.Tensor, num_frames: int) -> torch.Tensor:
        """keypoints ``(b*f, K, 3)``, features ``(b*f, tokens, feature_dim)`` -> ``(b*f, num_tokens, dim)``."""
        queries = self.keypoint_encoder(keypoints, num_frames) + self.queries  # q_m = q_p + q_l
        features = self.proj_in(features)
        for layer in self.layers:
            queries = layer(queries, features)
        return self.norm_out(self.proj_out(queries))


class MotionAttention(nn.Module):
    """``x + alpha * CA(x, f_i)`` on ``(b*f, c, h, w)``; each frame's pixels attend to that frame's tokens."""

    def __init__(self, channels: int, context_dim: int, heads: int, alpha: float, norm_num_groups: int = 32):
        super().__init__()
        self.alpha = alpha
        self.norm = nn.GroupNorm(norm_num_groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.norm_attn = nn.LayerNorm(channels)
        self.attn = Attention(channels, cross_attention_dim=context_dim, heads=heads, dim_head=channels // heads)
        self.norm_ff = nn.LayerNorm(channels)
        self.ff = FeedForward(channels, activation_fn="geglu")
        self.proj_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, hidden_states: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        _, _, height, width = hidden_states.shape
        x = self.proj_in(rearrange(self.norm(hidden_states), "n c h w -> n (h w) c"))
        x = x + self.attn(self.norm_attn(x), encoder_hidden_states=tokens)
        x = x + self.ff(self.norm_ff(x))
        out = rearrange(self.proj_out(x), "n (h w) c -> n c h w", h=height, w=width)
        return hidden_states + self.alpha * out


class ImplicitPoseModules(nn.Module):
    """The IPI extractor plus one ``MotionAttention`` after every spatial attention of a diffusers UNet,
    laid out like the UNet: ``attn_down[i][j]``, ``attn_mid[j]``, ``attn_up[i][j]``."""

    def __init__(self, unet, config: IPIConfig, norm_num_groups: int = 32):
        super().__init__()
        self.config = config
        self.indicator = PoseIndicator(config)

        def make(channels):
            return MotionAttention(channels, config.dim, config.heads, config.alpha, norm_num_groups)

        def per_block(blocks):
            return nn.ModuleList(
                nn.ModuleList(make(r.out_channels) for r in block.resnets) if getattr(block, "attentions", None) else nn.ModuleList()
                for block in blocks
            )

        self.attn_down = per_block(unet.down_blocks)
        self.attn_mid = nn.ModuleList(make(unet.mid_block.resnets[-1].out_channels) for _ in unet.mid_block.attentions)
        self.attn_up = per_block(unet.up_blocks)

    def tokens(self, keypoints: torch.Tensor, features: torch.Tensor, num_frames: int) -> torch.Tensor:
        return self.indicator(keypoints, features, num_frames)
