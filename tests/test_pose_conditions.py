"""POSE_KEYPOINT parsing, OpenPose skeleton rendering and structured depth."""

import colorsys
import json

import numpy as np
import pytest
import torch

from aa2_core.conditions.depth import skeleton_mask, structured_depth
from aa2_core.conditions.keypoints import Pose, parse_pose_keypoint, poses_to_pose_keypoint
from aa2_core.conditions.skeleton import render_pose, render_skeleton
from aa2_core.errors import AA2Error

# The OpenPose convention, written out here independently of the implementation.
COLORS = [
    [255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0],
    [0, 255, 0], [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255],
    [0, 0, 255], [85, 0, 255], [170, 0, 255], [255, 0, 255], [255, 0, 170], [255, 0, 85],
]  # fmt: skip
LIMBS_1BASED = [
    [2, 3], [2, 6], [3, 4], [4, 5], [6, 7], [7, 8], [2, 9], [9, 10], [10, 11],
    [2, 12], [12, 13], [13, 14], [2, 1], [1, 15], [15, 17], [1, 16], [16, 18],
]  # fmt: skip  (the two ear-shoulder limbs of the list are never drawn)

# A wide standing person on a 512x768 (w x h) canvas: long limbs, no limb crossing another's midpoint.
STANDING = np.array([
    [256, 100], [256, 200], [156, 200], [106, 330], [66, 460], [356, 200], [406, 330], [446, 460],
    [196, 420], [176, 560], [166, 700], [316, 420], [336, 560], [346, 700],
    [226, 60], [286, 60], [176, 40], [336, 40],
], float)  # fmt: skip


def body(xy, visible=None):
    conf = np.ones(len(xy)) if visible is None else np.asarray(visible, float)
    return np.where(conf[:, None] > 0, np.c_[xy, conf], 0.0)


def limb_colour(i):
    return np.floor(np.array(COLORS[i]) * 0.6)  # limbs are drawn at 0.6 of their colour on black


# ---------------------------------------------------------------- POSE_KEYPOINT parsing


def frame_dict(points, h=768, w=512, **parts):
    person = {"pose_keypoints_2d": [float(v) for v in np.asarray(points).reshape(-1)]}
    person.update({k: (None if v is None else [float(x) for x in np.asarray(v).reshape(-1)]) for k, v in parts.items()})
    return {"people": [person], "canvas_height": h, "canvas_width": w}


def test_parse_absolute_pixels_marks_missing_points():
    pts = np.c_[STANDING, np.ones(18)]
    pts[3] = [0, 0, 0]  # written-out missing point
    pts[4, 2] = 0.1  # below the 0.3 threshold
    pts[5] = [-1, -1, 0.9]  # -1 coordinates mean missing
    hand = np.c_[np.full((21, 2), 50.0) + np.arange(21)[:, None], np.ones(21)]
    face70 = np.c_[np.full((70, 2), 200.0), np.ones(70)]
    data = [frame_dict(pts, hand_left_keypoints_2d=hand, hand_right_keypoints_2d=None, face_keypoints_2d=face70)]
    (pose,) = parse_pose_keypoint(data)
    assert (pose.height, pose.width) == (768, 512)
    assert list(np.flatnonzero(~pose.body_valid)) == [3, 4, 5]
    np.testing.assert_array_equal(pose.body[pose.body_valid, :2], STANDING[pose.body_valid])
    assert pose.hands.shape == (2, 21, 3) and pose.hands_valid[0].all() and not pose.hands_valid[1].any()
    np.testing.assert_array_equal(pose.hands[0, :, :2], hand[:, :2])
    assert pose.face.shape == (68, 3)  # the two OpenPose eye copies are dropped


def test_parse_normalised_coordinates_and_rescale():
    norm = np.c_[STANDING / [512, 768], np.ones(18)]
    (pose,) = parse_pose_keypoint([frame_dict(norm, h=768, w=512)])
    np.testing.assert_allclose(pose.body[:, :2], STANDING, atol=1e-9)
    (small,) = parse_pose_keypoint([frame_dict(norm)], height=384, width=256)
    np.testing.assert_allclose(small.body[:, :2], STANDING / 2, atol=1e-9)
    # absolute pixels onto another canvas scale with each side
    (pix,) = parse_pose_keypoint([frame_dict(np.c_[STANDING, np.ones(18)])], height=1536, width=512)
    np.testing.assert_allclose(pix.body[:, :2], STANDING * [1, 2], atol=1e-9)


