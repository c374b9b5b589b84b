"""``python -m aa2_core check``: find and load every model file, then run one DenoisingNet step.

    python -m aa2_core check --models ComfyUI/models     # your real files
    python -m aa2_core check --tiny                      # tiny random files in the real formats

Without weights it lists every missing file and where it goes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from .errors import AA2Error
from .model_files import locate_models


def write_tiny_models_dir(models_dir: str, seed: int = 0) -> None:
    """A ComfyUI-style models folder holding tiny models in the real file formats."""
    from safetensors.torch import save_file

    from .tiny import save_tiny_clip_vision, tiny_vae, write_tiny_moore_files

    write_tiny_moore_files(os.path.join(models_dir, "animate_anyone2"), seed)
    os.makedirs(os.path.join(models_dir, "vae"), exist_ok=True)
    save_file(tiny_vae().state_dict(), os.path.join(models_dir, "vae", "sd-vae-ft-mse.safetensors"))
    os.makedirs(os.path.join(models_dir, "clip_vision"), exist_ok=True)
    save_tiny_clip_vision(os.path.join(models_dir, "clip_vision", "image_encoder.safetensors"))


def run_check(models_dir: str, frames: int = 4, height: int = 64, width: int = 64) -> dict:
    from .checkpoints.assembly import assemble_from_folder

    found, _ = locate_models(models_dir)
    t0 = time.perf_counter()
    models = assemble_from_folder(models_dir)
    net, reference, pose, vae, clip = models.denoising, models.reference, models.pose, models.vae, models.image_encoder.clip
    load_s = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        image = torch.rand(1, 3, height, width, generator=g) * 2 - 1
        ref_latents = vae.encode(image).latent_dist.mean * vae.config.scaling_factor
        size = clip.config.image_size
        embeds = clip(pixel_values=torch.nn.functional.interpolate(image, size=(size, size))).image_embeds[:, None]
        kv = net.reference_kv(reference(ref_latents, embeds))
        skeleton = torch.rand(frames, 3, height, width, generator=g)
        features = pose(skeleton, None, num_frames=frames)
        noise = torch.randn(1, 4, frames, height // 8, width // 8, generator=g)
        out = net(noise, 999, embeds, pose_features=features, reference=kv)
    return dict(found=found, load_seconds=load_s, output_shape=tuple(out.shape), output_std=out.std().item(),
                motion_version=net.motion.config.version if net.motion else None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aa2_core check", description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="ComfyUI-style models folder")
    parser.add_argument("--tiny", action="store_true", help="write tiny random models in the real formats and check those")
    args = parser.parse_args(argv)
    if not args.models and not args.tiny:
        parser.error("give --models DIR or --tiny")
    if args.models and os.path.exists(args.models) and not os.path.isdir(args.models):
        print(f"error: --models {args.models} is a file; expected a ComfyUI-style models folder")
        return 1
    if not args.models:  # tiny models in a folder removed again on the way out
        with tempfile.TemporaryDirectory(prefix="aa2_tiny_models_") as scratch:
            return _check(args, scratch)
    return _check(args, args.models)


def _check(args, models_dir: str) -> int:
    if args.tiny:
        write_tiny_models_dir(models_dir)
        print(f"wrote tiny models to {models_dir}")
    return print_check(models_dir)


def print_check(models_dir: str) -> int:
    """Run ``run_check`` and print what it found, one file a line; the exit code (1 with the error line)."""
    try:
        report = run_check(models_dir)
    except AA2Error as e:
        print(f"error: {e}")
        return 1
    for role, path in report.pop("found").items():
        print(f"  {role:15s} {path}")
    for key, value in report.items():
        print(f"{key}: {value}")
    return 0
