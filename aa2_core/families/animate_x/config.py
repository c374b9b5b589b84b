"""The shape of a released Animate-X UNet, read off its tensors.

Defaults are the released ``configs/Animate_X_infer.yaml`` merged over ``default_config.py`` (``dim`` 320,
``dim_mult`` [1, 2, 4, 4], ``attn_scales`` [1, 1/2, 1/4], ``num_heads`` 8, ``head_dim`` 64, context 1024,
``no_hand`` True) with the hard-coded ``DwposeEncoder()`` / ``Resampler()`` widths of 1024.
``from_state_dict`` derives every width and depth from the file, so a tiny file and ``animate-x_ckpt.pth``
take the same path. What the shapes cannot tell (head splits) keeps the released values; the per-head width
of the UNet's attention is 64, capped by the first level's width (tiny files).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import torch

from ...checkpoints import detect
from ...errors import CheckpointError

# keys only the Animate-X UNet has: the IPI and the pose/reference embeddings concatenated on channels
SIGNATURE_KEYS = (
    "pose_embedding_before.increase_embed_dim.0.weight",
    "pose_embedding_after.latents",
    "dwpose_embedding.0.weight",
    "input_blocks.0.0.weight",
)
EXPECTED = "the Animate-X UNet (animate-x_ckpt.pth: UNetSD_Animate_X with DwposeEncoder + Resampler)"
RANDOMREF_EXTRA = 4  # the released reference branches add 4 channels to concat_dim (the latent's channels)


@dataclass(frozen=True)
class AnimateXConfig:
    # UNet
    in_channels: int = 4
    out_channels: int = 4
    model_channels: int = 320  # ``dim``
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_levels: tuple[bool, ...] = (True, True, True, False)  # attn_scales [1, 1/2, 1/4] of default_config
    head_dim: int = 64
    init_temporal_width: int = 512  # num_heads (8) x head_dim: the first block's temporal transformer
    context_dim: int = 1024  # OpenCLIP ViT-H/14 width: text tokens (zero_y) + image tokens
    image_tokens: int = 4  # ``num_tokens``: tokens made of the reference's CLIP embedding
    pose_attention: bool = True  # the IPI cross-attention after each spatial transformer
    # conditions concatenated on channels (EPI pose, reference pixels, reference latent)
    concat_dim: int = 8
    adapter_layers: int = 1  # ``adapter_transformer_layers`` of the per-pixel frame transformers
    adapter_heads: int = 2
    pool_size: tuple[int, int] | None = None  # released: (384, 256); None = half the input (same at 768x512)
    # IPI: DwposeEncoder
    pose_input_dim: int = 36  # 2 x 18 body keypoints (x row then y row), ``no_hand``
    pose_width: int = 1024  # d_model (= the Resampler's width)
    pose_heads: int = 8
    pose_layers: int = 3
    pose_ff: int = 1024
    pose_positions: int = 33  # length of the stored sinusoid table (longer clips extend it)
    pose_tokens: int = 4
    # IPI: Resampler
    resampler_depth: int = 8
    resampler_heads: int = 16
    resampler_inner: int = 1024  # heads x dim_head
    resampler_ff: int = 4096
    image_dim: int = 1024  # width of the CLIP features of the driving frames
    resampler_out: int = 1024  # width of the motion tokens (= context_dim for the pose attention)

    @property
    def embed_dim(self) -> int:
        return 4 * self.model_channels

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.model_channels * m for m in self.channel_mult)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "AnimateXConfig":
        out = {}
        for k, v in values.items():
            if k in cls.__dataclass_fields__:
                out[k] = tuple(v) if isinstance(v, list) else v
        return cls(**out)

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor], source: str = "Animate-X UNet",
                        head_dim: int | None = None, pool_size: tuple[int, int] | None = None) -> "AnimateXConfig":
        """The config of the network a state dict (released key layout) holds; errors name ``source``."""
        missing = [k for k in SIGNATURE_KEYS if k not in sd]
        if missing:
            raise CheckpointError(
                f"{source}: not an Animate-X UNet (missing {', '.join(missing[:3])}; file looks like: "
                f"{detect.kind_of(sd)}). Expected {EXPECTED}.")

        def need(key: str) -> torch.Tensor:
            return detect.require(sd, key, source, EXPECTED)

        conv_in = need("input_blocks.0.0.weight")
        model_channels = conv_in.shape[0]
        concat_dim = need("dwpose_embedding.5.weight").shape[0]
        in_channels = conv_in.shape[1] - concat_dim

        # walk the encoder: ResBlocks (``.0.in_layers``) and Downsamples (``.op``) in order
        blocks = _indices(sd, r"input_blocks\.(\d+)\.")
        levels: list[list[int]] = [[]]
        for i in blocks[1:]:
            if f"input_blocks.{i}.op.weight" in sd:
                levels.append([])
            elif f"input_blocks.{i}.0.in_layers.0.weight" in sd:
                levels[-1].append(i)
            else:
                raise CheckpointError(f"{source}: input_blocks.{i} is neither a ResBlock nor a Downsample "
                                      f"(expected {EXPECTED})")
        num_res_blocks = len(levels[0])
        if num_res_blocks == 0 or any(len(level) != num_res_blocks for level in levels):
            raise CheckpointError(f"{source}: uneven encoder levels {[len(x) for x in levels]} (expected {EXPECTED})")
        widths = [sd[f"input_blocks.{lv[0]}.0.out_layers.3.weight"].shape[0] for lv in levels]
        if any(w % model_channels for w in widths):
            raise CheckpointError(f"{source}: level widths {widths} are not multiples of {model_channels}")
        attention = tuple(f"input_blocks.{lv[0]}.1.norm.weight" in sd for lv in levels)

        context = need("pre_image_condition.0.weight").shape[0]
        pose_width = need("pose_embedding_before.increase_embed_dim.1.weight").shape[0]
        latents = need("pose_embedding_after.latents")
        table = sd.get("pose_embedding_before.pos_embed.pos_table")
        resampler_inner = need("pose_embedding_after.layers.0.0.to_q.weight").shape[0]
        return cls(
            in_channels=in_channels,
            out_channels=need("out.2.weight").shape[0],
            model_channels=model_channels,
            channel_mult=tuple(w // model_channels for w in widths),
            num_res_blocks=num_res_blocks,
            attention_levels=attention,
            head_dim=head_dim or min(64, model_channels),
            init_temporal_width=need("input_blocks.0.1.proj_in.weight").shape[0],
            context_dim=context,
            image_tokens=need("pre_image_condition.2.weight").shape[0] // context,
            pose_attention=any(".pose_attention." in k for k in sd),
            concat_dim=concat_dim,
            adapter_layers=len(_indices(sd, r"dwpose_embedding_after\.layers\.(\d+)\.")),
            pool_size=pool_size,
            pose_input_dim=need("pose_embedding_before.increase_embed_dim.0.weight").shape[1],
            pose_width=pose_width,
            pose_layers=len(_indices(sd, r"pose_embedding_before\.encoder\.layers\.(\d+)\.")),
            pose_ff=need("pose_embedding_before.encoder.layers.0.linear1.weight").shape[0],
            pose_positions=table.shape[1] if table is not None else cls.pose_positions,
            pose_tokens=need("pose_embedding_before.pre_image_condition_p.2.weight").shape[0] // pose_width,
            resampler_depth=len(_indices(sd, r"pose_embedding_after\.layers\.(\d+)\.")),
            resampler_inner=resampler_inner,
            resampler_ff=need("pose_embedding_after.layers.0.1.1.weight").shape[0],
            image_dim=need("pose_embedding_after.proj_in.weight").shape[1],
            resampler_out=need("pose_embedding_after.proj_out.weight").shape[0],
        ).validated(source, latents.shape)

    def validated(self, source: str = "Animate-X config", latents_shape=None) -> "AnimateXConfig":
        """Raise a CheckpointError for widths the released network cannot have."""
        problems = []
        if latents_shape is not None and tuple(latents_shape) != (1, self.pose_tokens, self.pose_width):
            problems.append(f"Resampler latents {tuple(latents_shape)} != (1, {self.pose_tokens}, {self.pose_width})")
        for w in (self.model_channels,) + self.widths:
            if w % 32:
                problems.append(f"width {w} is not a multiple of 32 (GroupNorm(32))")
            if w % self.head_dim:
                problems.append(f"width {w} is not a multiple of head_dim {self.head_dim}")
        if self.init_temporal_width % self.head_dim:
            problems.append(f"first temporal width {self.init_temporal_width} is not a multiple of head_dim")
        if self.pose_width % self.pose_heads or self.resampler_inner % self.resampler_heads:
            problems.append("IPI widths are not multiples of their head counts (8 and 16)")
        if self.pose_input_dim % 2:
            problems.append(f"pose input width {self.pose_input_dim} is not 2 x keypoints")
        if problems:
            raise CheckpointError(f"{source}: " + "; ".join(problems))
        return self


def _indices(sd: dict, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd for m in [rx.match(k)] if m})


TINY_CONFIG = AnimateXConfig(
    model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, attention_levels=(True, True, False),
    head_dim=32, init_temporal_width=64, context_dim=32, image_tokens=4, concat_dim=8, adapter_layers=1,
    pose_input_dim=36, pose_width=32, pose_layers=2, pose_ff=48, pose_positions=33, pose_tokens=4,
    resampler_depth=2, resampler_inner=64, resampler_ff=128, image_dim=32, resampler_out=32,
)
