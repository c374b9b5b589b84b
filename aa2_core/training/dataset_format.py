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
looks complete.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

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
    n, (h, w) = record.num_frames, record.size
    expected = {"frames": (n, h, w, 3), "character": (n, h, w), "body": (n, 18, 3), "hands": (n, 2, 21, 3),
                "face": (n, 68, 3), "objects": (n, h, w), "depth": (n, h, w)}
    for name, shape in expected.items():
        tensor = getattr(record, name)
        if tensor is None:
            if name in REQUIRED:
                raise AA2Error(f"{where}: '{name}' is required")
            continue
        if tuple(tensor.shape) != shape:
            raise AA2Error(f"{where}: '{name}' should have shape {list(shape)}; got {list(tensor.shape)}")
        if tensor.dtype != DTYPES[name]:
            raise AA2Error(f"{where}: '{name}' should be {DTYPES[name]}; got {tensor.dtype}")


def write_clip(folder: str, record: ClipRecord) -> str:
    """Write ``folder/clip.safetensors`` atomically; returns its path."""
    check_record(record, folder)
    os.makedirs(folder, exist_ok=True)
    tensors = {name: getattr(record, name).contiguous() for name in REQUIRED + OPTIONAL if getattr(record, name) is not None}
    path = os.path.join(folder, CLIP_FILE)
    partial = path + ".partial"
    save_file(tensors, partial, metadata={"format": FORMAT, "version": str(VERSION), "fps": repr(float(record.fps)),
                                          "source": record.source})
    os.replace(partial, path)
    return path


def clip_info(path: str) -> dict:
    """Frame count, size, fps and which optional tensors a stored clip has, without reading its data."""
    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise AA2Error(f"{path}: not an {FORMAT} clip (metadata format={meta.get('format')!r})")
        shape = f.get_slice("frames").get_shape()
        keys = set(f.keys())
    return {"frames": int(shape[0]), "height": int(shape[1]), "width": int(shape[2]), "fps": float(meta.get("fps", 24.0)),
            "source": meta.get("source", ""), "optional": sorted(k for k in OPTIONAL if k in keys)}


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
    with open(path + ".partial", "w") as f:
        json.dump(body, f, indent=1)
    os.replace(path + ".partial", path)
    return path


def read_index(root: str) -> dict:
    """``dataset.json`` of a training set, checked; clips whose file is missing raise."""
    path = os.path.join(root, INDEX_FILE)
    if not os.path.isfile(path):
        raise AA2Error(f"{root}: no {INDEX_FILE}; make a training set with `python -m aa2_core prepare VIDEOS/ --out {root}`")
    with open(path) as f:
        index = json.load(f)
    if index.get("format") != FORMAT or int(index.get("version", 0)) != VERSION:
        raise AA2Error(f"{path}: expected format {FORMAT} version {VERSION}; got {index.get('format')!r} {index.get('version')!r}")
    for clip in index["clips"]:
        if not os.path.isfile(os.path.join(root, clip["name"], CLIP_FILE)):
            raise AA2Error(f"{root}: clip '{clip['name']}' is listed in {INDEX_FILE} but {clip['name']}/{CLIP_FILE} is missing")
    if not index["clips"]:
        raise AA2Error(f"{root}: the training set has no clips" + (f" ({len(index['skipped'])} skipped, see {INDEX_FILE})" if index["skipped"] else ""))
    return index
