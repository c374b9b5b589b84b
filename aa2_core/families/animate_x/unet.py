"""The released Animate-X 3D UNet (``UNetSD_Animate_X``), written on torch / diffusers / einops pieces, with
the state-dict keys of ``animate-x_ckpt.pth`` (``load_state_dict(strict=True)`` takes the released file).

Layout (``f`` driving frames, latents ``(b, 4, f, h, w)``):

* conditions concatenated on channels (``concat_dim``): the rendered pose of each frame (``dwpose``, EPI) and
  the reference in pixels (``local_image``), each through a conv stack to latent size (``/8``) and a small
  transformer along the frames per pixel;
* a reference slot stacked in front along time: ``concat_dim + 4`` channels, zeros unless ``randomref`` (the
  reference latent; the released YAML does not pass it) is given, plus the reference pose (``dwpose``'s first
  frame) with it. The network runs ``f + 1`` frames and drops the first at the end;
* cross-attention context: the text tokens (``zero_y``, the empty prompt) + ``image_tokens`` tokens made of
  the reference's CLIP embedding (zeros when absent);
* the IPI: keypoints through ``DwposeEncoder``, the driving frames' CLIP features through ``Resampler``
  -> ``pose_tokens`` motion tokens per frame, read by a second transformer after every spatial transformer;
  with no pose input, zero keypoints and zero features still go through it (the released unconditional
  branch);
* ResBlocks with a temporal convolution stack, spatial transformers, temporal transformers (self-attention
  along the frames per pixel).

Frames are folded into the batch ``(b f)``; GroupNorms of the temporal parts normalise across frames.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.models.attention import BasicTransformerBlock
from einops import rearrange
from torch import nn

from .config import RANDOMREF_EXTRA, AnimateXConfig
from .ipi import DwposeEncoder, Resampler


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """cos then sin, frequencies ``10000^(-i/half)`` (the released ``sinusoidal_embedding``)."""
    half = dim // 2
    t = t.float()
    freqs = torch.pow(10000, -torch.arange(half).to(t).div(half))
    args = torch.outer(t, freqs)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


def _block(dim: int, head_dim: int, context_dim: int | None) -> BasicTransformerBlock:
    """LayerNorm -> self-attention, LayerNorm -> cross-attention (self-attention without a context),
    LayerNorm -> GEGLU feed-forward; keys attn1/attn2/ff/norm1-3 as the released block."""
    return BasicTransformerBlock(dim, dim // head_dim, head_dim, dropout=0.0, cross_attention_dim=context_dim,
                                 activation_fn="geglu", attention_bias=False,
                                 double_self_attention=context_dim is None)


class TemporalConv(nn.Module):
    """Four (3, 1, 1) convolutions along the frames, residual (``temopral_conv`` in the released keys)."""

    def __init__(self, dim: int):
        super().__init__()

        def conv(dropout: bool):
            layers = [nn.GroupNorm(32, dim), nn.SiLU()] + ([nn.Dropout(0.1)] if dropout else [])
            return nn.Sequential(*layers, nn.Conv3d(dim, dim, (3, 1, 1), padding=(1, 0, 0)))

        self.conv1, self.conv2, self.conv3, self.conv4 = conv(False), conv(True), conv(True), conv(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv4(self.conv3(self.conv2(self.conv1(x))))


class ResBlock(nn.Module):
    def __init__(self, channels: int, emb_dim: int, out_channels: int | None = None):
        super().__init__()
        out = out_channels or channels
        self.in_layers = nn.Sequential(nn.GroupNorm(32, channels), nn.SiLU(), nn.Conv2d(channels, out, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out))
        self.out_layers = nn.Sequential(nn.GroupNorm(32, out), nn.SiLU(), nn.Dropout(0.1),
                                        nn.Conv2d(out, out, 3, padding=1))
        self.skip_connection = nn.Identity() if out == channels else nn.Conv2d(channels, out, 1)
        self.temopral_conv = TemporalConv(out)  # sic: the released key

    def forward(self, x: torch.Tensor, emb: torch.Tensor, batch: int) -> torch.Tensor:
        h = self.in_layers(x) + self.emb_layers(emb).type(x.dtype)[..., None, None]
        h = self.skip_connection(x) + self.out_layers(h)
        h = rearrange(h, "(b f) c h w -> b c f h w", b=batch)
        return rearrange(self.temopral_conv(h), "b c f h w -> (b f) c h w")


class PoseAttention(nn.Module):
    """The IPI's transformer after a spatial transformer: its cross-attention reads the frame's motion tokens
    (``SpatialTransformer_pose``; ``our_weight`` 1)."""

    def __init__(self, dim: int, head_dim: int, context_dim: int):
        super().__init__()
        self.norm_p = nn.GroupNorm(32, dim, eps=1e-6)
        self.proj_in_p = nn.Linear(dim, dim)
        self.transformer_blocks_p = nn.ModuleList([_block(dim, head_dim, context_dim)])
        self.proj_out_p = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        y = self.proj_in_p(rearrange(self.norm_p(x), "n c h w -> n (h w) c"))
        for block in self.transformer_blocks_p:
            y = block(y, encoder_hidden_states=tokens)
        return rearrange(self.proj_out_p(y), "n (h w) c -> n c h w", h=h, w=w) + x


class SpatialTransformer(nn.Module):
    """Per frame: GroupNorm, linear in, self-attention + cross-attention to the context, linear out,
    residual; then the pose attention to the motion tokens."""

    def __init__(self, dim: int, head_dim: int, context_dim: int, pose_context_dim: int | None):
        super().__init__()
        self.norm = nn.GroupNorm(32, dim, eps=1e-6)
        self.proj_in = nn.Linear(dim, dim)
        self.transformer_blocks = nn.ModuleList([_block(dim, head_dim, context_dim)])
        self.proj_out = nn.Linear(dim, dim)
        self.pose_attention = PoseAttention(dim, head_dim, pose_context_dim) if pose_context_dim else None

    def forward(self, x: torch.Tensor, context: torch.Tensor, pose_tokens: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        y = self.proj_in(rearrange(self.norm(x), "n c h w -> n (h w) c"))
        for block in self.transformer_blocks:
            y = block(y, encoder_hidden_states=context)
        x = rearrange(self.proj_out(y), "n (h w) c -> n c h w", h=h, w=w) + x
        return self.pose_attention(x, pose_tokens) if self.pose_attention is not None else x


class TemporalTransformer(nn.Module):
    """Self-attention along the frames at every pixel (GroupNorm over all frames, 1x1 Conv1d in and out)."""

    def __init__(self, dim: int, width: int, head_dim: int):
        super().__init__()
        self.norm = nn.GroupNorm(32, dim, eps=1e-6)
        self.proj_in = nn.Conv1d(dim, width, 1)
        self.transformer_blocks = nn.ModuleList([_block(width, head_dim, None)])
        self.proj_out = nn.Conv1d(width, dim, 1)

    def forward(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        x = rearrange(x, "(b f) c h w -> b c f h w", b=batch)
        _, _, f, h, w = x.shape
        y = self.proj_in(rearrange(self.norm(x), "b c f h w -> (b h w) c f"))
        y = rearrange(y, "n c f -> n f c")
        for block in self.transformer_blocks:
            y = block(y)
        y = self.proj_out(rearrange(y, "n f c -> n c f"))
        x = rearrange(y, "(b h w) c f -> b c f h w", b=batch, h=h, w=w) + x
        return rearrange(x, "b c f h w -> (b f) c h w")


class Downsample(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.op = nn.Conv2d(dim, dim, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class HalfPool(nn.Module):
    """Adaptive average pooling to half the input (the released code fixes (384, 256): its only working size,
    768x512, gives the same); ``size`` pins it."""

    def __init__(self, size: tuple[int, int] | None = None):
        super().__init__()
        self.size = tuple(size) if size else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, self.size or (x.shape[-2] // 2, x.shape[-1] // 2))


def condition_encoder(in_channels: int, hidden: int, out: int, pool: tuple[int, int] | None) -> nn.Sequential:
    """Pixels -> latent size: conv, SiLU, pool to half, two stride-2 convs (indices 0, 3, 5 as released)."""
    return nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1), nn.SiLU(), HalfPool(pool),
                         nn.Conv2d(hidden, hidden, 3, stride=2, padding=1), nn.SiLU(),
                         nn.Conv2d(hidden, out, 3, stride=2, padding=1))


def latent_encoder(in_channels: int, hidden: int, out: int) -> nn.Sequential:
    """The reference latent's stack (``randomref_embedding2``): three stride-1 convs."""
    return nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1), nn.SiLU(),
                         nn.Conv2d(hidden, hidden, 3, padding=1), nn.SiLU(),
                         nn.Conv2d(hidden, out, 3, padding=1))


