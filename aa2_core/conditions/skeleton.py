"""Skeleton images in the OpenPose convention the Animate Anyone pose guider was trained on.

The convention is controlnet_aux's ``draw_bodypose`` / ``draw_handpose`` / ``draw_facepose`` as used by
Moore-AnimateAnyone's DWPose code (our own implementation; same pixels):

* body, on a black RGB canvas: the first 17 limbs of the OpenPose limb list (the two ear-shoulder
  limbs are listed but never drawn), in list order, each a filled ellipse polygon
  (``cv2.ellipse2Poly`` around the limb midpoint, half-axes ``(int(length / 2), 4)``, angle
  ``int(degrees(atan2(dy, dx)))``, 1-degree steps) in the limb's colour; later limbs overwrite earlier
  ones. The limb layer is then scaled by 0.6 and truncated to uint8 (the "0.6 alpha" on black). Then a
  filled circle of radius 4 in the joint's colour at each valid joint, in joint order.
* hands (left, then right): 20 edges of thickness 2 whose colours walk the HSV hue circle, then a dot of
  radius 4 in ``(0, 0, 255)`` at each point. The reference code was written for BGR but draws on an RGB
  canvas, so these dots are blue in the RGB image (as in every ControlNet OpenPose image).
* face: white dots of radius 3.
* hand and face points are drawn only where both integer pixel coordinates are >= 1 (the reference
  ``> eps`` test on truncated coordinates); body joints are drawn wherever they are valid.

Sizes are in pixels of the output canvas, whatever its resolution: the stick half-width is 4 px, joint
dots 4 px, hand lines 2 px, face dots 3 px, exactly as the reference. So a skeleton rendered at 512x768
equals the reference rendering at 512x768 pixel for pixel; rendering at another size is not a resize of
it (limbs stay 4 px wide, as the pose guider saw in training at its resolution).

**The released Animate-X style** (``style="animate_x"``): ``process_data.py`` of antgroup/animate-x draws with
``dwpose/util.draw_body_and_foot`` then ``draw_handpose`` and saves the canvas *without* the face:

* body + feet, 20 points: the 18 OpenPose joints, then a left foot (18) and a right foot (19), each the mean of
  that foot's big and small toe (COCO-WholeBody 17, 18 and 20, 21), present only when both toes are (score above
  0.3); the heels are not used. 19 limbs, all drawn: the first 17 above, then left ankle -> left foot and right
  ankle -> right foot; colours the 18 above plus ``(170, 255, 255)`` and ``(255, 255, 0)`` for the two feet. Same
  stick half-width 4, 0.6 limb layer, joint dots of radius 4 (feet included) as the Moore style.
* hands exactly as above; no face (``draw_face`` is not read by this style).
* channel order: the canvas above (``animate_x_canvas``) is what ``draw_pose`` returns; ``cv2.imwrite`` saves it
  as BGR and the entrance reads the JPEG with ``PIL.Image.open`` (RGB), so the picture the released network sees
  is the canvas with its channels reversed (limb 0 blue, hand dots red). ``render_pose(style="animate_x")``
  returns that picture. Not reproduced: the JPEG compression of the saved frames (cv2's default quality 95), and
  the released resize (the frames are drawn at the driving video's own size, then ``PIL`` bilinear to 512x768):
  render at the video's size and let the sampler resize to get the same, or at the output size for sharp limbs.
* parity: ``bench/animate_x_pose_parity.py`` draws seeded poses with the released ``dwpose/util.py`` and its
  ``DWposeDetector`` post-processing (the foot rule); ``tests/test_animate_x_pose.py`` holds its canvases.

**Foot points in POSE_KEYPOINT.** OpenPose-18 has no feet, so the released style reads ``foot_keypoints_2d`` of a
person: the six COCO-WholeBody foot points (left big toe, left small toe, left heel, right big toe, right small
toe, right heel; ``[x, y, c] * 6``, the convention of several DWPose packs; ``AA2 DWPose Extract`` writes it).
``parse_pose_keypoint`` keeps it as ``Pose.feet``; ``parse_feet`` gives, for the person it chooses, the two released foot points;
a person without it is drawn without feet (no foot limbs, as the released code draws feet it did not see).

**Pose alignment.** The released code has none: its entrance starts at frame 0 "because the pose alignment is
performed on the first frame", and its README says the paper's results use no alignment and a user may translate
and scale each frame's skeleton by hand to the reference (x/y shift + scale). So there is nothing to implement
for parity: with no retargeting, the pack's frames are the released ones. ``AA2 Retarget Pose``
(``conditions/retarget.py``) is the optional, larger step: what matches the README's manual alignment is its
``anchor="reference"`` placement (the driving motion scaled by one factor about its first neck and moved onto the
reference's neck); what differs: the factor is measured (shoulder width + torso height), each bone also gets the
reference's length (ratio fixed on the first driving frame); hands follow their wrist, feet (``Pose.feet``, kept
through parsing, retargeting and writing) their ankle.
"""