def test_parse_empty_frames_json_and_person_choice():
    two = frame_dict(np.c_[STANDING, np.ones(18)])
    weak = np.c_[STANDING + 5, np.r_[np.ones(5), np.zeros(13)]]
    two["people"].insert(0, frame_dict(weak)["people"][0])
    data = [{"people": [], "canvas_height": 768, "canvas_width": 512}, {"canvas_height": 768, "canvas_width": 512}, two]
    poses = parse_pose_keypoint(json.dumps(data))
    assert poses[0].is_empty and poses[1].is_empty and poses[0].hands is None
    np.testing.assert_array_equal(poses[2].body[:, :2], STANDING)  # "best": most confident body
    assert parse_pose_keypoint(data, person=0)[2].body_valid.sum() == 5
    assert parse_pose_keypoint(data, person=5)[2].is_empty


def test_pose_keypoint_round_trip():
    hands = np.c_[np.arange(84).reshape(42, 2) + 10.0, np.ones(42)].reshape(2, 21, 3)
    pose = Pose(body=body(STANDING, [1] * 17 + [0]), height=768, width=512, hands=hands)
    (back,) = parse_pose_keypoint(poses_to_pose_keypoint([pose]))
    np.testing.assert_array_equal(back.body, pose.body)
    np.testing.assert_array_equal(back.hands, pose.hands)


@pytest.mark.parametrize(
    "data, words",
    [
        ([frame_dict(np.ones((25, 3)))], ["pose_keypoints_2d", "18", "75 values"]),
        ("not json", ["JSON"]),
        (42, ["POSE_KEYPOINT", "int"]),
        ([{"people": [{"pose_keypoints_2d": [300.0, 20.0, 1.0] * 18}]}], ["canvas_height"]),
        ([frame_dict(np.ones((18, 3)), face_keypoints_2d=np.ones((10, 3)))], ["face_keypoints_2d", "68 or 70"]),
    ],
)
def test_parse_errors_name_the_input(data, words):
    with pytest.raises(AA2Error) as info:
        parse_pose_keypoint(data)
    for word in words:
        assert word in str(info.value)


# ---------------------------------------------------------------- skeleton rendering


def test_limb_midpoints_and_joints_follow_the_convention():
    image = render_pose(Pose(body=body(STANDING), height=768, width=512), 768, 512)
    for i, (a, b) in enumerate(LIMBS_1BASED):
        mid = (STANDING[a - 1] + STANDING[b - 1]) / 2
        np.testing.assert_array_equal(image[int(mid[1]), int(mid[0])], limb_colour(i), err_msg=f"limb {i}")
    for j, (x, y) in enumerate(STANDING):
        np.testing.assert_array_equal(image[int(y), int(x)], COLORS[j], err_msg=f"joint {j}")
    # nothing drawn for the never-drawn ear-shoulder limbs (index 17, 18): midpoint of R shoulder-R ear
    mid = ((STANDING[2] + STANDING[16]) / 2).astype(int)
    assert image[mid[1], mid[0]].sum() == 0


def convention_body_image(xy, h, w):
    """The body drawing spelled out from the convention: ellipse polygons with truncated centre,
    half-length and angle, limb layer x 0.6 floored, then the joint dots."""
    import cv2

    canvas = np.zeros((h, w, 3), np.uint8)
    for i, (a, b) in enumerate(LIMBS_1BASED):
        (x0, y0), (x1, y1) = xy[a - 1], xy[b - 1]
        length = ((y0 - y1) ** 2 + (x0 - x1) ** 2) ** 0.5
        angle = np.degrees(np.arctan2(y0 - y1, x0 - x1))
        poly = cv2.ellipse2Poly((int((x0 + x1) / 2), int((y0 + y1) / 2)), (int(length / 2), 4), int(angle), 0, 360, 1)
        cv2.fillConvexPoly(canvas, poly, COLORS[i])
    canvas = np.floor(canvas * 0.6).astype(np.uint8)
    for j, (x, y) in enumerate(xy):
        cv2.circle(canvas, (int(x), int(y)), 4, COLORS[j], -1)
    return canvas


