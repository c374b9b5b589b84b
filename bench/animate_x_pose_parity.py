#!/usr/bin/env python3
"""Animate-X pose frames: the RELEASED drawing (github antgroup/animate-x) against ours, pixel for pixel.

This file contains no Animate-X code. It imports the released, unmodified ``process_data.py`` and
``dwpose/util.py`` from a source copy (``--source``) and runs, for seeded random whole-body poses:

* ``DWposeDetector.__call__``'s post-processing (the 0.3 thresholds, missing points set to -1, the two foot
  points as the mean of each foot's big and small toe, present only when both are): the detector object is made
  without its ONNX models and its ``pose_estimation`` returns the seeded ``(candidate, subset)`` (134 points,
  OpenPose order after the neck, in pixels) instead of running YOLOX + DWPose;
* ``draw_pose(pose, H, W)``: the canvas without the face (``draw_body_and_foot`` + ``draw_handpose``) is the
  saved pose frame;
* ``process_single_pose_embedding`` of ``animatex/inference_animate_x_entrance.py`` (the IPI's ``(2, 18)``
  keypoint rows): the function's own source, taken from the file with ``ast`` and run alone (the entrance module
  imports CUDA-only packages at import time).

Stand-ins for imports this machine lacks (none changes the released maths):

* ``matplotlib`` (``dwpose/util.py`` calls ``matplotlib.colors.hsv_to_rgb([h, 1, 1]) * 255`` for the hand edge
  colours): a module whose ``colors.hsv_to_rgb`` is the standard library's ``colorsys.hsv_to_rgb`` as a float64
  numpy array; for one colour it is matplotlib's arithmetic (``i = int(6h)``, ``f = 6h - i``, ``p, q, t``, the same
  six cases), and ``tests/test_pose_conditions.py`` already holds the resulting 20 colours;
* ``oss2`` (imported, unused) and ``dwpose.wholebody`` (it loads onnxruntime sessions from ``checkpoints/``):
  empty modules / a ``Wholebody`` class that is never constructed.

Ours: the released normalised coordinates written as a ``POSE_KEYPOINT`` JSON (body, ``foot_keypoints_2d``,
hands; face left out), read by ``parse_pose_keypoint`` + ``parse_feet`` and drawn by
``skeleton.animate_x_canvas``; and ``keypoint_tensor(..., missing=-1)`` for the IPI rows.

Fixtures (``--fixtures``, default tests/fixtures/animate_x_pose): ``cases.json`` (each case's size, the released
normalised ``candidate`` (134, 2) and ``subset`` (134,) as ``DWposeDetector`` left them, the released IPI rows,
the seed, stand-ins, versions) and ``canvas_NN.png`` (the released canvas, lossless; ``cv2.imencode`` and
``cv2.imread`` keep the array's channel order).

    python bench/animate_x_pose_parity.py --source /tmp/animatex_src
"""
from __future__ import annotations

import argparse
import ast
import colorsys
import json
import os
import sys
import types

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SEED = 20261205
# (height, width) of each case and what it exercises
CASES = [
    ((128, 96), "all visible"),
    ((128, 96), "random missing joints"),
    ((96, 128), "left foot: small toe missing; right foot: both toes"),
    ((77, 131), "no feet at all"),
    ((160, 120), "no hands (all hand points below 0.3)"),
    ((64, 48), "random missing joints, small canvas"),
    ((131, 77), "right foot: big toe missing; points off the canvas"),
    ((144, 144), "random missing joints, random feet"),
    ((120, 90), "ankles missing, feet present"),
    ((100, 160), "only hands and feet"),
]


def install_stand_ins() -> None:
    colors = types.ModuleType("matplotlib.colors")
    colors.hsv_to_rgb = lambda hsv: np.array(colorsys.hsv_to_rgb(*(float(v) for v in hsv)), dtype=np.float64)
    matplotlib = types.ModuleType("matplotlib")
    matplotlib.colors = colors
    sys.modules.setdefault("matplotlib", matplotlib)
    sys.modules.setdefault("matplotlib.colors", colors)
    sys.modules.setdefault("oss2", types.ModuleType("oss2"))
    wholebody = types.ModuleType("dwpose.wholebody")

    class Wholebody:  # never constructed: the detector gets its keypoints from the bench
        def __init__(self):
            raise RuntimeError("stand-in: no ONNX models in the parity bench")

    wholebody.Wholebody = Wholebody
    sys.modules["dwpose.wholebody"] = wholebody


