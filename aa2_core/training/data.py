"""Training clips in the Animate Anyone 2 self-supervised setting (paper, sections 3.1-3.4 and 4.1).

``TrainingSet`` reads a training set written by ``python -m aa2_core prepare`` (``dataset_format``) and
draws samples. One sample (``TrainingClip``), everything random from one generator:

* a window of ``frames`` frames, ``stride`` apart, at a random start of a random clip: the target;
* optional random scale augmentation (section 3.2): character and objects are zoomed about one point for
  the whole window and composited back; the depth and the **keypoints** move with them, so the skeleton
  drawn afterwards still lies on the character;
* optional Animate-X explicit pose indicator (EPI): the keypoints are realigned to an anchor pose from
  another clip of the set and rescaled (probability lambda = ``transform_prob``); only the skeleton
  changes, never the frames;
* the environment: the window minus the shape-agnostic mask, random block counts (section 3.2);
* the objects cut out of the window by their mask (section 3.3);
* the skeleton rendered from the keypoints and the structured depth, the depth kept only on the skeleton
  (section 3.4);
* the reference: a random frame of the whole clip (section 4.1), its character composited on a random
  plain background, so the model learns to find the character itself;
* the keypoints of the target frames (after scale augmentation, before the EPI) for Animate-X's Implicit
  Pose Indicator: the driving video is the clip itself, and at inference the IPI gets the driving video's
  own keypoints while only the skeleton is retargeted, as the EPI changes only the skeleton here.

The order of the random draws is fixed (clip, start, reference frame, background, scale, block counts,
EPI), so a seed repeats a sample.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np
import torch
from safetensors import safe_open

from ..conditions.depth import structured_depth
from ..conditions.environment import scale_clip_about_anchor
from ..conditions.keypoints import Pose
from ..conditions.objects import object_sequence
from ..conditions.pose_indicator import PoseIndicatorConfig, apply_epi_plan, as_numpy_generator, sample_epi_plan
from ..conditions.skeleton import render_skeleton
from ..errors import AA2Error
from ..pipeline.prepare import environment_frames, keypoint_tensor
from .dataset_format import CLIP_FILE, ClipRecord, read_clip, read_index

SCALE_ANCHORS = ("center", "bottom")


@dataclass
class TrainingClip:
    frames: torch.Tensor  # [F, H, W, 3] target frames, 0..1
    reference: torch.Tensor  # [1, H, W, 3]
    environment: torch.Tensor  # [F, H, W, 3]
    environment_mask: torch.Tensor  # [F, H, W] 0/1, the removed region
    objects: torch.Tensor | None  # [F, H, W, 3]
    skeleton: torch.Tensor  # [F, H, W, 3]
    depth: torch.Tensor | None  # [F, H, W] structured depth (zero off the skeleton)
    character_mask: torch.Tensor | None = None  # [F, H, W] 0/1, after scale augmentation
    info: dict = field(default_factory=dict)  # what was drawn: clip, start, reference frame, scale, EPI plan
    # [F, 18, 3] the target frames' body keypoints (``keypoint_tensor``: x/W, y/H, confidence) after scale
    # augmentation and before the EPI: the IPI's queries for the driving video, which here is the clip itself
    keypoints: torch.Tensor | None = None
    # inputs of plug-in condition kinds: {kind name: {prepare_conditions keyword: value}} (conditions.registry)
    extras: dict = field(default_factory=dict)


class TrainingSet:
    """A prepared training set (``DATA/dataset.json`` + one ``clip.safetensors`` per clip).

    Args:
        root: the folder ``prepare`` wrote.
        frames: frames per sample (the paper: 16).
        stride: take every ``stride``-th frame (a window spans ``(frames - 1) * stride + 1`` frames).
        scale_range: ``(low, high)`` zoom factors of character and objects, or None (off).
        pose_indicator: a ``PoseIndicatorConfig`` (True: the defaults, lambda = 0.98), or None (off).
        scale_anchor: ``"center"`` or ``"bottom"`` (feet stay on their line), see ``scale_about_anchor``.
        draw_hands, draw_face: draw the hand / face keypoints into the skeleton.
    """

    def __init__(self, root: str, frames: int = 16, stride: int = 1, scale_range=None,
                 pose_indicator: Union[PoseIndicatorConfig, bool, None] = None, scale_anchor: str = "center",
                 draw_hands: bool = True, draw_face: bool = True):
        if int(frames) < 1 or int(stride) < 1:
            raise AA2Error(f"frames and stride must be at least 1; got frames={frames}, stride={stride}")
        if scale_anchor not in SCALE_ANCHORS:
            raise AA2Error(f"scale_anchor must be one of {SCALE_ANCHORS}; got {scale_anchor!r}")
        self.root, self.frames, self.stride = root, int(frames), int(stride)
        self.scale_range = _checked_scale_range(scale_range)
        self.pose_indicator = PoseIndicatorConfig() if pose_indicator is True else (pose_indicator or None)
        self.scale_anchor, self.draw_hands, self.draw_face = scale_anchor, draw_hands, draw_face
        index = read_index(root)
        self.height, self.width = int(index["height"]), int(index["width"])
        self.clips = [c for c in index["clips"] if int(c["frames"]) >= self.span]  # long enough for a window
        if not self.clips:
            longest = max(int(c["frames"]) for c in index["clips"])
            raise AA2Error(f"{root}: no clip has the {self.span} frames a sample of {frames} frames at stride {stride} "
                           f"needs (the longest has {longest})")

    @property
    def span(self) -> int:
        """Source frames one sample covers."""
        return (self.frames - 1) * self.stride + 1

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    def __len__(self) -> int:
        return len(self.clips)

    def clip_path(self, clip_index: int) -> str:
        return os.path.join(self.root, self.clips[clip_index]["name"], CLIP_FILE)

    def sample(self, generator: torch.Generator, clip_index: Optional[int] = None) -> TrainingClip:
        """One training sample; the same generator state gives the same sample."""
        if clip_index is None:
            clip_index = int(torch.randint(0, len(self), (), generator=generator))
        if not 0 <= clip_index < len(self):
            raise AA2Error(f"clip_index {clip_index} outside the {len(self)} usable clips")
        path, count = self.clip_path(clip_index), int(self.clips[clip_index]["frames"])
        start = int(torch.randint(0, count - self.span + 1, (), generator=generator))
        window = read_clip(path, start, start + self.span, indices=np.arange(start, start + self.span, self.stride))
        self._check_size(window, path)
        ref_index = int(torch.randint(0, count, (), generator=generator))
        reference = composite_reference(read_clip(path, ref_index, ref_index + 1), torch.rand(3, generator=generator))

        poses = window.poses()
        scale = 1.0
        if self.scale_range is not None:
            low, high = self.scale_range
            scale = low + (high - low) * float(torch.rand((), generator=generator))
            target, mask, objects, depth, poses = scale_window(window.frames, window.character, window.objects,
                                                               window.depth, poses, scale, self.scale_anchor)
        else:
            target, mask = window.frames.float().div_(255), window.character.float()  # = .float() / 255, one copy
            objects = None if window.objects is None else window.objects.float()
            depth = None if window.depth is None else window.depth.float()
        environment, env_mask = environment_frames(target, mask, self.size, generator=generator)
        keypoints = keypoint_tensor(poses)  # no draw: the driving video's own keypoints, as the IPI sees them at inference
        plan = None
        if self.pose_indicator is not None:
            poses, plan = self._pose_indicator(poses, clip_index, generator)
        # uint8 drawing, then one threaded division: render_skeleton(as_float=True)'s values (both divide by 255 in float32)
        drawn = torch.from_numpy(render_skeleton(poses, self.height, self.width, self.draw_hands, self.draw_face))
        skeleton = drawn.float().div_(255)
        return TrainingClip(
            frames=target, reference=reference, environment=environment, environment_mask=env_mask,
            objects=None if objects is None else object_sequence(target, [objects])[0], skeleton=skeleton,
            depth=None if depth is None else structured_depth(depth, skeleton), character_mask=mask, keypoints=keypoints,
            info={"clip": self.clips[clip_index]["name"], "start": start, "stride": self.stride, "reference": ref_index,
                  "scale": scale, "epi": plan})

    def _pose_indicator(self, poses: list[Pose], clip_index: int, generator: torch.Generator):
        """EPI on the window's poses; the anchor is a random posed frame of another clip."""
        rng = as_numpy_generator(generator)  # one draw from the torch generator seeds all EPI draws
        others = [i for i in range(len(self)) if i != clip_index]
        plan = sample_epi_plan(rng, self.pose_indicator, len(others))
        pool = []
        if plan.anchor_index is not None:
            pool = [self.anchor_pose(others[plan.anchor_index], rng)]
            plan.anchor_index = 0
        return apply_epi_plan(poses, pool, plan, self.pose_indicator), plan

    def anchor_pose(self, clip_index: int, rng: np.random.Generator) -> Pose:
        """A random frame of a clip with at least two body joints (the first frame when none has)."""
        keypoints = read_keypoints(self.clip_path(clip_index))
        posed = np.flatnonzero((keypoints["body"][..., 2] > 0).sum(-1).numpy() >= 2)
        frame = int(rng.choice(posed)) if len(posed) else 0
        part = {k: v[frame].double().numpy() for k, v in keypoints.items()}
        return Pose(body=part["body"], height=self.height, width=self.width, hands=part.get("hands"), face=part.get("face"))

    def _check_size(self, record: ClipRecord, path: str) -> None:
        if record.size != self.size:
            raise AA2Error(f"{path}: frames are {record.size[0]}x{record.size[1]}; dataset.json says {self.height}x{self.width}")


