"""Procedural training clips with known ground truth, in the on-disk format ``prepare`` writes.

Each clip is a small video of a textured scene that pans slowly, a jointed character that moves an
OpenPose-18 skeleton over time (limbs drawn as thick capsules in a per-clip appearance) and a ball
held in its right hand: at arm's length (``ball_hold="out"``, the default) or against the chest
(``"front"``, where a formulated mask grown from the character hides most of it, as it hides a held
object in the paper's videos). Because everything is drawn, the masks (character, object), the keypoints and
the depth map are exact, which is what a proof that the AA2 modules learn needs: the environment
input must learn to copy the scene, the object guider the ball, the pose modulation the limbs.

    from aa2_core.training.synthetic import write_synthetic_set
    write_synthetic_set("synthetic/", clips=8, frames=16, height=64, width=64, seed=0)

Same seed, same clips, bit for bit: every clip draws from its own ``numpy`` generator seeded by
``(seed, clip index)``, so clip ``i`` does not depend on how many clips are written.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..conditions.keypoints import JOINT
from .dataset_format import ClipRecord, write_clip, write_index

SCENE_DEPTH = (0.05, 0.35)  # far (top of the scene) .. near (bottom): the character is always nearer
BODY_DEPTH = 0.7  # torso; limbs and the ball sit around it
FPS = 24.0


@dataclass
class Rig:
    """A clip's character: bone lengths (in pixels), motion parameters and colours."""

    neck: np.ndarray  # (x, y) at frame 0
    drift: np.ndarray  # neck motion per frame
    torso: float
    shoulder: float
    hip: float
    upper_arm: float
    forearm: float
    thigh: float
    shin: float
    head: float  # head radius
    limb: float  # capsule radius
    ball: float  # ball radius
    speed: float  # radians per frame of the swing
    phase: float
    swing: float  # arm swing amplitude (radians)
    colours: dict  # part -> RGB uint8
    ball_colours: tuple


def make_rig(rng: np.random.Generator, height: int, width: int) -> Rig:
    """Random proportions, placement, motion and appearance that keep the character inside the frame."""
    size = height * rng.uniform(0.62, 0.72)  # character height, head to ankles
    unit = size / 7.0
    neck = np.array([width * rng.uniform(0.42, 0.58), height * 0.5 - size * 0.5 + 1.6 * unit])
    parts = ("head", "torso", "right_arm", "left_arm", "right_leg", "left_leg")
    colours = {p: _colour(rng) for p in parts}
    return Rig(neck=neck, drift=np.array([rng.uniform(-0.25, 0.25), 0.0]), torso=2.4 * unit, shoulder=0.8 * unit,
               hip=0.5 * unit, upper_arm=1.2 * unit, forearm=1.1 * unit, thigh=1.5 * unit, shin=1.4 * unit,
               head=0.75 * unit, limb=max(1.5, 0.32 * unit), ball=max(4.0, 1.1 * unit),
               speed=rng.uniform(0.25, 0.45), phase=rng.uniform(0, 2 * math.pi), swing=rng.uniform(0.5, 0.9),
               colours=colours, ball_colours=(_colour(rng), _colour(rng)))


def _colour(rng) -> np.ndarray:
    return rng.integers(30, 226, 3).astype(np.uint8)


def _at(origin: np.ndarray, length: float, angle: float) -> np.ndarray:
    """The point ``length`` away from ``origin``, ``angle`` radians from straight down (image y grows down)."""
    return origin + length * np.array([math.sin(angle), math.cos(angle)])


