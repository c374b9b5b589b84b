"""Pose retargeting properties and Animate-X's explicit pose indicator augmentation."""

import numpy as np
import pytest
import torch

from aa2_core.conditions.keypoints import Pose
from aa2_core.conditions.pose_indicator import (
    EPIPlan,
    PoseIndicatorConfig,
    apply_epi_plan,
    explicit_pose_indicator,
    rescale_parts,
)
from aa2_core.conditions.retarget import BONES, apply_bone_factors, bone_lengths, global_scale, retarget_poses
from aa2_core.errors import AA2Error

STANDING = np.array([
    [256, 100], [256, 200], [156, 200], [106, 330], [66, 460], [356, 200], [406, 330], [446, 460],
    [196, 420], [176, 560], [166, 700], [316, 420], [336, 560], [346, 700],
    [226, 60], [286, 60], [176, 40], [336, 40],
], float)  # fmt: skip
NECK, R_ELBOW, R_WRIST, L_ELBOW, L_WRIST = 1, 3, 4, 6, 7


def make_pose(xy, rng, visible=None):
    conf = np.ones(18) if visible is None else np.asarray(visible, float)
    hands = np.stack([np.c_[xy[w] + rng.normal(0, 15, (21, 2)), np.ones(21)] for w in (L_WRIST, R_WRIST)])
    face = np.c_[xy[0] + rng.normal(0, 12, (68, 2)), np.ones(68)]
    body = np.where(conf[:, None] > 0, np.c_[xy, conf], 0.0)
    return Pose(body=body, height=768, width=512, hands=hands, face=face)


def driving_clip(frames=6, seed=0):
    """A person who walks right and waves: bone lengths change over time (foreshortening)."""
    rng = np.random.default_rng(seed)
    poses = []
    for t in range(frames):
        xy = STANDING + rng.normal(0, 6, STANDING.shape) + [8 * t, 2 * t]
        poses.append(make_pose(xy, rng))
    return poses


def about_point(pose, centre, s):
    """The pose scaled by ``s`` about ``centre`` (missing points stay zero)."""
    out = pose.copy()
    for part in (out.body, out.hands, out.face):
        valid = part[..., 2] > 0
        part[..., :2] = np.where(valid[..., None], centre + s * (part[..., :2] - centre), 0.0)
    return out


def assert_poses_close(actual, expected, atol=1e-5):
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a.body, e.body, atol=atol)
        np.testing.assert_allclose(a.hands, e.hands, atol=atol)
        np.testing.assert_allclose(a.face, e.face, atol=atol)


@pytest.mark.parametrize("anchor", ["driving", "reference"])
def test_retarget_onto_itself_is_identity(anchor):
    clip = driving_clip()
    assert_poses_close(retarget_poses(clip, clip[0], anchor=anchor), clip)


def test_reference_anchor_scales_the_whole_clip_about_the_first_neck():
    clip = driving_clip()
    neck0 = clip[0].body[NECK, :2]
    reference = about_point(clip[0], neck0, 1.7)
    out = retarget_poses(clip, reference, anchor="reference")
    assert_poses_close(out, [about_point(p, neck0, 1.7) for p in clip])


def test_driving_anchor_scales_each_frame_about_its_neck():
    clip = driving_clip()
    reference = about_point(clip[0], clip[0].body[NECK, :2] + [30, -40], 0.6)  # position does not matter
    out = retarget_poses(clip, reference, anchor="driving")
    assert_poses_close(out, [about_point(p, p.body[NECK, :2], 0.6) for p in clip])
    # keep_driving_size: only proportions transfer, and these are the same here
    assert_poses_close(retarget_poses(clip, reference, keep_driving_size=True), clip)


def test_bones_take_reference_lengths_and_keep_driving_directions():
    clip = driving_clip()
    rng = np.random.default_rng(1)
    # different proportions: every bone of the reference stretched by its own factor
    reference = apply_bone_factors([make_pose(STANDING, rng)], rng.uniform(0.6, 1.6, len(BONES)))[0]
    for anchor in ("driving", "reference"):
        out = retarget_poses(clip, reference, anchor=anchor)
        ref_len = bone_lengths(reference.body)
        drv = np.stack([p.body for p in clip])
        got = np.stack([p.body for p in out])
        expected = bone_lengths(drv) * ref_len / bone_lengths(drv[0])
        np.testing.assert_allclose(bone_lengths(got), expected, rtol=1e-6)
        np.testing.assert_allclose(bone_lengths(got[0]), ref_len, rtol=1e-6)
        parents, children = np.array(BONES).T
        d_out = got[:, children, :2] - got[:, parents, :2]
        d_drv = drv[:, children, :2] - drv[:, parents, :2]
        cos = (d_out * d_drv).sum(-1) / np.linalg.norm(d_out, axis=-1) / np.linalg.norm(d_drv, axis=-1)
        np.testing.assert_allclose(cos, 1.0, atol=1e-9)


