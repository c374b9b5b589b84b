"""OpenPose-18 / DWPose keypoints: one ``Pose`` per frame, parsed from ComfyUI's ``POSE_KEYPOINT``.

``POSE_KEYPOINT`` is what comfyui_controlnet_aux's DWPose / OpenPose nodes output: a list with one dict
per frame, ``{"people": [{"pose_keypoints_2d": [x, y, c] * 18, "hand_left_keypoints_2d": [x, y, c] * 21
or None, "hand_right_keypoints_2d": ..., "face_keypoints_2d": [x, y, c] * 70 or 68 or None}],
"canvas_height": H, "canvas_width": W}``; a person may also carry ``"foot_keypoints_2d"``: the six COCO-WholeBody
foot points (left big toe, small toe, heel, then the right ones) that DWPose detects and OpenPose-18 leaves out
(read by the released Animate-X drawing; kept through parsing, retargeting and writing). Missing points are written as ``[0, 0, 0]``. The DWPose
node writes pixel coordinates of its detection canvas; the OpenPose node writes coordinates normalised
to 0..1; both are accepted (detected over the whole sequence, or forced with ``coordinates=``).

A ``Pose`` holds one person in pixel coordinates of a ``(height, width)`` canvas, as float64 so that
rendering truncates coordinates to pixels exactly as the reference float64 code does. A point is
valid when its confidence is > 0; invalid points are stored as ``(0, 0, 0)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import AA2Error

BODY_JOINTS = 18
HAND_JOINTS = 21
FACE_POINTS = 68
FOOT_POINTS = 6  # foot_keypoints_2d: COCO-WholeBody points 17..22
# OpenPose-18 joint order (controlnet_aux / DWPose after its neck insertion and reindexing).
JOINT_NAMES = (
    "nose", "neck",
    "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle",
    "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip
JOINT = {name: i for i, name in enumerate(JOINT_NAMES)}
LEFT_HAND, RIGHT_HAND = 0, 1  # order of ``Pose.hands``; the person's own left / right
DEFAULT_THRESHOLD = 0.3  # DWPose's visibility threshold
FRAME_KEYS = {"people", "canvas_height", "canvas_width"}  # a POSE_KEYPOINT frame has at least one


@dataclass
class Pose:
    """One person in one frame. Arrays hold ``[x, y, confidence]`` rows in pixels of ``(height, width)``."""

    body: np.ndarray  # (18, 3)
    height: int
    width: int
    hands: Optional[np.ndarray] = None  # (2, 21, 3): left, right
    face: Optional[np.ndarray] = None  # (68, 3)
    feet: Optional[np.ndarray] = None  # (6, 3): COCO-WholeBody foot points (``FOOT_POINTS``)

    @classmethod
    def empty(cls, height: int, width: int) -> "Pose":
        return cls(body=np.zeros((BODY_JOINTS, 3)), height=int(height), width=int(width))

    @property
    def body_valid(self) -> np.ndarray:
        return self.body[:, 2] > 0

    @property
    def hands_valid(self) -> np.ndarray:
        return np.zeros((2, HAND_JOINTS), bool) if self.hands is None else self.hands[..., 2] > 0

    @property
    def face_valid(self) -> np.ndarray:
        return np.zeros(FACE_POINTS, bool) if self.face is None else self.face[:, 2] > 0

    @property
    def is_empty(self) -> bool:
        return not (self.body_valid.any() or self.hands_valid.any() or self.face_valid.any())

    def copy(self) -> "Pose":
        return Pose(
            body=self.body.copy(),
            height=self.height,
            width=self.width,
            hands=None if self.hands is None else self.hands.copy(),
            face=None if self.face is None else self.face.copy(),
            feet=None if self.feet is None else self.feet.copy(),
        )

    def resized(self, height: int, width: int) -> "Pose":
        """The same pose on a ``(height, width)`` canvas: coordinates scale with each side (``self`` when
        the canvas is already that size)."""
        if (int(height), int(width)) == (self.height, self.width):
            return self
        sx, sy = width / self.width, height / self.height
        out = self.copy()
        out.height, out.width = int(height), int(width)
        for part in (out.body, out.hands, out.face, out.feet):
            if part is not None:
                part[..., 0] *= sx
                part[..., 1] *= sy
        return out


def clean_points(points: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Zero the rows that are missing: confidence below ``threshold``, or x, y written as 0 / -1 / NaN."""
    points = np.array(points, dtype=np.float64)
    xy, conf = points[..., :2], points[..., 2]
    missing = (
        ~np.isfinite(points).all(-1)
        | (conf < threshold)
        | (conf <= 0)
        | ((xy == 0).all(-1))
        | ((xy == -1).any(-1))
    )
    points[missing] = 0.0
    return points