class _FrameSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.to_qkv = nn.Linear(dim, dim * heads * 3, bias=False)  # dim_head = dim
        self.to_out = nn.Sequential(nn.Linear(dim * heads, dim), nn.Dropout(0.05))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (rearrange(t, "n f (h d) -> n h f d", h=self.heads) for t in self.to_qkv(x).chunk(3, dim=-1))
        return self.to_out(rearrange(F.scaled_dot_product_attention(q, k, v), "n h f d -> n f (h d)"))


class _PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x)) + x


class _MLP(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU()), nn.Dropout(0.05),
                                 nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FrameTransformer(nn.Module):
    """Per pixel, along the frames: pre-norm self-attention (residual), then an MLP *without* a norm
    (residual) -- the released ``Transformer_v2`` (heads 2, head width = dim)."""

    def __init__(self, dim: int, heads: int, depth: int):
        super().__init__()
        self.layers = nn.ModuleList([nn.ModuleList([_PreNorm(dim, _FrameSelfAttention(dim, heads)), _MLP(dim)])
                                     for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attn, ff in self.layers:
            x = attn(x)
            x = ff(x) + x
        return x


class AnimateXUNet(nn.Module):
    """``UNetSD_Animate_X`` in eval: same keys, same maths, no xformers, any size (multiples of 8 x 2^levels)."""

    def __init__(self, config: AnimateXConfig):
        super().__init__()
        self.config = c = config
        dim, emb, hd, ctx = c.model_channels, c.embed_dim, c.head_dim, c.context_dim
        pose_ctx = c.resampler_out if c.pose_attention else None
        cat, ref = c.concat_dim, c.concat_dim + RANDOMREF_EXTRA

        self.time_embed = nn.Sequential(nn.Linear(dim, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.pre_image_condition = nn.Sequential(nn.Linear(ctx, ctx), nn.SiLU(), nn.Linear(ctx, ctx * c.image_tokens))
        self.pose_embedding_before = DwposeEncoder(c)
        self.pose_embedding_after = Resampler(c)
        self.local_image_embedding = condition_encoder(3, cat * 4, cat, c.pool_size)
        self.local_image_embedding_after = FrameTransformer(cat, c.adapter_heads, c.adapter_layers)
        self.dwpose_embedding = condition_encoder(3, cat * 4, cat, c.pool_size)
        self.dwpose_embedding_after = FrameTransformer(cat, c.adapter_heads, c.adapter_layers)
        self.randomref_pose2_embedding = condition_encoder(3, cat * 4, ref, c.pool_size)
        self.randomref_pose2_embedding_after = FrameTransformer(ref, c.adapter_heads, c.adapter_layers)
        self.randomref_embedding2 = latent_encoder(RANDOMREF_EXTRA, cat * 4, ref)
        self.randomref_embedding_after2 = FrameTransformer(ref, c.adapter_heads, c.adapter_layers)

        def attention(width: int) -> list[nn.Module]:
            return [SpatialTransformer(width, hd, ctx, pose_ctx), TemporalTransformer(width, width, hd)]

        self.input_blocks = nn.ModuleList([nn.ModuleList([
            nn.Conv2d(c.in_channels + cat, dim, 3, padding=1), TemporalTransformer(dim, c.init_temporal_width, hd)])])
        skips = [dim]
        width = dim
        levels = len(c.channel_mult)
        for level, out in enumerate(c.widths):
            for j in range(c.num_res_blocks):
                block = [ResBlock(width, emb, out)] + (attention(out) if c.attention_levels[level] else [])
                self.input_blocks.append(nn.ModuleList(block))
                skips.append(out)
                width = out
                if level != levels - 1 and j == c.num_res_blocks - 1:
                    self.input_blocks.append(Downsample(out))
                    skips.append(out)

        self.middle_block = nn.ModuleList([ResBlock(width, emb), *attention(width), ResBlock(width, emb)])

        self.output_blocks = nn.ModuleList()
        for level in reversed(range(levels)):
            out = c.widths[level]
            for j in range(c.num_res_blocks + 1):
                block = [ResBlock(width + skips.pop(), emb, out)] + (attention(out) if c.attention_levels[level] else [])
                width = out
                if level != 0 and j == c.num_res_blocks:
                    block.append(Upsample(out))
                self.output_blocks.append(nn.ModuleList(block))

        self.out = nn.Sequential(nn.GroupNorm(32, width), nn.SiLU(), nn.Conv2d(width, c.out_channels, 3, padding=1))

    # ---- conditions -----------------------------------------------------------------------------------
    @staticmethod
    def _per_pixel(encoder: nn.Sequential, after: FrameTransformer, frames: torch.Tensor) -> torch.Tensor:
        """(b, c, f, H, W) pixels or latents -> (b, c', f, h, w): conv stack per frame, transformer per pixel."""
        b = frames.shape[0]
        y = encoder(rearrange(frames, "b c f h w -> (b f) c h w"))
        h = y.shape[2]
        y = after(rearrange(y, "(b f) c h w -> (b h w) f c", b=b))
        return rearrange(y, "(b h w) f c -> b c f h w", b=b, h=h)

    def context(self, text: torch.Tensor, image_embed: torch.Tensor | None, batch: int) -> torch.Tensor:
        """Cross-attention tokens: the text tokens (``zero_y``) then the image tokens (zeros without an image)."""
        c = self.config
        text = text.expand(batch, -1, -1) if text.shape[0] == 1 else text
        if image_embed is None:
            image = text.new_zeros(batch, c.image_tokens, c.context_dim)
        else:
            image = self.pre_image_condition(image_embed).view(-1, c.image_tokens, c.context_dim)
        return torch.cat([text, image], dim=1)

    def motion_tokens(self, keypoints: torch.Tensor | None, features: torch.Tensor | None, batch: int,
                      length: int, like: torch.Tensor) -> torch.Tensor:
        """IPI tokens ``(batch * length, pose_tokens, out)``; without pose input: zero keypoints and zero features
        through the live branch (the released unconditional input)."""
        c = self.config
        if keypoints is None:
            keypoints = like.new_zeros(batch, length, c.pose_input_dim)
            features = like.new_zeros(batch * length, 1, c.image_dim)
        elif features is None:
            raise ValueError("Animate-X: keypoints given without the driving frames' CLIP features")
        keypoints = keypoints.reshape(batch, length, -1)  # (b, L, 2, K) -> x row then y row
        features = features.reshape(batch * length, -1, c.image_dim)
        return self.pose_embedding_after(features, self.pose_embedding_before(keypoints))

    # ---- forward --------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, image_embed: torch.Tensor | None = None,
                local_image: torch.Tensor | None = None, dwpose: torch.Tensor | None = None,
                randomref: torch.Tensor | None = None, keypoints: torch.Tensor | None = None,
                driving_features: torch.Tensor | None = None) -> torch.Tensor:
        """One prediction (v) for ``f`` frames.

        x: noisy latents ``(b, 4, f, h, w)``; t: ``(b,)`` timesteps; text: ``(1 or b, n, context)`` text tokens.
        image_embed: the reference's CLIP embedding ``(b, 1, context)``; local_image: the reference in pixels,
        [0, 1], repeated over the frames ``(b, 3, f, 8h, 8w)``; dwpose: rendered poses in [0, 1],
        reference pose first ``(b, 3, f + 1, 8h, 8w)``; randomref: the reference latent ``(b, 4, >=1, h, w)``;
        keypoints: ``(b, f + 1, 2, K)`` (reference first); driving_features: CLIP features of the reference and
        the driving frames ``(b * (f + 1), 1, image_dim)``. Each condition may be None (unconditional).
        Returns ``(b, out, f, h, w)``.
        """
        c = self.config
        b, _, f, h, w = x.shape
        concat = x.new_zeros(b, c.concat_dim, f, h, w)
        if local_image is not None:
            concat = concat + self._per_pixel(self.local_image_embedding, self.local_image_embedding_after, local_image)
        ref_pose = None
        if dwpose is not None:
            ref_pose, dwpose = dwpose[:, :, :1], dwpose[:, :, 1:]
            concat = concat + self._per_pixel(self.dwpose_embedding, self.dwpose_embedding_after, dwpose)
        slot = x.new_zeros(b, c.concat_dim + RANDOMREF_EXTRA, 1, h, w)
        if randomref is not None:
            ref = self._per_pixel(self.randomref_embedding2, self.randomref_embedding_after2, randomref[:, :, :1])
            if ref_pose is not None:  # the released code reads it only here (and fails without a dwpose input)
                ref = ref + self._per_pixel(self.randomref_pose2_embedding, self.randomref_pose2_embedding_after,
                                            ref_pose)
            slot = slot + ref
        x = torch.cat([slot, torch.cat([x, concat], dim=1)], dim=2)
        frames = f + 1

        emb = self.time_embed(timestep_embedding(t, c.model_channels).to(x.dtype)).repeat_interleave(frames, dim=0)
        context = self.context(text, image_embed, b).repeat_interleave(frames, dim=0)
        tokens = self.motion_tokens(keypoints, driving_features, b, frames, x)

        x = rearrange(x, "b c f h w -> (b f) c h w")
        skips = []
        for block in self.input_blocks:
            x = self._run(block, x, emb, context, tokens, b)
            skips.append(x)
        x = self._run(self.middle_block, x, emb, context, tokens, b)
        for block in self.output_blocks:
            x = self._run(block, torch.cat([x, skips.pop()], dim=1), emb, context, tokens, b)
        x = rearrange(self.out(x), "(b f) c h w -> b c f h w", b=b)
        return x[:, :, 1:]

    @staticmethod
    def _run(block: nn.Module, x, emb, context, tokens, batch: int) -> torch.Tensor:
        for layer in (block if isinstance(block, nn.ModuleList) else [block]):
            if isinstance(layer, ResBlock):
                x = layer(x, emb, batch)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context, tokens)
            elif isinstance(layer, TemporalTransformer):
                x = layer(x, batch)
            else:
                x = layer(x)
        return x


def parameter_count(model: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in model.parameters())