from __future__ import annotations

import math
from typing import Optional

import cv2
import numpy as np

from ..errors import AA2Error
from .keypoints import BODY_JOINTS, DEFAULT_THRESHOLD, FOOT_POINTS, Pose, clean_points, poses_to_pose_keypoint

# (parent, child) joint numbers, 1-based as in OpenPose; only the first DRAWN_LIMBS are drawn.
LIMB_SEQUENCE = (
    (2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11),
    (2, 12), (12, 13), (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18),
    (3, 17), (6, 18),
)  # fmt: skip
DRAWN_LIMBS = 17
# Limb i and joint i share colour i (RGB).
OPENPOSE_COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip
STICK_WIDTH = 4
LIMB_ALPHA = 0.6
JOINT_RADIUS = 4

HAND_EDGES = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10),
    (10, 11), (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20),
)  # fmt: skip
# hsv_to_rgb(edge / 20, 1, 1) * 255 in float64, as OpenCV rounds it (half to even). Written out
# because the float results sit on .5 boundaries (76.50000000000001 -> 77, 127.5 -> 128).
HAND_EDGE_COLORS = (
    (255, 0, 0), (255, 77, 0), (255, 153, 0), (255, 229, 0), (204, 255, 0), (128, 255, 0),
    (51, 255, 0), (0, 255, 25), (0, 255, 102), (0, 255, 179), (0, 255, 255), (0, 178, 255),
    (0, 102, 255), (0, 25, 255), (51, 0, 255), (128, 0, 255), (204, 0, 255), (255, 0, 230),
    (255, 0, 153), (255, 0, 77),
)  # fmt: skip
HAND_LINE_THICKNESS = 2
HAND_DOT_RADIUS = 4
HAND_DOT_COLOR = (0, 0, 255)
# The released Animate-X style (dwpose/util.draw_body_and_foot): 19 limbs all drawn, joints 18/19 are the feet.
STYLES = ("moore", "animate_x")
BODY_FOOT_LIMBS = LIMB_SEQUENCE[:DRAWN_LIMBS] + ((14, 19), (11, 20))
BODY_FOOT_COLORS = OPENPOSE_COLORS + ((170, 255, 255), (255, 255, 0))
FOOT_POINT_NAMES = ("left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel")
FACE_DOT_RADIUS = 3
FACE_DOT_COLOR = (255, 255, 255)
EPS = 0.01  # the reference's test on truncated pixel coordinates: x > 0.01 means x >= 1
# Coordinates are clipped to +-this many pixels before drawing: OpenCV takes 32-bit ints, so a keypoint at 1e12
# would not even parse. 2^20 is 64 times ComfyUI's largest canvas, so no drawable skeleton is ever clipped.
COORD_LIMIT = float(2**20)
# (uint8 value * 0.6) truncated, for every value: the reference's float64 multiply, as a lookup table
LIMB_ALPHA_LUT = (np.arange(256, dtype=np.uint8) * LIMB_ALPHA).astype(np.uint8)


