"""The released Animate-X inputs: its pose frames (``process_data.py``), its IPI keypoint rows, and the CLI's IPI.

The canvases and rows in ``fixtures/animate_x_pose`` were made by the released code (``bench/animate_x_pose_parity.py``
runs its ``DWposeDetector`` post-processing, ``draw_pose`` and ``process_single_pose_embedding``); ours must equal
them pixel for pixel.
"""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
import torch

from aa2_core.conditions import dwpose
from aa2_core.conditions.keypoints import parse_pose_keypoint
from aa2_core.conditions.skeleton import (BODY_FOOT_COLORS, animate_x_canvas, dwpose_with_feet, foot_points, parse_feet,
                                          render_pose, render_skeleton)
from aa2_core.errors import AA2Error
from aa2_core.pipeline.prepare import keypoint_tensor

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "animate_x_pose")
with open(os.path.join(FIXTURES, "cases.json")) as _f:
    CASES = json.load(_f)["cases"]


def released_canvas(case) -> np.ndarray:
    return cv2.imread(os.path.join(FIXTURES, case["canvas"]), cv2.IMREAD_UNCHANGED)


def case_json(case) -> list[dict]:
    """The released normalised points and scores as a POSE_KEYPOINT frame (body, foot_keypoints_2d, hands)."""
    rows = np.concatenate([np.asarray(case["candidate"]), np.asarray(case["subset"])[:, None]], -1)
    flat = lambda a: [float(v) for v in a.reshape(-1)]  # noqa: E731
    person = {"pose_keypoints_2d": flat(rows[:18]), "foot_keypoints_2d": flat(rows[18:24]),
              "hand_left_keypoints_2d": flat(rows[92:113]), "hand_right_keypoints_2d": flat(rows[113:134])}
    return [{"people": [person], "canvas_height": case["height"], "canvas_width": case["width"]}]


def ours(case):
    frame = case_json(case)
    return parse_pose_keypoint(frame)[0], parse_feet(frame)[0]


def test_fixture_is_small_and_covers_the_cases():
    size = sum(os.path.getsize(os.path.join(FIXTURES, n)) for n in os.listdir(FIXTURES))
    assert size < 300_000
    assert len({(c["height"], c["width"]) for c in CASES}) >= 5
    # the left foot's colour is its own (the right foot's, (255, 255, 0), is also the right wrist's)
    left_foot = np.array(BODY_FOOT_COLORS[18], np.uint8)
    shows = lambda canvas: bool((canvas == left_foot).all(-1).any())  # noqa: E731  (its full-colour dot)
    by_name = {c["what"]: released_canvas(c) for c in CASES}
    assert shows(by_name["all visible"]) and shows(by_name["ankles missing, feet present"])
    assert not shows(by_name["left foot: small toe missing; right foot: both toes"])
    assert not shows(by_name["no feet at all"])


@pytest.mark.parametrize("index", range(len(CASES)))
def test_released_pose_frames_pixel_for_pixel(index):
    """The released canvas (body + 2 feet, hands, no face) equals ours from the same keypoints as POSE_KEYPOINT."""
    case = CASES[index]
    pose, feet = ours(case)
    mine = animate_x_canvas(pose, case["height"], case["width"], feet=feet)
    released = released_canvas(case)
    assert mine.shape == released.shape and mine.dtype == released.dtype
    assert np.array_equal(mine, released), f"{int((mine != released).any(-1).sum())} pixels differ ({case['what']})"


def test_render_pose_gives_the_picture_the_released_entrance_reads():
    """cv2.imwrite saves the canvas as BGR and the entrance opens it with PIL (RGB): the channels reversed."""
    case = CASES[0]
    pose, feet = ours(case)
    h, w = case["height"], case["width"]
    picture = render_pose(pose, h, w, style="animate_x", feet=feet)
    assert np.array_equal(picture, released_canvas(case)[..., ::-1])
    assert np.array_equal(render_pose(pose, h, w, draw_face=True, style="animate_x", feet=feet), picture)  # no face
    batch = render_skeleton([pose, pose], h, w, as_float=True, style="animate_x", feet=[feet, None])
    assert np.array_equal(batch[0], picture / np.float32(255))
    assert np.array_equal(batch[1], render_pose(pose, h, w, style="animate_x") / np.float32(255))
    assert not np.array_equal(batch[0], batch[1])  # the feet were drawn


def test_moore_style_is_the_default_and_has_no_feet():
    case = CASES[0]
    pose, _ = ours(case)
    h, w = case["height"], case["width"]
    assert np.array_equal(render_pose(pose, h, w), render_pose(pose, h, w, style="moore"))
    assert not np.array_equal(render_pose(pose, h, w, draw_face=False), render_pose(pose, h, w, style="animate_x"))
    with pytest.raises(AA2Error, match="style must be one of"):
        render_pose(pose, h, w, style="unianimate")
    with pytest.raises(AA2Error, match="animate_x style only"):
        render_pose(pose, h, w, feet=np.zeros((2, 3)))


