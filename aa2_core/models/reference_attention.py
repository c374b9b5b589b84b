"""ReferenceNet -> DenoisingNet feature passing through spatial self-attention.

The ReferenceNet records the normalised input of every spatial self-attention (``attn1``) it runs.
The DenoisingNet's matching ``attn1`` then attends over its own frame tokens *plus* those reference
tokens (queries from the frame only). This is Animate Anyone's ReferenceNet fusion; Moore-AnimateAnyone
implements it by patching ``BasicTransformerBlock.forward``; here it is two diffusers attention
processors, so the diffusers modules (and their state-dict keys) stay untouched.

The reference tokens reach the processors through ``cross_attention_kwargs["reference"]``, the path
diffusers already threads from the UNet down to every processor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from ..choices import FusionBlocks


def spatial_self_attentions(unet, fusion_blocks: str) -> dict[str, Attention]:
    """The ``attn1`` modules of the UNet's spatial transformer blocks that take part in fusion.

    ``full`` is every block (what the Moore-AnimateAnyone weights were trained with); ``midup`` is the
    mid block and the up blocks only (the Animate Anyone 2 paper).
    """
    fusion_blocks = FusionBlocks.parse(fusion_blocks, "fusion_blocks")
    prefixes = ("down_blocks.", "mid_block.", "up_blocks.") if fusion_blocks == FusionBlocks.FULL else ("mid_block.", "up_blocks.")
    return {
        name: module
        for name, module in unet.named_modules()
        if name.endswith(".attn1") and ".attentions." in name and name.startswith(prefixes)
    }


@dataclass
class ReferenceRecorder:
    """Collects the tokens the ReferenceNet writes, keyed by the ``attn1`` module name."""

    tokens: dict[str, torch.Tensor] = field(default_factory=dict)

    def record(self, name: str, hidden_states: torch.Tensor) -> None:
        self.tokens[name] = hidden_states


@dataclass
class ReferenceKV:
    """Reference keys/values for the DenoisingNet, projected once per generation.

    ``kv[name]`` holds ``(key, value)`` of shape ``(n_ref, tokens, channels)``, one row per sample
    that reads the reference. ``rows`` says which samples of the denoiser batch read it (the
    classifier-free-guidance unconditional samples do not), ``num_frames`` how many frames each
    sample has, so that frame rows map back to samples.
    """

    kv: dict[str, tuple[torch.Tensor, torch.Tensor]]
    rows: torch.Tensor | None = None
    num_frames: int = 1

    def for_batch(self, rows: torch.Tensor | None, num_frames: int) -> "ReferenceKV":
        return ReferenceKV(self.kv, rows, num_frames)


class ReferenceWriteProcessor(AttnProcessor2_0):
    """Plain SDPA self-attention that also records its input for the DenoisingNet."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, reference=None):
        if reference is not None:
            reference.record(self.name, hidden_states)
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class ReferenceReadProcessor:
    """Self-attention over frame tokens plus (for the rows that read it) the reference tokens."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, reference=None):
        query = attn.to_q(hidden_states)
        key = attn.to_k(hidden_states)
        value = attn.to_v(hidden_states)
        kv = reference.kv.get(self.name) if reference is not None else None
        if kv is None:
            out = _sdpa(attn, query, key, value)
        else:
            out = _sdpa_with_reference(attn, query, key, value, kv, reference.rows, reference.num_frames)
        return attn.to_out[1](attn.to_out[0](out))


class PassThroughProcessor(AttnProcessor2_0):
    """Standard SDPA processor that accepts (and ignores) the ``reference`` keyword.

    Cross-attention and ReferenceNet layers outside the fusion set get the same
    ``cross_attention_kwargs`` as the fused ones; this keeps diffusers from warning about it.
    """

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, reference=None):
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


def _heads(attn, x):
    b, n, _ = x.shape
    return x.view(b, n, attn.heads, -1).transpose(1, 2)


def _sdpa(attn, query, key, value):
    b, n, c = query.shape
    out = F.scaled_dot_product_attention(_heads(attn, query), _heads(attn, key), _heads(attn, value))
    return out.transpose(1, 2).reshape(b, n, c)


def _sdpa_with_reference(attn, query, key, value, kv, rows, num_frames):
    ref_key, ref_value = kv
    if rows is None:  # every sample reads the reference
        return _sdpa(attn, query, *_append_reference(key, value, ref_key, ref_value, num_frames))
    frame_rows = rows.repeat_interleave(num_frames)
    out = torch.empty_like(query)
    plain = ~frame_rows
    if plain.any():
        out[plain] = _sdpa(attn, query[plain], key[plain], value[plain])
    out[frame_rows] = _sdpa(
        attn, query[frame_rows], *_append_reference(key[frame_rows], value[frame_rows], ref_key, ref_value, num_frames)
    )
    return out


def _append_reference(key, value, ref_key, ref_value, num_frames):
    # one reference row per reading sample, shared by all of its frames
    ref_key = ref_key.to(key.dtype).repeat_interleave(num_frames, dim=0)
    ref_value = ref_value.to(value.dtype).repeat_interleave(num_frames, dim=0)
    return torch.cat([key, ref_key], dim=1), torch.cat([value, ref_value], dim=1)


def install_processors(unet, fusion_blocks: str, processor_cls) -> list[str]:
    """Give the fused ``attn1`` layers ``processor_cls(name)`` and every other attention a pass-through.

    Returns the names of the fused layers.
    """
    fused = spatial_self_attentions(unet, fusion_blocks)
    for name, module in unet.named_modules():
        if isinstance(module, Attention):
            module.set_processor(processor_cls(name) if name in fused else PassThroughProcessor())
    return sorted(fused)
