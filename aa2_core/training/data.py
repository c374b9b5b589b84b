"""Training clips in the Animate Anyone 2 self-supervised setting (paper, sections 3.1-3.4 and 4.1).

``TrainingSet`` reads a training set written by ``python -m aa2_core prepare`` (``dataset_format``) and
draws samples. One sample (``TrainingClip``), everything random from one generator:

* a window of ``frames`` frames, ``stride`` apart, at a random start of a random clip: the target;
* random scale augmentation (section 3.2; on by default, ``scale_range=(0.8, 1.2)``, a range the paper does not
  give): character and objects are zoomed about one point for the whole window and composited back; the
  depth and the **keypoints** move with them, so the skeleton drawn afterwards still lies on the character;
* Animate-X explicit pose indicator (EPI; on by default, ``pose_indicator=None`` turns it off): the keypoints
  are realigned to an anchor pose from another clip of the set and rescaled (probability lambda =
  ``transform_prob``); only the skeleton changes, never the frames;
* the environment: the (scaled) window minus the shape-agnostic mask formulated from the **unscaled** source
  mask (random block sizes, section 3.2). So at a scale above 1 part of the character lies outside the mask
  (its pixels stay in the environment) and below 1 the mask is larger than the character: "the formulated
  mask has a probabilistic chance of being smaller than the actual character region";
* the objects cut out of the window by their mask (section 3.3);
* the skeleton rendered from the keypoints and the structured depth, the depth kept only on the skeleton
  (section 3.4);
* the reference: a random frame of the whole clip (section 4.1), "center cropped" (a crop of the frame's
  aspect centred on the character's box, ``reference_margin`` around it, never larger than the frame) and its
  character composited on a random background (section 3.1): a plain colour (``reference_background=
  "colour"``, the default) or a frame of another clip with that clip's character painted out
  (``"other_clip"``); the paper does not say which kind. The model learns to find the character itself;
* the keypoints of the target frames (after scale augmentation, before the EPI) for Animate-X's Implicit
  Pose Indicator: the driving video is the clip itself, and at inference the IPI gets the driving video's
  own keypoints while only the skeleton is retargeted, as the EPI changes only the skeleton here.

The order of the random draws is fixed (clip, start, reference frame, background, scale, block sizes,
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
from ..conditions.environment import environment_sequence, scale_clip_about_anchor, shape_agnostic_mask
from ..conditions.keypoints import Pose
from ..conditions.objects import object_sequence
from ..conditions.pose_indicator import PoseIndicatorConfig, apply_epi_plan, as_numpy_generator, sample_epi_plan
from ..conditions.skeleton import render_skeleton
from ..errors import AA2Error
from ..pipeline.prepare import keypoint_tensor
from .dataset_format import CLIP_FILE, ClipRecord, read_clip, read_index

SCALE_ANCHORS = ("center", "bottom")
REFERENCE_BACKGROUNDS = ("colour", "other_clip")
# Zoom factors of the scale augmentation. The paper gives none; +-20 % is the pack's choice.
DEFAULT_SCALE_RANGE = (0.8, 1.2)
# Margin around the character's box in the reference's centre crop, as a fraction of the crop's side.
DEFAULT_REFERENCE_MARGIN = 0.1


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
        scale_range: ``(low, high)`` zoom factors of character and objects (default 0.8..1.2), or None (off).
        pose_indicator: a ``PoseIndicatorConfig`` (True, the default: lambda = 0.98), or None / False (off).
        reference_background: ``"colour"`` (a random plain colour) or ``"other_clip"`` (a random frame of
            another clip, its character painted out; a colour when the set has one clip).
        reference_crop: centre-crop the reference on its character (the paper); False: the whole frame.
        reference_margin: the crop's margin around the character's box, a fraction of the crop's side.
        scale_anchor: ``"center"`` or ``"bottom"`` (feet stay on their line), see ``scale_about_anchor``.
        draw_hands, draw_face: draw the hand / face keypoints into the skeleton.
    """

    def __init__(self, root: str, frames: int = 16, stride: int = 1, scale_range=DEFAULT_SCALE_RANGE,
                 pose_indicator: Union[PoseIndicatorConfig, bool, None] = True, scale_anchor: str = "center",
                 draw_hands: bool = True, draw_face: bool = True, reference_background: str = "colour",
                 reference_crop: bool = True, reference_margin: float = DEFAULT_REFERENCE_MARGIN):
        if int(frames) < 1 or int(stride) < 1:
            raise AA2Error(f"frames and stride must be at least 1; got frames={frames}, stride={stride}")
        if scale_anchor not in SCALE_ANCHORS:
            raise AA2Error(f"scale_anchor must be one of {SCALE_ANCHORS}; got {scale_anchor!r}")
        if reference_background not in REFERENCE_BACKGROUNDS:
            raise AA2Error(f"reference_background must be one of {REFERENCE_BACKGROUNDS}; got {reference_background!r}")
        if not 0 <= float(reference_margin) < 0.5:
            raise AA2Error(f"reference_margin must be in [0, 0.5); got {reference_margin}")
        self.reference_background, self.reference_crop = reference_background, bool(reference_crop)
        self.reference_margin = float(reference_margin)
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
        background, background_from = self._reference_background(clip_index, generator)
        reference = composite_reference(read_clip(path, ref_index, ref_index + 1), background,
                                        crop=self.reference_crop, margin=self.reference_margin)

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
        # Equation (2) on the UNSCALED source mask (section 3.2): the zoomed character may leave it (scale > 1)
        formulated = shape_agnostic_mask(window.character, generator=generator)
        environment, env_mask = environment_sequence(target, formulated, size=self.size)
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
                  "background": background_from, "scale": scale, "epi": plan})

    def _reference_background(self, clip_index: int, generator: torch.Generator):
        """The reference's new background and where it came from: a ``[3]`` colour (``"colour"``) or
        ``[H, W, 3]`` (a frame of another clip with its own character painted out, ``(clip name, frame)``)."""
        if self.reference_background == "other_clip" and len(self) > 1:
            other = int(torch.randint(0, len(self) - 1, (), generator=generator))
            other += other >= clip_index  # any clip but this one
            frame = int(torch.randint(0, int(self.clips[other]["frames"]), (), generator=generator))
            return painted_out(read_clip(self.clip_path(other), frame, frame + 1)), (self.clips[other]["name"], frame)
        return torch.rand(3, generator=generator), "colour"

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


