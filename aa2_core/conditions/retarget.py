"""Pose retargeting: the driving motion with the reference character's body proportions.

The body is a tree rooted at the neck (``BONES``). Each output bone keeps the driving bone's direction
on every frame; its length is the driving length times that bone's ratio
``reference length / driving length on the first driving frame`` (the first frame where the bone is
visible, normally frame 0). So on the first frame every bone has the reference length, and later
frames keep the driving video's length changes (foreshortening) in proportion.

The global scale ``s`` compares shoulder width plus torso height (neck to mid-hip) of the reference and
the driving pose. It is used where a per-bone ratio cannot be measured (bone missing in the reference
or never visible in the driving video), for bones whose parent joint is missing (they keep their
driving offset from the nearest visible ancestor, times ``s``), for hands and face (they follow their
wrist / nose, scaled by ``s``), and, with ``anchor="reference"``, for the neck's motion.

Anchors: ``"driving"`` puts the neck where the driving neck is on each frame; ``"reference"`` starts the
neck at the reference's neck and moves it by ``s`` times the driving neck's motion since the first
frame (so the whole result is the driving video scaled by ``s`` about its first neck position, moved
onto the reference). ``keep_driving_size=True`` keeps the driving person's overall size and transfers
only proportions (ratios divided by ``s``; hands, face and motion unscaled).

Missing joints stay missing. A frame without a neck roots its tree at the shoulders' midpoint (as
DWPose defines the neck), else the hips' midpoint, else the mean of its visible joints.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import AA2Error
from .keypoints import BODY_JOINTS, JOINT, LEFT_HAND, RIGHT_HAND, Pose

NECK = JOINT["neck"]
NOSE = JOINT["nose"]
# (parent, child), 0-based OpenPose-18 joints, parents before children.
BONES = (
    (1, 0), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7),
    (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
    (0, 14), (0, 15), (14, 16), (15, 17),
)  # fmt: skip
BONE = {(p, c): i for i, (p, c) in enumerate(BONES)}
HAND_ANCHOR = {LEFT_HAND: JOINT["left_wrist"], RIGHT_HAND: JOINT["right_wrist"]}
FOOT_ANCHOR = ((slice(0, 3), JOINT["left_ankle"]), (slice(3, 6), JOINT["right_ankle"]))  # Pose.feet rows
MIN_LENGTH = 1e-6  # pixels; shorter bones have no usable direction or ratio


def retarget_poses(
    driving: list[Pose],
    reference: Pose,
    anchor: str = "driving",
    keep_driving_size: bool = False,
    scale_limits: Optional[tuple[float, float]] = None,
    max_bone_ratio: float = 3.0,
) -> list[Pose]:
    """Driving poses -> the same motion with ``reference``'s proportions, on the driving canvas.

    The reference is first mapped onto the driving canvas (the reference image is resized to the
    output size as well). ``scale_limits=(lo, hi)`` clamps the global scale (proportions still come
    from the reference); ``keep_driving_size`` is the same as ``scale_limits=(1, 1)``.
    ``max_bone_ratio`` bounds each bone's ratio to [s / m, s * m]: a bone foreshortened on the first
    driving frame (an arm pointing at the camera) would otherwise blow up when it turns sideways.
    """
    if anchor not in ("driving", "reference"):
        raise AA2Error(f"retarget: anchor must be 'driving' or 'reference'; got {anchor!r}")
    driving = _same_canvas(driving)
    reference = reference.resized(driving[0].height, driving[0].width)
    body = np.stack([p.body for p in driving])
    scale = global_scale(reference.body, body)
    ratios = np.clip(bone_ratios(reference.body, body, scale), scale / max_bone_ratio, scale * max_bone_ratio)
    if keep_driving_size:
        scale_limits = (1.0, 1.0)
    if scale_limits is not None:
        clamped = float(np.clip(scale, *scale_limits))
        ratios, scale = ratios * (clamped / scale), clamped
    root_drv = root_points(driving)
    root_out = root_drv.copy()
    if anchor == "reference":
        root_out = _reference_anchored(root_drv, root_points([reference])[0], scale)
    return transform_tree(driving, ratios, root_out, fallback_scale=scale, hand_scale=scale, face_scale=scale)


def global_scale(reference_body: np.ndarray, driving_bodies: np.ndarray) -> float:
    """(shoulder width + torso height) of the reference over the driving's, first frame where measurable."""
    ref_sizes = _body_sizes(reference_body[None])[0]
    drv_sizes = np.stack([_first_finite(s) for s in _body_sizes(driving_bodies).T])
    both = np.isfinite(ref_sizes) & np.isfinite(drv_sizes) & (drv_sizes > MIN_LENGTH)
    if both.any():
        return float(ref_sizes[both].sum() / drv_sizes[both].sum())
    ratios = _measured_ratios(reference_body, driving_bodies)
    if np.isfinite(ratios).any():  # no shoulders/torso: fall back on the bones both poses show
        return float(np.nanmedian(ratios))
    raise AA2Error(
        "retarget: the reference pose and the driving poses share no visible bone "
        "(need shoulders, neck and hips, or any limb seen in both)"
    )


