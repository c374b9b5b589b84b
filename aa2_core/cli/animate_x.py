"""``python -m aa2_core animate --family animate-x``: the released Animate-X weights through the shared sampler.

``--family auto`` picks Animate-X when the models folder holds ``animate-x_ckpt.pth`` (``files.py``), else Moore.
The schedule is the family's own (``animate_x``) unless ``--schedule sd15`` is asked for; the noise is the
released entrance's for the seed (``diffusion.initial_noise``). The scene (``--video`` + ``--mask``) is kept by
environment mode and the composite, as for Moore; ``--character-keypoints`` grows the regenerated region to the
character's own skeleton and ``--objects`` keeps the held objects from the driving video (the family has no object
guider: the mask only keeps them).

**The IPI** (``--driving-keypoints DRIVING.json --ref-keypoints REF.json``): the released entrance feeds the IPI the
reference's keypoints first, then one row per driving frame (``process_single_pose_embedding``: ``bodies[:18]``,
x/W and y/H, a missing joint at -1: ``keypoint_tensor(..., missing=-1)``), and the reference's CLIP embedding
first, then each driving frame's, from the same image encoder (``driving_clip_features``, as the Moore CLI). The
driving frames are ``--video``'s (so, as for Moore, with ``--mask``); ``--tiny`` has no driving video and uses
its pose frames. Without ``--ref-keypoints`` the released loader falls back to the first driving frame's
keypoints (no ``*_ref_pose.pkl``); the CLI asks for the file instead of guessing. The reference pose image is
drawn from ``--ref-keypoints`` in the released style (``skeleton.render_pose(style="animate_x")``); the released
YAML does not read it (no ``randomref``), the family only with ``reference_latent``.
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


def check_ipi_flags(args) -> None:
    """--driving-keypoints and --ref-keypoints come together; checked before anything is read or loaded."""
    from . import animate as cli

    driving, ref = getattr(args, "driving_keypoints", None), getattr(args, "ref_keypoints", None)
    if driving and not ref:
        raise AA2Error("--driving-keypoints without --ref-keypoints is not taken by the Animate-X family: its IPI reads "
                       "the reference's keypoints first; give --ref-keypoints REF.json (the reference image's "
                       "POSE_KEYPOINT, one frame) with --driving-keypoints")
    if ref and not driving:
        raise AA2Error("--ref-keypoints is read with --driving-keypoints (the IPI: the reference's keypoints, then the "
                       "driving video's); give both or neither")
    if not driving:
        return
    cli.check_path(driving, "--driving-keypoints", "a POSE_KEYPOINT .json file")
    cli.check_path(ref, "--ref-keypoints", "a POSE_KEYPOINT .json file")
    if not args.tiny and not args.video:
        raise AA2Error("--driving-keypoints needs the driving video (its frames' CLIP features are the IPI's other "
                       "input): give --video (and --mask)")


def read_ipi_keypoints(args, frames: int):
    """(reference Pose, its (2, 3) feet, driving Poses cut to ``frames``) from the two JSON files, or None."""
    import json

    from ..conditions.keypoints import parse_pose_keypoint
    from ..conditions.skeleton import parse_feet

    if not args.driving_keypoints:
        return None

    def read(path, flag):
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise AA2Error(f"{flag} {path}: not readable JSON ({e})") from None
        try:
            return data, parse_pose_keypoint(data)
        except AA2Error as e:
            raise AA2Error(f"{flag} {path}: {e}") from None

    ref_data, ref = read(args.ref_keypoints, "--ref-keypoints")
    if not ref or ref[0].is_empty:
        raise AA2Error(f"--ref-keypoints {args.ref_keypoints}: no person in its first frame; expected the reference "
                       "image's POSE_KEYPOINT (e.g. from a DWPose node run on the reference)")
    _, driving = read(args.driving_keypoints, "--driving-keypoints")
    if len(driving) < frames:
        raise AA2Error(f"--driving-keypoints {args.driving_keypoints} has {len(driving)} frames; the poses have {frames}")
    ref_frame = ref_data[:1] if isinstance(ref_data, list) else ref_data
    return ref[0], parse_feet(ref_frame)[0], driving[:frames]


def run_animate_x(args) -> int:
    from ..atomic import check_output_file
    from ..choices import Precision
    from . import animate as cli
    from ..pipeline import images
    from ..pipeline.composite import composite_environment
    from ..conditions.skeleton import render_pose
    from ..pipeline.prepare import (driving_clip_features, environment_frames, keypoint_tensor, output_size,
                                    prepare_conditions)
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
            for flag in ("aa2_modules", "depth"):
                if getattr(args, flag, None):
                    raise AA2Error(f"--{flag.replace('_', '-')} is not taken by the Animate-X family (its IPI is built "
                                   "in: give --driving-keypoints with --ref-keypoints)")
            cli.check_skeleton_radius(args)
            if args.objects and not args.video:
                raise AA2Error("--objects keeps the held objects of the driving video: give --video (and --mask)")
            check_ipi_flags(args)
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
                ipi_frames = poses  # --tiny has no driving video: its pose frames stand in for the IPI's CLIP input
                object_mask = character_poses = None
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
                ipi_frames = driving
                # the family has no object guider: the objects are kept from the driving video, the region grows
                # to the character's own skeleton (AA2 Environment Mask's object_mask and character_pose)
                object_mask = cli.condition_video(args.objects, "--objects", poses)
                character_poses = cli.character_keypoints(args, poses)
            ipi = read_ipi_keypoints(args, poses.shape[0])
            t0 = time.perf_counter()
            bundle = load_animate_x_family(models_dir)
            bundle.models.unet.to(args.device, dtype)
            bundle.image_encoder.to(args.device, dtype)
            bundle.vae.to(args.device)
            size = output_size(*poses.shape[1:3])

            def encode(x):
                return images.vae_encode(bundle.vae, x)

            def embed(image):
                return bundle.image_encoder.embed(image)

            with torch.no_grad():
                keypoints = features = ref_pose = ref_kp = None
                if ipi is not None:
                    ref_pose_kp, ref_feet, driving_kp = ipi
                    ref_kp = keypoint_tensor([ref_pose_kp], missing=-1.0)
                    ref_pose = torch.from_numpy(render_pose(ref_pose_kp, *size, style="animate_x", feet=ref_feet)[None])
                    keypoints = keypoint_tensor(driving_kp, missing=-1.0)
                    features = driving_clip_features(images.resize(ipi_frames, *size), embed)
                reference = animate_x_reference(ref, size, encode, embed,
                                                pose=None if ref_pose is None else ref_pose.float() / 255,
                                                keypoints=ref_kp)
                scene = environment = None
                if driving is not None:
                    driving = images.resize(driving, *size)
                    kept = None if object_mask is None else images.resize(object_mask, *size)[..., 0]
                    environment = environment_frames(driving, mask[..., 0], size, character_poses=character_poses,
                                                     object_mask=kept, skeleton_radius=args.skeleton_radius)
                    scene = (driving, environment[1], kept)
                cond = prepare_conditions(reference, poses, encode,
                                          environment=None if environment is None else environment[0],
                                          environment_mask=None if environment is None else environment[1],
                                          feather=args.feather, keypoints=keypoints, driving_features=features)
            _, _, h, w = reference.latents.shape
            noise = diffusion.initial_noise(torch.Generator().manual_seed(args.seed), cond.num_frames, h, w)
            progress = cli.Progress()
            latents = Sampler(bundle.models, settings, device=args.device, dtype=dtype, on_step=progress).sample(cond, noise)
            progress.close()
            frames = images.vae_decode(bundle.vae, latents)
            if scene is not None:
                frames = composite_environment(frames, scene[0], scene[1], keep=scene[2])
            write_video(args.out, frames, fps, audio_from=cli.sound_source(args))
            print(f"wrote {frames.shape[0]} frames {frames.shape[2]}x{frames.shape[1]} to {args.out} with Animate-X "
                  f"in {time.perf_counter() - t0:.1f} s")
            return 0
        except AA2Error as e:
            print(f"error: {e}")
            return 1
