"""Raw videos -> a cached training set (``dataset_format``): ``python -m aa2_core prepare VIDEOS/ --out DATA/``.

Per video it stores the frames at the training size, the character mask, the union of the interacting
objects' masks, OpenPose keypoints and (optionally) depth. Each input comes from a file next to the video
or from a model (local files only):

    VIDEOS/dance.mp4               the video (.mp4, .webm, .mov, .mkv, .avi; any size and fps)
    VIDEOS/dance.mask.mp4          character mask: a video, or a folder dance.mask/ of PNGs (one per frame,
                                   sorted by name); white = character (an RGBA PNG: its alpha)
    VIDEOS/dance.objects.mp4       optional, interacting objects (one mask, or their union), same forms
    VIDEOS/dance.pose.json         keypoints: ComfyUI POSE_KEYPOINT JSON (DWPose / OpenPose nodes), one
                                   entry per frame
    VIDEOS/dance.depth.mp4         optional depth: grey video or PNG folder dance.depth/, near = bright
    VIDEOS/dance.prompts.json      SAM2 prompts when there is no mask file (needs --sam2):
                                   {"character": {"frame": 0, "points": [[x, y]], "labels": [1]},
                                    "objects": [{"frame": 0, "box": [x0, y0, x1, y1]}]}
                                   in pixels of the source video, every prompt on the same frame

Missing keypoints come from DWPose (--dwpose folder with the two ONNX files, needs onnxruntime), missing depth
from Depth Anything (--depth-model, a Hugging Face model folder), or the clip has no depth.

Size policy: each video is scaled (keeping its aspect ratio) so that it covers H x W, then cropped to H x W at
one position for the whole clip, centred on the box holding the character in every frame (the paper crops
"at consistent positions to ensure that the character is fully contained"); when that box is larger than
the crop the crop is centred on it and the character is cut. Keypoints get the same scale and crop; points
outside the crop are dropped. All frames are kept, at the video's own fps (``TrainingSet`` takes a stride).

It resumes: a clip whose ``clip.safetensors`` is complete at this size is not redone. A video that cannot be
decoded, changes frame size, is shorter than --min-frames or lacks an input is skipped; ``dataset.json``
lists it under "skipped" with the reason, and the others go on. Exit code 0 when the set has clips, 1 on an
error, 130 when interrupted (Ctrl-C: the finished clips stay; the same command resumes).
"""

from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from ..atomic import check_output_folder
from ..conditions.keypoints import BODY_JOINTS, FACE_POINTS, HAND_JOINTS, Pose, parse_pose_keypoint
from ..errors import AA2Error
from .dataset_format import CLIP_FILE, INDEX_FILE, ClipRecord, clip_info, load_index, write_clip, write_index

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
COMPANIONS = ("mask", "objects", "depth")  # NAME.<companion>.<ext> or NAME.<companion>/ next to NAME.<ext>


class Skip(Exception):
    """This video cannot become a clip; the message is the reason written to dataset.json."""


class ModelError(AA2Error):
    """A model named on the command line does not load: every video would fail, so the run stops."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during ``prepare``; ``done`` complete clips are in the set (the index lists them)."""

    def __init__(self, done: int):
        super().__init__(done)
        self.done = done


def readable(error: BaseException) -> str:
    """An OS / ffmpeg error as its message alone: ``[Errno 1094995529] Invalid data ...: '/long/path'`` reads
    as ``Invalid data ...`` (the caller names the file; PyAV's errno is ffmpeg's FourCC tag, noise to a user)."""
    text = getattr(error, "strerror", None) or str(error)
    return re.sub(r"\[Errno -?\d+\]\s*", "", text).strip() or type(error).__name__


@dataclass
class Options:
    height: int = 768
    width: int = 512
    min_frames: int = 16
    max_frames: int = 0  # 0: every frame
    sam2: Optional[str] = None
    dwpose: Optional[str] = None
    depth_model: Optional[str] = None
    device: str = "cpu"


