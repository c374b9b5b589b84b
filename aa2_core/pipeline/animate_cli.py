"""``python -m aa2_core animate``: the whole pipeline outside ComfyUI.

    python -m aa2_core animate --ref char.png --poses dance_kps.mp4 --models ComfyUI/models --out out.mp4
    python -m aa2_core animate --ref char.png --poses kps.mp4 --video drive.mp4 --mask mask.mp4 ...  # keep the scene
    python -m aa2_core animate --tiny --out out.mp4     # tiny random models and inputs, to see it run

Weights come from a ComfyUI-style models folder; missing files are each named with where they go.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from ..errors import AA2Error
from ..model_files import locate_models
from ..video_io import read_image, read_video, write_video
from . import images
from .composite import composite_environment
from .sampler import Conditions, Models, Sampler, SamplerSettings


def load_all(models_dir: str, device, dtype):
    from ..checkpoints import loaders

    found, missing = locate_models(models_dir)
    if missing:
        raise AA2Error("missing model files:\n  " + "\n  ".join(missing))
    models = Models(
        loaders.load_denoising_net(found["denoising_unet"], found["motion_module"]).to(device, dtype),
        loaders.load_reference_net(found["reference_unet"]).to(device, dtype),
        loaders.load_pose_modulation(found["pose_guider"]).to(device, dtype),
    )
    vae = loaders.load_vae(found["vae"]).to(device)
    clip = loaders.load_clip_vision(found["clip_vision"]).to(device, dtype)
    return models, vae, clip


def build_conditions(ref, poses, vae, clip, driving=None, mask=None):
    """Reference image, pose images (and optionally driving frames + character mask) ->
    (Conditions, scene) where scene is ``(driving frames, formulated pixel mask)`` or None."""
    ref = images.check_rgb(ref, "reference image")[:1]
    poses = images.check_rgb(poses, "pose video")
    height, width = images.latent_aligned(*poses.shape[1:3])
    poses = images.resize(poses, height, width)
    ref = images.resize(ref, height, width)
    param = next(clip.parameters())
    with torch.no_grad():
        embeds = clip(pixel_values=images.clip_pixels(ref.to(param.device), clip.config.image_size).to(param.dtype)).image_embeds
    cond = Conditions(images.vae_encode(vae, ref), embeds[:, None].float().cpu(), poses)
    scene = None
    if driving is not None:
        if mask is None:
            raise AA2Error("--video (keep the scene) needs --mask: a video of the character's mask")
        driving, pixel_mask, cond.environment_latents, cond.environment_mask = environment_conditions(
            driving, mask, poses.shape[0], height, width, vae
        )
        scene = (driving, pixel_mask)
    return cond, scene


def environment_conditions(driving, mask, frames, height, width, vae):
    """(driving frames, formulated pixel mask, environment latents, latent mask) at the output size."""
    from ..conditions.environment import environment_sequence, latent_mask, shape_agnostic_mask

    driving = images.resize(images.check_rgb(driving, "driving video"), height, width)[:frames]
    mask = images.resize(mask[..., :1].expand(-1, -1, -1, 3), height, width)[:frames, ..., 0]
    if driving.shape[0] != frames or mask.shape[0] != frames:
        raise AA2Error(f"driving video ({driving.shape[0]}) and mask ({mask.shape[0]}) need at least as many frames as the poses ({frames})")
    env_frames, env_mask = environment_sequence(driving, shape_agnostic_mask(mask))
    return driving, env_mask, images.vae_encode(vae, env_frames), latent_mask(env_mask, height // 8, width // 8)


def tiny_inputs(frames: int = 8, size: int = 64):
    """A synthetic reference and skeleton video (a moving stick figure) for --tiny."""
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(1, size, size, 3, generator=g)
    poses = torch.zeros(frames, size, size, 3)
    for t in range(frames):
        x = size // 4 + t * size // (2 * frames)
        poses[t, size // 4 : 3 * size // 4, x : x + 2] = torch.tensor([1.0, 0.0, 0.0])
    return ref, poses


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m aa2_core animate", description=__doc__.splitlines()[0])
    p.add_argument("--ref", help="reference character image")
    p.add_argument("--poses", help="pose (skeleton) video, e.g. Moore's *_kps.mp4")
    p.add_argument("--video", help="driving video whose environment is kept (needs --mask)")
    p.add_argument("--mask", help="video of the driving character's mask (white = character)")
    p.add_argument("--models", help="ComfyUI-style models folder")
    p.add_argument("--out", required=True, help="output .mp4")
    p.add_argument("--tiny", action="store_true", help="tiny random models and inputs")
    p.add_argument("--frames", type=int, help="use at most this many frames")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--cfg", type=float, default=3.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scheduler", default="ddim", choices=["ddim", "euler", "dpmpp_2m", "lcm"])
    p.add_argument("--clip-length", type=int, default=24)
    p.add_argument("--motion-frames", type=int, default=4)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp16", "bf16", "fp32"])
    args = p.parse_args(argv)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}.get(
        args.dtype, torch.float16 if args.device.startswith("cuda") else torch.float32
    )
    try:
        if args.tiny:
            from ..check import write_tiny_models_dir

            models_dir = args.models or tempfile.mkdtemp(prefix="aa2_tiny_models_")
            write_tiny_models_dir(models_dir)
            ref, poses = tiny_inputs(args.frames or 8)
            fps, driving, mask = 8.0, None, None
        else:
            if not (args.ref and args.poses and args.models):
                p.error("give --ref, --poses and --models (or --tiny)")
            models_dir, ref = args.models, read_image(args.ref)
            poses, fps = read_video(args.poses, args.frames)
            driving = read_video(args.video, args.frames)[0] if args.video else None
            mask = read_video(args.mask, args.frames)[0] if args.mask else None
        t0 = time.perf_counter()
        models, vae, clip = load_all(models_dir, args.device, dtype)
        cond, scene = build_conditions(ref, poses, vae, clip, driving, mask)
        settings = SamplerSettings(steps=args.steps, cfg=args.cfg, seed=args.seed, scheduler=args.scheduler,
                                   clip_length=args.clip_length if not args.tiny else 4, motion_frames=args.motion_frames if not args.tiny else 1)

        def progress(done, total, _):
            print(f"\rstep {done}/{total}", end="", flush=True)

        latents = Sampler(models, settings, device=args.device, dtype=dtype, on_step=progress).sample(cond)
        frames = images.vae_decode(vae, latents)
        if scene is not None:  # the driving video's own pixels outside the mask
            frames = composite_environment(frames, *scene)
        write_video(args.out, frames, fps)
        print(f"\nwrote {frames.shape[0]} frames {frames.shape[2]}x{frames.shape[1]} to {args.out} in {time.perf_counter() - t0:.1f} s")
        return 0
    except AA2Error as e:
        print(f"error: {e}")
        return 1
