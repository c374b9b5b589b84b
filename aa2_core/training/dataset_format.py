"""The on-disk training set: what ``python -m aa2_core prepare`` writes and the trainer reads.

    DATA/
      dataset.json           {"format": "aa2-training-set", "version": 1, "height": H, "width": W,
                              "clips": [{"name", "frames", "fps", "source"}], "skipped": [{"source", "reason"}]}
      <clip name>/clip.safetensors

One ``clip.safetensors`` per source video, every frame at the training size ``H x W``:

| tensor           | dtype   | shape          | meaning                                                        |
| ---------------- | ------- | -------------- | -------------------------------------------------------------- |
| ``frames``       | uint8   | [N, H, W, 3]   | RGB frames                                                     |
| ``character``    | uint8   | [N, H, W]      | character mask, 0 or 1                                         |
| ``body``         | float32 | [N, 18, 3]     | OpenPose-18 keypoints, x/y in pixels of H x W, confidence (0 = missing) |
| ``hands``        | float32 | [N, 2, 21, 3]  | optional: left, right hand keypoints                           |
| ``face``         | float32 | [N, 68, 3]     | optional: face keypoints                                       |
| ``objects``      | uint8   | [N, H, W]      | optional: union of the interacting objects' masks, 0 or 1      |
| ``depth``        | float16 | [N, H, W]      | optional: relative depth in 0..1, near = 1 (``depth.estimate_depth``) |

Keypoints, not a rendered skeleton, are stored so that scale augmentation and Animate-X's explicit pose
indicator can move the skeleton with the character before it is drawn. Frames are stored raw (no video
codec) so a random clip is read exactly and without decoding the whole video: safetensors slices.
Files are written to a temporary name and renamed, so an interrupted ``prepare`` never leaves a clip that
looks complete. ``read_index`` checks the index's fields and every clip's header (keys, shapes, dtypes, frame
count) before training starts, so a damaged file is named up front, not by a data-loader worker mid-run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..atomic import atomic_path
from ..conditions.keypoints import Pose
from ..errors import AA2Error

FORMAT = "aa2-training-set"
VERSION = 1
INDEX_FILE = "dataset.json"
CLIP_FILE = "clip.safetensors"
REQUIRED = ("frames", "character", "body")
OPTIONAL = ("hands", "face", "objects", "depth")
DTYPES = {"frames": torch.uint8, "character": torch.uint8, "body": torch.float32, "hands": torch.float32,
          "face": torch.float32, "objects": torch.uint8, "depth": torch.float16}
HEADER_DTYPES = {torch.uint8: "U8", torch.float32: "F32", torch.float16: "F16"}  # safetensors' names for them


@dataclass
class ClipRecord:
    """One stored clip (or a slice of one). Shapes as in the module table."""

    frames: torch.Tensor
    character: torch.Tensor
    body: torch.Tensor
    hands: Optional[torch.Tensor] = None
    face: Optional[torch.Tensor] = None
    objects: Optional[torch.Tensor] = None
    depth: Optional[torch.Tensor] = None
    fps: float = 24.0
    source: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def poses(self) -> list[Pose]:
        """The keypoints as one ``Pose`` per frame (float64, as the skeleton renderer wants)."""
        height, width = self.size
        out = []
        for i in range(self.num_frames):
            out.append(Pose(body=self.body[i].double().numpy(), height=height, width=width,
                            hands=None if self.hands is None else self.hands[i].double().numpy(),
                            face=None if self.face is None else self.face[i].double().numpy()))
        return out


def check_record(record: ClipRecord, where: str = "clip") -> None:
    """Shapes and dtypes as the format says; raises ``AA2Error`` naming the tensor."""
    for name, shape in expected_shapes(record.num_frames, *record.size).items():
        tensor = getattr(record, name)
        if tensor is None:
            if name in REQUIRED:
                raise AA2Error(f"{where}: '{name}' is required")
            continue
        if tuple(tensor.shape) != shape:
            raise AA2Error(f"{where}: '{name}' should have shape {list(shape)}; got {list(tensor.shape)}")
        if tensor.dtype != DTYPES[name]:
            raise AA2Error(f"{where}: '{name}' should be {DTYPES[name]}; got {tensor.dtype}")


def expected_shapes(n: int, h: int, w: int) -> dict[str, tuple]:
    return {"frames": (n, h, w, 3), "character": (n, h, w), "body": (n, 18, 3), "hands": (n, 2, 21, 3),
            "face": (n, 68, 3), "objects": (n, h, w), "depth": (n, h, w)}


def write_clip(folder: str, record: ClipRecord) -> str:
    """Write ``folder/clip.safetensors`` atomically; returns its path."""
    check_record(record, folder)
    os.makedirs(folder, exist_ok=True)
    tensors = {name: getattr(record, name).contiguous() for name in REQUIRED + OPTIONAL if getattr(record, name) is not None}
    path = os.path.join(folder, CLIP_FILE)
    with atomic_path(path) as partial:  # Ctrl-C mid-write leaves no file, not even a stray partial one
        save_file(tensors, partial, metadata={"format": FORMAT, "version": str(VERSION), "fps": repr(float(record.fps)),
                                              "source": record.source})
    return path


def clip_info(path: str) -> dict:
    """Frame count, size, fps and which optional tensors a stored clip has, from its header alone (no tensor
    data is read). Every tensor's shape and dtype is checked against the format; raises ``AA2Error`` naming
    the file, so a cut or damaged clip is found when the index is read, not mid-training."""
    redo = "delete it and run `prepare` again to redo it"
    try:
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
            header = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except (SafetensorError, OSError) as e:  # cut short, garbage header, unreadable
        raise AA2Error(f"{path}: not a readable safetensors file ({e}); {redo}") from None
    if meta.get("format") != FORMAT:
        raise AA2Error(f"{path}: not an {FORMAT} clip (metadata format={meta.get('format')!r})")
    missing = [k for k in REQUIRED if k not in header]
    if missing:
        raise AA2Error(f"{path}: the clip has no {', '.join(repr(k) for k in missing)} tensor (it needs {', '.join(REQUIRED)}); {redo}")
    shape = header["frames"][0]
    if len(shape) != 4:
        raise AA2Error(f"{path}: 'frames' should have shape [N, H, W, 3]; got {list(shape)}; {redo}")
    for name, want in expected_shapes(*shape[:3]).items():
        if name not in header:
            continue
        if header[name][0] != want:
            raise AA2Error(f"{path}: '{name}' should have shape {list(want)}; got {list(header[name][0])}; {redo}")
        if header[name][1] != HEADER_DTYPES[DTYPES[name]]:
            raise AA2Error(f"{path}: '{name}' should be {HEADER_DTYPES[DTYPES[name]]} ({DTYPES[name]}); got {header[name][1]}; {redo}")
    try:
        fps = float(meta.get("fps", 24.0))
    except ValueError:
        raise AA2Error(f"{path}: metadata fps={meta['fps']!r} is not a number; {redo}") from None
    return {"frames": int(shape[0]), "height": int(shape[1]), "width": int(shape[2]), "fps": fps,
            "source": meta.get("source", ""), "optional": sorted(k for k in OPTIONAL if k in header)}


def read_clip(path: str, start: int = 0, stop: Optional[int] = None, indices: Optional[np.ndarray] = None) -> ClipRecord:
    """Frames ``start:stop`` (or the given frame ``indices``) of a stored clip; only those are read."""
    info = clip_info(path)
    stop = info["frames"] if stop is None else int(stop)
    if not 0 <= start < stop <= info["frames"]:
        raise AA2Error(f"{path}: frames {start}:{stop} out of range (the clip has {info['frames']})")
    out = {}
    with safe_open(path, "pt") as f:
        for name in REQUIRED + OPTIONAL:
            if name in f.keys():
                tensor = f.get_slice(name)[start:stop]
                out[name] = tensor if indices is None else tensor[torch.as_tensor(indices) - start]
    return ClipRecord(**out, fps=info["fps"], source=info["source"])


def write_index(root: str, height: int, width: int, clips: list[dict], skipped: list[dict]) -> str:
    path = os.path.join(root, INDEX_FILE)
    body = {"format": FORMAT, "version": VERSION, "height": int(height), "width": int(width), "clips": clips, "skipped": skipped}
    with atomic_path(path) as partial:
        with open(partial, "w") as f:
            json.dump(body, f, indent=1)
    return path


def load_index(path: str) -> dict:
    """A ``dataset.json`` with its fields checked (not its clips); raises ``AA2Error`` naming the file and what
    is wrong. ``prepare`` resuming into a folder and the trainer both read the index through this."""
    fix = "delete it and run `python -m aa2_core prepare` again: it rebuilds the index from the clip files"
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, UnicodeDecodeError) as e:
        raise AA2Error(f"{path}: cannot be read ({getattr(e, 'strerror', None) or e}); expected a JSON file") from None
    except json.JSONDecodeError as e:
        raise AA2Error(f"{path}: not valid JSON ({e}); {fix}") from None
    if not isinstance(index, dict):
        raise AA2Error(f"{path}: holds a JSON {type(index).__name__}, expected an object "
                       f"{{format, version, height, width, clips, skipped}}; {fix}")
    if index.get("format") != FORMAT or index.get("version") != VERSION:
        raise AA2Error(f"{path}: expected format {FORMAT} version {VERSION}; got {index.get('format')!r} {index.get('version')!r}")
    problem = _index_problem(index)
    if problem:
        raise AA2Error(f"{path}: {problem}; {fix}")
    return index


def _index_problem(index: dict) -> Optional[str]:
    """What is wrong with the index's fields, or None. Wrong types would otherwise surface far away as
    ``TypeError``/``KeyError`` in the trainer."""
    def count(value, least):  # a JSON whole number (bool is an int in Python, not here)
        return isinstance(value, int) and not isinstance(value, bool) and value >= least

    for key in ("height", "width"):
        if not count(index.get(key), 1):
            return f"'{key}' is {index.get(key)!r}; expected a whole number of pixels"
    for key in ("clips", "skipped"):
        if not isinstance(index.get(key), list):
            return f"'{key}' is {index.get(key)!r}; expected a list"
    for i, clip in enumerate(index["clips"]):
        where = f"clips[{i}]"
        if not isinstance(clip, dict):
            return f"{where} is {clip!r}; expected an object {{name, frames, fps, source}}"
        name = clip.get("name")
        if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
            return f"{where}.name is {name!r}; expected the name of a clip folder beside {INDEX_FILE}"
        if not count(clip.get("frames"), 1):
            return f"{where}.frames is {clip.get('frames')!r}; expected a whole number of frames"
        if "fps" in clip and (isinstance(clip["fps"], bool) or not isinstance(clip["fps"], (int, float))):
            return f"{where}.fps is {clip['fps']!r}; expected a number"
        if "source" in clip and not isinstance(clip["source"], str):
            return f"{where}.source is {clip['source']!r}; expected a file name"
    for i, entry in enumerate(index["skipped"]):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("source", "reason")):
            return f"skipped[{i}] is {entry!r}; expected an object {{source, reason}} of strings"
    return None


def read_index(root: str) -> dict:
    """``dataset.json`` of a training set, checked, and every clip's header against it (header reads only, so
    cheap): a missing, cut or damaged clip, or one that disagrees with the index, raises ``AA2Error`` naming it."""
    path = os.path.join(root, INDEX_FILE)
    if not os.path.isfile(path):
        raise AA2Error(f"{root}: no {INDEX_FILE}; make a training set with `python -m aa2_core prepare VIDEOS/ --out {root}`")
    index = load_index(path)
    for clip in index["clips"]:
        clip_path = os.path.join(root, clip["name"], CLIP_FILE)
        if not os.path.isfile(clip_path):
            raise AA2Error(f"{root}: clip '{clip['name']}' is listed in {INDEX_FILE} but {clip['name']}/{CLIP_FILE} is missing")
        info = clip_info(clip_path)
        if (info["frames"], info["height"], info["width"]) != (clip["frames"], index["height"], index["width"]):
            raise AA2Error(f"{clip_path}: holds {info['frames']} frames of {info['height']}x{info['width']}; {INDEX_FILE} says "
                           f"{clip['frames']} frames of {index['height']}x{index['width']}")
    if not index["clips"]:
        raise AA2Error(f"{root}: the training set has no clips" + (f" ({len(index['skipped'])} skipped, see {INDEX_FILE})" if index["skipped"] else ""))
    return index
