"""String enums shared by every layer (models, pipeline, trainer, nodes, CLI): the one spelling of each choice.

String enums, so a value read from a workflow widget or a command-line flag (``"ddim"``) converts with
``SchedulerName("ddim")`` and compares equal to its string. This module imports nothing of the pack, so the
models may use it without reaching up into the pipeline.
"""

from __future__ import annotations

from enum import Enum

import torch

from .errors import AA2Error


class Choice(str, Enum):
    @classmethod
    def values(cls) -> list[str]:
        """The widget / flag choices, in declaration order (the first is the default)."""
        return [m.value for m in cls]

    @classmethod
    def parse(cls, value, what: str):
        try:
            return cls(value)
        except ValueError:
            raise AA2Error(f"{what} must be one of {cls.values()}, got {value!r}") from None


class ClipPreprocess(Choice):
    SQUASH = "squash"  # the image squashed to 224x224 on its tensor (any size, no rounding)
    MOORE = "moore"  # Moore's pipeline: uint8 image through transformers' CLIPImageProcessor


class FusionBlocks(Choice):
    FULL = "full"  # ReferenceNet tokens fused into every self-attention block (the Moore weights)
    MIDUP = "midup"  # mid and up blocks only, as the Animate Anyone 2 paper


class Precision(Choice):
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"

    @property
    def dtype(self) -> torch.dtype:
        return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.value]
