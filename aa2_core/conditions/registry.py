"""Condition kinds as data: what a guider is made of, so prepare, the sampler and the trainer iterate a registry.

A kind says which ``prepare_conditions`` keywords it reads, how it turns them into per-frame tensors at the
output size (``build``), which network inputs one clip's slice of those tensors feeds (``network_input``),
which module group trains it, and how a training clip supplies its inputs (``from_clip``). Every stored
tensor has the frame axis first, so slicing a clip or window is the same for every kind.

A new guider (say a face-crop guider) registers one ``ConditionKind`` next to its module: see ARCHITECTURE.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..errors import AA2Error


@dataclass(frozen=True)
class BuildContext:
    """What every builder may use: the output size, the frame count, and the VAE as a callable."""

    height: int
    width: int
    frames: int
    encode: Callable[[torch.Tensor], torch.Tensor]  # IMAGE [F, H, W, 3] -> (F, 4, H/8, W/8) scaled latents


@dataclass(frozen=True)
class ConditionKind:
    name: str
    inputs: tuple[str, ...]  # prepare_conditions keywords it reads
    build: Callable[..., dict]  # build(ctx, **inputs) -> {field: tensor with frames first}
    # network_input(models, sliced {field: tensor}, num_frames) -> denoising-net keywords; None: the family itself
    # reads the fields (depth feeds the pose modulation together with the skeleton)
    network_input: Optional[Callable[..., dict]] = None
    module_group: Optional[str] = None  # the --modules group that trains its modules
    from_clip: Optional[Callable[..., dict]] = None  # TrainingClip -> {input: value}; default: clip.extras[name]
    options: tuple[str, ...] = ()  # keywords among ``inputs`` that tune the kind but do not turn it on
    help: str = ""

    def given(self, values: dict) -> bool:
        return any(values.get(k) is not None for k in self.inputs if k not in self.options)

    def clip_inputs(self, clip) -> dict:
        if self.from_clip is not None:
            return self.from_clip(clip)
        return dict(getattr(clip, "extras", {}).get(self.name, {}))


CONDITION_KINDS: dict[str, ConditionKind] = {}


def register_condition(kind: ConditionKind) -> ConditionKind:
    """Add (or replace, for tests and plug-ins) a condition kind; its keywords must not clash with another's."""
    for other in CONDITION_KINDS.values():
        clash = set(kind.inputs) & set(other.inputs)
        if other.name != kind.name and clash:
            raise AA2Error(f"condition kind {kind.name!r}: inputs {sorted(clash)} already belong to {other.name!r}")
    CONDITION_KINDS[kind.name] = kind
    return kind


def unregister_condition(name: str) -> None:
    CONDITION_KINDS.pop(name, None)


def kind_inputs() -> dict[str, ConditionKind]:
    """keyword -> the kind that reads it."""
    return {key: kind for kind in CONDITION_KINDS.values() for key in kind.inputs}


def slice_frames(tensors: dict, frames: torch.Tensor, device, dtype) -> dict:
    """One clip's (or window's) rows of a kind's per-frame tensors, on the compute device; floats in ``dtype``."""
    return {k: v[frames].to(device, dtype if v.is_floating_point() else v.dtype) for k, v in tensors.items()}