def test_foot_rule_mean_of_the_toes_when_both_are_seen():
    foot = np.array([[10, 20, 0.9], [14, 30, 0.8], [99, 99, 1.0],  # left: big toe, small toe, heel
                     [40, 50, 0.9], [44, 60, 0.2], [99, 99, 1.0]])  # right: small toe below 0.3
    out = foot_points(foot)
    assert np.allclose(out[0], [12, 25, 0.8]) and np.array_equal(out[1], [0, 0, 0])  # heels never read
    assert np.array_equal(foot_points(None), np.zeros((2, 3)))
    with pytest.raises(AA2Error, match="6 \\[x, y, confidence\\] rows"):
        foot_points(foot[:4])


def test_feet_follow_the_pose_canvas_and_the_chosen_person():
    person = lambda s, x: {"pose_keypoints_2d": [x, 10.0, s] * 18,  # noqa: E731
                           "foot_keypoints_2d": [x, 20.0, 1.0, x + 2, 22.0, 1.0, 0, 0, 0] + [x, 40.0, 1.0] * 3}
    frame = {"people": [person(0.5, 30.0), person(0.9, 50.0)], "canvas_height": 100, "canvas_width": 200}
    feet = parse_feet([frame, {"people": [], "canvas_height": 100, "canvas_width": 200}], height=200, width=400)
    assert np.allclose(feet[0], [[102, 42, 1.0], [100, 80, 1.0]])  # the most confident person, canvas x2
    assert np.array_equal(feet[1], np.zeros((2, 3)))
    no_feet = dict(frame, people=[{"pose_keypoints_2d": [30.0, 10.0, 0.9] * 18}])
    assert np.array_equal(parse_feet(no_feet)[0], np.zeros((2, 3)))
    bad = dict(frame, people=[dict(person(0.9, 5.0), foot_keypoints_2d=[1.0] * 6)])
    with pytest.raises(AA2Error, match="foot_keypoints_2d must hold 6"):
        parse_feet(bad)


def test_ipi_keypoint_rows_are_the_released_ones():
    """keypoint_tensor(missing=-1) -> the x row and the y row, -1 for a missing joint, as the released pkl rows."""
    for case in CASES:
        pose, _ = ours(case)
        rows = keypoint_tensor([pose], missing=-1.0)[0, :, :2].T
        assert torch.allclose(rows, torch.tensor(case["ipi_rows"], dtype=torch.float32), atol=1e-6), case["what"]
    pose, _ = ours(CASES[1])  # random missing joints: the default (Moore IPI) keeps 0 for them
    missing = ~pose.body_valid
    assert missing.any()
    assert torch.all(keypoint_tensor([pose])[0, torch.from_numpy(missing), :2] == 0)


class FakeExtractor(dwpose.DWPoseExtractor):
    """DWPose without ONNX: fixed boxes and whole-body keypoints (two people, the second more confident)."""

    def __init__(self, points, scores, boxes=1):
        self.points, self.scores, self.boxes = points, scores, boxes

    def detect(self, bgr):
        return np.zeros((self.boxes, 4))

    def keypoints(self, bgr, boxes):
        return self.points, self.scores


def test_dwpose_writes_the_foot_points_beside_its_own_poses():
    rng = np.random.default_rng(3)
    points, scores = rng.uniform(0, 60, (2, 133, 2)), rng.uniform(0.4, 1.0, (2, 133))
    scores[0] *= 0.5
    scores[1, 18] = 0.1  # COCO-WholeBody 18: the second person's left small toe
    frames = np.zeros((2, 64, 80, 3), np.uint8)
    out = dwpose_with_feet(FakeExtractor(points, scores), frames)
    assert parse_pose_keypoint(out)[0].body.tolist() == FakeExtractor(points, scores)(frames)[0].body.tolist()
    foot = np.asarray(out[0]["people"][0]["foot_keypoints_2d"]).reshape(6, 3)
    expected = np.c_[points[1, 17:23], scores[1, 17:23]]
    expected[1] = 0
    assert np.array_equal(foot, expected)
    assert dwpose_with_feet(FakeExtractor(points, scores, boxes=0), frames)[0]["people"] == []


