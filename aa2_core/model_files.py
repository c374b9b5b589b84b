"""Where each weight file lives in a ComfyUI-style ``models`` folder, and finding them there.

The nodes ask ComfyUI's ``folder_paths`` for the same folder names; the command line looks under a
``models`` directory given by the user.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

WEIGHT_EXTENSIONS = (".safetensors", ".sft", ".pth", ".pt", ".ckpt", ".bin")


@dataclass(frozen=True)
class ModelFile:
    role: str
    folders: tuple[str, ...]  # ComfyUI model folder names, searched in order
    names: tuple[str, ...]  # file (or diffusers folder) stems that fill the role
    source: str  # where users get it

    def where(self) -> str:
        return f"models/{self.folders[0]}/{self.names[0]}.safetensors (or .pth)"


MODEL_FILES = (
    ModelFile("denoising_unet", ("animate_anyone2",), ("denoising_unet",), "Moore-AnimateAnyone release"),
    ModelFile("reference_unet", ("animate_anyone2",), ("reference_unet",), "Moore-AnimateAnyone release"),
    ModelFile("pose_guider", ("animate_anyone2",), ("pose_guider",), "Moore-AnimateAnyone release"),
    ModelFile(
        "motion_module",
        ("animate_anyone2", "animatediff_models"),
        ("motion_module", "mm_sd_v15_v2", "v3_sd15_mm"),
        "Moore-AnimateAnyone release (or an AnimateDiff motion module)",
    ),
    ModelFile("vae", ("vae",), ("sd-vae-ft-mse", "vae-ft-mse-840000-ema-pruned", "diffusion_pytorch_model"), "stabilityai/sd-vae-ft-mse"),
    ModelFile(
        "clip_vision",
        ("clip_vision",),
        ("image_encoder", "sd-image-variations-image_encoder", "model"),
        "lambdalabs/sd-image-variations-diffusers, folder image_encoder",
    ),
)


def find_model_file(models_dir: str, spec: ModelFile) -> str | None:
    """First file (or diffusers folder) under ``models_dir`` that fills ``spec``; None if there is none."""
    for folder in spec.folders:
        base = os.path.join(models_dir, folder)
        for name in spec.names:
            candidate = os.path.join(base, name)
            if os.path.isdir(candidate):
                return candidate
            for ext in WEIGHT_EXTENSIONS:
                if os.path.isfile(candidate + ext):
                    return candidate + ext
    return None


def fetch_hint(models_dir: str, spec: ModelFile) -> str:
    """The ``download`` command that fetches the released file filling ``spec`` (from the model manifest)."""
    from .model_manifest import MANIFEST, download_command

    entry = next((e for e in MANIFEST if e.folder in spec.folders and os.path.splitext(e.name)[0] in spec.names), None)
    return f"; or fetch it: {download_command(models_dir, entry)}" if entry else ""


def locate_models(models_dir: str) -> tuple[dict[str, str], list[str]]:
    """(found role -> path, messages for each missing file naming where it goes and the command that fetches it)."""
    found, missing = {}, []
    for spec in MODEL_FILES:
        path = find_model_file(models_dir, spec)
        if path:
            found[spec.role] = path
        else:
            missing.append(f"{spec.role}: put it at {os.path.join(models_dir, '')}{spec.where()[len('models/'):]} "
                           f"(from: {spec.source}){fetch_hint(models_dir, spec)}")
    return found, missing