def parse_pose_keypoint(
    pose_keypoint,
    height: Optional[int] = None,
    width: Optional[int] = None,
    threshold: float = DEFAULT_THRESHOLD,
    person="best",
    coordinates: str = "auto",
) -> list[Pose]:
    """``POSE_KEYPOINT`` (list of frame dicts, one dict, or its JSON text) -> one ``Pose`` per frame.

    ``height``/``width``: the canvas of the returned poses (default: each frame's own canvas).
    ``person``: ``"best"`` (highest summed body confidence, as Moore's DWPose picks) or an index;
    a frame without that person gives an empty pose. ``coordinates``: ``"auto"``, ``"pixels"`` or
    ``"normalized"``.
    """
    frames = _frame_list(pose_keypoint)
    if coordinates not in ("auto", "pixels", "normalized"):
        raise AA2Error(f"coordinates must be 'auto', 'pixels' or 'normalized'; got {coordinates!r}")
    people = [[_read_person(p, i) for p in _people_of(f, i)] for i, f in enumerate(frames)]
    normalized = coordinates == "normalized" or (coordinates == "auto" and _looks_normalized(people, threshold))
    poses = []
    for i, (frame, persons) in enumerate(zip(frames, people)):
        canvas_h, canvas_w = _canvas_of(frame, i, height, width, normalized)
        out_h, out_w = int(height or canvas_h), int(width or canvas_w)
        chosen = _choose_person(persons, person, threshold)
        if chosen is None:
            poses.append(Pose.empty(out_h, out_w))
            continue
        scale_x = out_w if normalized else out_w / canvas_w
        scale_y = out_h if normalized else out_h / canvas_h
        poses.append(_to_pose(chosen, threshold, out_h, out_w, scale_x, scale_y))
    return poses


def poses_to_pose_keypoint(poses: list[Pose]) -> list[dict]:
    """``Pose`` list -> ``POSE_KEYPOINT`` (pixel coordinates; missing points ``[0, 0, 0]``)."""
    frames = []
    for pose in poses:
        people = []
        if not pose.is_empty:
            hands = pose.hands
            people.append(
                {
                    "pose_keypoints_2d": _flat(pose.body),
                    "hand_left_keypoints_2d": None if hands is None else _flat(hands[LEFT_HAND]),
                    "hand_right_keypoints_2d": None if hands is None else _flat(hands[RIGHT_HAND]),
                    "face_keypoints_2d": None if pose.face is None else _flat(pose.face),
                }
            )
            if pose.feet is not None:
                people[-1]["foot_keypoints_2d"] = _flat(pose.feet)
        frames.append({"people": people, "canvas_height": pose.height, "canvas_width": pose.width})
    return frames


def _flat(points: np.ndarray) -> list[float]:
    return [float(v) for v in points.reshape(-1)]


def _frame_list(pose_keypoint) -> list[dict]:
    if isinstance(pose_keypoint, (str, bytes)):
        try:
            pose_keypoint = json.loads(pose_keypoint)
        except json.JSONDecodeError as e:
            raise AA2Error(f"pose keypoints: text is not valid JSON ({e})") from e
    if isinstance(pose_keypoint, dict):
        pose_keypoint = [pose_keypoint]
    if not isinstance(pose_keypoint, (list, tuple)) or not all(isinstance(f, dict) for f in pose_keypoint):
        raise AA2Error(
            "pose keypoints: expected POSE_KEYPOINT, a list with one dict per frame "
            f"({{'people': [...], 'canvas_height': H, 'canvas_width': W}}); got {type(pose_keypoint).__name__}"
        )
    for i, frame in enumerate(pose_keypoint):
        # a frame may omit 'people' (no one detected) but not every key: {"foo": 1} is some other JSON file
        if not FRAME_KEYS & frame.keys():
            raise AA2Error(
                f"pose keypoints frame {i}: not POSE_KEYPOINT; expected {{'people': [...], 'canvas_height': H, "
                f"'canvas_width': W}}; got the keys {sorted(map(str, frame))}"
            )
    return list(pose_keypoint)


def _people_of(frame: dict, index: int) -> list:
    people = frame.get("people") or []
    if not isinstance(people, (list, tuple)):
        raise AA2Error(f"pose keypoints frame {index}: 'people' must be a list; got {type(people).__name__}")
    return list(people)


