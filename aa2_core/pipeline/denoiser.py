"""What a model family gives the shared sampler, and what the sampler keeps for itself (the sampler's contract:
families in ``aa2_core/families/`` implement it).

The sampler (``pipeline/sampler.py``) owns the denoising loop, the classifier-free-guidance combine, context
windows and motion frames, environment mode, step callbacks and cancel. A family owns its networks: what it
computes once per video (``begin``), one clip's network inputs from ``Conditions`` (``clip_inputs``), and one
prediction with or without its unconditional branch (``predict``). A new family (the released Animate-X
network) implements these four methods and the sampler does not change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from .options import Schedule


class Denoiser(ABC):
    """A model family's networks, as the sampler and the trainer call them."""

    family: str = "?"
    default_schedule: Schedule = Schedule.MOORE  # the noise schedule its weights were trained with

    @abstractmethod
    def check(self, conditions, clip_length: int) -> None:
        """Refuse conditions or a clip length the networks cannot take, before any step runs."""

    @abstractmethod
    def begin(self, conditions, device, dtype, token_dtype=None):
        """Whatever is computed once per video (image context, reference features), on ``device``."""

    @abstractmethod
    def clip_inputs(self, conditions, frames: torch.Tensor, device, dtype) -> dict:
        """The network inputs of the frames ``frames`` (indices), computed once per clip or window."""

    @abstractmethod
    def predict(self, state, x: torch.Tensor, t, inputs: dict, guided: bool, batched: bool):
        """``(uncond, cond)`` model outputs for latents ``x (1, c, f, h, w)``; ``uncond`` is None unless ``guided``.
        ``batched``: both branches in one batch (faster) rather than two passes (less memory)."""
