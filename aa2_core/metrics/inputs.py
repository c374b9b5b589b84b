"""The GENERATED and TRUTH folders: which videos they hold, and their frames as ``[T, H, W, 3]`` uint8 RGB.

A folder holds videos (.mp4, .avi, ...) and/or folders of frames (.png, .jpg, ...), matched by name without
extension between the two sides; a folder that holds only frames is one video. Frames of a frame folder are
taken in natural order (frame2 before frame10). Everything that does not fit is an ``AA2Error`` naming the file.
"""

from __future__ import annotations

import os
import re

import numpy as np

from ..errors import AA2Error

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif", ".m4v")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def _natural(name: str):
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def _visible(folder: str) -> list[str]:
    return sorted((n for n in os.listdir(folder) if not n.startswith(".")), key=_natural)


def list_videos(folder: str, side: str) -> dict[str, str]:
    """``{name: path}`` of the videos in ``folder`` (``side`` names it in messages: "GENERATED" / "TRUTH")."""
    if not os.path.isdir(folder):
        raise AA2Error(f"{side}: {folder} is not a folder; expected a folder of videos or of frame folders")
    names = _visible(folder)
    images = [n for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
    entries = {}
    for n in names:
        path = os.path.join(folder, n)
        stem, ext = os.path.splitext(n)
        if os.path.isdir(path):
            key = n
        elif ext.lower() in VIDEO_EXTENSIONS:
            key = stem
        else:
            continue  # frames handled below; notes, json and the like are not videos
        if key in entries:
            raise AA2Error(f"{side}: {folder} holds two videos named {key!r}: {entries[key]} and {path}")
        entries[key] = path
    if images and entries:
        raise AA2Error(f"{side}: {folder} mixes frames ({images[0]} ...) with videos or folders "
                       f"({next(iter(entries.values()))}); give either one video as frames, or videos / frame folders")
    if images:
        return {os.path.basename(os.path.normpath(folder)): folder}
    if not entries:
        raise AA2Error(f"{side}: {folder} is empty; expected videos ({', '.join(VIDEO_EXTENSIONS)}) "
                       f"or folders of frames ({', '.join(IMAGE_EXTENSIONS)})")
    return entries


def match(generated: dict[str, str], truth: dict[str, str]) -> list[tuple[str, str, str]]:
    """(name, generated path, truth path) for every video; any name on one side only is an error."""
    only_gen = sorted(set(generated) - set(truth), key=_natural)
    only_truth = sorted(set(truth) - set(generated), key=_natural)
    if only_gen or only_truth:
        parts = []
        if only_gen:
            parts.append(f"generated without a truth video: {', '.join(only_gen[:8])}")
        if only_truth:
            parts.append(f"truth without a generated video: {', '.join(only_truth[:8])}")
        raise AA2Error("videos are matched by name and these have no partner: " + "; ".join(parts))
    return [(n, generated[n], truth[n]) for n in sorted(generated, key=_natural)]


def read_frames(path: str) -> np.ndarray:
    """``[T, H, W, 3]`` uint8 RGB frames of a video file or a frame folder."""
    frames = _read_folder(path) if os.path.isdir(path) else _read_video(path)
    if len(frames) == 0:
        raise AA2Error(f"{path}: no frames; expected a video with at least one frame")
    return frames


def _read_video(path: str) -> np.ndarray:
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise AA2Error(f"{path}: holds no video stream; expected a video")
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]
    except AA2Error:
        raise
    except Exception as e:  # PyAV raises its own error types for truncated or foreign files
        raise AA2Error(f"{path}: could not read it as a video ({type(e).__name__}: {e}); expected a playable "
                       f"video ({', '.join(VIDEO_EXTENSIONS)})") from e
    if not frames:
        raise AA2Error(f"{path}: no frames could be decoded; expected a video with at least one frame")
    _same_size(frames, [f"{path} frame {i}" for i in range(len(frames))])
    return np.stack(frames)


def _read_folder(folder: str) -> np.ndarray:
    import cv2

    names = [n for n in _visible(folder) if n.lower().endswith(IMAGE_EXTENSIONS)]
    if not names:
        raise AA2Error(f"{folder}: no frames in this folder; expected images ({', '.join(IMAGE_EXTENSIONS)})")
    frames = []
    for n in names:
        path = os.path.join(folder, n)
        data = cv2.imread(path, cv2.IMREAD_COLOR)  # 8-bit BGR whatever the file: gray, alpha, 16-bit
        if data is None:
            raise AA2Error(f"{path}: could not read it as an image; expected a readable frame ({', '.join(IMAGE_EXTENSIONS)})")
        frames.append(data[..., ::-1])
    _same_size(frames, [os.path.join(folder, n) for n in names])
    return np.ascontiguousarray(np.stack(frames))


def _same_size(frames, labels) -> None:
    first = frames[0].shape
    for f, label in zip(frames, labels):
        if f.shape != first:
            raise AA2Error(f"{label}: {f.shape[1]}x{f.shape[0]} pixels, but the first frame ({labels[0]}) is "
                           f"{first[1]}x{first[0]}; every frame of a video must have one size")


def check_pair(name: str, gen_path: str, gen: np.ndarray, truth_path: str, truth: np.ndarray) -> None:
    """Generated and truth frames must line up one to one (no silent resizing or trimming)."""
    if len(gen) != len(truth):
        raise AA2Error(f"video {name!r}: {gen_path} has {len(gen)} frames but {truth_path} has {len(truth)}; "
                       "expected the same number of frames")
    if gen.shape[1:3] != truth.shape[1:3]:
        raise AA2Error(f"video {name!r}: {gen_path} is {gen.shape[2]}x{gen.shape[1]} pixels but {truth_path} is "
                       f"{truth.shape[2]}x{truth.shape[1]}; expected the same frame size")