def skeleton(rig: Rig, t: int) -> tuple[np.ndarray, dict]:
    """OpenPose-18 joints ``(18, 2)`` in pixels at frame ``t``, and per-part depth (near = 1).

    Arms swing in opposite phase to the legs; the forward-swinging arm comes nearer the camera, so depth
    says which limb is in front where they cross, which the skeleton alone does not.
    """
    s = math.sin(rig.speed * t + rig.phase)
    neck = rig.neck + rig.drift * t
    j = np.zeros((18, 2))
    j[JOINT["neck"]] = neck
    j[JOINT["right_shoulder"]] = neck + [-rig.shoulder, 0.15 * rig.shoulder]
    j[JOINT["left_shoulder"]] = neck + [rig.shoulder, 0.15 * rig.shoulder]
    # right arm: raised forward, holding the ball; left arm: swings
    j[JOINT["right_elbow"]] = _at(j[JOINT["right_shoulder"]], rig.upper_arm, -0.5 - 0.5 * rig.swing * s)
    j[JOINT["right_wrist"]] = _at(j[JOINT["right_elbow"]], rig.forearm, -1.3 - 0.6 * rig.swing * s)
    j[JOINT["left_elbow"]] = _at(j[JOINT["left_shoulder"]], rig.upper_arm, 0.3 + rig.swing * s)
    j[JOINT["left_wrist"]] = _at(j[JOINT["left_elbow"]], rig.forearm, 0.5 + 1.4 * rig.swing * s)
    for side, sign in (("right", -1), ("left", 1)):
        hip = neck + [sign * rig.hip, rig.torso]
        swing = -sign * 0.45 * s
        j[JOINT[f"{side}_hip"]] = hip
        j[JOINT[f"{side}_knee"]] = _at(hip, rig.thigh, swing)
        j[JOINT[f"{side}_ankle"]] = _at(j[JOINT[f"{side}_knee"]], rig.shin, swing - 0.3 * abs(s))
    nose = neck + [0.0, -1.2 * rig.head]
    j[JOINT["nose"]] = nose
    for side, sign in (("right", -1), ("left", 1)):
        j[JOINT[f"{side}_eye"]] = nose + [sign * 0.35 * rig.head, -0.3 * rig.head]
        j[JOINT[f"{side}_ear"]] = nose + [sign * 0.7 * rig.head, -0.1 * rig.head]
    depth = {"torso": BODY_DEPTH, "head": BODY_DEPTH + 0.02,
             "right_arm": BODY_DEPTH + 0.12 + 0.06 * s, "left_arm": BODY_DEPTH - 0.12 * s,
             "right_leg": BODY_DEPTH - 0.05 * s, "left_leg": BODY_DEPTH + 0.05 * s}
    return j, depth


BALL_HOLDS = ("out", "front")


def ball_centre(rig: Rig, joints: np.ndarray, hold: str = "out") -> np.ndarray:
    """The ball touches the hand, the wrist point left visible: ``"out"`` just past the right wrist along the
    forearm (at arm's length, beside the body); ``"front"`` on the wrist's side towards the torso's centre (held
    against the chest, drawn in front of the body)."""
    wrist = joints[JOINT["right_wrist"]]
    if hold == "front":
        toward = (joints[JOINT["neck"]] + joints[JOINT["right_hip"]] + joints[JOINT["left_hip"]]) / 3 - wrist
    else:
        toward = wrist - joints[JOINT["right_elbow"]]
    return wrist + toward / max(np.linalg.norm(toward), 1e-6) * (rig.ball + 0.4 * rig.limb)


PART_BONES = {
    "torso": (("neck", "right_hip"), ("neck", "left_hip"), ("right_shoulder", "left_shoulder"), ("right_hip", "left_hip")),
    "right_arm": (("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist")),
    "left_arm": (("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist")),
    "right_leg": (("right_hip", "right_knee"), ("right_knee", "right_ankle")),
    "left_leg": (("left_hip", "left_knee"), ("left_knee", "left_ankle")),
}