def render_skeleton(
    poses: list[Pose],
    height: int,
    width: int,
    draw_hands: bool = True,
    draw_face: bool = True,
    as_float: bool = False,
    out: Optional[np.ndarray] = None,
    style: str = "moore",
    feet: Optional[list] = None,
) -> np.ndarray:
    """Poses -> ``[T, H, W, 3]`` skeleton images: uint8 0..255, or float32 0..1 with ``as_float``.

    Each pose is mapped to the ``(height, width)`` canvas first. ``out`` lets callers render a long
    sequence chunk by chunk into memory they own (it must be ``[T, H, W, 3]`` of the returned dtype).
    ``style``: ``"moore"`` (default) or ``"animate_x"`` (the released Animate-X frames, module docstring);
    ``feet``: with ``"animate_x"``, one ``(2, 3)`` foot array (``parse_feet``) or None per pose.
    """
    _check_size(height, width)
    _check_style(style)
    if feet is not None and len(feet) != len(poses):
        raise AA2Error(f"render_skeleton: feet must hold one entry per pose ({len(poses)}); got {len(feet)}")
    dtype = np.float32 if as_float else np.uint8
    shape = (len(poses), int(height), int(width), 3)
    if out is None:
        out = np.empty(shape, dtype)
    elif out.shape != shape or out.dtype != dtype:
        raise AA2Error(f"render_skeleton: out must be {shape} {np.dtype(dtype)}; got {out.shape} {out.dtype}")
    for i, pose in enumerate(poses):
        frame = render_pose(pose, height, width, draw_hands=draw_hands, draw_face=draw_face, style=style,
                            feet=None if feet is None else feet[i])
        out[i] = frame / np.float32(255) if as_float else frame
    return out


def render_pose(pose: Pose, height: int, width: int, draw_hands: bool = True, draw_face: bool = True,
                style: str = "moore", feet: Optional[np.ndarray] = None) -> np.ndarray:
    """One pose -> ``[H, W, 3]`` uint8 skeleton image in the OpenPose convention (``style="moore"``), or the
    released Animate-X picture (``style="animate_x"``: ``animate_x_canvas`` with its channels reversed, as the
    released entrance reads its saved frames; no face). ``feet``: ``(2, 3)`` foot points on the pose's canvas."""
    _check_size(height, width)
    _check_style(style)
    if not isinstance(pose, Pose):
        raise AA2Error(f"render_skeleton: each pose must be a Pose; got {type(pose).__name__}")
    if style == "animate_x":
        return np.ascontiguousarray(animate_x_canvas(pose, height, width, draw_hands, feet)[..., ::-1])
    if feet is not None:
        raise AA2Error("render_skeleton: feet are drawn by the animate_x style only; the moore style has none")
    pose = pose.resized(height, width)
    canvas = draw_body(np.zeros((int(height), int(width), 3), np.uint8), pose.body)
    if draw_hands and pose.hands is not None:
        for hand in pose.hands:
            draw_hand(canvas, hand)
    if draw_face and pose.face is not None:
        draw_face_dots(canvas, pose.face)
    return canvas


