"""Animate-X's Explicit Pose Indicator (EPI, section 3.2 and appendix A): pose augmentation for training.

During training the reference image and the driving poses come from the same video, so their body
shapes always agree; at inference they do not. EPI simulates the mismatch while keeping the motion:

1. with probability ``transform_prob`` (the paper's lambda, > 98% in their training) the clip is
   transformed, otherwise returned unchanged;
2. pose realignment: a random anchor pose from a pool of training poses is drawn and the driving clip
   is retargeted onto its proportions (``retarget.retarget_poses``, neck kept at the driving position);
3. pose rescale: each operation of the rescale pool is picked independently with probability
   ``op_prob`` and applied with one random factor for the whole clip (body shape does not change over
   time), symmetric for left and right.

Rescale pool, after the paper's list ("modifying the length of the body, legs, arms, neck, and
shoulders, altering face size, even adding or removing specific body parts") and its ablation groups
(BS: body and shoulders, NF: neck and face, AL: arms and legs, Add, Drop):

* ``body``: torso (neck to hips); ``legs``: thighs and shins; ``arms``: upper arms and forearms;
  ``neck``: neck to nose (the head moves with it); ``shoulders``: neck to shoulders;
* ``face``: eyes, ears and the 68 face points scaled about the nose;
* ``drop``: remove one part: an arm (elbow, wrist and hand), both hands, or the face points;
* ``add``: graft the anchor's hands / face onto the clip where the clip has none (a part the driving
  video lacks). Our interpretation: the paper does not say what is added; grafting parts from the
  anchor adds real human parts at plausible places. A no-op when nothing is missing.

Interpretations: realignment keeps the driving neck position and clamps the size change to
``realign_scale_limits`` so that skeletons stay on the canvas; factor ranges are ours (the paper gives
none). Everything random comes from one generator, so a seed gives the same result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np

from ..errors import AA2Error
from .keypoints import JOINT, LEFT_HAND, RIGHT_HAND, Pose
from .retarget import BONE, HAND_ANCHOR, NOSE, BONES, apply_bone_factors, retarget_poses

# Bones each length operation scales (symmetric).
RESCALE_BONES = {
    "body": ((1, 8), (1, 11)),
    "legs": ((8, 9), (9, 10), (11, 12), (12, 13)),
    "arms": ((2, 3), (3, 4), (5, 6), (6, 7)),
    "neck": ((1, 0),),
    "shoulders": ((1, 2), (1, 5)),
    "face": ((0, 14), (0, 15), (14, 16), (15, 17)),
}
DROP_CHOICES = ("left_arm", "right_arm", "hands", "face")
ARM_JOINTS = {
    "left_arm": (JOINT["left_elbow"], JOINT["left_wrist"]),
    "right_arm": (JOINT["right_elbow"], JOINT["right_wrist"]),
}
ARM_HAND = {"left_arm": LEFT_HAND, "right_arm": RIGHT_HAND}


@dataclass
class PoseIndicatorConfig:
    transform_prob: float = 0.98
    realign: bool = True
    realign_scale_limits: tuple[float, float] = (0.8, 1.25)
    op_prob: float = 0.5
    factor_ranges: dict = field(
        default_factory=lambda: {
            "body": (0.75, 1.3),
            "legs": (0.5, 1.4),
            "arms": (0.5, 1.4),
            "neck": (0.5, 1.8),
            "shoulders": (0.6, 1.5),
            "face": (0.7, 1.8),
        }
    )
    drop: bool = True
    add: bool = True


@dataclass
class EPIPlan:
    """What one call does: drawn first, then applied, so it can be logged and tested."""

    transform: bool = False
    anchor_index: Optional[int] = None
    factors: dict = field(default_factory=dict)  # op name -> factor
    drop: Optional[str] = None
    add: bool = False


def explicit_pose_indicator(
    poses: list[Pose],
    anchor_pool: list[Pose],
    generator: Union[int, np.random.Generator, "torch.Generator", None] = None,
    config: Optional[PoseIndicatorConfig] = None,
) -> list[Pose]:
    """A driving pose clip -> the same motion with a randomly changed body shape (or unchanged)."""
    config = config or PoseIndicatorConfig()
    plan = sample_epi_plan(as_numpy_generator(generator), config, len(anchor_pool))
    return apply_epi_plan(poses, anchor_pool, plan, config)


def sample_epi_plan(rng: np.random.Generator, config: PoseIndicatorConfig, pool_size: int) -> EPIPlan:
    """Draw the plan; the number and order of draws are fixed so a seed gives one plan."""
    draws = rng.random(1 + 2 * len(RESCALE_BONES) + 2)
    plan = EPIPlan(transform=bool(draws[0] < config.transform_prob))
    anchor = int(rng.integers(max(pool_size, 1)))
    drop_choice = DROP_CHOICES[int(rng.integers(len(DROP_CHOICES)))]
    if not plan.transform:
        return plan
    if config.realign and pool_size > 0:
        plan.anchor_index = anchor
    for k, name in enumerate(RESCALE_BONES):
        picked, u = draws[1 + 2 * k], draws[2 + 2 * k]
        if picked < config.op_prob:
            lo, hi = config.factor_ranges[name]
            plan.factors[name] = float(lo + (hi - lo) * u)
    if config.drop and draws[-2] < config.op_prob:
        plan.drop = drop_choice
    plan.add = bool(config.add and plan.anchor_index is not None and draws[-1] < config.op_prob)
    return plan


def apply_epi_plan(
    poses: list[Pose], anchor_pool: list[Pose], plan: EPIPlan, config: Optional[PoseIndicatorConfig] = None
) -> list[Pose]:
    """Realign to the plan's anchor, rescale, add, then drop parts; the input poses are not modified."""
    config = config or PoseIndicatorConfig()
    if not poses:
        raise AA2Error("pose indicator: the pose sequence is empty")
    if not plan.transform or not any(p.body_valid.any() for p in poses):
        return [p.copy() for p in poses]  # nothing to reshape in a clip without a body
    out = poses
    anchor = None
    if plan.anchor_index is not None:
        if not 0 <= plan.anchor_index < len(anchor_pool):
            raise AA2Error(f"pose indicator: anchor index {plan.anchor_index} outside a pool of {len(anchor_pool)}")
        anchor = anchor_pool[plan.anchor_index].resized(poses[0].height, poses[0].width)
        if anchor.body_valid.sum() >= 2:  # an anchor without bones has no proportions to give
            out = retarget_poses(out, anchor, anchor="driving", scale_limits=config.realign_scale_limits)
    if plan.factors:
        out = rescale_parts(out, plan.factors)
    if plan.add and anchor is not None:
        out = graft_missing_parts(out, anchor)
    if plan.drop:
        out = drop_part(out, plan.drop)
    return [p.copy() for p in out] if out is poses else out