def composite_reference(record: ClipRecord, background: torch.Tensor) -> torch.Tensor:
    """``[1, H, W, 3]``: the frame's character on a plain ``background`` colour (RGB 0..1)."""
    alpha = record.character.float()[..., None]
    return record.frames.float() / 255 * alpha + background.view(1, 1, 1, 3) * (1 - alpha)


def scale_window(frames, mask, objects, depth, poses, scale: float, anchor: str):
    """Zoom character and objects by ``scale`` (``scale_about_anchor``); depth and keypoints follow.

    ``frames`` uint8 (read as ``value / 255``) or float 0..1; masks and depth ``[F, H, W]`` of any dtype.
    Returns float32 ``(frames, mask, objects, depth, poses)``. One fused warp carries frames, masks and
    depth (``scale_clip_about_anchor``); the values are those of ``scale_about_anchor`` on the frames and
    again on the depth as a grey image, bit for bit (``tests/test_training_data.py``).
    """
    object_masks = [] if objects is None else [objects]
    planes = [] if depth is None else [depth]
    frames_out, mask_out, objects_out, planes_out, point = scale_clip_about_anchor(
        frames, mask, object_masks, scale, anchor, planes=planes)
    if point is None:  # no character in the window: nothing moves
        frames_out = frames.float().div_(255) if frames.dtype == torch.uint8 else frames.float()
        return (frames_out, mask.float(), None if objects is None else objects.float(),
                None if depth is None else depth.float(), poses)
    poses = [scale_pose(p, scale, point) for p in poses]
    return frames_out, mask_out, objects_out[0] if objects_out else None, planes_out[0] if planes_out else None, poses


def scale_pose(pose: Pose, scale: float, point: tuple[float, float]) -> Pose:
    """Valid keypoints moved as ``scale_about_anchor`` moves pixels: ``q -> anchor + (q - anchor) * scale``."""
    out = pose.copy()
    centre = np.array([point[1], point[0]])  # (x, y)
    for part in (out.body, out.hands, out.face):
        if part is not None:
            valid = part[..., 2] > 0
            part[..., :2][valid] = centre + (part[..., :2][valid] - centre) * scale
    return out


def read_keypoints(path: str) -> dict:
    """The keypoint tensors (body, and hands / face when stored) of a clip, without its frames."""
    with safe_open(path, "pt") as f:
        return {name: f.get_tensor(name) for name in ("body", "hands", "face") if name in f.keys()}


def _checked_scale_range(scale_range):
    if scale_range is None:
        return None
    low, high = (float(v) for v in scale_range)
    if not 0 < low <= high:
        raise AA2Error(f"scale_range must be (low, high) with 0 < low <= high; got {tuple(scale_range)}")
    return low, high