def bone_ratios(reference_body: np.ndarray, driving_bodies: np.ndarray, scale: float) -> np.ndarray:
    """(17,) reference bone length / first visible driving length; ``scale`` where unmeasurable."""
    ratios = _measured_ratios(reference_body, driving_bodies)
    return np.where(np.isfinite(ratios), ratios, scale)


def bone_lengths(bodies: np.ndarray) -> np.ndarray:
    """``[..., 18, 3]`` -> ``[..., 17]`` bone lengths, NaN where an end is missing."""
    parents, children = np.array(BONES).T
    valid = (bodies[..., parents, 2] > 0) & (bodies[..., children, 2] > 0)
    lengths = np.linalg.norm(bodies[..., children, :2] - bodies[..., parents, :2], axis=-1)
    return np.where(valid, lengths, np.nan)


def root_points(poses: list[Pose]) -> np.ndarray:
    """``[T, 2]`` tree root per frame: neck, else mid-shoulders, else mid-hips, else mean visible point."""
    roots = np.full((len(poses), 2), np.nan)
    for t, pose in enumerate(poses):
        roots[t] = _root_of(pose)
    return roots


def transform_tree(
    poses: list[Pose],
    ratios: np.ndarray,
    root_out: np.ndarray,
    fallback_scale: float,
    hand_scale: float,
    face_scale: float,
) -> list[Pose]:
    """Rebuild every frame from its root: each bone keeps its driving direction, length times its ratio.

    ``ratios``: (17,) or (T, 17). ``root_out``: (T, 2) where each frame's root goes. Bones hanging from a
    missing joint keep their driving offset from the nearest visible ancestor times ``fallback_scale``;
    hands follow their wrist, feet their ankle and the face its nose the same way, scaled by ``hand_scale`` (hands
    and feet) / ``face_scale``.
    """
    body = np.stack([p.body for p in poses])
    root_drv = root_points(poses)
    out_xy, base_out, base_drv = _rebuild_body(body, np.broadcast_to(ratios, (len(poses), len(BONES))),
                                               root_drv, root_out, fallback_scale)
    result = []
    for t, pose in enumerate(poses):
        new = pose.copy()
        valid = pose.body_valid
        new.body[:, :2] = np.where(valid[:, None], out_xy[t], 0.0)
        if pose.hands is not None:
            for side, wrist in HAND_ANCHOR.items():
                new.hands[side] = _follow(pose.hands[side], base_drv[t, wrist], base_out[t, wrist], hand_scale)
        if pose.face is not None:
            new.face = _follow(pose.face, base_drv[t, NOSE], base_out[t, NOSE], face_scale)
        if pose.feet is not None:  # each foot's toes and heel follow its ankle, as a hand its wrist
            for rows, ankle in FOOT_ANCHOR:
                new.feet[rows] = _follow(pose.feet[rows], base_drv[t, ankle], base_out[t, ankle], hand_scale)
        result.append(new)
    return result


def apply_bone_factors(
    poses: list[Pose], factors: np.ndarray, face_scale: float = 1.0, hand_scale: float = 1.0
) -> list[Pose]:
    """Multiply each bone's length by ``factors`` (17,), the neck staying in place; used by augmentations."""
    root = root_points(poses)
    factors = np.asarray(factors, float)
    return transform_tree(poses, factors, root, fallback_scale=1.0, hand_scale=hand_scale, face_scale=face_scale)