@dataclass
class Models:
    """Models loaded on first use, once per run."""

    options: Options
    _loaded: dict = field(default_factory=dict)

    def get(self, name: str):
        if name not in self._loaded:
            try:
                self._loaded[name] = _load_model(name, self.options)
            except AA2Error as e:
                raise ModelError(str(e)) from e
        return self._loaded[name]


# ---------------------------------------------------------------------------------------------------
# Finding videos and their companion files
# ---------------------------------------------------------------------------------------------------


def find_videos(folder: str) -> list[str]:
    """Source videos in ``folder`` (not recursive), companions (``NAME.mask.mp4`` ...) left out."""
    if not os.path.isdir(folder):
        raise AA2Error(f"videos folder not found: {folder}")
    out = []
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        if ext.lower() in VIDEO_EXTENSIONS and os.path.isfile(os.path.join(folder, name)) and _companion_of(stem) is None:
            out.append(os.path.join(folder, name))
    return out


def _companion_of(stem: str) -> Optional[str]:
    suffix = stem.rsplit(".", 1)[-1] if "." in stem else None
    return suffix if suffix in COMPANIONS else None


def companion(video: str, kind: str) -> Optional[str]:
    """``NAME.<kind>.<video ext>`` or a ``NAME.<kind>/`` image folder next to the video, or None."""
    base = os.path.splitext(video)[0] + "." + kind
    if os.path.isdir(base):
        return base
    for ext in VIDEO_EXTENSIONS:
        for candidate in (base + ext, base + ext.upper()):
            if os.path.isfile(candidate):
                return candidate
    return None


def sidecar(video: str, suffix: str) -> Optional[str]:
    path = os.path.splitext(video)[0] + suffix
    return path if os.path.isfile(path) else None


def clip_names(videos: list[str]) -> dict[str, str]:
    """Video path -> clip folder name: the file stem, with the extension added where two stems clash."""
    stems = [_safe(os.path.splitext(os.path.basename(v))[0]) for v in videos]
    out = {}
    for video, stem in zip(videos, stems):
        ext = os.path.splitext(video)[1].lstrip(".").lower()
        out[video] = stem if stems.count(stem) == 1 else f"{stem}_{ext}"
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip(".") or "clip"


# ---------------------------------------------------------------------------------------------------
# Decoding and the size policy
# ---------------------------------------------------------------------------------------------------


def cover_size(height: int, width: int, out_h: int, out_w: int) -> tuple[int, int]:
    """The size, aspect ratio kept, at which a ``height x width`` frame just covers ``out_h x out_w``."""
    scale = max(out_h / height, out_w / width)
    return max(out_h, round(height * scale)), max(out_w, round(width * scale))


