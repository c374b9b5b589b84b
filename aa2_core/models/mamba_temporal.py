"""Mamba temporal layers (Animate-X, section 3.3): a selective state-space model along the frame axis.

Each layer sits in a motion-module slot (after the resnet/attention pair of a UNet block) and runs along
the frames at every pixel, as AnimateDiff's temporal attention does. A slot either keeps its temporal
attention and adds the Mamba layer after it (``replace=False``), or skips the attention (``replace=True``).
The layer is residual and its ``out_proj`` starts at zero, so an untrained layer is an exact no-op.

``MambaMixer`` has the parameters of ``mamba_ssm.Mamba`` under the same names, so weights trained with
either load into the other; it runs ``mamba_ssm``'s kernels when they import (see ``selective_scan``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from einops import rearrange
from torch import nn

from ..errors import AA2Error
from .selective_scan import causal_conv1d, selective_scan


@dataclass(frozen=True)
class MambaConfig:
    """Which motion-module slots get a Mamba layer, and the layer's sizes (``mamba_ssm.Mamba`` defaults)."""

    slots: tuple[str, ...] = ("all",)  # slot names (see ``motion_slots``), or "all" / "down" / "mid" / "up"
    replace: bool = False  # True: the slot's temporal attention is skipped; False: Mamba runs after it
    bidirectional: bool = True  # a second scan over reversed frames, so early frames see later ones
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2

    def to_dict(self) -> dict:
        return {**asdict(self), "slots": list(self.slots)}

    @classmethod
    def from_dict(cls, values: dict) -> "MambaConfig":
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        if "slots" in known:
            known["slots"] = tuple(known["slots"])
        return cls(**known)


def motion_slots(unet) -> dict[str, int]:
    """Every motion-module slot of a diffusers UNet -> its channels, named as ``MotionModuleSet`` lays them out:
    ``down_<block>_<j>``, ``mid_<j>``, ``up_<block>_<j>``."""
    slots = {}
    for i, block in enumerate(unet.down_blocks):
        for j, resnet in enumerate(block.resnets):
            slots[f"down_{i}_{j}"] = resnet.out_channels
    for j, _ in enumerate(unet.mid_block.attentions):
        slots[f"mid_{j}"] = unet.mid_block.resnets[-1].out_channels
    for i, block in enumerate(unet.up_blocks):
        for j, resnet in enumerate(block.resnets):
            slots[f"up_{i}_{j}"] = resnet.out_channels
    return slots


def resolve_slots(requested, available) -> list[str]:
    """Slot names and groups ("all", "down", "mid", "up") -> slot names, in UNet order."""
    chosen = set()
    for name in requested:
        if name == "all":
            chosen.update(available)
        elif name in ("down", "mid", "up"):
            chosen.update(s for s in available if s.startswith(name + "_"))
        elif name in available:
            chosen.add(name)
        else:
            raise AA2Error(f"unknown motion-module slot {name!r} for Mamba layers; slots are {', '.join(available)} "
                           "(or all / down / mid / up)")
    return [s for s in available if s in chosen]


class MambaMixer(nn.Module):
    """``mamba_ssm.Mamba`` (Gu & Dao, 2023): ``(b, L, d_model) -> (b, L, d_model)``, same parameter names."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_min: float = 1e-3, dt_max: float = 1e-1, dt_init_floor: float = 1e-4):
        super().__init__()
        self.d_inner = expand * d_model
        self.d_state = d_state
        self.dt_rank = math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

        # Mamba's initialisation: dt log-uniform in [dt_min, dt_max] through the softplus, S4D-real A
        nn.init.uniform_(self.dt_proj.weight, -self.dt_rank**-0.5, self.dt_rank**-0.5)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
        self.D = nn.Parameter(torch.ones(self.d_inner))

    def forward(self, hidden_states: torch.Tensor, backend: str = "auto") -> torch.Tensor:
        length = hidden_states.shape[1]
        x, z = rearrange(self.in_proj(hidden_states), "b l d -> b d l").chunk(2, dim=1)
        x = causal_conv1d(x, self.conv1d)
        dt, B, C = self.x_proj(rearrange(x, "b d l -> (b l) d")).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        # layers are called, never their .weight read, so hosts that cast or stream weights per call (ComfyUI) work;
        # so dt_proj's bias goes in here, not as the kernel's fp32 delta_bias
        dt = rearrange(self.dt_proj(dt), "(b l) d -> b d l", l=length)
        B = rearrange(B, "(b l) n -> b n l", l=length).contiguous()
        C = rearrange(C, "(b l) n -> b n l", l=length).contiguous()
        A = -torch.exp(self.A_log.float())
        y = selective_scan(x.contiguous(), dt.contiguous(), A, B, C, self.D.float(), z.contiguous(),
                           delta_softplus=True, backend=backend)
        return self.out_proj(rearrange(y, "b d l -> b l d"))


class MambaTemporalLayer(nn.Module):
    """Group norm per frame, Mamba along the frames at each pixel, residual. Zero ``out_proj``: a no-op."""

    def __init__(self, channels: int, config: MambaConfig, norm_num_groups: int = 32):
        super().__init__()
        self.norm = nn.GroupNorm(norm_num_groups, channels, eps=1e-6)
        sizes = dict(d_state=config.d_state, d_conv=config.d_conv, expand=config.expand)
        self.forward_mixer = MambaMixer(channels, **sizes)
        self.backward_mixer = MambaMixer(channels, **sizes) if config.bidirectional else None
        for mixer in (self.forward_mixer, self.backward_mixer):
            if mixer is not None:
                nn.init.zeros_(mixer.out_proj.weight)

    def forward(self, hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:
        _, _, height, width = hidden_states.shape
        x = rearrange(self.norm(hidden_states), "(b f) c h w -> (b h w) f c", f=num_frames)
        out = self.forward_mixer(x)
        if self.backward_mixer is not None:
            out = out + self.backward_mixer(x.flip(1)).flip(1)
        return hidden_states + rearrange(out, "(b h w) f c -> (b f) c h w", h=height, w=width)


class MambaTemporalSet(nn.Module):
    """The Mamba layers of one DenoisingNet, keyed by motion-module slot (``layers["up_1_0"]``)."""

    def __init__(self, unet, config: MambaConfig, norm_num_groups: int = 32):
        super().__init__()
        available = motion_slots(unet)
        self.config = config
        self.slots = resolve_slots(config.slots, list(available))
        self.layers = nn.ModuleDict({s: MambaTemporalLayer(available[s], config, norm_num_groups) for s in self.slots})

    def get(self, slot: str):
        return self.layers[slot] if slot in self.layers else None

    def replaces(self, slot: str) -> bool:
        return self.config.replace and slot in self.layers