@pytest.mark.parametrize("size", [(333, 517), (768, 512)])
def test_whole_body_image_equals_the_convention(size):
    h, w = size
    xy = np.random.default_rng(h).random((18, 2)) * [w, h]
    image = render_pose(Pose(body=body(xy), height=h, width=w), h, w)
    np.testing.assert_array_equal(image, convention_body_image(xy, h, w))


def test_later_limbs_and_joints_overwrite_earlier_ones():
    xy = STANDING.copy()
    xy[3], xy[4] = [166, 300], [346, 300]  # right forearm (limb 3): horizontal through (256, 300)
    xy[6], xy[7] = [256, 240], [256, 380]  # left forearm (limb 5): vertical through (256, 300)
    image = render_pose(Pose(body=body(xy), height=768, width=512), 768, 512)
    np.testing.assert_array_equal(image[300, 256], limb_colour(5))  # the later limb wins the crossing
    np.testing.assert_array_equal(image[300, 200], limb_colour(3))
    xy2 = STANDING.copy()
    xy2[12] = xy2[9] + [3, 0]  # left knee 3 px from the right knee: the later joint's dot wins
    image2 = render_pose(Pose(body=body(xy2), height=768, width=512), 768, 512)
    np.testing.assert_array_equal(image2[int(xy2[12, 1]), int(xy2[12, 0])], COLORS[12])
    np.testing.assert_array_equal(image2[int(xy2[9, 1]), int(xy2[9, 0])], COLORS[12])


