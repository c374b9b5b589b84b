"""One model assembly: the Moore / AnimateDiff files plus an optional ``aa2-modules`` file -> the networks.

The loader node, ``python -m aa2_core animate`` and the trainer all build their models here, so a trained
file applies the same way everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..choices import FusionBlocks
from ..errors import AA2Error, CheckpointError
from ..model_files import locate_models
from ..models import DenoisingNet, PoseModulation, ReferenceNet
from ..models.denoising_net import ANIMATE_X_MODULES
from ..models.implicit_pose_indicator import IPIConfig
from ..models.mamba_temporal import MambaConfig
from . import loaders
from .aa2_file import apply_aa2_parts, load_aa2_file
from .module_groups import GROUPS, build_modules  # noqa: F401  (build_modules: re-exported)

# Module groups the trainer selects (--modules aa2,ipi,mamba) -> {model: parameter-name prefixes}
MODULE_NAMES = {"aa2": "Animate Anyone 2 modules", "ipi": "Implicit Pose Indicator", "mamba": "Mamba temporal layers",
                "whole": "whole networks"}

FUSION_BLOCKS = tuple(FusionBlocks.values())


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

    fusion_blocks = FusionBlocks.parse(fusion_blocks, "fusion_blocks").value
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
    net = models.denoising
    for group, config_type, add in (("ipi", IPIConfig, net.add_ipi), ("mamba", MambaConfig, net.add_mamba)):
        if group in metadata:
            config = config_type.from_dict(metadata[group])
            if getattr(net, group) is None or getattr(net, group).config != config:
                add(config)
        elif group in metadata["module_groups"]:
            raise CheckpointError(f"AA2 module file ({path}) holds {MODULE_NAMES[group]} weights but no {group!r} "
                                  "config in its metadata; it was not written by this pack's trainer")
    for group in GROUPS.values():  # plug-in modules (a registered guider) are built before their weights load
        if group.build is not None and group.name not in ANIMATE_X_MODULES and any(
                prefix and key.startswith(prefix) for net_name, prefixes in group.prefixes.items()
                for key in parts.get(net_name, {}) for prefix in prefixes):
            group.build(models)
    net.aa2_file = path
    targets = {"denoising": models.denoising, "pose": models.pose, "reference": models.reference}
    if "motion" in parts:
        if models.denoising.motion is None:
            raise CheckpointError(f"AA2 module file ({path}) holds motion modules, but no motion module is loaded")
        targets["motion"] = models.denoising.motion
    for name, tensors in parts.items():
        apply_aa2_parts(targets[name], tensors, f"AA2 module file ({path}), part {name!r}")
    return metadata


def module_parameters(models: ModelSet, groups) -> list[tuple[str, object]]:
    """``(qualified name, parameter)`` of the module groups (``module_groups.GROUPS``) that train; names read
    ``denoising.ipi.…`` as in the aa2-modules file. Raises if a group is unknown or not built."""
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise AA2Error(f"unknown module group(s) {unknown}; choose from {', '.join(GROUPS)}")
    for group in groups:
        if group in ANIMATE_X_MODULES:
            models.denoising.require(group)
    return [(f"{model}.{name}", p) for group in groups for model, prefixes in GROUPS[group].prefixes.items()
            for name, p in getattr(models, model).named_parameters() if name.startswith(prefixes)]


def held_modules(models: ModelSet) -> list[str]:
    """Module groups the applied aa2-modules file holds ([] without a file), for the loader to report."""
    return list(models.aa2_modules.get("module_groups", []))


def describe_modules(models: ModelSet) -> str:
    held = held_modules(models)
    if not models.aa2_modules:
        return "no aa2-modules file: the AA2 modules are untrained no-ops"
    arch = models.denoising.architecture()
    detail = {"ipi": lambda c: f"{c['layers']} layers, {c['num_tokens']} tokens/frame",
              "mamba": lambda c: f"{'replacing' if c['replace'] else 'after'} temporal attention in {len(models.denoising.mamba.slots)} slots"}
    names = [MODULE_NAMES.get(g, g) + (f" ({detail[g](arch[g])})" if g in arch else "") for g in held]
    return "aa2-modules file holds: " + (", ".join(names) or "nothing")


def assemble_from_folder(models_dir: str, aa2_modules: str | None = None, fusion_blocks: str = "full") -> ModelSet:
    """Everything from a ComfyUI-style ``models`` folder; each missing file is named with where it goes."""
    found, missing = locate_models(models_dir)
    if missing:
        raise AA2Error("missing model files:\n  " + "\n  ".join(missing))
    return assemble(found["denoising_unet"], found["reference_unet"], found["pose_guider"], found["motion_module"],
                    fusion_blocks, aa2_modules, vae=found["vae"], clip_vision=found["clip_vision"])