def composite_reference(record: ClipRecord, background: torch.Tensor, crop: bool = False,
                        margin: float = DEFAULT_REFERENCE_MARGIN) -> torch.Tensor:
    """``[1, H, W, 3]``: the frame's character on ``background``, a plain colour ``[3]`` or an image ``[H, W, 3]``
    (RGB 0..1); with ``crop``, first centre-cropped on the character (``centre_crop``)."""
    frame, alpha = record.frames.float() / 255, record.character.float()
    if crop:
        frame, alpha = centre_crop(frame, alpha, margin)
    alpha = alpha[..., None]
    background = background.view(1, 1, 1, 3) if background.ndim == 1 else background.reshape(1, *frame.shape[1:])
    return frame * alpha + background * (1 - alpha)


def centre_crop(frame: torch.Tensor, alpha: torch.Tensor, margin: float = DEFAULT_REFERENCE_MARGIN):
    """Frames ``[1, H, W, 3]`` and character alpha ``[1, H, W]`` -> the same sizes, centred on the character.

    The crop has the frame's aspect ratio, is centred on the character's bounding box and holds it with
    ``margin`` (a fraction of the crop's side) on each side of its tighter axis; it is never larger than the
    frame (a character already filling the frame is only moved to the centre). It is resized back to ``H x W``
    (bilinear; the crop is never larger than the frame, so this only enlarges: no aliasing). Outside the source frame the
    alpha is 0: the new background shows there. No character: returned unchanged.
    """
    height, width = alpha.shape[-2:]
    covered = alpha[0] >= 0.5
    rows, cols = covered.any(dim=1).nonzero()[:, 0], covered.any(dim=0).nonzero()[:, 0]
    if len(rows) == 0:
        return frame, alpha
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1  # continuous edges
    centre_y, centre_x = (y0 + y1) / 2, (x0 + x1) / 2
    # the crop's side over the frame's: the box plus its margins, on the axis where it is tighter
    fraction = min(1.0, max((y1 - y0) / height, (x1 - x0) / width) / (1 - 2 * float(margin)))
    ys = centre_y + (torch.arange(height, dtype=torch.float64) + 0.5 - height / 2) * fraction
    xs = centre_x + (torch.arange(width, dtype=torch.float64) + 0.5 - width / 2) * fraction
    grid = torch.stack(torch.meshgrid(2 * ys / height - 1, 2 * xs / width - 1, indexing="ij")[::-1], dim=-1)
    planes = torch.cat([frame.movedim(-1, 1), alpha[:, None]], 1).float()
    out = torch.nn.functional.grid_sample(planes, grid[None].float(), mode="bilinear", padding_mode="zeros",
                                          align_corners=False)
    return out[:, :3].movedim(1, -1).clamp_(0, 1), out[:, 3].clamp_(0, 1)


def painted_out(record: ClipRecord) -> torch.Tensor:
    """``[H, W, 3]``: a frame with its own character filled with the mean colour of the rest of the frame, a
    background that holds no second character for the model to take for the reference."""
    frame = record.frames[0].float() / 255
    person = record.character[0].float() >= 0.5
    rest = frame[~person]
    fill = rest.mean(dim=0) if len(rest) else frame.reshape(-1, 3).mean(dim=0)
    return torch.where(person[..., None], fill, frame)


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