def rescale_parts(poses: list[Pose], factors: dict) -> list[Pose]:
    """Scale the bones of each named operation by its factor; ``face`` also scales the face points."""
    bone_factors = np.ones(len(BONES))
    for name, factor in factors.items():
        if name not in RESCALE_BONES:
            raise AA2Error(f"pose indicator: unknown rescale operation {name!r}; expected one of {list(RESCALE_BONES)}")
        for bone in RESCALE_BONES[name]:
            bone_factors[BONE[bone]] *= factor
    return apply_bone_factors(poses, bone_factors, face_scale=factors.get("face", 1.0))


def drop_part(poses: list[Pose], part: str) -> list[Pose]:
    """Remove an arm (elbow, wrist and that hand), both hands, or the face points, on every frame."""
    if part not in DROP_CHOICES:
        raise AA2Error(f"pose indicator: unknown part {part!r} to drop; expected one of {list(DROP_CHOICES)}")
    out = []
    for pose in poses:
        pose = pose.copy()
        if part in ARM_JOINTS:
            pose.body[list(ARM_JOINTS[part])] = 0.0
            if pose.hands is not None:
                pose.hands[ARM_HAND[part]] = 0.0
        elif part == "hands":
            pose.hands = None
        else:
            pose.face = None
        out.append(pose)
    return out


def graft_missing_parts(poses: list[Pose], anchor: Pose) -> list[Pose]:
    """Give each frame the anchor's hands / face where the frame has none, placed at its wrist / nose."""
    return [_graft_frame(pose, anchor) for pose in poses]


def _graft_frame(pose: Pose, anchor: Pose) -> Pose:
    pose = pose.copy()
    for side, wrist in HAND_ANCHOR.items():
        if anchor.hands_valid[side].any() and not pose.hands_valid[side].any():
            grafted = _moved(anchor.hands[side], anchor.body[wrist], pose.body[wrist])
            if grafted is not None:
                if pose.hands is None:
                    pose.hands = np.zeros_like(anchor.hands)
                pose.hands[side] = grafted
    if anchor.face_valid.any() and not pose.face_valid.any():
        grafted = _moved(anchor.face, anchor.body[NOSE], pose.body[NOSE])
        if grafted is not None:
            pose.face = grafted
    return pose


def _moved(points: np.ndarray, joint_from: np.ndarray, joint_to: np.ndarray) -> Optional[np.ndarray]:
    """``points`` translated from one joint to another; None when either joint is missing."""
    if joint_from[2] <= 0 or joint_to[2] <= 0:
        return None
    out = points.copy()
    valid = out[:, 2] > 0
    out[valid, :2] += joint_to[:2] - joint_from[:2]
    return out


def as_numpy_generator(generator) -> np.random.Generator:
    """A numpy Generator from a seed, a numpy Generator (used as is) or a torch Generator (one draw)."""
    import torch

    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, torch.Generator):
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
        return np.random.default_rng(seed)
    if generator is None or isinstance(generator, (int, np.integer)):
        return np.random.default_rng(generator)
    raise AA2Error(
        "pose indicator: generator must be a seed, a numpy Generator or a torch Generator; "
        f"got {type(generator).__name__}"
    )
