"""The released Implicit Pose Indicator: ``DwposeEncoder`` (keypoints -> pose tokens) and ``Resampler``
(Perceiver layers over the driving frames' CLIP features), in the key layout of ``animate-x_ckpt.pth``
(``pose_embedding_before.*``, ``pose_embedding_after.*``).

Rows are frames: ``L = f + 1`` (the reference first, then the driving frames) per video.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .config import AnimateXConfig


def sinusoid_table(positions: int, dim: int) -> torch.Tensor:
    """``(1, positions, dim)`` float32: the released ``PositionalEncoding`` table (float64 numpy, then float32)."""
    pos = np.arange(positions, dtype=np.float64)[:, None]
    j = np.arange(dim)
    table = pos / np.power(10000, 2 * (j // 2) / dim)
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.from_numpy(table).float().unsqueeze(0)


class PositionalEncoding(nn.Module):
    def __init__(self, dim: int, positions: int):
        super().__init__()
        self.register_buffer("pos_table", sinusoid_table(positions, dim))

    def forward(self, length: int) -> torch.Tensor:
        table = self.pos_table
        if length > table.shape[1]:  # the released table stops at its length; the sinusoid goes on
            extra = sinusoid_table(length, table.shape[2])[:, table.shape[1]:]
            table = torch.cat([table, extra.to(table)], dim=1)
        return table[:, :length]


class _Layers(nn.Module):
    """Holds ``layers`` so the keys read ``encoder.layers.N.*`` as released (post-norm, ReLU)."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)


class DwposeEncoder(nn.Module):
    """Keypoints ``(B, L, pose_input_dim)`` -> ``(B*L, pose_tokens, pose_width)`` pose tokens.

    Two linear layers, sinusoidal positions added once, post-norm transformer encoder layers over the frames
    (torch's own layer: same keys and maths as the released copy), then an MLP to ``pose_tokens`` tokens.
    Rows come out video-major (b, l); the released reshape of its (l, b) tensor equals that at batch 1,
    the only batch its inference runs.
    """

    def __init__(self, config: AnimateXConfig):
        super().__init__()
        d = config.pose_width
        self.d_model = d
        self.tokens = config.pose_tokens
        self.encoder = _Layers([
            nn.TransformerEncoderLayer(d, config.pose_heads, config.pose_ff, dropout=0.1, activation="relu")
            for _ in range(config.pose_layers)])
        self.pos_embed = PositionalEncoding(d, config.pose_positions)
        self.increase_embed_dim = nn.Sequential(nn.Linear(config.pose_input_dim, d // 2), nn.Linear(d // 2, d))
        self.pre_image_condition_p = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d * config.pose_tokens))

    def forward(self, keypoints: torch.Tensor) -> torch.Tensor:
        b, length = keypoints.shape[:2]
        x = self.increase_embed_dim(keypoints).transpose(0, 1)  # (L, B, C), sequence first as released
        x = x + self.pos_embed(length).transpose(0, 1)
        for layer in self.encoder.layers:
            x = layer(x)
        x = rearrange(x, "l b c -> (b l) 1 c")
        return self.pre_image_condition_p(x).reshape(b * length, self.tokens, self.d_model)


def _feed_forward(dim: int, inner: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, inner, bias=False), nn.GELU(), nn.Linear(inner, dim, bias=False))


class PerceiverAttention(nn.Module):
    """Queries: the latents; keys/values: image features and latents together."""

    def __init__(self, dim: int, inner: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x)
        latents = self.norm2(latents)
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat((x, latents), dim=-2)).chunk(2, dim=-1)
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=self.heads) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))


class Resampler(nn.Module):
    """Motion tokens: learnable latents + pose tokens, refined over the driving frame's CLIP feature."""

    def __init__(self, config: AnimateXConfig):
        super().__init__()
        dim = config.pose_width
        self.latents = nn.Parameter(torch.randn(1, config.pose_tokens, dim) / dim ** 0.5)
        self.proj_in = nn.Linear(config.image_dim, dim)
        self.proj_out = nn.Linear(dim, config.resampler_out)
        self.norm_out = nn.LayerNorm(config.resampler_out)
        self.layers = nn.ModuleList([
            nn.ModuleList([PerceiverAttention(dim, config.resampler_inner, config.resampler_heads),
                           _feed_forward(dim, config.resampler_ff)])
            for _ in range(config.resampler_depth)])

    def forward(self, features: torch.Tensor, pose_tokens: torch.Tensor) -> torch.Tensor:
        """``features`` (N, n, image_dim), ``pose_tokens`` (N, pose_tokens, width) -> (N, pose_tokens, out)."""
        latents = self.latents + pose_tokens
        x = self.proj_in(features)
        for attn, ff in self.layers:
            latents = attn(x, latents) + latents
            latents = ff(latents) + latents
        return self.norm_out(self.proj_out(latents))