def _resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    if image.shape[:2] == tuple(size):
        return image
    shrinking = size[0] < image.shape[0] or size[1] < image.shape[1]
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def decode_video(path: str, out_size: tuple[int, int], max_frames: int = 0, what: str = "video"):
    """``(frames uint8 [N, h, w, 3] at the cover size of out_size, fps, (source h, source w))``.

    Raises ``Skip`` when the file cannot be opened or decoded or its frame size changes.
    """
    import av

    try:
        container = av.open(path)
    except (av.FFmpegError, OSError) as e:
        raise Skip(f"{what}: cannot open {os.path.basename(path)}: {readable(e)}") from e
    with container:
        if not container.streams.video:
            raise Skip(f"{what}: {os.path.basename(path)} has no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 24.0)
        frames, source, target = [], None, None
        try:
            for frame in container.decode(stream):
                size = (frame.height, frame.width)
                if source is None:
                    source, target = size, cover_size(*size, *out_size)
                elif size != source:
                    raise Skip(f"{what}: variable frame size: {source[1]}x{source[0]} at frame 0, "
                               f"{size[1]}x{size[0]} at frame {len(frames)}")
                frames.append(_resized(frame.to_ndarray(format="rgb24"), target))
                if max_frames and len(frames) >= max_frames:
                    break
        except av.FFmpegError as e:
            raise Skip(f"{what}: decoding {os.path.basename(path)} failed at frame {len(frames)}: {readable(e)}") from e
    if not frames:
        raise Skip(f"{what}: no frame could be decoded from {os.path.basename(path)}")
    return np.stack(frames), fps, source


def read_planes(path: str, size: tuple[int, int], count: int, what: str) -> np.ndarray:
    """A grey video or image folder as ``[count, h, w]`` uint8/uint16 planes at ``size`` (first ``count`` frames)."""
    if os.path.isdir(path):
        planes = _image_folder(path, size, count, what)
    else:
        frames = decode_video(path, size, count, what)[0]
        planes = np.stack([_resized(f, size) for f in frames]).max(-1)
    if len(planes) < count:
        raise Skip(f"{what}: {len(planes)} frames in {os.path.basename(path)}, the video has {count}")
    return planes[:count]


def _image_folder(folder: str, size: tuple[int, int], count: int, what: str) -> np.ndarray:
    import cv2

    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))[:count]
    planes = []
    for name in files:
        image = cv2.imread(os.path.join(folder, name), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise Skip(f"{what}: cannot read {name} in {os.path.basename(folder)}/")
        if image.ndim == 3:
            image = image[..., 3] if image.shape[2] == 4 else image[..., :3].max(-1)  # alpha, else brightest channel
        planes.append(_resized(image, size))
    return np.stack(planes) if planes else np.zeros((0, *size), np.uint8)


def as_mask(planes: np.ndarray) -> np.ndarray:
    """Grey planes -> 0/1 uint8: at least half the full value (the rule ``resize_mask`` uses)."""
    full = 65535 if planes.dtype == np.uint16 else 255
    return (planes.astype(np.float32) >= full / 2).astype(np.uint8)


def crop_origin(character: np.ndarray, out_size: tuple[int, int]) -> tuple[int, int]:
    """Top-left ``(y, x)`` of the crop: centred on the box of the character over every frame, inside the frame."""
    height, width = character.shape[1:]
    rows, cols = np.flatnonzero(character.any(axis=(0, 2))), np.flatnonzero(character.any(axis=(0, 1)))
    centre_y, centre_x = ((rows[0] + rows[-1] + 1) / 2, (cols[0] + cols[-1] + 1) / 2) if len(rows) else (height / 2, width / 2)
    y = int(round(min(max(centre_y - out_size[0] / 2, 0), height - out_size[0])))
    x = int(round(min(max(centre_x - out_size[1] / 2, 0), width - out_size[1])))
    return y, x


def crop_poses(poses: list[Pose], scale: tuple[float, float], origin: tuple[int, int], out_size: tuple[int, int]) -> list[Pose]:
    """Source-canvas poses -> poses on the crop: ``x * sx - x0``; points that leave the crop are dropped."""
    sy, sx = scale
    out = []
    for pose in poses:
        pose = pose.copy()
        for part in (pose.body, pose.hands, pose.face):
            if part is None:
                continue
            part[..., 0] = part[..., 0] * sx - origin[1]
            part[..., 1] = part[..., 1] * sy - origin[0]
            outside = (part[..., 0] < 0) | (part[..., 0] >= out_size[1]) | (part[..., 1] < 0) | (part[..., 1] >= out_size[0])
            part[outside | (part[..., 2] <= 0)] = 0.0
        pose.height, pose.width = out_size
        out.append(pose)
    return out


def keypoint_tensors(poses: list[Pose]) -> dict:
    """``body`` [N, 18, 3], and ``hands`` / ``face`` when any frame has them (zeros = missing)."""
    n = len(poses)
    body = np.stack([p.body for p in poses]).astype(np.float32)
    out = {"body": torch.from_numpy(body.reshape(n, BODY_JOINTS, 3))}
    if any(p.hands is not None for p in poses):
        zeros = np.zeros((2, HAND_JOINTS, 3))
        out["hands"] = torch.from_numpy(np.stack([zeros if p.hands is None else p.hands for p in poses]).astype(np.float32))
    if any(p.face is not None for p in poses):
        zeros = np.zeros((FACE_POINTS, 3))
        out["face"] = torch.from_numpy(np.stack([zeros if p.face is None else p.face[:FACE_POINTS] for p in poses]).astype(np.float32))
    return out


# ---------------------------------------------------------------------------------------------------
# One video -> one clip
# ---------------------------------------------------------------------------------------------------


def prepare_video(video: str, options: Options, models: Models) -> ClipRecord:
    """Decode, mask, crop, pose and depth one video; raises ``Skip`` with the reason."""
    out_size = (options.height, options.width)
    frames, fps, source = decode_video(video, out_size, options.max_frames)
    n = len(frames)
    if n < options.min_frames:
        raise Skip(f"{n} frames, fewer than --min-frames {options.min_frames}")
    size = frames.shape[1:3]
    character, objects = masks_for(video, frames, source, options, models)
    if not character.any():
        raise Skip("the character mask is empty in every frame")
    y, x = crop_origin(character, out_size)
    crop = (slice(None), slice(y, y + out_size[0]), slice(x, x + out_size[1]))
    frames, character = frames[crop], character[crop]
    objects = None if objects is None else objects[crop]
    poses = poses_for(video, frames, source, (size[0] / source[0], size[1] / source[1]), (y, x), options, models)
    depth = depth_for(video, frames, size, crop, options, models)
    return ClipRecord(frames=torch.from_numpy(np.ascontiguousarray(frames)), character=torch.from_numpy(np.ascontiguousarray(character)),
                      objects=None if objects is None else torch.from_numpy(np.ascontiguousarray(objects)),
                      depth=depth, fps=fps, source=os.path.basename(video), **keypoint_tensors(poses))


def masks_for(video, frames, source, options: Options, models: Models):
    """Character and objects masks ``[N, h, w]`` uint8 0/1 at the frames' size: from files, else SAM2."""
    n, size = len(frames), frames.shape[1:3]
    files = {kind: companion(video, kind) for kind in ("mask", "objects")}
    character = None if files["mask"] is None else as_mask(read_planes(files["mask"], size, n, "character mask"))
    objects = None if files["objects"] is None else as_mask(read_planes(files["objects"], size, n, "objects mask"))
    prompts = _read_prompts(video)
    need_objects = objects is None and prompts is not None and prompts.get("objects")
    if character is None or need_objects:
        if prompts is None or options.sam2 is None:
            if character is None:
                raise Skip(f"no character mask: give {_stem(video)}.mask.mp4 or {_stem(video)}.mask/ (PNG), "
                           f"or {_stem(video)}.prompts.json with --sam2")
        else:
            segmented = sam2_masks(frames, prompts, source, models, with_character=character is None)
            character = segmented.pop("character", character)
            objects = segmented.get("objects", objects)
    return character, objects


def sam2_masks(frames: np.ndarray, prompts: dict, source, models: Models, with_character: bool) -> dict:
    """SAM2 on the frames, prompts scaled from source pixels; ``{"character": ..., "objects": union}``."""
    from ..conditions.sam2_video import segment_video

    sy, sx = frames.shape[1] / source[0], frames.shape[2] / source[1]
    wanted = ([prompts["character"]] if with_character else []) + list(prompts.get("objects") or [])
    scaled = [_scaled_prompt(p, sx, sy) for p in wanted]
    try:
        masks = segment_video(models.get("sam2"), torch.from_numpy(frames).float() / 255, scaled).numpy() > 0.5
    except AA2Error as e:
        raise Skip(f"SAM2: {e}") from e
    out = {}
    if with_character:
        out["character"], masks = masks[0].astype(np.uint8), masks[1:]
    if len(masks):
        out["objects"] = masks.any(0).astype(np.uint8)
    return out


def _scaled_prompt(prompt: dict, sx: float, sy: float) -> dict:
    if not isinstance(prompt, dict):
        raise Skip(f"prompts: each prompt must be an object {{frame, points, labels, box}}; got {prompt!r}")
    out = dict(prompt)
    if prompt.get("points"):
        out["points"] = [[float(x) * sx, float(y) * sy] for x, y in prompt["points"]]
    if prompt.get("box"):
        x0, y0, x1, y1 = prompt["box"]
        out["box"] = [float(x0) * sx, float(y0) * sy, float(x1) * sx, float(y1) * sy]
    return out


def _read_prompts(video: str) -> Optional[dict]:
    path = sidecar(video, ".prompts.json")
    if path is None:
        return None
    try:
        with open(path) as f:
            prompts = json.load(f)
    except (OSError, ValueError) as e:
        raise Skip(f"prompts: cannot read {os.path.basename(path)}: {readable(e)}") from e
    if not isinstance(prompts, dict) or "character" not in prompts:
        raise Skip(f'prompts: {os.path.basename(path)} must hold {{"character": {{...}}, "objects": [...]}}')
    return prompts


def poses_for(video, frames, source, scale, origin, options: Options, models: Models) -> list[Pose]:
    """Keypoints on the crop: from ``NAME.pose.json`` (scaled and cropped), else DWPose on the cropped frames."""
    out_size = frames.shape[1:3]
    path = sidecar(video, ".pose.json")
    if path is not None:
        try:
            with open(path) as f:
                poses = parse_pose_keypoint(json.load(f), height=source[0], width=source[1])
        except (OSError, ValueError, AA2Error) as e:
            raise Skip(f"keypoints: cannot read {os.path.basename(path)}: {readable(e)}") from e
        if len(poses) < len(frames):
            raise Skip(f"keypoints: {len(poses)} frames in {os.path.basename(path)}, the video has {len(frames)}")
        return crop_poses(poses[: len(frames)], scale, origin, out_size)
    if options.dwpose is None:
        raise Skip(f"no keypoints: give {_stem(video)}.pose.json (POSE_KEYPOINT) or --dwpose")
    return models.get("dwpose")(frames)


def depth_for(video, frames, size, crop, options: Options, models: Models) -> Optional[torch.Tensor]:
    """Depth ``[N, H, W]`` float16 0..1 (near = 1) on the crop: from a file, Depth Anything, or None."""
    path = companion(video, "depth")
    if path is not None:
        planes = read_planes(path, size, len(frames), "depth")[crop]
        full = 65535.0 if planes.dtype == np.uint16 else 255.0
        return torch.from_numpy(planes.astype(np.float32) / full).to(torch.float16)
    if options.depth_model is None:
        return None
    from ..conditions.depth import estimate_depth

    return torch.from_numpy(estimate_depth(models.get("depth"), frames)).to(torch.float16)


def _stem(video: str) -> str:
    return os.path.splitext(os.path.basename(video))[0]


def _load_model(name: str, options: Options):
    if name == "sam2":
        from ..conditions.sam2_video import load_sam2_video_predictor

        return load_sam2_video_predictor(options.sam2, device=options.device)
    if name == "dwpose":
        from ..conditions.dwpose import load_dwpose

        return load_dwpose(options.dwpose)
    from ..conditions.depth import load_depth_anything

    return load_depth_anything(options.depth_model, device=options.device)


# ---------------------------------------------------------------------------------------------------
# The whole folder, resumable
# ---------------------------------------------------------------------------------------------------


def existing_clips(out: str, height: int, width: int) -> dict[str, dict]:
    """Complete clips already in ``out`` (name -> index entry); a set of another size is refused."""
    index_path = os.path.join(out, INDEX_FILE)
    if os.path.lexists(index_path):
        index = load_index(index_path)  # broken or wrong-typed: say so, never overwrite it unread
        if (index["height"], index["width"]) != (height, width):
            raise AA2Error(f"{out} holds a training set at {index['height']}x{index['width']}; "
                           f"asked for {height}x{width}: use another --out")
    found = {}
    for name in sorted(os.listdir(out)) if os.path.isdir(out) else []:
        path = os.path.join(out, name, CLIP_FILE)
        if not os.path.isfile(path):
            continue
        try:
            info = clip_info(path)  # the header checked against the format: a damaged clip is redone
        except AA2Error:
            continue
        if (info["height"], info["width"]) == (height, width):
            found[name] = {"name": name, "frames": info["frames"], "fps": info["fps"], "source": info["source"]}
    return found


def prepare(videos_dir: str, out: str, options: Options, progress: bool = True) -> dict:
    """Every video of ``videos_dir`` into ``out``; returns the index written (with "written" and "resumed" counts)."""
    check_output_folder(out, "--out", "a folder for the training set (created if missing)")
    videos = find_videos(videos_dir)
    if not videos:
        raise AA2Error(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) in {videos_dir}")
    clips = existing_clips(out, options.height, options.width)
    os.makedirs(out, exist_ok=True)
    names, skipped = clip_names(videos), []
    counts = {"written": 0, "resumed": 0}
    try:
        _prepare_all(videos, names, out, options, clips, skipped, counts, progress)
    except KeyboardInterrupt:  # every clip on disk is whole (atomic writes) and listed: report and let main exit
        raise Interrupted(len(clips)) from None
    write_index(out, options.height, options.width, list(clips.values()), skipped)
    return {"clips": list(clips.values()), "skipped": skipped, **counts}


def _prepare_all(videos, names, out, options: Options, clips: dict, skipped: list, counts: dict, progress: bool) -> None:
    models = Models(options)
    for video in _progress(videos, progress):
        name = names[video]
        if name in clips and clips[name]["source"] == os.path.basename(video):
            counts["resumed"] += 1
            continue
        try:
            record = prepare_video(video, options, models)
        except ModelError:
            raise
        except (Skip, AA2Error, ValueError, RuntimeError, OSError) as e:  # this video only; the others go on
            reason = str(e) if isinstance(e, (Skip, AA2Error)) else f"{type(e).__name__}: {readable(e)}"
            skipped.append({"source": os.path.basename(video), "reason": reason})
            write_index(out, options.height, options.width, list(clips.values()), skipped)
            continue
        write_clip(os.path.join(out, name), record)
        clips[name] = {"name": name, "frames": record.num_frames, "fps": record.fps, "source": record.source}
        counts["written"] += 1
        write_index(out, options.height, options.width, list(clips.values()), skipped)  # after every clip: resumable


def _progress(items: list, enabled: bool):
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return _counter(items)
    return tqdm(items, desc="prepare", unit="video")


def _counter(items: list):
    for i, item in enumerate(items, start=1):
        print(f"[{i}/{len(items)}] {os.path.basename(item)}", flush=True)
        yield item


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m aa2_core prepare", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("videos", help="folder of videos and their companion files (see below)")
    p.add_argument("--out", required=True, help="training set folder (created; resumed when it exists)")
    p.add_argument("--height", type=int, default=768, help="training height (default 768)")
    p.add_argument("--width", type=int, default=512, help="training width (default 512)")
    p.add_argument("--min-frames", type=int, default=16, help="skip videos shorter than this (default 16)")
    p.add_argument("--max-frames", type=int, default=0, help="keep at most this many frames per video (0: all)")
    p.add_argument("--sam2", help="SAM2 checkpoint (.pt / .safetensors) for videos with NAME.prompts.json")
    p.add_argument("--dwpose", help="DWPose folder (yolox_l.onnx, dw-ll_ucoco_384.onnx) for videos without NAME.pose.json")
    p.add_argument("--depth-model", help="Depth Anything folder (Hugging Face format) for videos without NAME.depth.*")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="device for SAM2 and Depth Anything")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.height < 8 or args.width < 8 or args.height % 8 or args.width % 8:
        print(f"error: --height and --width must be multiples of 8 (the VAE); got {args.height}x{args.width}")
        return 2
    options = Options(args.height, args.width, args.min_frames, args.max_frames, args.sam2, args.dwpose, args.depth_model, args.device)
    try:
        result = prepare(args.videos, args.out, options, progress=not args.no_progress)
    except AA2Error as e:
        print(f"error: {e}")
        return 1
    except KeyboardInterrupt as e:
        done = f"{e.done} clips done, " if isinstance(e, Interrupted) else ""
        print(f"\ninterrupted; {done}run the same command again to resume")
        return 130
    print(f"{args.out}: {result['written']} clips written, {result['resumed']} already done, {len(result['skipped'])} skipped"
          f" ({len(result['clips'])} clips in {INDEX_FILE})")
    for entry in result["skipped"]:
        print(f"  skipped {entry['source']}: {entry['reason']}")
    return 0 if result["clips"] else 1
