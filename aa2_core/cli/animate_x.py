"""``python -m aa2_core animate --family animate-x``: the released Animate-X weights through the shared sampler.

``--family auto`` picks Animate-X when the models folder holds ``animate-x_ckpt.pth`` (``files.py``), else Moore.
The schedule is the family's own (``animate_x``) unless ``--schedule sd15`` is asked for; the noise is the
released entrance's for the seed (``diffusion.initial_noise``). The scene (``--video`` + ``--mask``) is kept by
environment mode and the composite, as for Moore. Not offered here yet: the IPI (``--driving-keypoints`` needs the
reference's keypoints, which the CLI does not take).
"""

from __future__ import annotations

import os
import tempfile
import time

import torch

from ..errors import AA2Error
from ..pipeline.options import Schedule

FAMILIES = ("moore", "animate-x", "auto")


def wants_animate_x(args) -> bool:
    family = getattr(args, "family", "moore") or "moore"
    if family == "auto":
        from ..families.animate_x.files import is_animate_x_folder

        return bool(args.models) and is_animate_x_folder(args.models)
    return family == "animate-x"


def write_tiny_animate_x_dir(models_dir: str) -> None:
    """A ComfyUI models folder with tiny Animate-X files in the released layouts and a tiny CLIP vision file."""
    from ..tiny import save_tiny_clip_vision
    from ..families.animate_x.tiny import write_tiny_animate_x_files

    files = write_tiny_animate_x_files(os.path.join(models_dir, "animate_x"))
    os.makedirs(os.path.join(models_dir, "vae"), exist_ok=True)
    os.replace(files["vae"], os.path.join(models_dir, "vae", os.path.basename(files["vae"])))
    os.makedirs(os.path.join(models_dir, "clip_vision"), exist_ok=True)
    save_tiny_clip_vision(os.path.join(models_dir, "clip_vision", "clip_vision_h.safetensors"))


def run_animate_x(args) -> int:
    from ..atomic import check_output_file
    from ..choices import Precision
    from . import animate as cli
    from ..pipeline import images
    from ..pipeline.composite import composite_environment
    from ..pipeline.prepare import environment_frames, output_size, prepare_conditions
    from ..pipeline.sampler import Sampler
    from ..video_io import read_image, read_video, write_video
    from ..families.animate_x import diffusion
    from ..families.animate_x.family import animate_x_reference
    from ..families.animate_x.files import load_animate_x_family

    dtype = Precision(args.dtype).dtype if args.dtype != "auto" else (
        torch.float16 if args.device.startswith("cuda") else torch.float32)
    if not args.tiny and not (args.ref and args.poses and args.models):
        print("error: give --ref, --poses and --models (or --tiny)")
        return 2
    with tempfile.TemporaryDirectory(prefix="aa2_tiny_animate_x_") as scratch:
        try:
            cli.check_device(args.device)
            check_output_file(args.out, "--out", (".mp4",))
            if args.frames is not None and args.frames < 1:
                raise AA2Error(f"--frames must be at least 1, got {args.frames}")
            for flag in ("aa2_modules", "objects", "depth", "driving_keypoints"):
                if getattr(args, flag, None):
                    raise AA2Error(f"--{flag.replace('_', '-')} is not taken by the Animate-X family (its own IPI needs "
                                   "the reference's keypoints, which the CLI does not take yet)")
            if args.schedule == Schedule.MOORE.value:  # the default: the family's own schedule
                args.schedule = Schedule.ANIMATE_X.value
            if args.tiny:
                args.clip_length, args.motion_frames = min(args.clip_length, 4), min(args.motion_frames, 1)
            settings = cli.settings_from(args)
            if args.tiny:
                models_dir = args.models or scratch
                write_tiny_animate_x_dir(models_dir)
                ref, poses = cli.tiny_inputs(args.frames or 8)
                fps, driving, mask = 8.0, None, None
            else:
                models_dir = args.models
                ref = images.check_reference(read_image(args.ref), f"--ref {args.ref}")
                poses, fps = read_video(args.poses, args.frames)
                driving = None
                if args.video:
                    driving, fps = read_video(args.video, args.frames)
                mask = read_video(args.mask, args.frames)[0] if args.mask else None
                driving, mask = cli.fit_scene(images.check_rgb(poses, f"--poses {args.poses}"), driving, mask,
                                              f"--video {args.video}", f"--mask {args.mask}")
            t0 = time.perf_counter()
            bundle = load_animate_x_family(models_dir)
            bundle.models.unet.to(args.device, dtype)
            bundle.image_encoder.to(args.device, dtype)
            bundle.vae.to(args.device)
            size = output_size(*poses.shape[1:3])

            def encode(x):
                return images.vae_encode(bundle.vae, x)

            with torch.no_grad():
                reference = animate_x_reference(ref, size, encode, lambda image: bundle.image_encoder.embed(image))
                scene = environment = None
                if driving is not None:
                    driving = images.resize(driving, *size)
                    environment = environment_frames(driving, mask[..., 0], size)
                    scene = (driving, environment[1])
                cond = prepare_conditions(reference, poses, encode,
                                          environment=None if environment is None else environment[0],
                                          environment_mask=None if environment is None else environment[1],
                                          feather=args.feather)
            _, _, h, w = reference.latents.shape
            noise = diffusion.initial_noise(torch.Generator().manual_seed(args.seed), cond.num_frames, h, w)
            progress = cli.Progress()
            latents = Sampler(bundle.models, settings, device=args.device, dtype=dtype, on_step=progress).sample(cond, noise)
            progress.close()
            frames = images.vae_decode(bundle.vae, latents)
            if scene is not None:
                frames = composite_environment(frames, *scene)
            write_video(args.out, frames, fps, audio_from=cli.sound_source(args))
            print(f"wrote {frames.shape[0]} frames {frames.shape[2]}x{frames.shape[1]} to {args.out} with Animate-X "
                  f"in {time.perf_counter() - t0:.1f} s")
            return 0
        except AA2Error as e:
            print(f"error: {e}")
            return 1