@pytest.mark.parametrize("size", [(256, 256), (1024, 1024)])
def test_stick_half_width_is_four_pixels_at_any_resolution(size):
    h, w = size
    xy = np.zeros((18, 2))
    xy[1], xy[2] = [w * 0.2, h * 0.5], [w * 0.8, h * 0.5]  # neck -> right shoulder, horizontal
    image = render_pose(Pose(body=body(xy, [0, 1, 1] + [0] * 15), height=h, width=w), h, w)
    column = image[:, w // 2]
    assert np.flatnonzero(column.any(-1)).tolist() == list(range(h // 2 - 4, h // 2 + 5))
    np.testing.assert_array_equal(column[h // 2], limb_colour(0))


def test_missing_joint_drops_its_limbs_and_dot():
    vis = np.ones(18)
    vis[3] = 0  # right elbow
    image = render_pose(Pose(body=body(STANDING, vis), height=768, width=512), 768, 512)
    for a, b in ([3, 4], [4, 5]):  # shoulder-elbow and elbow-wrist
        mid = ((STANDING[a - 1] + STANDING[b - 1]) / 2).astype(int)
        assert image[mid[1], mid[0]].sum() == 0
    assert image[330, 106].sum() == 0
    assert render_pose(Pose.empty(64, 48), 64, 48).sum() == 0


def fan_hand(centre, length=24.0):
    """Wrist at ``centre``, five straight fingers 30 degrees apart: edge midpoints far from other marks."""
    points = [centre]
    for f in range(5):
        angle = np.deg2rad(-150 + 30 * f)
        for k in range(1, 5):
            points.append(centre + k * length * np.array([np.cos(angle), np.sin(angle)]))
    return np.c_[np.array(points), np.ones(21)]


def test_hand_edges_dots_and_face_dots():
    edges = [[0, 1], [1, 2], [2, 3], [3, 4], [0, 5], [5, 6], [6, 7], [7, 8], [0, 9], [9, 10],
             [10, 11], [11, 12], [0, 13], [13, 14], [14, 15], [15, 16], [0, 17], [17, 18], [18, 19], [19, 20]]  # fmt: skip
    hand = fan_hand(np.array([200.0, 300.0]))
    face = np.zeros((68, 3))
    face[0] = [hand[20, 0], hand[20, 1], 1]  # a face dot on the last hand dot: face is drawn last
    face[1] = [0.5, 40, 1]  # x truncates to 0: not drawn (the reference "> eps" test)
    hands = np.stack([hand, np.zeros((21, 3))])
    under = np.zeros((18, 3))
    under[1] = [hand[5, 0], hand[5, 1], 1]  # a body joint under a hand dot: hands are drawn after the body
    image = render_pose(Pose(body=under, height=400, width=400, hands=hands, face=face), 400, 400)
    for e, (a, b) in enumerate(edges):
        mid = (hand[a, :2] + hand[b, :2]) / 2
        expected = np.round(np.array(colorsys.hsv_to_rgb(e / 20, 1.0, 1.0)) * 255)  # OpenCV: nearest, ties even
        np.testing.assert_array_equal(image[int(round(mid[1])), int(round(mid[0]))], expected, err_msg=f"edge {e}")
    for x, y in hand[:20, :2]:
        np.testing.assert_array_equal(image[int(y), int(x)], [0, 0, 255])  # (0,0,255) on the RGB canvas
    np.testing.assert_array_equal(image[int(hand[20, 1]), int(hand[20, 0])], [255, 255, 255])
    assert image[40, 0].sum() == 0 and image[40, 1].sum() == 0
    assert render_skeleton([Pose(body=np.zeros((18, 3)), height=400, width=400, hands=hands, face=face)], 400, 400,
                           draw_hands=False, draw_face=False).sum() == 0


def test_render_skeleton_batch_float_and_canvas_mapping():
    half = Pose(body=body(STANDING / 2), height=384, width=256)  # drawn on a 2x larger canvas
    full = Pose(body=body(STANDING), height=768, width=512)
    out = render_skeleton([half, full, Pose.empty(768, 512)], 768, 512)
    assert out.shape == (3, 768, 512, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], out[1])
    assert out[2].sum() == 0
    as_float = render_skeleton([full], 768, 512, as_float=True)
    assert as_float.dtype == np.float32
    np.testing.assert_allclose(as_float[0], out[1] / 255.0, atol=1e-7)
    with pytest.raises(AA2Error, match="out must be"):
        render_skeleton([full], 768, 512, out=np.zeros((1, 10, 10, 3), np.uint8))


# ---------------------------------------------------------------- structured depth


def test_structured_depth_keeps_depth_only_on_the_skeleton():
    poses = [Pose(body=body(STANDING + t * 10), height=768, width=512) for t in range(2)]
    skeleton = render_skeleton(poses, 768, 512)
    depth = np.random.default_rng(0).random((2, 768, 512)).astype(np.float32)
    out = structured_depth(depth, skeleton)
    mask = skeleton.max(-1) > 10
    assert 0.01 < mask.mean() < 0.2
    np.testing.assert_array_equal(out[mask], depth[mask])
    assert (out[~mask] == 0).all()
    # float skeleton, grey 3-channel depth image, torch tensors: the same result
    grey = torch.from_numpy(np.repeat(depth[..., None], 3, -1))
    out_t = structured_depth(grey, torch.from_numpy(skeleton / np.float32(255)))
    assert isinstance(out_t, torch.Tensor) and out_t.shape == (2, 768, 512)
    np.testing.assert_array_equal(out_t.numpy(), out)


def test_skeleton_mask_threshold_and_shape_errors():
    sk = np.zeros((1, 4, 4, 3), np.uint8)
    sk[0, 0, 0, 2] = 200
    sk[0, 1, 1, 0] = 5  # faint fringe below the threshold
    assert skeleton_mask(sk)[0].sum() == 1 and skeleton_mask(sk)[0, 0, 0]
    with pytest.raises(AA2Error, match="same frames"):
        structured_depth(np.zeros((2, 4, 4)), sk)
    with pytest.raises(AA2Error, match="height and width"):
        structured_depth(np.zeros((1, 8, 8)), sk, resize_depth=False)
    # a depth of another size is resized to the skeleton's: a constant stays constant
    resized = structured_depth(torch.full((1, 8, 6, 3), 0.25), torch.from_numpy(sk))
    assert resized.shape == (1, 4, 4) and resized[0, 0, 0] == 0.25 and resized.sum() == 0.25
    with pytest.raises(AA2Error, match=r"skeleton: expected \[T, H, W, 3\]"):
        structured_depth(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))
    with pytest.raises(AA2Error, match="depth"):
        structured_depth([[0.0]], sk)
