"""The Moore-AnimateAnyone / SD1.5 family with the Animate Anyone 2 and Animate-X modules.

A ReferenceNet's tokens are fused into the DenoisingNet's self-attention (projected once per video); the
image embedding is the cross-attention context; the pose modulation (skeleton + structured depth) adds its
features after ``conv_in``. Each condition kind's network input is registered here, so a kind's slice of
``Conditions`` reaches the net through ``MOORE_INPUTS`` and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from einops import rearrange

from ..conditions.registry import CONDITION_KINDS, slice_frames
from ..models import DenoisingNet, PoseModulation
from .base import Denoiser

# kind name -> network_input(models, sliced tensors, num_frames) -> DenoisingNet keywords (built-in kinds)
MOORE_INPUTS: dict[str, Callable[..., dict]] = {
    "objects": lambda models, x, f: {"object_features": models.denoising.encode_objects(_video(x["latents"]))},
    "environment": lambda models, x, f: {"environment": torch.cat([_video(x["latents"]), x["mask"][None, None]], dim=1)},
    "ipi": lambda models, x, f: _motion_tokens(models, x, f),
}
UNCOND = "uncond"  # inputs the unconditional branch takes instead of the conditional ones (a dict in the inputs)


def _motion_tokens(models, x: dict, num_frames: int) -> dict:
    """The IPI's motion tokens; the unconditional branch gets the tokens of zero keypoints and features through
    the live indicator, as the released Animate-X zeroes its pose inputs there."""
    encode = models.denoising.encode_motion
    return {"motion_tokens": encode(x["keypoints"], x["features"], num_frames),
            UNCOND: {"motion_tokens": encode(torch.zeros_like(x["keypoints"]), torch.zeros_like(x["features"]), num_frames)}}
FAMILY_READS = {"depth"}  # kinds the family reads itself: depth goes into the pose modulation with the skeleton


@dataclass
class _RunState:
    context: torch.Tensor  # image embedding on the device
    reference: object  # ReferenceKV


@dataclass
class MooreModels(Denoiser):
    denoising: DenoisingNet
    pose: PoseModulation

    family = "moore"

    def check(self, conditions, clip_length: int) -> None:
        if conditions.driving_keypoints is not None:
            self.denoising.require("ipi")  # before any step runs, naming the aa2-modules file
        self.denoising.check_clip_length(clip_length)

    def begin(self, conditions, device, dtype, token_dtype=None) -> _RunState:
        ref = conditions.reference
        round_to = token_dtype or dtype  # Moore rounds the reference tokens through fp16
        tokens = {k: v.to(device, round_to).to(dtype) for k, v in ref.tokens.items()}
        return _RunState(ref.image_embeds.to(device, dtype), self.denoising.reference_kv(tokens))

    def clip_inputs(self, conditions, frames: torch.Tensor, device, dtype) -> dict:
        return network_inputs(self, conditions, frames, device, dtype)

    def predict(self, state: _RunState, x, t, inputs: dict, guided: bool, batched: bool):
        """The unconditional branch has no reference and a zero image embedding (Moore's CFG), and takes the
        ``UNCOND`` replacements of its inputs (the IPI's zero-pose tokens)."""
        net, context = self.denoising, state.context
        inputs, replaced = uncond_inputs(inputs)
        if not guided:
            return None, net(x, t, context, reference=state.reference, **inputs).float()
        zero = torch.zeros_like(context)
        if batched:
            doubled = {k: _pair(replaced[k], v) for k, v in inputs.items()}
            out = net(torch.cat([x, x]), t, torch.cat([zero, context]), reference=state.reference,
                      reference_rows=torch.tensor([False, True], device=x.device), **doubled).float()
            uncond, cond = out.chunk(2)
            return uncond, cond
        return net(x, t, zero, **replaced).float(), net(x, t, context, reference=state.reference, **inputs).float()


def uncond_inputs(inputs: dict) -> tuple[dict, dict]:
    """(the conditional inputs, the unconditional branch's inputs) from one clip's network inputs."""
    cond = {k: v for k, v in inputs.items() if k != UNCOND}
    return cond, {**cond, **inputs.get(UNCOND, {})}


def network_inputs(models: MooreModels, cond, frames: torch.Tensor, device, dtype) -> dict:
    """The DenoisingNet's keyword inputs for ``frames`` (indices): pose features from the skeleton (and depth),
    then each condition kind's input from its slice of ``cond``. Inputs two kinds both give (a plug-in guider's
    features after ``conv_in``, say) add up. The sampler and the trainer both use it."""
    skeleton = rearrange(cond.skeleton[frames].to(device, dtype), "f h w c -> f c h w")
    depth = None if cond.depth is None else cond.depth[frames, None].to(device, dtype)
    network = dict(pose_features=models.pose(skeleton, depth, num_frames=len(frames)))
    for name, tensors in cond.inputs.items():
        if name in FAMILY_READS:
            continue
        feed = MOORE_INPUTS.get(name) or getattr(CONDITION_KINDS.get(name), "network_input", None)
        if feed is None:
            raise ValueError(f"condition kind {name!r} feeds nothing in the {models.family} family (no network input registered)")
        for key, value in feed(models, slice_frames(tensors, frames, device, dtype), len(frames)).items():
            if key == UNCOND:
                network.setdefault(UNCOND, {}).update(value)
            else:
                network[key] = network[key] + value if key in network else value
    return network


def _video(frames: torch.Tensor) -> torch.Tensor:
    return rearrange(frames, "f c h w -> 1 c f h w")


def _pair(uncond, cond):
    """One batch of [unconditional, conditional] rows of an input (a tensor or a list of per-level tensors)."""
    if isinstance(cond, list):
        return [torch.cat([u, c]) for u, c in zip(uncond, cond)]
    return torch.cat([uncond, cond])