def test_missing_joints_stay_missing_and_children_follow():
    clip = driving_clip(frames=4)
    clip[1].body[R_ELBOW] = 0.0  # wrist hangs from the shoulder through the driving offset
    clip[2].body[NECK] = 0.0  # root falls back on the shoulders' midpoint
    clip[3] = Pose.empty(768, 512)
    neck0 = clip[0].body[NECK, :2]
    reference = about_point(clip[0], neck0, 1.5)
    out = retarget_poses(clip, reference, anchor="driving")
    assert not out[1].body_valid[R_ELBOW] and out[1].body_valid.sum() == 17
    shoulder, wrist = clip[1].body[2, :2], clip[1].body[R_WRIST, :2]
    np.testing.assert_allclose(out[1].body[R_WRIST, :2], out[1].body[2, :2] + 1.5 * (wrist - shoulder), atol=1e-9)
    assert not out[2].body_valid[NECK] and np.isfinite(out[2].body).all()
    mid = (clip[2].body[2, :2] + clip[2].body[5, :2]) / 2
    np.testing.assert_allclose(out[2].body[2, :2], mid + 1.5 * (clip[2].body[2, :2] - mid), atol=1e-9)
    assert out[3].is_empty


def test_foreshortened_first_frame_bone_ratio_is_bounded():
    clip = driving_clip(frames=2)
    clip[0].body[R_WRIST, :2] = clip[0].body[R_ELBOW, :2] + [1.0, 0.0]  # forearm towards the camera
    out = retarget_poses(clip, clip[1])  # reference forearm ~130 px: ratio ~130, bounded to 3 x s
    forearm = BONES.index((R_ELBOW, R_WRIST))
    ratio = bone_lengths(out[1].body)[forearm] / bone_lengths(clip[1].body)[forearm]
    np.testing.assert_allclose(ratio, 3.0 * global_scale(clip[1].body, bodies(clip)), rtol=1e-9)


def test_epi_leaves_bodiless_clips_and_skips_empty_anchors():
    empty = [Pose.empty(768, 512) for _ in range(3)]
    out = apply_epi_plan(empty, pool(), EPIPlan(transform=True, anchor_index=0, factors={"legs": 2.0}))
    assert all(p.is_empty for p in out)
    clip = driving_clip()
    out = apply_epi_plan(clip, [Pose.empty(768, 512)], EPIPlan(transform=True, anchor_index=0))
    assert_poses_close(out, clip)


def test_retarget_errors():
    clip = driving_clip(frames=2)
    with pytest.raises(AA2Error, match="share no visible bone"):
        retarget_poses(clip, Pose.empty(768, 512))
    with pytest.raises(AA2Error, match="anchor must be"):
        retarget_poses(clip, clip[0], anchor="middle")
    with pytest.raises(AA2Error, match="empty"):
        retarget_poses([], clip[0])


# ---------------------------------------------------------------- explicit pose indicator


def pool():
    rng = np.random.default_rng(7)
    poses = []
    for k in range(3):
        xy = STANDING.copy()
        xy[8:14, 1] = 420 + (xy[8:14, 1] - 420) * (0.6 + 0.3 * k)  # legs of different lengths
        poses.append(make_pose(xy, rng))
    return poses


def bodies(poses):
    return np.stack([p.body for p in poses])


def test_epi_is_deterministic_per_seed_and_changes_shapes():
    clip, anchors = driving_clip(), pool()
    a = explicit_pose_indicator(clip, anchors, 123)
    b = explicit_pose_indicator(clip, anchors, np.random.default_rng(123))
    np.testing.assert_array_equal(bodies(a), bodies(b))
    t1 = explicit_pose_indicator(clip, anchors, torch.Generator().manual_seed(5))
    t2 = explicit_pose_indicator(clip, anchors, torch.Generator().manual_seed(5))
    np.testing.assert_array_equal(bodies(t1), bodies(t2))
    outs = [bodies(explicit_pose_indicator(clip, anchors, s)) for s in range(6)]
    assert sum(not np.allclose(o, bodies(clip)) for o in outs) >= 5  # lambda = 0.98
    assert len({o.tobytes() for o in outs}) == 6


def test_epi_probability_zero_returns_the_clip():
    clip = driving_clip()
    out = explicit_pose_indicator(clip, pool(), 0, PoseIndicatorConfig(transform_prob=0.0))
    np.testing.assert_array_equal(bodies(out), bodies(clip))
    assert out[0] is not clip[0]


