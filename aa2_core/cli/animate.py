"""``python -m aa2_core animate``: the whole pipeline outside ComfyUI.

    python -m aa2_core animate --ref char.png --poses dance_kps.mp4 --models ComfyUI/models --out out.mp4
    python -m aa2_core animate --ref char.png --poses kps.mp4 --video drive.mp4 --mask mask.mp4 ...  # keep the scene
    python -m aa2_core animate --tiny --out out.mp4     # tiny random models and inputs, to see it run

The output is an H.264 mp4 (browsers play it inline) at the driving video's frame rate (the pose video's
without --video), with the driving video's audio where it has any. Weights come from a ComfyUI-style models folder; missing files are each named with where they go.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import torch

from ..atomic import check_output_file
from ..choices import FusionBlocks, Precision
from ..errors import AA2Error
from ..families.moore import MooreModels
from ..video_io import read_image, read_video, write_video
from ..pipeline import images
from ..pipeline.composite import composite_environment
from ..conditions.depth import structured_depth
from ..conditions.environment import SKELETON_RADIUS
from ..conditions.keypoints import parse_pose_keypoint
from ..conditions.objects import object_sequence
from ..pipeline.options import ClipPreprocess, ContextSchedule, EnvironmentMode, Fusion, SamplerSettings, Schedule, SchedulerName, Stitching, StitchMode
from ..pipeline.prepare import (DEFAULT_FEATHER, driving_clip_features, encode_reference, environment_frames, output_size,
                      prepare_conditions)
from ..pipeline.sampler import Sampler


def build_conditions(models, ref, poses, driving=None, mask=None, device="cpu", dtype=torch.float32,
                     clip_preprocess=ClipPreprocess.SQUASH, feather=DEFAULT_FEATHER, object_mask=None, depth=None,
                     keypoints=None, character_poses=None, skeleton_radius=SKELETON_RADIUS):
    """Reference image, pose images (and optionally driving frames + character mask) ->
    (Conditions, scene) where scene is ``(driving frames, formulated pixel mask)`` or None.

    ``object_mask`` (IMAGE, white = held objects) needs the driving frames and feeds the object guider;
    ``depth`` (IMAGE) becomes structured depth inside the skeleton; ``keypoints`` (the driving video's
    ``Pose`` per frame) with the driving frames turn on the Implicit Pose Indicator. ``character_poses`` (the
    retargeted skeleton's ``Pose`` per frame) grow the regenerated region by the character's own extent (limb capsules
    of ``skeleton_radius`` x its body size); with
    ``object_mask`` the objects stay the driving video's (scene: ``(driving, region, object mask)``). ``models`` is an assembled
    ``ModelSet`` with its VAE and image encoder; everything goes through ``prepare``, as the nodes do.
    """
    poses = images.check_rgb(poses, "pose video")
    size = output_size(*poses.shape[1:3])
    driving, mask = fit_scene(poses, driving, mask)  # cheap checks before the encoders run

    def encode(x):
        return images.vae_encode(models.vae, x)

    if (object_mask is not None or keypoints is not None) and driving is None:
        raise AA2Error("--objects and --driving-keypoints need the driving video (--video with --mask)")
    with torch.no_grad():
        reference = encode_reference(ref, size, encode, lambda image: models.image_encoder.embed(image, clip_preprocess),
                                     models.reference, device, dtype)
        scene = environment = objects = driving_features = None
        if driving is not None:
            driving = images.resize(driving, *size)
            kept = None if object_mask is None else images.resize(object_mask, *size)[..., 0]
            environment = environment_frames(driving, mask[..., 0], size, character_poses=character_poses, object_mask=kept,
                                             skeleton_radius=skeleton_radius)
            scene = (driving, environment[1], kept)
            if object_mask is not None:
                objects = object_sequence(driving, [kept])[0]
            if keypoints is not None:
                driving_features = driving_clip_features(driving, lambda image: models.image_encoder.embed(image, clip_preprocess))
        if depth is not None:
            depth = structured_depth(images.resize(depth, *size), images.resize(poses, *size))
        cond = prepare_conditions(reference, poses, encode, environment=None if environment is None else environment[0],
                                  environment_mask=None if environment is None else environment[1], feather=feather,
                                  objects=objects, depth=depth, keypoints=keypoints, driving_features=driving_features)
    return cond, scene


def fit_scene(poses, driving, mask, video="driving video", mask_name="mask"):
    """The driving video and its mask cut to the poses' frames and brought to their size: the same aspect is a
    logged resize, another aspect an error (``images.fit_size``). ``(None, None)`` without a scene."""
    if driving is None and mask is None:
        return None, None
    if driving is None or mask is None:
        raise AA2Error("--video (keep the scene) and --mask (a video of the character's mask) come together")
    frames = poses.shape[0]
    if driving.shape[0] < frames or mask.shape[0] < frames:
        raise AA2Error(f"{video} ({driving.shape[0]} frames) and {mask_name} ({mask.shape[0]}) need at least as many "
                       f"frames as the poses ({frames})")
    driving, mask = images.check_rgb(driving, video)[:frames], mask[:frames]
    if images.fit_size(mask.shape[1:3], driving.shape[1:3], mask_name, video):
        mask = images.resize(mask, *driving.shape[1:3])
    if images.fit_size(driving.shape[1:3], poses.shape[1:3], video, "the pose video"):
        driving, mask = images.resize(driving, *poses.shape[1:3]), images.resize(mask, *poses.shape[1:3])
    return driving, mask


def character_keypoints(args, poses):
    """--character-keypoints: the retargeted skeleton's POSE_KEYPOINT JSON, one ``Pose`` per pose frame on the pose
    video's canvas (None without the flag), checked before any model loads."""
    path = getattr(args, "character_keypoints", None)
    if not path:
        return None
    if not args.video:
        raise AA2Error("--character-keypoints grows the regenerated region of the driving video: give --video and --mask")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise AA2Error(f"--character-keypoints {path}: not readable JSON ({e})") from None
    found = parse_pose_keypoint(data if isinstance(data, list) else [data], poses.shape[1], poses.shape[2])
    frames = poses.shape[0]
    if len(found) != 1 and len(found) < frames:
        raise AA2Error(f"--character-keypoints {path} has {len(found)} frames; the poses have {frames} "
                       "(give the retargeted pose of every frame)")
    return found[:frames]


def condition_video(path, flag, poses):
    """A condition video (``flag``: --objects, --depth) cut to the poses' frames and fitted to their size; None
    without ``path``."""
    if path is None:
        return None
    frames = poses.shape[0]
    video = read_video(path, frames)[0]
    if video.shape[0] < frames:
        raise AA2Error(f"{flag} {path} has {video.shape[0]} frames; the poses have {frames}")
    if images.fit_size(video.shape[1:3], poses.shape[1:3], f"{flag} {path}", "the pose video"):
        video = images.resize(video, *poses.shape[1:3])
    return video


def check_skeleton_radius(args) -> None:
    if not args.skeleton_radius >= 0:  # NaN too
        raise AA2Error(f"--skeleton-radius must be 0 or more (a fraction of the character's body size), "
                       f"got {args.skeleton_radius}")


def extra_inputs(args, poses):
    """The optional condition files (--objects, --depth, --driving-keypoints), cut to the poses' frames and
    checked against their size, before any model loads."""
    frames, keypoints = poses.shape[0], None
    object_mask = condition_video(args.objects, "--objects", poses)
    depth = condition_video(args.depth, "--depth", poses)
    if args.driving_keypoints:
        try:
            with open(args.driving_keypoints) as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise AA2Error(f"--driving-keypoints {args.driving_keypoints}: not readable JSON ({e})") from None
        keypoints = parse_pose_keypoint(data if isinstance(data, list) else [data])
        if len(keypoints) < frames:
            raise AA2Error(f"--driving-keypoints {args.driving_keypoints} has {len(keypoints)} frames; the poses have {frames}")
        keypoints = keypoints[:frames]
    return object_mask, depth, keypoints


def check_device(device: str) -> None:
    """Refuse a device this torch cannot use before any model loads (torch's own error comes deep inside)."""
    try:
        kind = torch.device(device)
    except (RuntimeError, ValueError):
        raise AA2Error(f"--device {device!r} is not a device; expected cpu, cuda, cuda:N or mps") from None
    if kind.type == "cuda":
        if not torch.backends.cuda.is_built():
            raise AA2Error(f"--device {device}: CUDA is not available in this torch build ({torch.__version__}); "
                           "use --device cpu, or install a CUDA build of torch")
        if not torch.cuda.is_available() or (kind.index or 0) >= torch.cuda.device_count():
            raise AA2Error(f"--device {device}: no GPU there (this machine shows {torch.cuda.device_count()} CUDA "
                           "devices); use --device cpu or another cuda:N")
    elif kind.type == "mps" and not torch.backends.mps.is_available():
        raise AA2Error(f"--device {device}: MPS is not available on this machine; use --device cpu")
    elif kind.type not in ("cpu", "cuda", "mps"):
        raise AA2Error(f"--device {device}: expected cpu, cuda, cuda:N or mps")


def check_path(path: str | None, flag: str, kind: str) -> None:
    """An input file named by a flag exists and is a file (a folder or a missing file is named up front)."""
    if path is None:
        return
    if os.path.isdir(path):
        raise AA2Error(f"{flag} {path} is a folder, expected {kind}")
    if not os.path.isfile(path):
        raise AA2Error(f"{flag} {path}: file not found; expected {kind}")


class Progress:
    """The sampler's step callback: tqdm's bar on a terminal; elsewhere (a log file, CI) a line now and then
    with the rate and the time left, never a carriage return that glues the steps into one line."""

    def __init__(self, stream=None, every: float = 10.0):
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every, self.bar = every, None
        self.start = self.last = time.perf_counter()

    def __call__(self, done: int, total: int, _latents=None) -> None:
        if self.tty:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="step", file=self.stream, dynamic_ncols=True)
            self.bar.update(done - self.bar.n)
            return
        now = time.perf_counter()
        if done not in (1, total) and now - self.last < self.every:
            return
        self.last, rate = now, (now - self.start) / max(done, 1)
        left = int(rate * (total - done))
        print(f"step {done}/{total}  {rate:.2f} s/step  ETA {left // 60}:{left % 60:02d}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def tiny_inputs(frames: int = 8, size: int = 64):
    """A synthetic reference and skeleton video (a moving stick figure) for --tiny."""
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(1, size, size, 3, generator=g)
    poses = torch.zeros(frames, size, size, 3)
    for t in range(frames):
        x = size // 4 + t * size // (2 * frames)
        poses[t, size // 4 : 3 * size // 4, x : x + 2] = torch.tensor([1.0, 0.0, 0.0])
    return ref, poses


def sound_source(args) -> str | None:
    """Where the output's audio comes from: the driving video, else the pose video (often rendered from it)."""
    return None if args.tiny else args.video or args.poses


def settings_from(args) -> SamplerSettings:
    stitching = Stitching(StitchMode(args.stitching), args.clip_length, args.motion_frames, args.context_overlap,
                          Fusion(args.fusion), ContextSchedule(args.context_schedule))
    return SamplerSettings(steps=args.steps, cfg=args.cfg, seed=args.seed, scheduler=args.scheduler, schedule=args.schedule,
                           stitching=stitching, environment_mode=getattr(args, "environment_mode", EnvironmentMode.AUTO.value))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m aa2_core animate", description=__doc__.splitlines()[0])
    p.add_argument("--ref", help="reference character image")
    p.add_argument("--poses", help="pose (skeleton) video, e.g. Moore's *_kps.mp4")
    p.add_argument("--video", help="driving video whose environment, frame rate and audio are kept (needs --mask)")
    p.add_argument("--mask", help="video of the driving character's mask (white = character)")
    p.add_argument("--models", help="ComfyUI-style models folder")
    p.add_argument("--aa2-modules", help="trained aa2-modules .safetensors (from python -m aa2_core train)")
    p.add_argument("--fusion-blocks", default=FusionBlocks.FULL.value, choices=FusionBlocks.values(), help="ReferenceNet fusion: full (the Moore weights) or midup (the paper)")
    p.add_argument("--out", required=True, help="output .mp4")
    p.add_argument("--tiny", action="store_true", help="tiny random models and inputs")
    p.add_argument("--family", default="moore", choices=("moore", "animate-x", "auto"),
                   help="model family: moore (Moore/SD1.5 + AA2 modules), animate-x (the released Animate-X files, "
                        "cli/animate_x.py), auto (animate-x when --models holds animate-x_ckpt.pth)")
    p.add_argument("--frames", type=int, help="use at most this many frames (at least 1)")
    p.add_argument("--steps", type=int, default=25, help="denoising steps (at least 1)")
    p.add_argument("--cfg", type=float, default=3.5, help="guidance scale, a finite number (1 = no guidance)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scheduler", default=SchedulerName.DDIM.value, choices=SchedulerName.values())
    p.add_argument("--schedule", default=Schedule.MOORE.value, choices=Schedule.values(),
                   help="noise schedule of the weights: moore (v-prediction, zero terminal SNR) or sd15 (epsilon)")
    p.add_argument("--objects", help="video of the held objects' mask (white = object), with --video: kept from the driving "
                                      "video, and the object guider's input (Moore family)")
    p.add_argument("--depth", help="depth video of the driving motion: structured depth for the pose modulation")
    p.add_argument("--driving-keypoints", help="POSE_KEYPOINT JSON of the driving video, with --video: the Implicit Pose "
                                                "Indicator (needs an aa2-modules file that holds one)")
    p.add_argument("--ref-keypoints", help="POSE_KEYPOINT JSON of the reference image (one frame), with --driving-keypoints "
                                           "for --family animate-x: its IPI reads the reference's keypoints first")
    p.add_argument("--stitching", default=StitchMode.MOTION_FRAMES.value, choices=StitchMode.values())
    p.add_argument("--clip-length", type=int, default=24)
    p.add_argument("--motion-frames", type=int, default=4)
    p.add_argument("--context-overlap", type=int, default=4)
    p.add_argument("--fusion", default=Fusion.PYRAMID.value, choices=Fusion.values())
    p.add_argument("--context-schedule", default=ContextSchedule.OPEN.value, choices=ContextSchedule.values(),
                   help="closed_loop: Moore-AnimateAnyone's windows, wrapping past the end")
    p.add_argument("--clip-preprocess", default=ClipPreprocess.SQUASH.value, choices=ClipPreprocess.values(),
                   help="moore: the reference through CLIPImageProcessor as Moore's pipeline does")
    p.add_argument("--environment-mode", default=EnvironmentMode.AUTO.value, choices=EnvironmentMode.values(),
                   help="keep the driving video's scene outside the mask at every step: auto (on while the AA2 environment "
                        "modules are untrained, as with the public weights; off once --aa2-modules brings trained ones), on, off")
    p.add_argument("--character-keypoints", help="POSE_KEYPOINT JSON of the skeleton the character is animated with (AA2 "
                                                 "Retarget Pose's output), with --video: the regenerated region covers the "
                                                 "driving person + this skeleton, so a wider or taller character is not clipped")
    p.add_argument("--skeleton-radius", type=float, default=SKELETON_RADIUS,
                   help="with --character-keypoints: half-width of the capsules around the character's limbs, a fraction "
                        "of its body size (neck to mid-hip); raise it for loose clothes")
    p.add_argument("--feather", type=int, default=DEFAULT_FEATHER, help="latent pixels of soft edge around the mask")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="auto", choices=["auto", *Precision.values()], help="auto: fp16 on CUDA, else fp32")
    return p


def main(argv=None) -> int:
    from ..checkpoints.assembly import assemble_from_folder

    p = parser()
    args = p.parse_args(argv)
    if args.family != "moore":
        from .animate_x import run_animate_x, wants_animate_x

        if wants_animate_x(args):
            return run_animate_x(args)
    dtype = Precision(args.dtype).dtype if args.dtype != "auto" else (torch.float16 if args.device.startswith("cuda") else torch.float32)
    if not args.tiny and not (args.ref and args.poses and args.models):
        p.error("give --ref, --poses and --models (or --tiny)")
    with tempfile.TemporaryDirectory(prefix="aa2_tiny_models_") as scratch:
        try:
            # everything a user can get wrong is refused here, before any model loads or any step runs
            check_device(args.device)
            check_output_file(args.out, "--out", (".mp4",))  # the writer makes H.264 mp4 only
            if args.frames is not None and args.frames < 1:
                raise AA2Error(f"--frames must be at least 1, got {args.frames}")
            if args.feather < 0:
                raise AA2Error(f"--feather must be 0 or more, got {args.feather}")
            check_skeleton_radius(args)
            check_path(args.aa2_modules, "--aa2-modules", "an aa2-modules .safetensors file (from python -m aa2_core train)")
            for flag, path, kind in (("--objects", args.objects, "a video of the objects' mask"), ("--depth", args.depth, "a depth video"),
                                     ("--driving-keypoints", args.driving_keypoints, "a POSE_KEYPOINT .json file")):
                check_path(path, flag, kind)
            check_path(args.character_keypoints, "--character-keypoints", "a POSE_KEYPOINT .json file")
            if (args.objects or args.driving_keypoints) and not args.video:
                raise AA2Error("--objects and --driving-keypoints need the driving video: give --video (and --mask)")
            if args.ref_keypoints:  # the Moore IPI reads the driving keypoints only
                raise AA2Error("--ref-keypoints is read by --family animate-x only (its IPI); the Moore family does not take it")
            if args.models and os.path.exists(args.models) and not os.path.isdir(args.models):
                raise AA2Error(f"--models {args.models} is a file; expected a ComfyUI-style models folder")
            if args.tiny:
                args.clip_length, args.motion_frames = min(args.clip_length, 4), min(args.motion_frames, 1)
            settings = settings_from(args)
            if args.tiny:
                from ..check import write_tiny_models_dir

                models_dir = args.models or scratch
                ref, poses = tiny_inputs(args.frames or 8)
                fps, driving, mask = 8.0, None, None
                object_mask = depth = keypoints = character_poses = None
            else:
                models_dir = args.models
                ref = images.check_reference(read_image(args.ref), f"--ref {args.ref}")
                poses, fps = read_video(args.poses, args.frames)
                driving = None
                if args.video:  # the output keeps the driving video's timing
                    driving, fps = read_video(args.video, args.frames)
                mask = read_video(args.mask, args.frames)[0] if args.mask else None
                driving, mask = fit_scene(images.check_rgb(poses, f"--poses {args.poses}"), driving, mask,
                                          f"--video {args.video}", f"--mask {args.mask}")
                object_mask, depth, keypoints = extra_inputs(args, poses)
                character_poses = character_keypoints(args, poses)
            t0 = time.perf_counter()
            if args.tiny:
                write_tiny_models_dir(models_dir)
            models = assemble_from_folder(models_dir, args.aa2_modules, args.fusion_blocks)
            if keypoints is not None:
                models.denoising.require("ipi")  # before the encoders run: the aa2-modules file must hold an IPI
            for net in (models.denoising, models.reference, models.pose, models.image_encoder):
                net.to(args.device, dtype)
            models.vae.to(args.device)
            cond, scene = build_conditions(models, ref, poses, driving, mask, args.device, dtype, args.clip_preprocess, args.feather,
                                           object_mask, depth, keypoints, character_poses, args.skeleton_radius)
            progress = Progress()
            sampler = Sampler(MooreModels(models.denoising, models.pose), settings, device=args.device, dtype=dtype, on_step=progress)
            latents = sampler.sample(cond)
            progress.close()
            frames = images.vae_decode(models.vae, latents)
            if scene is not None:  # the driving video's own pixels outside the mask
                frames = composite_environment(frames, scene[0], scene[1], keep=scene[2])
            write_video(args.out, frames, fps, audio_from=sound_source(args))
            print(f"wrote {frames.shape[0]} frames {frames.shape[2]}x{frames.shape[1]} to {args.out} in {time.perf_counter() - t0:.1f} s")
            return 0
        except AA2Error as e:
            print(f"error: {e}")
            return 1
