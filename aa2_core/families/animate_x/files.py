"""Find and load the released Animate-X files in a ComfyUI models folder -> ``AnimateXBundle``.

=================  ============================================  =====================================================
role               folder (first found wins)                     file names
=================  ============================================  =====================================================
UNet               ``diffusion_models/``, ``animate_x/``          ``animate-x_ckpt.pth`` or ``animate-x_ckpt.safetensors``
VAE (SD2.1)        ``vae/``, ``checkpoints/``                     ``v2-1_512-ema-pruned.ckpt`` (its ``first_stage_model.*``
                                                                 keys) or ``.safetensors``, or an SD2.x VAE file
image encoder      ``clip_vision/``                               ``clip_vision_h.safetensors`` (ComfyUI's OpenCLIP ViT-H/14
                                                                 vision tower, transformers layout) or the released
                                                                 ``open_clip_pytorch_model.bin`` (OpenCLIP's layout,
                                                                 also as ``.safetensors``; ``openclip.py`` converts it)
zero_y (optional)  ``animate_x/``                                 ``animate_x_zero_y.safetensors`` (key ``zero_y``: the
                                                                 empty prompt's OpenCLIP text tokens, ``(1, 77, 1024)``)
=================  ============================================  =====================================================

A missing file is named with its folder and what it is, all missing files in one error.

**The text context** ``zero_y`` (the released ``clip_encoder(text="")``) is, in this order: the saved
``zero_y`` file; else computed once at load from an OpenCLIP ViT-H/14 text tower -- the ``text_encoder`` path when
given, ``open_clip_pytorch_model.bin`` (in ``clip_vision/``, also when ``clip_vision_h.safetensors`` is the image
encoder), or the SD2.1 checkpoint's ``cond_stage_model.model.*`` (the same frozen tower, in
``v2-1_512-ema-pruned.ckpt``); nothing is written unless ``save_zero_y`` names a file. Only when none of these
exists does the family use a zero stand-in and warn (``family.py``). ``AnimateXBundle.text_source`` says which.

**The image encoder** is built with OpenCLIP ViT-H/14's exact GELU and eps 1e-5 from either layout (ComfyUI's
``clip_vision_config_h.json`` says the same ``gelu``, as does the generic CLIP loader for a 1280-wide tower),
and ``embed`` takes the released entrance's input (``openclip.released_clip_pixels``: 8-bit image, PIL bilinear to
224x224, CLIP mean/std) unless a ``clip_preprocess`` is named.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from ...errors import AA2Error
from ...models.image_encoder import ImageEncoder
from . import openclip
from .family import AnimateXModels
from .loader import load_animate_x_unet, load_animate_x_vae

log = logging.getLogger(__name__)

UNET_FOLDERS = ("diffusion_models", "animate_x")
UNET_NAMES = ("animate-x_ckpt.pth", "animate-x_ckpt.safetensors")
VAE_FOLDERS = ("vae", "checkpoints")
VAE_NAMES = ("v2-1_512-ema-pruned.ckpt", "v2-1_512-ema-pruned.safetensors", "sd21_vae.safetensors",
             "vae-sd2.1.safetensors")
CLIP_FOLDERS = ("clip_vision",)
OPENCLIP_BIN = "open_clip_pytorch_model.bin"
OPENCLIP_NAMES = (OPENCLIP_BIN, "open_clip_pytorch_model.safetensors")  # OpenCLIP's layout, both towers
CLIP_NAMES = ("clip_vision_h.safetensors", "open_clip_vit_h_14.safetensors") + OPENCLIP_NAMES
ZERO_Y_FOLDERS = ("animate_x",)
ZERO_Y_NAMES = ("animate_x_zero_y.safetensors",)

ROLES = {  # role -> (folders, names, what it is)
    "unet": (UNET_FOLDERS, UNET_NAMES,
             "the Animate-X UNet (UNetSD_Animate_X + pose encoder + IPI) from antgroup/animate-x"),
    "vae": (VAE_FOLDERS, VAE_NAMES, "the SD2.1 VAE (stabilityai/stable-diffusion-2-1-base's v2-1_512-ema-pruned.ckpt)"),
    "clip_vision": (CLIP_FOLDERS, CLIP_NAMES, "the OpenCLIP ViT-H/14 image encoder (ComfyUI's "
                    "clip_vision_h.safetensors or the released open_clip_pytorch_model.bin)"),
}


def _find(models_dir: str, folders, names) -> str | None:
    for folder in folders:
        for name in names:
            path = os.path.join(models_dir, folder, name)
            if os.path.isfile(path):
                return path
    return None


def locate_animate_x_files(models_dir: str) -> dict[str, str]:
    """``{role: path}`` for unet, vae, clip_vision (and zero_y, text_encoder when present); one error naming every
    missing file. ``text_encoder`` is OpenCLIP's own file in ``clip_vision/`` (its text tower gives ``zero_y``)."""
    if not os.path.isdir(models_dir):
        raise AA2Error(f"Animate-X: models folder {models_dir} not found")
    found, missing = {}, []
    for role, (folders, names, what) in ROLES.items():
        path = _find(models_dir, folders, names)
        if path is None:
            where = " or ".join(os.path.join(models_dir, f) for f in folders)
            missing.append(f"{' or '.join(names)} in {where}: {what}")
        else:
            found[role] = path
    if missing:
        raise AA2Error("Animate-X files missing:\n  " + "\n  ".join(missing))
    zero_y = _find(models_dir, ZERO_Y_FOLDERS, ZERO_Y_NAMES)
    if zero_y:
        found["zero_y"] = zero_y
    text = _find(models_dir, CLIP_FOLDERS, OPENCLIP_NAMES)
    if text:
        found["text_encoder"] = text
    return found