def _rebuild_body(body, ratios, root_drv, root_out, fallback_scale):
    """Vectorised over frames. Returns output xy and, per joint, the (output, driving) point that its
    children hang from: the joint itself when visible, else its nearest visible ancestor (or the root)."""
    frames = body.shape[0]
    valid = body[..., 2] > 0
    xy = body[..., :2]
    out = np.zeros((frames, BODY_JOINTS, 2))
    base_out = np.zeros((frames, BODY_JOINTS, 2))
    base_drv = np.zeros((frames, BODY_JOINTS, 2))
    out[:, NECK] = root_out
    base_out[:, NECK] = root_out
    base_drv[:, NECK] = root_drv  # the neck itself when visible
    for b, (p, c) in enumerate(BONES):
        scale = np.where(valid[:, p], ratios[:, b], fallback_scale)[:, None]
        out[:, c] = base_out[:, p] + scale * (xy[:, c] - base_drv[:, p])
        child_valid = valid[:, c, None]
        base_out[:, c] = np.where(child_valid, out[:, c], base_out[:, p])
        base_drv[:, c] = np.where(child_valid, xy[:, c], base_drv[:, p])
    return np.nan_to_num(out), base_out, base_drv


def _follow(points: np.ndarray, anchor_drv: np.ndarray, anchor_out: np.ndarray, scale: float) -> np.ndarray:
    """Move a hand/face rigidly with its anchor, scaled by ``scale`` about it. Missing points stay zero."""
    out = points.copy()
    valid = points[..., 2] > 0
    if not valid.any():
        return out
    if not np.isfinite(anchor_drv).all():  # frame without any body: scale about the part's own centre
        anchor_drv = anchor_out = points[valid, :2].mean(0)
    out[..., :2] = np.where(valid[..., None], anchor_out + scale * (points[..., :2] - anchor_drv), 0.0)
    return out


def _reference_anchored(root_drv: np.ndarray, reference_root: np.ndarray, scale: float) -> np.ndarray:
    if not np.isfinite(reference_root).all():
        raise AA2Error("retarget: anchor='reference' needs a reference pose with a visible body")
    first = _first_finite(root_drv)
    return reference_root + scale * (root_drv - first)


def _root_of(pose: Pose) -> np.ndarray:
    body, valid = pose.body, pose.body_valid
    if valid[NECK]:
        return body[NECK, :2]
    for a, b in ((JOINT["right_shoulder"], JOINT["left_shoulder"]), (JOINT["right_hip"], JOINT["left_hip"])):
        if valid[a] and valid[b]:
            return (body[a, :2] + body[b, :2]) / 2
    if valid.any():
        return body[valid, :2].mean(0)
    return np.full(2, np.nan)


def _body_sizes(bodies: np.ndarray) -> np.ndarray:
    """``[T, 18, 3]`` -> ``[T, 2]``: shoulder width, torso height (neck to mid-hip); NaN if not visible."""
    v = bodies[..., 2] > 0
    xy = bodies[..., :2]
    rs, ls, rh, lh = (JOINT[n] for n in ("right_shoulder", "left_shoulder", "right_hip", "left_hip"))
    shoulders = np.where(v[:, rs] & v[:, ls], np.linalg.norm(xy[:, rs] - xy[:, ls], axis=-1), np.nan)
    mid_hip = (xy[:, rh] + xy[:, lh]) / 2
    torso_ok = v[:, NECK] & v[:, rh] & v[:, lh]
    torso = np.where(torso_ok, np.linalg.norm(xy[:, NECK] - mid_hip, axis=-1), np.nan)
    return np.stack([shoulders, torso], axis=-1)


def _measured_ratios(reference_body: np.ndarray, driving_bodies: np.ndarray) -> np.ndarray:
    ref = bone_lengths(reference_body)
    drv_lengths = bone_lengths(driving_bodies)
    drv_lengths = np.where(drv_lengths > MIN_LENGTH, drv_lengths, np.nan)
    first = np.stack([_first_finite(drv_lengths[:, b]) for b in range(len(BONES))])
    with np.errstate(invalid="ignore", divide="ignore"):
        return ref / first


def _first_finite(values: np.ndarray) -> np.ndarray:
    """First row of ``values`` (along axis 0) that is finite; NaN of the row's shape if none."""
    finite = np.isfinite(values).reshape(len(values), -1).all(-1)
    if not finite.any():
        return np.full(values.shape[1:], np.nan)
    return values[int(np.argmax(finite))]


def _same_canvas(poses: list[Pose]) -> list[Pose]:
    if not poses:
        raise AA2Error("retarget: the driving pose sequence is empty")
    if not all(isinstance(p, Pose) for p in poses):
        raise AA2Error("retarget: driving poses must be Pose objects (see parse_pose_keypoint)")
    h, w = poses[0].height, poses[0].width
    return [p.resized(h, w) for p in poses]
