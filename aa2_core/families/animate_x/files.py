"""Find and load the released Animate-X files in a ComfyUI models folder -> ``AnimateXBundle``.

=================  ============================================  =====================================================
role               folder (first found wins)                     file names
=================  ============================================  =====================================================
UNet               ``diffusion_models/``, ``animate_x/``          ``animate-x_ckpt.pth`` or ``animate-x_ckpt.safetensors``
VAE (SD2.1)        ``vae/``, ``checkpoints/``                     ``v2-1_512-ema-pruned.ckpt`` (its ``first_stage_model.*``
                                                                 keys) or ``.safetensors``, or an SD2.x VAE file
image encoder      ``clip_vision/``                               ``clip_vision_h.safetensors`` (ComfyUI's OpenCLIP ViT-H/14
                                                                 vision tower, transformers layout)
zero_y (optional)  ``animate_x/``                                 ``animate_x_zero_y.safetensors`` (key ``zero_y``: the
                                                                 empty prompt's OpenCLIP text tokens, ``(1, 77, 1024)``)
=================  ============================================  =====================================================

A missing file is named with its folder and what it is, all missing files in one error. OpenCLIP's own
``open_clip_pytorch_model.bin`` is recognised and refused with the name of the file that works (its key layout is
OpenCLIP's, not read yet). Without ``zero_y`` the family uses a zero stand-in and warns (``family.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ...errors import AA2Error
from .family import AnimateXModels
from .loader import load_animate_x_unet, load_animate_x_vae

UNET_FOLDERS = ("diffusion_models", "animate_x")
UNET_NAMES = ("animate-x_ckpt.pth", "animate-x_ckpt.safetensors")
VAE_FOLDERS = ("vae", "checkpoints")
VAE_NAMES = ("v2-1_512-ema-pruned.ckpt", "v2-1_512-ema-pruned.safetensors", "sd21_vae.safetensors",
             "vae-sd2.1.safetensors")
CLIP_FOLDERS = ("clip_vision",)
CLIP_NAMES = ("clip_vision_h.safetensors", "open_clip_vit_h_14.safetensors")
OPENCLIP_BIN = "open_clip_pytorch_model.bin"
ZERO_Y_FOLDERS = ("animate_x",)
ZERO_Y_NAMES = ("animate_x_zero_y.safetensors",)

ROLES = {  # role -> (folders, names, what it is)
    "unet": (UNET_FOLDERS, UNET_NAMES, "the Animate-X UNet (UNetSD_Animate_X + pose encoder + IPI) from antgroup/animate-x"),
    "vae": (VAE_FOLDERS, VAE_NAMES, "the SD2.1 VAE (stabilityai/stable-diffusion-2-1-base's v2-1_512-ema-pruned.ckpt)"),
    "clip_vision": (CLIP_FOLDERS, CLIP_NAMES, "the OpenCLIP ViT-H/14 image encoder (ComfyUI's clip_vision_h.safetensors)"),
}


def _find(models_dir: str, folders, names) -> str | None:
    for folder in folders:
        for name in names:
            path = os.path.join(models_dir, folder, name)
            if os.path.isfile(path):
                return path
    return None


def locate_animate_x_files(models_dir: str) -> dict[str, str]:
    """``{role: path}`` for unet, vae, clip_vision (and zero_y when present); one error naming every missing file."""
    if not os.path.isdir(models_dir):
        raise AA2Error(f"Animate-X: models folder {models_dir} not found")
    found, missing = {}, []
    for role, (folders, names, what) in ROLES.items():
        path = _find(models_dir, folders, names)
        if path is None:
            hint = ""
            if role == "clip_vision" and _find(models_dir, folders, (OPENCLIP_BIN,)):
                hint = f" ({OPENCLIP_BIN} is there, but its OpenCLIP key layout is not read yet: use clip_vision_h.safetensors)"
            where = " or ".join(os.path.join(models_dir, f) for f in folders)
            missing.append(f"{' or '.join(names)} in {where}: {what}{hint}")
        else:
            found[role] = path
    if missing:
        raise AA2Error("Animate-X files missing:\n  " + "\n  ".join(missing))
    zero_y = _find(models_dir, ZERO_Y_FOLDERS, ZERO_Y_NAMES)
    if zero_y:
        found["zero_y"] = zero_y
    return found


def is_animate_x_folder(models_dir: str) -> bool:
    """True when the folder holds the Animate-X UNet (``--family auto``)."""
    return bool(models_dir) and _find(models_dir, UNET_FOLDERS, UNET_NAMES) is not None


@dataclass
class AnimateXBundle:
    models: AnimateXModels  # the family the sampler takes
    vae: object  # diffusers AutoencoderKL (SD2.1), latents scaled by 0.18215
    image_encoder: object  # models.image_encoder.ImageEncoder (projected embedding (1, 1, dim))
    paths: dict[str, str]


def load_animate_x_family(source, reference_latent: bool = False, dtype: torch.dtype | None = None) -> AnimateXBundle:
    """A ComfyUI models folder, or ``{"unet": ..., "vae": ..., "clip_vision": ..., "zero_y": ...}`` paths
    -> ``AnimateXBundle`` (UNet, VAE, image encoder, optional zero_y)."""
    from ...checkpoints.loaders import load_clip_vision
    from ...models.image_encoder import ImageEncoder

    paths = dict(source) if isinstance(source, dict) else locate_animate_x_files(os.fspath(source))
    for role in ("unet", "vae", "clip_vision"):
        if not paths.get(role):
            raise AA2Error(f"Animate-X: no {role} file given ({ROLES[role][2]})")
    unet = load_animate_x_unet(paths["unet"], dtype=dtype)
    text = None
    if paths.get("zero_y"):
        from safetensors.torch import load_file

        text = load_file(paths["zero_y"]).get("zero_y")
        if text is None or text.ndim != 3 or text.shape[-1] != unet.config.context_dim:
            raise AA2Error(f"Animate-X zero_y ({paths['zero_y']}): expected a 'zero_y' tensor (1, 77, "
                           f"{unet.config.context_dim})")
    encoder = ImageEncoder(load_clip_vision(paths["clip_vision"]))
    width = encoder.clip.config.projection_dim
    if width != unet.config.context_dim:
        raise AA2Error(f"Animate-X: the image encoder ({paths['clip_vision']}) gives {width}-wide embeddings but the "
                       f"UNet ({paths['unet']}) reads {unet.config.context_dim}: use the OpenCLIP ViT-H/14 encoder "
                       "(clip_vision_h.safetensors)")
    return AnimateXBundle(AnimateXModels(unet, text=text, reference_latent=reference_latent),
                          load_animate_x_vae(paths["vae"]), encoder, paths)