def animate_x_canvas(pose: Pose, height: int, width: int, draw_hands: bool = True,
                     feet: Optional[np.ndarray] = None) -> np.ndarray:
    """The released ``process_data.draw_pose`` canvas without the face: ``draw_body_and_foot`` (20 points) then
    ``draw_handpose`` on black, ``[H, W, 3]`` uint8 in the array order it is drawn (``cv2.imwrite`` saves it as
    BGR). ``feet``: ``(2, 3)`` left/right foot points (``parse_feet``/``foot_points``) on the pose's canvas, or
    None (no feet)."""
    _check_size(height, width)
    if not isinstance(pose, Pose):
        raise AA2Error(f"render_skeleton: each pose must be a Pose; got {type(pose).__name__}")
    feet = np.zeros((2, 3)) if feet is None else np.asarray(feet, dtype=np.float64)
    if feet.shape != (2, 3):
        raise AA2Error(f"render_skeleton: feet must be (2, 3) [x, y, confidence] rows (left, right); got {feet.shape}")
    if (int(height), int(width)) != (pose.height, pose.width):
        feet = feet * np.array([width / pose.width, height / pose.height, 1.0])  # as Pose.resized scales
        pose = pose.resized(height, width)
    body = np.concatenate([pose.body, feet])
    canvas = draw_body(np.zeros((int(height), int(width), 3), np.uint8), body, BODY_FOOT_LIMBS, BODY_FOOT_COLORS)
    if draw_hands and pose.hands is not None:
        for hand in pose.hands:
            draw_hand(canvas, hand)
    return canvas


def draw_body(canvas: np.ndarray, body: np.ndarray, limbs=LIMB_SEQUENCE[:DRAWN_LIMBS],
              colors=OPENPOSE_COLORS) -> np.ndarray:
    """Limbs at 0.6 brightness, then joint dots at full colour. Returns the (new) canvas. ``limbs``: the
    1-based joint pairs drawn, in order (limb i in ``colors[i]``; joint j in ``colors[j]``)."""
    body = _safe(body)
    valid = body[:, 2] > 0
    for i, limb in enumerate(limbs):
        a, b = (j - 1 for j in limb)
        if valid[a] and valid[b]:
            cv2.fillConvexPoly(canvas, limb_polygon(body[a, :2], body[b, :2]), colors[i])
    canvas = cv2.LUT(canvas, LIMB_ALPHA_LUT)  # same values as (canvas * 0.6).astype(uint8), faster
    for j in np.flatnonzero(valid):
        x, y = body[j, :2]
        cv2.circle(canvas, (int(x), int(y)), JOINT_RADIUS, colors[j], thickness=-1)
    return canvas