def part_mask(part: str, rig: Rig, joints: np.ndarray, height: int, width: int, scale: int = 4) -> np.ndarray:
    """A body part's coverage ``[H, W]`` bool: capsules along its bones (the torso filled), drawn at
    ``scale`` times the resolution with sub-pixel shifts, then thresholded, so it moves smoothly."""
    canvas = np.zeros((height * scale, width * scale), np.uint8)
    pts = joints * scale
    radius = int(round(rig.limb * scale * (1.6 if part == "torso" else 1.0)))
    if part == "head":
        cv2.circle(canvas, _px(pts[JOINT["nose"]]), int(round(rig.head * scale)), 1, -1)
    else:
        for a, b in PART_BONES[part]:
            cv2.line(canvas, _px(pts[JOINT[a]]), _px(pts[JOINT[b]]), 1, thickness=2 * radius)
            for p in (pts[JOINT[a]], pts[JOINT[b]]):  # round caps: capsules
                cv2.circle(canvas, _px(p), radius, 1, -1)
        if part == "torso":
            quad = np.stack([pts[JOINT[n]] for n in ("right_shoulder", "left_shoulder", "left_hip", "right_hip")])
            cv2.fillConvexPoly(canvas, np.round(quad).astype(np.int32), 1)
    return _downsample(canvas, scale)


def ball_mask(centre: np.ndarray, radius: float, height: int, width: int, scale: int = 4) -> np.ndarray:
    canvas = np.zeros((height * scale, width * scale), np.uint8)
    cv2.circle(canvas, _px(centre * scale), int(round(radius * scale)), 1, -1)
    return _downsample(canvas, scale)


def _px(p) -> tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))


def _downsample(canvas: np.ndarray, scale: int) -> np.ndarray:
    h, w = canvas.shape[0] // scale, canvas.shape[1] // scale
    return canvas.reshape(h, scale, w, scale).mean(axis=(1, 3)) >= 0.5


def scene_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random procedural texture ``[H, W, 3]`` float 0..255: a few coloured gratings over smooth noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    base = rng.uniform(40, 215, 3)
    out = np.broadcast_to(base, (height, width, 3)).copy()
    for _ in range(3):
        freq = rng.uniform(0.08, 0.35)
        angle = rng.uniform(0, math.pi)
        wave = np.sin(freq * (xx * math.cos(angle) + yy * math.sin(angle)) + rng.uniform(0, 2 * math.pi))
        out += wave[..., None] * rng.uniform(-45, 45, 3)
    blobs = cv2.GaussianBlur(rng.normal(0, 1, (height, width, 3)), (0, 0), sigmaX=3.0)
    out += 60 * blobs / max(blobs.std(), 1e-6)
    return np.clip(out, 0, 255)