def released_function(path: str, name: str):
    """One top-level function of a released file, compiled from its own source (numpy as ``np`` in scope)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    scope = {"np": np}
    exec(compile(ast.Module(body=[node], type_ignores=[]), path, "exec"), scope)
    return scope[name]


def random_case(rng: np.random.Generator, index: int, height: int, width: int):
    """(candidate (1, 134, 2) pixels, subset (1, 134) scores) for one case."""
    xy = np.stack([rng.uniform(0.08, 0.92, 134) * width, rng.uniform(0.08, 0.92, 134) * height], -1)
    score = rng.uniform(0.35, 1.0, 134)

    def low(idx):
        idx = np.atleast_1d(np.asarray(idx))
        score[idx] = rng.uniform(0.0, 0.29, idx.size)

    if index in (1, 5, 7):
        low(rng.choice(18, size=6, replace=False))
        low(92 + rng.choice(42, size=12, replace=False))
    if index == 2:
        low(19)
    if index == 3:
        low(range(18, 24))
    if index == 4:
        low(range(92, 134))
    if index == 6:
        low(21)
        xy[rng.choice(134, size=20, replace=False)] *= 1.12  # some points off the right / bottom edge
        xy[rng.choice(134, size=6, replace=False), 0] *= -0.05  # and a few left of it
    if index == 7:
        low(rng.choice(np.arange(18, 24), size=2, replace=False))
    if index == 8:
        low([10, 13])
    if index == 9:
        low(range(18))
    return xy[None], score[None]


def our_json(candidate: np.ndarray, subset: np.ndarray, height: int, width: int) -> list[dict]:
    """The released normalised points (x, y, score) as a POSE_KEYPOINT frame (face left out)."""
    rows = np.concatenate([candidate, subset[:, None]], -1)
    flat = lambda a: [float(v) for v in a.reshape(-1)]  # noqa: E731
    person = {"pose_keypoints_2d": flat(rows[:18]), "foot_keypoints_2d": flat(rows[18:24]),
              "hand_left_keypoints_2d": flat(rows[92:113]), "hand_right_keypoints_2d": flat(rows[113:134])}
    return [{"people": [person], "canvas_height": height, "canvas_width": width}]


def ours(frame_json, height, width):
    from aa2_core.conditions.keypoints import parse_pose_keypoint
    from aa2_core.conditions.skeleton import animate_x_canvas, parse_feet
    from aa2_core.pipeline.prepare import keypoint_tensor

    pose = parse_pose_keypoint(frame_json)[0]
    feet = parse_feet(frame_json)[0]
    rows = keypoint_tensor([pose], missing=-1.0)[0, :, :2].T.numpy()
    return animate_x_canvas(pose, height, width, feet=feet), rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="/tmp/animatex_src", help="a copy of github antgroup/animate-x")
    ap.add_argument("--fixtures", default=os.path.join(ROOT, "tests", "fixtures", "animate_x_pose"))
    args = ap.parse_args(argv)

    install_stand_ins()
    sys.path.insert(0, args.source)
    import process_data  # the released file, unmodified
    from dwpose import util  # noqa: F401  (imported by process_data; named here for the report)

    embedding = released_function(os.path.join(args.source, "animatex", "inference_animate_x_entrance.py"),
                                  "process_single_pose_embedding")
    rng = np.random.default_rng(SEED)
    os.makedirs(args.fixtures, exist_ok=True)
    cases, worst = [], 0
    for index, ((height, width), what) in enumerate(CASES):
        candidate, subset = random_case(rng, index, height, width)
        detector = object.__new__(process_data.DWposeDetector)
        detector.pose_estimation = lambda image, c=candidate, s=subset: (c, s)
        pose = detector(np.zeros((height, width, 3), np.uint8))
        canvas, _ = process_data.draw_pose(pose, height, width)
        released_rows = np.asarray(embedding(pose), dtype=np.float64)
        # DWposeDetector divided the candidate by (W, H) and set missing points to -1 in place (a view of ours)
        normalised, scores = candidate[0], subset[0]

        mine, rows = ours(our_json(normalised, scores, height, width), height, width)
        differing = int((mine != canvas).any(-1).sum())
        row_error = float(np.abs(rows - released_rows).max())
        worst = max(worst, differing)
        print(f"case {index:2d} {height}x{width} ({what}): {differing} differing pixels, "
              f"{int(canvas.any(-1).sum())} drawn; IPI rows max |diff| {row_error:.2e}")
        name = f"canvas_{index:02d}.png"
        ok, png = cv2.imencode(".png", canvas, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        assert ok
        with open(os.path.join(args.fixtures, name), "wb") as f:
            f.write(png.tobytes())
        cases.append({"what": what, "height": height, "width": width, "canvas": name,
                      "candidate": normalised.tolist(), "subset": scores.tolist(),
                      "ipi_rows": released_rows.tolist()})
    meta = {"seed": SEED, "source": "github antgroup/animate-x: process_data.py (DWposeDetector.__call__ after the "
            "pose model, draw_pose), dwpose/util.py, animatex/inference_animate_x_entrance.py "
            "(process_single_pose_embedding)", "stand_ins": ["matplotlib.colors.hsv_to_rgb = colorsys.hsv_to_rgb",
            "oss2: empty module", "dwpose.wholebody.Wholebody: never constructed"],
            "numpy": np.__version__, "cv2": cv2.__version__}
    with open(os.path.join(args.fixtures, "cases.json"), "w") as f:
        json.dump({"meta": meta, "cases": cases}, f)
    size = sum(os.path.getsize(os.path.join(args.fixtures, n)) for n in os.listdir(args.fixtures))
    print(f"wrote {len(cases)} cases to {args.fixtures} ({size / 1024:.0f} KiB); worst case {worst} differing pixels")
    return 0 if worst == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