def _read_person(person: dict, frame_index: int) -> dict:
    """Raw arrays of one person: body (18, 3), hands [left, right] or None, face (68, 3) or None."""
    where = f"pose keypoints frame {frame_index}"
    if not isinstance(person, dict):
        raise AA2Error(f"{where}: each person must be a dict; got {type(person).__name__}")
    body = _triples(person.get("pose_keypoints_2d"), where, "pose_keypoints_2d", (BODY_JOINTS,))
    left = _triples(person.get("hand_left_keypoints_2d"), where, "hand_left_keypoints_2d", (HAND_JOINTS,))
    right = _triples(person.get("hand_right_keypoints_2d"), where, "hand_right_keypoints_2d", (HAND_JOINTS,))
    # OpenPose faces have 70 points: DWPose's 68 plus copies of the two eyes, which we drop.
    face = _triples(person.get("face_keypoints_2d"), where, "face_keypoints_2d", (FACE_POINTS, 70))
    feet = _triples(person.get("foot_keypoints_2d"), where, "foot_keypoints_2d", (FOOT_POINTS,))
    return dict(body=body, left=left, right=right, face=None if face is None else face[:FACE_POINTS], feet=feet)


def _triples(values, where: str, key: str, counts: tuple) -> Optional[np.ndarray]:
    if values is None or len(values) == 0:
        return None
    try:
        array = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise AA2Error(f"{where}: {key} must be a flat list of numbers ({e})") from e
    if array.size % 3 or array.size // 3 not in counts:
        expected = " or ".join(str(c) for c in counts)
        raise AA2Error(
            f"{where}: {key} must hold {expected} (x, y, confidence) triples "
            f"(OpenPose-18 body / 21-point hands / 68-70-point face / 6 COCO-WholeBody foot points); got {array.size} values"
        )
    return array.reshape(-1, 3)


def _looks_normalized(people: list[list[dict]], threshold: float) -> bool:
    """True when every valid coordinate of the sequence lies in [-0.5, 1.5] (no pixel canvas is that small)."""
    coords = []
    for persons in people:
        for raw in persons:
            for part in (raw["body"], raw["left"], raw["right"], raw["face"]):
                if part is not None:
                    cleaned = clean_points(part, threshold)
                    coords.append(cleaned[cleaned[:, 2] > 0, :2])
    coords = np.concatenate(coords) if coords else np.zeros((0, 2))
    return coords.size > 0 and bool(np.all((coords >= -0.5) & (coords <= 1.5)))


def _canvas_of(frame: dict, index: int, height, width, normalized: bool) -> tuple[int, int]:
    canvas_h, canvas_w = frame.get("canvas_height"), frame.get("canvas_width")
    if canvas_h and canvas_w:
        return int(canvas_h), int(canvas_w)
    if height and width:
        if normalized:
            return int(height), int(width)
        raise AA2Error(
            f"pose keypoints frame {index}: pixel coordinates need 'canvas_height' and 'canvas_width' "
            "to know their canvas; none given"
        )
    raise AA2Error(
        f"pose keypoints frame {index}: no 'canvas_height'/'canvas_width'; pass height and width"
    )


def _choose_person(persons: list[dict], person, threshold: float) -> Optional[dict]:
    if not persons:
        return None
    if person == "best":
        scores = [0.0 if p["body"] is None else clean_points(p["body"], threshold)[:, 2].sum() for p in persons]
        return persons[int(np.argmax(scores))]
    if isinstance(person, (int, np.integer)) and not isinstance(person, bool):
        return persons[person] if 0 <= person < len(persons) else None
    raise AA2Error(f"person must be 'best' or a person index; got {person!r}")


def _to_pose(raw: dict, threshold: float, height: int, width: int, scale_x: float, scale_y: float) -> Pose:
    def scaled(points):
        points = clean_points(points, threshold)
        if scale_x != 1.0 or scale_y != 1.0:
            points[:, 0] *= scale_x
            points[:, 1] *= scale_y
        return points

    body = scaled(raw["body"]) if raw["body"] is not None else np.zeros((BODY_JOINTS, 3))
    hands = None
    if raw["left"] is not None or raw["right"] is not None:
        hands = np.zeros((2, HAND_JOINTS, 3))
        for side, key in ((LEFT_HAND, "left"), (RIGHT_HAND, "right")):
            if raw[key] is not None:
                hands[side] = scaled(raw[key])
    face = scaled(raw["face"]) if raw["face"] is not None else None
    feet = scaled(raw["feet"]) if raw.get("feet") is not None else None
    return Pose(body=body, height=height, width=width, hands=hands, face=face, feet=feet)