def part_texture(colour: np.ndarray, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A part's appearance: its colour with faint stripes, so the reference has detail to carry."""
    yy = np.mgrid[0:height, 0:width][0].astype(np.float64)
    stripes = np.sin(yy * rng.uniform(0.6, 1.2) + rng.uniform(0, 2 * math.pi))
    return np.clip(colour[None, None].astype(np.float64) + 25 * stripes[..., None], 0, 255)


def ball_texture(colours, height: int, width: int, centre: np.ndarray, radius: float) -> np.ndarray:
    """Two-coloured ball: halves split through its centre, so its appearance is not one flat colour."""
    xx = np.mgrid[0:height, 0:width][1].astype(np.float64)
    left = (xx < centre[0])[..., None]
    return np.where(left, colours[0], colours[1]).astype(np.float64)


def render_clip(rng: np.random.Generator, frames: int, height: int, width: int,
                ball_hold: str = "out") -> tuple[ClipRecord, np.ndarray]:
    """One clip: draw scene, then character parts and the ball back to front through a depth buffer.

    Returns the record and the scene alone ``[N, H, W, 3]`` uint8 (what the frames show where nothing is drawn).
    """
    rig = make_rig(rng, height, width)
    pan = rng.uniform(-0.6, 0.6, 2)  # scene pixels per frame
    margin = int(math.ceil(np.abs(pan).max() * frames)) + 1
    scene = scene_texture(rng, height + 2 * margin, width + 2 * margin)
    textures = {p: part_texture(c, rng, height, width) for p, c in rig.colours.items()}
    scene_depth = np.linspace(*SCENE_DEPTH, height)[:, None].repeat(width, 1)

    video = np.zeros((frames, height, width, 3), np.uint8)
    scene_video = np.zeros_like(video)
    character = np.zeros((frames, height, width), np.uint8)
    objects = np.zeros((frames, height, width), np.uint8)
    depth = np.zeros((frames, height, width), np.float32)
    body = np.zeros((frames, 18, 3), np.float32)
    for t in range(frames):
        oy, ox = (margin + np.round(pan * t)).astype(int)
        image = scene[oy : oy + height, ox : ox + width].copy()
        scene_video[t] = np.round(image).astype(np.uint8)
        zbuf = scene_depth.copy()
        label = np.zeros((height, width), np.uint8)  # 0 scene, 1 character, 2 object
        joints, part_depth = skeleton(rig, t)
        layers = [(part_depth[p], part_mask(p, rig, joints, height, width), textures[p], 1) for p in part_depth]
        centre = ball_centre(rig, joints, ball_hold)
        layers.append((part_depth["right_arm"] + 0.05, ball_mask(centre, rig.ball, height, width),
                       ball_texture(rig.ball_colours, height, width, centre, rig.ball), 2))
        for d, mask, texture, kind in sorted(layers, key=lambda layer: layer[0]):  # far to near
            draw = mask & (d > zbuf)
            image[draw], zbuf[draw], label[draw] = texture[draw], d, kind
        video[t] = np.round(image).astype(np.uint8)
        character[t], objects[t] = label == 1, label == 2
        depth[t] = zbuf
        body[t, :, :2], body[t, :, 2] = joints, 1.0
    record = ClipRecord(frames=torch.from_numpy(video), character=torch.from_numpy(character), body=torch.from_numpy(body),
                        objects=torch.from_numpy(objects), depth=torch.from_numpy(depth).half(), fps=FPS, source="synthetic")
    return record, scene_video


def synthetic_clip(seed: int, index: int, frames: int = 16, height: int = 64, width: int = 64, with_scene: bool = False,
                   ball_hold: str = "out"):
    """Clip ``index`` of the set with ``seed``: its own generator, so it does not depend on the other clips.

    Returns the ``ClipRecord``, or ``(record, scene frames)`` with ``with_scene`` (for checks). ``ball_hold``
    (``BALL_HOLDS``) moves only the ball: the same seed draws the same scene, character and motion.
    """
    if ball_hold not in BALL_HOLDS:
        raise ValueError(f"synthetic_clip: ball_hold is {ball_hold!r}; expected one of {BALL_HOLDS}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))
    record, scene = render_clip(rng, frames, height, width, ball_hold)
    record.source = f"synthetic seed={seed} clip={index}"
    return (record, scene) if with_scene else record


def write_synthetic_set(root: str, clips: int = 8, frames: int = 16, height: int = 64, width: int = 64,
                        seed: int = 0, ball_hold: str = "out") -> dict:
    """Write ``clips`` synthetic clips as a training set (``dataset.json`` + one folder per clip) under ``root``.

    Returns the index written. ``height`` and ``width`` are the training size (multiples of 8, as
    ``prepare`` writes). ``ball_hold``: see ``synthetic_clip``.
    """
    if ball_hold not in BALL_HOLDS:
        raise ValueError(f"write_synthetic_set: ball_hold is {ball_hold!r}; expected one of {BALL_HOLDS}")
    os.makedirs(root, exist_ok=True)
    entries = []
    for i in range(clips):
        record = synthetic_clip(seed, i, frames, height, width, ball_hold=ball_hold)
        name = f"synthetic_{i:04d}"
        write_clip(os.path.join(root, name), record)
        entries.append({"name": name, "frames": record.num_frames, "fps": record.fps, "source": record.source})
    write_index(root, height, width, entries, skipped=[])
    return {"height": height, "width": width, "clips": entries, "skipped": []}
