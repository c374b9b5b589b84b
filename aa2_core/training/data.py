"""Training clips in the Animate Anyone 2 self-supervised setting (paper, sections 3.1-3.2 and 4.1).

A dataset folder holds one sub-folder per video with ``frames.mp4`` (the video), ``mask.mp4`` (the
character's mask), ``pose.mp4`` (its skeleton video) and optionally ``objects.mp4`` (the interacting
objects' mask) and ``depth.mp4``. A sample is a clip of ``frames`` consecutive frames plus:

* a reference image: a random frame of the same video, the character composited on a random plain
  background (so the model learns to find the character by itself);
* the environment: the clip with a shape-agnostic mask (random block counts) removed, after random
  scale augmentation of character and objects;
* the objects cut out by their mask, the skeleton frames and the structured depth.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..conditions.depth import structured_depth
from ..conditions.environment import random_scale_augment
from ..conditions.objects import object_sequence
from ..errors import AA2Error
from ..pipeline import images
from ..pipeline.prepare import environment_frames
from ..video_io import read_video

REQUIRED = ("frames.mp4", "mask.mp4", "pose.mp4")


@dataclass
class TrainingClip:
    frames: torch.Tensor  # [F, H, W, 3] target frames
    reference: torch.Tensor  # [1, H, W, 3]
    environment: torch.Tensor  # [F, H, W, 3]
    environment_mask: torch.Tensor  # [F, H, W]
    objects: torch.Tensor | None  # [F, H, W, 3]
    skeleton: torch.Tensor  # [F, H, W, 3]
    depth: torch.Tensor | None  # [F, H, W]


def list_videos(root: str) -> list[str]:
    if not os.path.isdir(root):
        raise AA2Error(f"training data folder not found: {root}")
    videos = sorted(os.path.join(root, d) for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    usable = [v for v in videos if all(os.path.isfile(os.path.join(v, f)) for f in REQUIRED)]
    if not usable:
        raise AA2Error(f"no usable videos in {root}: each needs a sub-folder with {', '.join(REQUIRED)}")
    return usable


def load_clip(video_dir: str, frames: int, height: int, width: int, generator: torch.Generator,
              scale_range=None) -> TrainingClip:
    """One random training clip of ``frames`` frames from a video folder, at ``height x width``.

    ``scale_range`` turns on random scale augmentation of character and objects. Off by default: the
    skeleton video is not rescaled with them yet (that needs the keypoints, rescaled then re-rendered).
    """
    video = images.resize(read_video(os.path.join(video_dir, "frames.mp4"))[0], height, width)
    mask = images.resize(read_video(os.path.join(video_dir, "mask.mp4"))[0], height, width)[..., 0]
    pose = images.resize(read_video(os.path.join(video_dir, "pose.mp4"))[0], height, width)
    n = min(video.shape[0], mask.shape[0], pose.shape[0])
    if n < frames:
        raise AA2Error(f"{video_dir}: {n} frames, fewer than the clip length {frames}")
    start = int(torch.randint(0, n - frames + 1, (), generator=generator))
    clip = slice(start, start + frames)
    obj_mask = _optional_mask(video_dir, "objects.mp4", height, width, clip)
    depth = _optional_mask(video_dir, "depth.mp4", height, width, clip)

    ref_index = int(torch.randint(0, n, (), generator=generator))
    background = torch.rand(3, generator=generator)
    ref_mask = mask[ref_index, ..., None]
    reference = (video[ref_index] * ref_mask + background * (1 - ref_mask))[None]

    # with augmentation the scaled video is the training sample: target, environment, objects
    objects_masks = [obj_mask] if obj_mask is not None else []
    target, char_mask = video[clip], mask[clip]
    if scale_range is not None:
        target, char_mask, objects_masks = random_scale_augment(target, char_mask, objects_masks, scale_range, generator=generator)
    environment, env_mask = environment_frames(target, char_mask, (height, width), generator=generator)  # random block counts
    objects = object_sequence(target, list(objects_masks))[0] if objects_masks else None
    skeleton = pose[clip]
    return TrainingClip(target, reference, environment, env_mask, objects, skeleton,
                        None if depth is None else structured_depth(depth, skeleton))


def _optional_mask(video_dir, name, height, width, clip):
    path = os.path.join(video_dir, name)
    if not os.path.isfile(path):
        return None
    return images.resize(read_video(path)[0], height, width)[clip, ..., 0]