def test_epi_realign_only_equals_retargeting_to_the_anchor():
    clip, anchors = driving_clip(), pool()
    config = PoseIndicatorConfig(realign_scale_limits=(0.1, 10.0))
    out = apply_epi_plan(clip, anchors, EPIPlan(transform=True, anchor_index=2), config)
    assert_poses_close(out, retarget_poses(clip, anchors[2], anchor="driving"))


def test_rescale_legs_changes_only_leg_bones():
    clip = driving_clip()
    out = rescale_parts(clip, {"legs": 0.5})
    legs = [BONES.index(b) for b in ((8, 9), (9, 10), (11, 12), (12, 13))]
    ratio = bone_lengths(bodies(out)) / bone_lengths(bodies(clip))
    np.testing.assert_allclose(ratio[:, legs], 0.5, rtol=1e-9)
    np.testing.assert_allclose(np.delete(ratio, legs, axis=1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(bodies(out)[:, :8], bodies(clip)[:, :8])  # upper body untouched


def test_rescale_face_scales_face_about_the_nose():
    clip = driving_clip()
    out = rescale_parts(clip, {"face": 1.5})
    for a, d in zip(out, clip):
        nose = d.body[0, :2]
        np.testing.assert_allclose(a.face[:, :2], nose + 1.5 * (d.face[:, :2] - nose), atol=1e-9)
        np.testing.assert_allclose(a.hands, d.hands)


def test_drop_and_add_parts():
    clip, anchors = driving_clip(), pool()
    dropped = apply_epi_plan(clip, anchors, EPIPlan(transform=True, drop="left_arm"))
    for p in dropped:
        assert not p.body_valid[[L_ELBOW, L_WRIST]].any() and p.body_valid.sum() == 16
        assert not p.hands_valid[0].any() and p.hands_valid[1].all()
    no_hands = [Pose(body=p.body.copy(), height=p.height, width=p.width, face=p.face) for p in clip]
    added = apply_epi_plan(no_hands, anchors, EPIPlan(transform=True, anchor_index=0, add=True))
    anchor = anchors[0]
    for p in added:
        assert p.hands_valid.all()
        offset = anchor.hands[1, :, :2] - anchor.body[R_WRIST, :2]
        np.testing.assert_allclose(p.hands[1, :, :2], p.body[R_WRIST, :2] + offset, atol=1e-9)
    with pytest.raises(AA2Error, match="unknown part"):
        apply_epi_plan(clip, anchors, EPIPlan(transform=True, drop="tail"))


def test_feet_follow_their_ankles_through_retargeting_and_the_json():
    """COCO-WholeBody foot points (``foot_keypoints_2d``, read by the released Animate-X drawing) survive
    parse -> retarget -> POSE_KEYPOINT: a reference twice the driving size about the neck puts each toe and heel
    at twice its driving offset from the neck; a missing foot point stays missing."""
    from aa2_core.conditions.keypoints import parse_pose_keypoint, poses_to_pose_keypoint
    from aa2_core.conditions.skeleton import parse_feet

    rng = np.random.default_rng(3)
    L_ANKLE, R_ANKLE = 13, 10
    drv = make_pose(STANDING, rng)
    drv.feet = np.c_[np.repeat(STANDING[[L_ANKLE, R_ANKLE]], 3, axis=0) + rng.normal(0, 20, (6, 2)), np.ones(6)]
    drv.feet[2] = 0.0  # left heel not seen
    neck = STANDING[NECK]
    ref = make_pose(neck + 2 * (STANDING - neck), rng)
    json_in = poses_to_pose_keypoint([drv])
    assert len(json_in[0]["people"][0]["foot_keypoints_2d"]) == 18
    parsed = parse_pose_keypoint(json_in)[0]
    np.testing.assert_allclose(parsed.feet, drv.feet)
    out = retarget_poses([parsed], ref)[0]
    expected = neck + 2 * (drv.feet[:, :2] - neck)
    seen = drv.feet[:, 2] > 0
    np.testing.assert_allclose(out.feet[seen, :2], expected[seen], atol=1e-6)
    assert (out.feet[~seen] == 0).all()
    json_out = poses_to_pose_keypoint([out])
    np.testing.assert_allclose(parse_pose_keypoint(json_out)[0].feet, out.feet)
    # the released foot point (mean of the two toes) of the retargeted right foot, drawn by AA2 Render Pose
    np.testing.assert_allclose(parse_feet(json_out)[0][1, :2], expected[3:5].mean(0), atol=1e-6)
