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
"""

from __future__ import annotations

import math
from typing import Optional

import cv2
import numpy as np

from ..errors import AA2Error
from .keypoints import Pose

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
) -> np.ndarray:
    """Poses -> ``[T, H, W, 3]`` skeleton images: uint8 0..255, or float32 0..1 with ``as_float``.

    Each pose is mapped to the ``(height, width)`` canvas first. ``out`` lets callers render a long
    sequence chunk by chunk into memory they own (it must be ``[T, H, W, 3]`` of the returned dtype).
    """
    _check_size(height, width)
    dtype = np.float32 if as_float else np.uint8
    shape = (len(poses), int(height), int(width), 3)
    if out is None:
        out = np.empty(shape, dtype)
    elif out.shape != shape or out.dtype != dtype:
        raise AA2Error(f"render_skeleton: out must be {shape} {np.dtype(dtype)}; got {out.shape} {out.dtype}")
    for i, pose in enumerate(poses):
        frame = render_pose(pose, height, width, draw_hands=draw_hands, draw_face=draw_face)
        out[i] = frame / np.float32(255) if as_float else frame
    return out


def render_pose(pose: Pose, height: int, width: int, draw_hands: bool = True, draw_face: bool = True) -> np.ndarray:
    """One pose -> ``[H, W, 3]`` uint8 skeleton image in the OpenPose convention."""
    _check_size(height, width)
    if not isinstance(pose, Pose):
        raise AA2Error(f"render_skeleton: each pose must be a Pose; got {type(pose).__name__}")
    pose = pose.resized(height, width)
    canvas = draw_body(np.zeros((int(height), int(width), 3), np.uint8), pose.body)
    if draw_hands and pose.hands is not None:
        for hand in pose.hands:
            draw_hand(canvas, hand)
    if draw_face and pose.face is not None:
        draw_face_dots(canvas, pose.face)
    return canvas


def draw_body(canvas: np.ndarray, body: np.ndarray) -> np.ndarray:
    """Limbs at 0.6 brightness, then joint dots at full colour. Returns the (new) canvas."""
    body = _safe(body)
    valid = body[:, 2] > 0
    for i in range(DRAWN_LIMBS):
        a, b = (j - 1 for j in LIMB_SEQUENCE[i])
        if valid[a] and valid[b]:
            cv2.fillConvexPoly(canvas, limb_polygon(body[a, :2], body[b, :2]), OPENPOSE_COLORS[i])
    canvas = cv2.LUT(canvas, LIMB_ALPHA_LUT)  # same values as (canvas * 0.6).astype(uint8), faster
    for j in np.flatnonzero(valid):
        x, y = body[j, :2]
        cv2.circle(canvas, (int(x), int(y)), JOINT_RADIUS, OPENPOSE_COLORS[j], thickness=-1)
    return canvas


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


def _check_size(height, width) -> None:
    if int(height) <= 0 or int(width) <= 0:
        raise AA2Error(f"render_skeleton: height and width must be positive; got {height}x{width}")