def foot_points(foot: Optional[np.ndarray], threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Six COCO-WholeBody foot points ``[x, y, c]`` (``FOOT_POINT_NAMES``) -> the released ``(2, 3)`` left and
    right foot points: the mean of the big and small toe, present when both are (confidence the smaller of
    the two), else ``[0, 0, 0]``; the heels are not read. ``None`` -> no feet."""
    out = np.zeros((2, 3))
    if foot is None:
        return out
    foot = np.asarray(foot, dtype=np.float64)
    if foot.shape != (FOOT_POINTS, 3):
        raise AA2Error(f"foot points must be {FOOT_POINTS} [x, y, confidence] rows ({', '.join(FOOT_POINT_NAMES)}); "
                       f"got shape {foot.shape}")
    foot = clean_points(foot, threshold)
    for side in (0, 1):
        big, small = foot[3 * side], foot[3 * side + 1]
        if big[2] > 0 and small[2] > 0:
            out[side, :2] = (big[:2] + small[:2]) / 2  # the released (a + b) / 2, in the JSON's coordinates
            out[side, 2] = min(big[2], small[2])
    return out


def parse_feet(pose_keypoint, height: Optional[int] = None, width: Optional[int] = None,
               threshold: float = DEFAULT_THRESHOLD, person="best", coordinates: str = "auto") -> list[np.ndarray]:
    """``POSE_KEYPOINT`` -> one ``(2, 3)`` foot array per frame: ``foot_points`` of the ``Pose.feet``
    (``foot_keypoints_2d``) of the person ``parse_pose_keypoint`` chooses with the same arguments, on the same
    canvas as its poses. A frame or person without foot points gives zeros (no feet)."""
    from .keypoints import parse_pose_keypoint

    poses = parse_pose_keypoint(pose_keypoint, height, width, threshold=threshold, person=person,
                                coordinates=coordinates)
    return [foot_points(p.feet, threshold) for p in poses]


def dwpose_with_feet(extractor, frames, threshold: float = DEFAULT_THRESHOLD) -> list[dict]:
    """``conditions.dwpose.DWPoseExtractor`` on ``[T, H, W, 3]`` RGB frames -> ``POSE_KEYPOINT`` whose person also
    carries ``foot_keypoints_2d`` (the six COCO-WholeBody foot rows, below ``threshold`` written ``[0, 0, 0]``).
    The poses are the extractor's own (``frame_pose``: same boxes, same most confident person)."""
    from .dwpose import _uint8_frames, to_openpose, wholebody_to_pose

    poses = []
    for rgb in _uint8_frames(frames):
        height, width = rgb.shape[:2]
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        boxes = extractor.detect(bgr)
        if len(boxes) == 0:
            poses.append(Pose.empty(height, width))
            continue
        people = to_openpose(*extractor.keypoints(bgr, boxes))
        best = people[int(np.argmax(people[:, :BODY_JOINTS, 2].mean(1)))]
        pose = wholebody_to_pose(best, height, width, threshold)
        pose.feet = best[BODY_JOINTS : BODY_JOINTS + FOOT_POINTS].astype(np.float64).copy()
        pose.feet[pose.feet[:, 2] < threshold] = 0.0
        poses.append(pose)
    return poses_to_pose_keypoint(poses)


def limb_polygon(p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """The limb's ellipse polygon: centre and half-length truncated to int, angle truncated to degrees."""
    (x0, y0), (x1, y1) = (float(v) for v in p0), (float(v) for v in p1)
    length = ((y0 - y1) ** 2 + (x0 - x1) ** 2) ** 0.5  # this exact float expression: int() of it is kept
    angle = math.degrees(math.atan2(y0 - y1, x0 - x1))
    centre = (int((x0 + x1) / 2), int((y0 + y1) / 2))
    return cv2.ellipse2Poly(centre, (int(length / 2), STICK_WIDTH), int(angle), 0, 360, 1)


def draw_hand(canvas: np.ndarray, hand: np.ndarray) -> None:
    """20 coloured edges then the dots, in place."""
    pixels = _drawable_pixels(hand)
    for e, (a, b) in enumerate(HAND_EDGES):
        if pixels[a] is not None and pixels[b] is not None:
            cv2.line(canvas, pixels[a], pixels[b], HAND_EDGE_COLORS[e], thickness=HAND_LINE_THICKNESS)
    for point in pixels:
        if point is not None:
            cv2.circle(canvas, point, HAND_DOT_RADIUS, HAND_DOT_COLOR, thickness=-1)


def draw_face_dots(canvas: np.ndarray, face: np.ndarray) -> None:
    for point in _drawable_pixels(face):
        if point is not None:
            cv2.circle(canvas, point, FACE_DOT_RADIUS, FACE_DOT_COLOR, thickness=-1)


def _drawable_pixels(points: np.ndarray) -> list:
    """Truncated pixel coordinates of valid points that pass the reference ``> eps`` test, else None."""
    pixels = []
    for x, y, c in _safe(points):
        xi, yi = int(x), int(y)
        pixels.append((xi, yi) if c > 0 and xi > EPS and yi > EPS else None)
    return pixels


def _safe(points: np.ndarray) -> np.ndarray:
    """Points with x and y clipped to +-COORD_LIMIT (a new array; the caller's is left alone)."""
    points = np.asarray(points, dtype=np.float64)
    if np.abs(points[:, :2]).max(initial=0.0) <= COORD_LIMIT:
        return points
    out = points.copy()
    np.clip(out[:, :2], -COORD_LIMIT, COORD_LIMIT, out=out[:, :2])
    return out


def _check_style(style) -> None:
    if style not in STYLES:
        raise AA2Error(f"render_skeleton: style must be one of {list(STYLES)}; got {style!r}")


def _check_size(height, width) -> None:
    if int(height) <= 0 or int(width) <= 0:
        raise AA2Error(f"render_skeleton: height and width must be positive; got {height}x{width}")
