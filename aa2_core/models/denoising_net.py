"""The DenoisingNet: an SD1.5 UNet run over video frames, with temporal and Animate Anyone 2 layers.

Frames are folded into the batch (``(b, c, f, h, w) -> (b*f, c, h, w)``), so every diffusers 2D layer
(resnets, spatial transformers, samplers) runs per frame, exactly as the original 3D UNet with
per-frame ("inflated") group norm. This module only walks the diffusers blocks in their own order and
inserts, where the papers put them:

* AnimateDiff temporal layers after each resnet/attention pair (``MotionModuleSet``);
* reference tokens in the spatial self-attentions (``reference_attention``);
* the environment branch of ``conv_in`` and the pose features right after ``conv_in``;
* spatial blending of object features after each spatial attention of the decoder;
* Animate-X (optional, built on request or from an aa2-modules file): the Implicit Pose Indicator's motion
  attention after each spatial attention, and Mamba temporal layers in chosen motion-module slots.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import AA2Error

from .implicit_pose_indicator import ImplicitPoseModules, IPIConfig
from .mamba_temporal import MambaConfig, MambaTemporalSet
from .motion_module import MotionModuleSet
from .object_guider import ObjectGuider, SpatialBlend
from .reference_attention import ReferenceKV, ReferenceReadProcessor, install_processors

AA2_DENOISING_MODULES = ("env_conv_in", "object_guider", "spatial_blend_mid", "spatial_blend_up")
# Animate-X module groups -> their parameter-name prefixes in the DenoisingNet (present only when built)
ANIMATE_X_MODULES = {"ipi": ("ipi.",), "mamba": ("mamba.",)}


class DenoisingNet(nn.Module):
    def __init__(
        self,
        unet: UNet2DConditionModel,
        motion: MotionModuleSet | None = None,
        fusion_blocks: str = "full",
    ):
        super().__init__()
        self.unet = unet
        self.motion = motion
        self.fusion_blocks = fusion_blocks
        self.fused_layers = install_processors(unet, fusion_blocks, ReferenceReadProcessor)

        latent_channels = unet.config.in_channels
        first_channels = unet.config.block_out_channels[0]
        # conv_in over (noise, environment latent, mask), split so the base part stays untouched:
        # the same as a (2*latent+1)-channel conv_in whose extra input channels start at zero.
        self.env_conv_in = nn.Conv2d(latent_channels + 1, first_channels, kernel_size=3, padding=1, bias=False)
        nn.init.zeros_(self.env_conv_in.weight)

        # one object-guider stage per decoder stage with spatial attention, finest first
        attn_ups = [i for i, block in enumerate(unet.up_blocks) if getattr(block, "attentions", None) is not None]
        self._up_stage = {i: len(attn_ups) - 1 - rank for rank, i in enumerate(attn_ups)}
        stage_channels = [unet.up_blocks[i].resnets[-1].out_channels for i in reversed(attn_ups)]
        stage_channels.append(unet.mid_block.resnets[-1].out_channels)
        self.object_guider = ObjectGuider(tuple(stage_channels), latent_channels)
        self.spatial_blend_mid = nn.ModuleList(SpatialBlend(stage_channels[-1]) for _ in unet.mid_block.attentions)
        self.spatial_blend_up = nn.ModuleList(
            nn.ModuleList(SpatialBlend(block.resnets[-1].out_channels) for _ in getattr(block, "attentions", None) or [])
            for block in unet.up_blocks
        )
        self.ipi: ImplicitPoseModules | None = None
        self.mamba: MambaTemporalSet | None = None
        self.aa2_file: str | None = None  # the aa2-modules file applied, named in errors

    # ---- optional Animate-X modules, exact no-ops until trained ---------------------------------
    def add_ipi(self, config: IPIConfig) -> ImplicitPoseModules:
        """Build the Implicit Pose Indicator and its motion attention layers (on this net's device and dtype)."""
        param = self.env_conv_in.weight
        self.ipi = ImplicitPoseModules(self.unet, config, self._norm_groups()).to(param.device, param.dtype)
        return self.ipi

    def add_mamba(self, config: MambaConfig) -> MambaTemporalSet:
        """Build Mamba temporal layers in the slots ``config`` names."""
        param = self.env_conv_in.weight
        self.mamba = MambaTemporalSet(self.unet, config, self._norm_groups()).to(param.device, param.dtype)
        return self.mamba

    def architecture(self) -> dict:
        """Configs of the optional modules built into this net (what an aa2-modules file's metadata records)."""
        arch = {}
        if self.ipi is not None:
            arch["ipi"] = self.ipi.config.to_dict()
        if self.mamba is not None:
            arch["mamba"] = self.mamba.config.to_dict()
        return arch

    def _norm_groups(self) -> int:
        return self.unet.config.norm_num_groups

    def encode_motion(self, keypoints: torch.Tensor, features: torch.Tensor, num_frames: int) -> torch.Tensor:
        """IPI motion tokens ``f_i`` ``(b*f, tokens, dim)`` from keypoints ``(b*f, 18, 3)`` and CLIP features."""
        self.require("ipi")
        return self.ipi.tokens(keypoints, features, num_frames)

    def require(self, *groups: str) -> None:
        """An error naming the module and the file when a workflow asks for a module this net was not given."""
        names = {"ipi": "the Implicit Pose Indicator (IPI)", "mamba": "Mamba temporal layers"}
        for group in groups:
            if getattr(self, group) is None:
                raise AA2Error(f"{names[group]} requested, but {_source(self.aa2_file)} holds no {group!r} module; "
                               f"load an aa2-modules file trained with --modules {group}, or turn it off")

    def check_clip_length(self, num_frames: int) -> None:
        """Refuse clips longer than the motion module's positional encoding, before any step runs."""
        if self.motion is not None:
            self.motion.check_frames(num_frames)

    # ---- conditions computed once per generation ------------------------------------------------
    def reference_kv(self, tokens: dict[str, torch.Tensor]) -> ReferenceKV:
        """Project the ReferenceNet tokens with this net's own key/value weights, once per generation."""
        missing = [name for name in self.fused_layers if name not in tokens]
        if missing:
            raise ValueError(f"reference tokens missing for {len(missing)} fused layers, e.g. {missing[0]}")
        modules = dict(self.unet.named_modules())
        kv = {}
        for name in self.fused_layers:
            attn = modules[name]
            kv[name] = (attn.to_k(tokens[name]), attn.to_v(tokens[name]))
        return ReferenceKV(kv)

    def encode_objects(self, object_latents: torch.Tensor) -> list[torch.Tensor]:
        """``(b, 4, f, h, w)`` object latents -> per-stage features, frames folded into the batch."""
        return self.object_guider(_fold(object_latents))

    # ---- forward --------------------------------------------------------------------------------
    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        pose_features: torch.Tensor | None = None,
        environment: torch.Tensor | None = None,
        object_features: list[torch.Tensor] | None = None,
        reference: ReferenceKV | None = None,
        reference_rows: torch.Tensor | None = None,
        motion_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the noise (or v) for a batch of clips.

        sample: ``(b, c, f, h, w)`` noisy latents. timestep: scalar or ``(b,)``.
        encoder_hidden_states: ``(b, tokens, dim)`` image embedding. pose_features: ``(b*f, C0, h, w)``.
        environment: ``(b, c+1, f, h, w)`` environment latent and formulated mask. object_features: from
        ``encode_objects``. reference_rows: ``(b,)`` bool, which samples read the reference tokens
        (None: all of them); the classifier-free-guidance unconditional samples do not.
        motion_tokens: ``(b*f, tokens, dim)`` from ``encode_motion`` (None: no IPI motion attention).
        """
        unet = self.unet
        b, _, f, h, w = sample.shape
        self.check_clip_length(f)
        x = _fold(sample)

        timestep = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(b)
        emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep), None)
        emb = emb.repeat_interleave(f, dim=0)
        context = encoder_hidden_states.repeat_interleave(f, dim=0)
        attn_kwargs = {"reference": reference.for_batch(reference_rows, f)} if reference is not None else None

        ipi = self.ipi if motion_tokens is not None else None
        if motion_tokens is not None:
            self.require("ipi")

        def spatial(attn, x, motion=None):
            return self._layer(spatial_layer, attn, x, motion)

        def spatial_layer(attn, x, motion):
            x = attn(x, encoder_hidden_states=context, cross_attention_kwargs=attn_kwargs, return_dict=False)[0]
            return motion(x, motion_tokens) if motion is not None else x

        def temporal_slot(slot, attention, x):
            return self._layer(temporal_layer, slot, attention, x)

        def temporal_layer(slot, attention, x):
            if attention is not None and not (self.mamba is not None and self.mamba.replaces(slot)):
                x = attention(x, f)
            mamba = self.mamba.get(slot) if self.mamba is not None else None
            return mamba(x, f) if mamba is not None else x

        x = unet.conv_in(x)
        if environment is not None:
            x = x + self.env_conv_in(_fold(environment))
        if pose_features is not None:
            x = x + pose_features

        skips = (x,)
        for i, block in enumerate(unet.down_blocks):
            attentions = getattr(block, "attentions", None)
            temporal = self.motion.down_blocks[i].motion_modules if self.motion is not None else None
            for j, resnet in enumerate(block.resnets):
                x = self._layer(resnet, x, emb)
                if attentions is not None:
                    x = spatial(attentions[j], x, ipi.attn_down[i][j] if ipi is not None else None)
                x = temporal_slot(f"down_{i}_{j}", temporal[j] if temporal is not None else None, x)
                skips += (x,)
            for down in block.downsamplers or []:
                x = down(x)
                skips += (x,)

        mid = unet.mid_block
        temporal = self.motion.mid_block.motion_modules if self.motion is not None and self.motion.mid_block else None
        x = mid.resnets[0](x, emb)
        for j, (attn, resnet) in enumerate(zip(mid.attentions, mid.resnets[1:])):
            x = spatial(attn, x, ipi.attn_mid[j] if ipi is not None else None)
            if object_features is not None:
                x = self.spatial_blend_mid[j](x, object_features[-1])
            x = temporal_slot(f"mid_{j}", temporal[j] if temporal is not None else None, x)
            x = self._layer(resnet, x, emb)

        # diffusers passes explicit sizes to the upsamplers only when the latent is not a multiple of 2^n
        odd_size = any(s % 2 ** unet.num_upsamplers for s in (h, w))
        for i, block in enumerate(unet.up_blocks):
            attentions = getattr(block, "attentions", None)
            temporal = self.motion.up_blocks[i].motion_modules if self.motion is not None else None
            for j, resnet in enumerate(block.resnets):
                x = self._layer(resnet, torch.cat([x, skips[-1]], dim=1), emb)
                skips = skips[:-1]
                if attentions is not None:
                    x = spatial(attentions[j], x, ipi.attn_up[i][j] if ipi is not None else None)
                    if object_features is not None:
                        x = self.spatial_blend_up[i][j](x, object_features[self._up_stage[i]])
                x = temporal_slot(f"up_{i}_{j}", temporal[j] if temporal is not None else None, x)
            for up in block.upsamplers or []:
                x = up(x, skips[-1].shape[2:] if odd_size else None)

        if unet.conv_norm_out is not None:
            x = unet.conv_act(unet.conv_norm_out(x))
        x = unet.conv_out(x)
        return rearrange(x, "(b f) c h w -> b c f h w", b=b)

    # ---- training memory --------------------------------------------------------------------------
    gradient_checkpointing = False

    def enable_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each resnet, spatial and temporal layer in the backward pass instead of keeping its activations."""
        self.gradient_checkpointing = enabled

    def _layer(self, fn, *args):
        if self.gradient_checkpointing and torch.is_grad_enabled():
            # non-reentrant: works when only some inputs (or only closed-over weights) need gradients
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    def aa2_state_dict(self) -> dict[str, torch.Tensor]:
        """The Animate Anyone 2 modules and the built Animate-X modules (what training produces)."""
        prefixes = AA2_DENOISING_MODULES + tuple(p for group in ANIMATE_X_MODULES.values() for p in group)
        return {k: v for k, v in self.state_dict().items() if k.startswith(prefixes)}


def _source(path: str | None) -> str:
    return f"the aa2-modules file {path}" if path else "the loaded models (no aa2-modules file)"


def _fold(video: torch.Tensor) -> torch.Tensor:
    """``(b, c, f, h, w) -> (b*f, c, h, w)``, frames of one sample adjacent."""
    return rearrange(video, "b c f h w -> (b f) c h w")