def is_animate_x_folder(models_dir: str) -> bool:
    """True when the folder holds the Animate-X UNet (``--family auto``)."""
    return bool(models_dir) and _find(models_dir, UNET_FOLDERS, UNET_NAMES) is not None


class AnimateXImageEncoder(ImageEncoder):
    """The OpenCLIP ViT-H/14 image encoder; ``embed`` takes the released entrance's input by default."""

    @torch.no_grad()
    def embed(self, image: torch.Tensor, preprocess=None) -> torch.Tensor:
        """IMAGE ``[1, H, W, 3]`` 0..1 -> projected embedding ``(1, 1, dim)``; ``preprocess`` None (or "released"):
        ``openclip.released_clip_pixels``; "squash" / "moore": ``ImageEncoder.embed``'s."""
        if preprocess not in (None, "released"):
            return super().embed(image, preprocess)
        param = next(self.parameters())
        pixels = openclip.released_clip_pixels(image, self.image_size).to(param.device, param.dtype)
        return self(pixels).float().cpu()


def read_clip_vision(path: str) -> dict[str, torch.Tensor]:
    from ...checkpoints.io import read_state_dict

    return read_state_dict(os.fspath(path), "Animate-X image encoder")


def load_animate_x_image_encoder(path: str, sd: dict | None = None) -> AnimateXImageEncoder:
    """``clip_vision_h.safetensors`` (transformers layout) or ``open_clip_pytorch_model.bin`` / ``.safetensors``
    (OpenCLIP's layout, converted by ``openclip.vision_to_transformers``) -> ``AnimateXImageEncoder``."""
    from ...checkpoints.loaders import clip_heads
    from ...errors import CheckpointError

    path = os.fspath(path)
    source = f"Animate-X image encoder ({path})"
    sd = read_clip_vision(path) if sd is None else sd
    if openclip.is_open_clip_vision(sd):
        return AnimateXImageEncoder(openclip.clip_vision_model(openclip.vision_to_transformers(sd, source), source))
    tsd = {k: v for k, v in sd.items() if k.startswith(("vision_model.", "visual_projection."))}
    needed = ("vision_model.embeddings.patch_embedding.weight", "vision_model.embeddings.position_embedding.weight",
              "vision_model.encoder.layers.0.mlp.fc1.weight", "visual_projection.weight")
    if not all(k in tsd for k in needed):
        raise CheckpointError(f"{source}: neither OpenCLIP's layout ({openclip.VISION_KEY}) nor transformers' "
                              f"CLIPVisionModelWithProjection ({needed[0]}, visual_projection.weight)")
    heads = clip_heads(path, tsd[needed[0]].shape[0])
    return AnimateXImageEncoder(openclip.clip_vision_model(tsd, source, heads))


