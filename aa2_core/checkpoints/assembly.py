"""One model assembly: the Moore / AnimateDiff files plus an optional ``aa2-modules`` file -> the networks.

The loader node, ``python -m aa2_core animate`` and the trainer all build their models here, so a trained
file applies the same way everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import AA2Error, CheckpointError
from ..model_files import locate_models
from ..models import DenoisingNet, PoseModulation, ReferenceNet
from . import loaders
from .aa2_file import apply_aa2_parts, load_aa2_file

FUSION_BLOCKS = ("full", "midup")


@dataclass
class ModelSet:
    denoising: DenoisingNet
    reference: ReferenceNet
    pose: PoseModulation
    vae: object | None = None  # diffusers AutoencoderKL (the command line and the trainer; ComfyUI brings its own)
    image_encoder: object | None = None  # ImageEncoder
    aa2_modules: dict = field(default_factory=dict)  # metadata of the applied aa2-modules file ({} if none)


def assemble(denoising_unet: str, reference_unet: str, pose_guider: str, motion_module: str | None = None,
             fusion_blocks: str = "full", aa2_modules: str | None = None, vae: str | None = None,
             clip_vision: str | None = None) -> ModelSet:
    """Load each file (paths), then apply the AA2 file, whose fusion blocks must match."""
    from ..models.image_encoder import ImageEncoder

    if fusion_blocks not in FUSION_BLOCKS:
        raise AA2Error(f"fusion_blocks must be one of {FUSION_BLOCKS}, got {fusion_blocks!r}")
    models = ModelSet(
        loaders.load_denoising_net(denoising_unet, motion_module, fusion_blocks),
        loaders.load_reference_net(reference_unet, fusion_blocks),
        loaders.load_pose_modulation(pose_guider),
        vae=loaders.load_vae(vae) if vae else None,
        image_encoder=ImageEncoder(loaders.load_clip_vision(clip_vision)).eval() if clip_vision else None,
    )
    if aa2_modules:
        models.aa2_modules = apply_aa2_file(models, aa2_modules)
    return models


def apply_aa2_file(models: ModelSet, path: str) -> dict:
    """Load an ``aa2-modules`` file into the assembled models; returns its metadata."""
    parts, metadata = load_aa2_file(path)
    trained_for = metadata.get("fusion_blocks") or models.denoising.fusion_blocks
    if trained_for != models.denoising.fusion_blocks:
        raise CheckpointError(
            f"AA2 module file ({path}) was trained with fusion_blocks={trained_for!r}, but the models were loaded "
            f"with {models.denoising.fusion_blocks!r}; choose {trained_for!r}"
        )
    targets = {"denoising": models.denoising, "pose": models.pose, "reference": models.reference}
    if "motion" in parts:
        if models.denoising.motion is None:
            raise CheckpointError(f"AA2 module file ({path}) holds motion modules, but no motion module is loaded")
        targets["motion"] = models.denoising.motion
    for name, tensors in parts.items():
        apply_aa2_parts(targets[name], tensors, f"AA2 module file ({path}), part {name!r}")
    return metadata


def assemble_from_folder(models_dir: str, aa2_modules: str | None = None, fusion_blocks: str = "full") -> ModelSet:
    """Everything from a ComfyUI-style ``models`` folder; each missing file is named with where it goes."""
    found, missing = locate_models(models_dir)
    if missing:
        raise AA2Error("missing model files:\n  " + "\n  ".join(missing))
    return assemble(found["denoising_unet"], found["reference_unet"], found["pose_guider"], found["motion_module"],
                    fusion_blocks, aa2_modules, vae=found["vae"], clip_vision=found["clip_vision"])
