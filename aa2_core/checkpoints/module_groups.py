"""The one registry of module groups: named sets of parameters of the trainable nets, by name prefix.

``--modules`` (the trainer), the aa2-modules file (which groups it holds) and ``assembly.module_parameters``
all read this table. New modules (Animate-X's IPI and Mamba, a plug-in guider) join with ``register_group``;
a group may also build its modules first, so a run from scratch can train them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from ..models.denoising_net import AA2_DENOISING_MODULES, ANIMATE_X_MODULES
from ..models.implicit_pose_indicator import IPIConfig
from ..models.mamba_temporal import MambaConfig

NETS = ("denoising", "reference", "pose")
# layers that mix frames: stage 1 (single images) never trains them
TEMPORAL = {"denoising": ("motion.", "mamba."), "pose": ("temporal.",)}


@dataclass(frozen=True)
class Group:
    name: str
    help: str
    prefixes: dict  # net -> tuple of parameter-name prefixes ("" = the whole net)
    build: Optional[Callable] = None  # build(models): create the group's modules if the net lacks them


GROUPS: dict[str, Group] = {}


def register_group(name: str, help: str, prefixes: dict, build: Optional[Callable] = None) -> Group:
    unknown = set(prefixes) - set(NETS)
    if unknown:
        raise ValueError(f"group {name!r}: unknown nets {sorted(unknown)}; expected some of {NETS}")
    GROUPS[name] = Group(name, help, {k: tuple(v) for k, v in prefixes.items()}, build)
    return GROUPS[name]


def _build(group: str):
    """build(models) for an Animate-X group: ``build_modules`` with its default config (the IPI at the
    UNet's cross-attention width, i.e. the image encoder's embedding); a module already loaded from
    ``--aa2-modules`` keeps its config and weights."""
    def build(models) -> None:
        build_modules(models, [group])
    return build


def build_modules(models, groups, ipi: IPIConfig | None = None, mamba: MambaConfig | None = None) -> None:
    """Build the Animate-X modules of ``groups`` that the models lack (untrained: exact no-ops), for training
    from scratch. Default IPI widths follow the UNet's cross-attention width (the CLIP embedding's)."""
    net = models.denoising
    width = net.unet.config.cross_attention_dim
    if "ipi" in groups and net.ipi is None:
        net.add_ipi(ipi or IPIConfig(feature_dim=width, dim=width))
    if "mamba" in groups and net.mamba is None:
        net.add_mamba(mamba or MambaConfig())


register_group("aa2", "the Animate Anyone 2 modules: environment conv_in, object guider, spatial blending, "
               "depth branch and temporal Conv3D of the pose modulation (the base stays frozen)",
               {"denoising": AA2_DENOISING_MODULES, "pose": ("depth_trunk.", "depth_attention.", "temporal.")})
register_group("temporal", "the AnimateDiff motion modules", {"denoising": ("motion.",)})
register_group("all", "everything but the VAE and the image encoder: both UNets, motion modules, pose guider",
               {net: ("",) for net in NETS})
# The IPI trains in both stages. Its motion attention and cross-attention layers act frame by frame, and on one
# frame the keypoint encoder's transformer along the frames is a per-frame map (attention over a single frame
# is the identity mix: its value/FFN path learns, query/key wait for stage 2). The paper trains it only on clips
# (Animate-X, appendix: one stage, 32 frames); stage 2 is that setting.
register_group("ipi", "Animate-X's Implicit Pose Indicator: keypoint encoder, motion-token extractor and the motion "
               "attention after each spatial attention (built with its default config if absent; the driving "
               "video is the clip itself)", {"denoising": ANIMATE_X_MODULES["ipi"]}, build=_build("ipi"))
register_group("mamba", "Animate-X's Mamba temporal layers (built with their default config if absent)",
               {"denoising": ANIMATE_X_MODULES["mamba"]}, build=_build("mamba"))
