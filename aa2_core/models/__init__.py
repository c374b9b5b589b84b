"""Networks of Animate Anyone 2, built on diffusers layers."""

from .denoising_net import AA2_DENOISING_MODULES, DenoisingNet
from .motion_module import MotionConfig, MotionModuleSet
from .object_guider import ObjectGuider, SpatialBlend
from .pose_modulation import PoseGuider, PoseModulation
from .reference_attention import ReferenceKV
from .reference_net import ReferenceNet

__all__ = [
    "AA2_DENOISING_MODULES",
    "DenoisingNet",
    "MotionConfig",
    "MotionModuleSet",
    "ObjectGuider",
    "PoseGuider",
    "PoseModulation",
    "ReferenceKV",
    "ReferenceNet",
    "SpatialBlend",
]