def animate_x_text_context(paths: dict, clip_sd: dict | None = None) -> tuple[torch.Tensor | None, str]:
    """``(zero_y (1, 77, width) or None, where it came from)``: the ``zero_y`` file, else the released computation
    on the first OpenCLIP text tower among ``text_encoder``, ``clip_vision`` (``clip_sd``: its tensors, when already
    read) and ``vae``."""
    if paths.get("zero_y"):
        from safetensors.torch import load_file

        return load_file(paths["zero_y"]).get("zero_y"), paths["zero_y"]
    seen = set()
    for role in ("text_encoder", "clip_vision", "vae"):
        path = paths.get(role)
        if not path or path in seen:
            continue
        seen.add(path)
        if path == paths.get("clip_vision") and clip_sd is not None:  # the .bin in both roles: read once
            tower = clip_sd if openclip.text_prefix(clip_sd) is not None else None
        else:
            tower = openclip.read_text_tower(path)
        if tower:
            zero_y = openclip.zero_y_from_state_dict(tower, f"OpenCLIP text tower ({path})")
            log.info("Animate-X: zero_y computed from the OpenCLIP text tower in %s", path)
            return zero_y, f"computed from {path}"
    return None, ""


@dataclass
class AnimateXBundle:
    models: AnimateXModels  # the family the sampler takes
    vae: object  # diffusers AutoencoderKL (SD2.1), latents scaled by 0.18215
    image_encoder: object  # AnimateXImageEncoder (an ImageEncoder: projected embedding (1, 1, dim))
    paths: dict[str, str]
    text_source: str = ""  # where zero_y came from: the zero_y file, "computed from <file>", or "" (zeros, warned)


def load_animate_x_family(source, reference_latent: bool = False, dtype: torch.dtype | None = None,
                          save_zero_y: str | None = None) -> AnimateXBundle:
    """A ComfyUI models folder, or ``{"unet": ..., "vae": ..., "clip_vision": ..., "zero_y": ..., "text_encoder":
    ...}`` paths -> ``AnimateXBundle`` (UNet, VAE, image encoder, zero_y). ``save_zero_y``: write the zero_y used
    (``animate_x_zero_y.safetensors``) to that path."""
    paths = dict(source) if isinstance(source, dict) else locate_animate_x_files(os.fspath(source))
    for role in ("unet", "vae", "clip_vision"):
        if not paths.get(role):
            raise AA2Error(f"Animate-X: no {role} file given ({ROLES[role][2]})")
    unet = load_animate_x_unet(paths["unet"], dtype=dtype)
    context = unet.config.context_dim
    clip_sd = read_clip_vision(paths["clip_vision"])
    encoder = load_animate_x_image_encoder(paths["clip_vision"], clip_sd)
    width = encoder.clip.config.projection_dim
    if width != context:
        raise AA2Error(f"Animate-X: the image encoder ({paths['clip_vision']}) gives {width}-wide embeddings but the "
                       f"UNet ({paths['unet']}) reads {context}: use the OpenCLIP ViT-H/14 encoder "
                       "(clip_vision_h.safetensors or open_clip_pytorch_model.bin)")
    text, text_source = animate_x_text_context(paths, clip_sd)
    del clip_sd
    given = bool(paths.get("zero_y"))
    if (given or text is not None) and (text is None or text.ndim != 3 or tuple(text.shape[:2]) != (1, openclip.CONTEXT)
                                        or text.shape[-1] != context):
        where = paths["zero_y"] if given else text_source
        raise AA2Error(f"Animate-X zero_y ({where}): expected a 'zero_y' tensor (1, 77, {context}) for the UNet "
                       f"({paths['unet']}), got {None if text is None else tuple(text.shape)}")
    if text is not None and save_zero_y:
        openclip.save_zero_y(text, save_zero_y)
    return AnimateXBundle(AnimateXModels(unet, text=text, reference_latent=reference_latent),
                          load_animate_x_vae(paths["vae"]), encoder, paths, text_source)
