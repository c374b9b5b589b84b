"""Typed sampling options owned by the library; the nodes and the command line list and pass these.

String enums (``choices.Choice``), so a value read from a workflow widget or a command-line flag (``"ddim"``)
converts with ``SchedulerName("ddim")`` and compares equal to its string.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..choices import Choice, ClipPreprocess  # noqa: F401  (re-exported: the options the nodes list)
from ..errors import AA2Error


class SchedulerName(Choice):
    DDIM = "ddim"
    EULER = "euler"
    DPMPP_2M = "dpmpp_2m"
    LCM = "lcm"


class Schedule(Choice):
    MOORE = "moore"  # v-prediction, zero terminal SNR, trailing: the Moore-AnimateAnyone weights
    SD15 = "sd15"  # plain SD1.5 epsilon models
    ANIMATE_X = "animate_x"  # the released Animate-X: v-prediction, zero-SNR linear_sd, leading (+1) timesteps


class StitchMode(Choice):
    MOTION_FRAMES = "motion_frames"  # clips in turn, each continuing from the previous one's last frames
    CONTEXT_WINDOWS = "context_windows"  # overlapping windows over the whole video, fused at every step


class Fusion(Choice):
    # "linear" (ramps over the overlap only) was removed: normalised, it gave the pyramid's weights exactly,
    # since two linear ramps across one overlap always cross-fade in the same ratio.
    PYRAMID = "pyramid"  # weight grows with the distance to the window's edge: a linear cross-fade over overlaps
    FLAT = "flat"  # plain average


class ContextSchedule(Choice):
    OPEN = "open"  # windows end at the last frame
    CLOSED_LOOP = "closed_loop"  # Moore-AnimateAnyone's uniform schedule: windows wrap past the end to the start


class EnvironmentMode(Choice):
    """Whether the sampler puts the driving video's (noised) scene back outside the formulated mask at every step."""

    AUTO = "auto"  # on while the loaded AA2 environment modules are untrained (exact no-ops), off once trained ones are
    ON = "on"  # always (the public weights have no environment input: this is how they keep the scene)
    OFF = "off"  # never: the network alone paints the frame (trained environment modules read the scene themselves)

    @classmethod
    def parse(cls, value, what: str = "environment_mode"):
        if isinstance(value, bool):  # the former BOOLEAN widget and keyword: True = on, False = off
            return cls.ON if value else cls.OFF
        return super().parse(value, what)


@dataclass(frozen=True)
class Stitching:
    """How a video longer than one clip is made."""

    mode: StitchMode = StitchMode.MOTION_FRAMES
    clip_length: int = 24  # frames per clip / window
    motion_frames: int = 4  # known frames carried into each next clip (motion_frames mode)
    context_overlap: int = 4  # frames shared by neighbouring windows (context_windows mode)
    fusion: Fusion = Fusion.PYRAMID  # window weights (context_windows mode)
    context_schedule: ContextSchedule = ContextSchedule.OPEN

    def __post_init__(self):
        for name, kind in (("mode", StitchMode), ("fusion", Fusion), ("context_schedule", ContextSchedule)):
            object.__setattr__(self, name, kind.parse(getattr(self, name), name))
        if self.clip_length < 1:
            raise AA2Error(f"clip_length must be at least 1, got {self.clip_length}")
        if self.mode == StitchMode.MOTION_FRAMES and not 0 <= self.motion_frames < self.clip_length:
            raise AA2Error(f"motion_frames ({self.motion_frames}) must be in [0, clip_length={self.clip_length})")
        if self.mode == StitchMode.CONTEXT_WINDOWS and not 0 <= self.context_overlap < self.clip_length:
            raise AA2Error(f"context_overlap ({self.context_overlap}) must be in [0, clip_length={self.clip_length})")


@dataclass(frozen=True)
class SamplerSettings:
    steps: int = 25
    cfg: float = 3.5
    seed: int = 0
    scheduler: SchedulerName = SchedulerName.DDIM
    schedule: Schedule = Schedule.MOORE
    stitching: Stitching = field(default_factory=Stitching)
    # keep the driving video's scene outside the formulated mask at every step: "auto" (on with untrained environment
    # modules, off with trained ones), "on", "off"; True / False are read as "on" / "off"
    environment_mode: EnvironmentMode | bool | str = EnvironmentMode.AUTO
    cfg_batch: bool = True  # run the CFG branches as one batch (faster) or one after the other (less memory)
    # Moore-AnimateAnyone hands the reference tokens to the denoiser in fp16 whatever the compute dtype;
    # rounding them the same way gives the same pictures as its pipeline
    reference_token_dtype: torch.dtype | None = torch.float16

    def __post_init__(self):
        object.__setattr__(self, "scheduler", SchedulerName.parse(self.scheduler, "scheduler"))
        object.__setattr__(self, "schedule", Schedule.parse(self.schedule, "schedule"))
        object.__setattr__(self, "environment_mode", EnvironmentMode.parse(self.environment_mode, "environment_mode"))
        if not isinstance(self.stitching, Stitching):
            raise AA2Error(f"stitching must be a Stitching, got {type(self.stitching).__name__}")
        if self.steps < 1:
            raise AA2Error(f"steps must be at least 1, got {self.steps}")
        if not math.isfinite(self.cfg):  # nan guidance turns every latent into nan: a black video, no error
            raise AA2Error(f"cfg must be a finite number (1 = no guidance), got {self.cfg}")
        if not 0 <= self.seed < 2**64:
            raise AA2Error(f"seed must be in [0, 2^64), got {self.seed}")