def test_render_pose_node_style(pack):
    node = pack.NODE_CLASS_MAPPINGS["AA2RenderPose"]()
    spec = node.INPUT_TYPES()["optional"]["style"]
    assert spec[0] == ["moore", "animate_x"] and spec[1]["default"] == "moore"
    case = CASES[2]
    frames = case_json(case)
    h, w = case["height"], case["width"]
    (image,) = node.render(frames, w, h, True, True, style="animate_x")
    assert torch.equal(image[0], torch.from_numpy(released_canvas(case)[..., ::-1] / np.float32(255)))
    (default,) = node.render(frames, w, h, True, True)
    pose = parse_pose_keypoint(frames)[0]
    assert torch.equal(default[0], torch.from_numpy(render_pose(pose, h, w) / np.float32(255)))
    with pytest.raises(ValueError, match="AA2 Render Pose: style"):
        node.render(frames, w, h, True, True, style="openpose")


# ---- the CLI: --ref-keypoints + --driving-keypoints for --family animate-x


def _keypoint_file(path, frames, seed):
    rng = np.random.default_rng(seed)
    entries = [{"people": [{"pose_keypoints_2d": [float(v) for v in np.c_[rng.uniform(5, 59, (18, 2)),
                                                                          rng.uniform(0.5, 1, 18)].ravel()]}],
                "canvas_height": 64, "canvas_width": 64} for _ in range(frames)]
    path.write_text(json.dumps(entries))
    return str(path)


def _animate(tmp_path, monkeypatch, name, *flags):
    """The frames the CLI hands to the video writer (the mp4 encoder itself is not bit-reproducible run to run)."""
    import aa2_core.video_io as video_io
    from aa2_core.cli import animate as animate_cli

    written, write = [], video_io.write_video
    monkeypatch.setattr(video_io, "write_video", lambda path, frames, *a, **k: (written.append(frames.clone()),
                                                                                 write(path, frames, *a, **k)))
    out = str(tmp_path / f"{name}.mp4")
    rc = animate_cli.main(["--family", "animate-x", "--tiny", "--frames", "3", "--steps", "1", "--device", "cpu",
                           "--models", str(tmp_path / "models"), "--out", out, *flags])
    assert rc == 0 and len(written) == 1 and os.path.getsize(out) > 0
    return written[0]


def test_cli_ipi_changes_the_video(tmp_path, monkeypatch):
    ref = _keypoint_file(tmp_path / "ref.json", 1, 0)
    driving = _keypoint_file(tmp_path / "driving.json", 3, 1)
    without = _animate(tmp_path, monkeypatch, "without")
    assert torch.equal(_animate(tmp_path, monkeypatch, "again"), without)  # the run itself is reproducible
    with_ipi = _animate(tmp_path, monkeypatch, "with", "--ref-keypoints", ref, "--driving-keypoints", driving)
    assert with_ipi.shape == without.shape
    assert (with_ipi - without).abs().max() > 1e-3


@pytest.mark.parametrize("flags, words", [
    (["--driving-keypoints", "D"], ["--driving-keypoints", "--ref-keypoints"]),
    (["--ref-keypoints", "R"], ["--ref-keypoints", "--driving-keypoints"]),
    (["--driving-keypoints", "D", "--ref-keypoints", "missing.json"], ["--ref-keypoints missing.json", "not found"]),
])
def test_cli_ipi_flag_errors(tmp_path, capsys, flags, words):
    from aa2_core.cli import animate as animate_cli

    paths = {"D": _keypoint_file(tmp_path / "d.json", 3, 1), "R": _keypoint_file(tmp_path / "r.json", 1, 0)}
    flags = [paths.get(f, f) for f in flags]
    rc = animate_cli.main(["--family", "animate-x", "--tiny", "--frames", "3", "--steps", "1", "--device", "cpu",
                           "--out", str(tmp_path / "o.mp4"), *flags])
    printed = capsys.readouterr().out
    assert rc == 1 and all(w in printed for w in words), printed
    assert not os.path.exists(tmp_path / "o.mp4")


def test_cli_ref_keypoints_need_a_person(tmp_path, capsys):
    from aa2_core.cli import animate as animate_cli

    (tmp_path / "empty.json").write_text(json.dumps([{"people": [], "canvas_height": 64, "canvas_width": 64}]))
    rc = animate_cli.main(["--family", "animate-x", "--tiny", "--frames", "3", "--device", "cpu",
                           "--out", str(tmp_path / "o.mp4"), "--ref-keypoints", str(tmp_path / "empty.json"),
                           "--driving-keypoints", _keypoint_file(tmp_path / "d.json", 3, 1)])
    assert rc == 1 and "no person in its first frame" in capsys.readouterr().out


def test_moore_cli_refuses_ref_keypoints(tmp_path, capsys):
    from aa2_core.cli import animate as animate_cli

    rc = animate_cli.main(["--tiny", "--frames", "2", "--steps", "1", "--device", "cpu", "--out", str(tmp_path / "o.mp4"),
                           "--ref-keypoints", _keypoint_file(tmp_path / "r.json", 1, 0)])
    printed = capsys.readouterr().out
    assert rc == 1 and "--ref-keypoints is read by --family animate-x only" in printed, printed
