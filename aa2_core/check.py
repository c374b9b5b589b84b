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
    """Load every file, then one denoising step on random pixels through the path the nodes and the CLI take
    (``prepare`` -> the Moore family's inputs and prediction)."""
    from .checkpoints.assembly import assemble_from_folder
    from .families.moore import MooreModels
    from .pipeline import images
    from .pipeline.prepare import encode_reference, prepare_conditions

    found, _ = locate_models(models_dir)
    t0 = time.perf_counter()
    models = assemble_from_folder(models_dir)
    load_s = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)

    def encode(x):
        return images.vae_encode(models.vae, x)

    with torch.no_grad():
        reference = encode_reference(torch.rand(1, height, width, 3, generator=g), (height, width), encode,
                                     models.image_encoder.embed, models.reference)
        cond = prepare_conditions(reference, torch.rand(frames, height, width, 3, generator=g), encode)
        family = MooreModels(models.denoising, models.pose)
        family.check(cond, frames)
        state = family.begin(cond, "cpu", torch.float32)
        inputs = family.clip_inputs(cond, torch.arange(frames), "cpu", torch.float32)
        noise = torch.randn(1, 4, frames, height // 8, width // 8, generator=g)
        _, out = family.predict(state, noise, 999, inputs, guided=False, batched=False)
    net = models.denoising
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
