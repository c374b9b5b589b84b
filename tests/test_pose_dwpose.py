"""DWPose pre/post-processing math on synthetic arrays, and the errors when files / onnxruntime are missing."""

import importlib.util

import numpy as np
import pytest

from aa2_core.conditions import dwpose
from aa2_core.errors import AA2Error


def test_simcc_decoding_takes_argmax_over_split_ratio_and_min_score():
    simcc_x = np.zeros((1, 3, 576))
    simcc_y = np.zeros((1, 3, 768))
    simcc_x[0, 0, 100], simcc_y[0, 0, 250] = 0.9, 0.7
    simcc_x[0, 1, 3], simcc_y[0, 1, 7] = 0.2, 0.8
    simcc_x[0, 2] -= 1.0  # nothing positive: location -1
    points, scores = dwpose.decode_simcc(simcc_x, simcc_y, 2.0)
    np.testing.assert_allclose(points[0, 0], [50.0, 125.0])
    np.testing.assert_allclose(points[0, 1], [1.5, 3.5])
    np.testing.assert_allclose(scores[0], [0.7, 0.2, -1.0])
    np.testing.assert_allclose(points[0, 2], [-0.5, -0.5])  # -1 / split ratio, as DWPose


def test_letterbox_keeps_aspect_top_left_with_grey_fill():
    image = np.full((320, 160, 3), 7, np.uint8)
    chw, ratio = dwpose.letterbox(image, (640, 640))
    assert ratio == 2.0 and chw.shape == (3, 640, 640) and chw.dtype == np.float32
    assert (chw[:, :640, :320] == 7).all() and (chw[:, :, 320:] == 114).all()


def raw_detector_rows(cells):
    """Zero raw YOLOX output for a 640x640 input with given (row index, values) filled in."""
    out = np.zeros((80 * 80 + 40 * 40 + 20 * 20, 85))  # objectness 0: no box
    for index, values in cells:
        out[index, : len(values)] = values
    return out


def test_yolox_grid_decode_positions_and_sizes():
    index = 80 * 80 + 3 * 40 + 5  # stride-16 cell at column 5, row 3
    decoded = dwpose.yolox_grid_decode(raw_detector_rows([(index, [0.5, 0.25, np.log(2.0), 0.0])]), (640, 640))
    np.testing.assert_allclose(decoded[index, :4], [(5 + 0.5) * 16, (3 + 0.25) * 16, 32.0, 16.0])


def test_person_boxes_nms_and_thresholds():
    # three stride-32 cells: two heavily overlapping boxes and one apart; one weak box dropped
    base = 80 * 80 + 40 * 40
    big = np.log(200 / 32)
    rows = [
        (base + 5 * 20 + 5, [0.5, 0.5, big, big, 0.9, 0.9]),  # centre (176, 176), score 0.81
        (base + 5 * 20 + 6, [-0.4, 0.5, big, big, 0.8, 0.9]),  # centre (179.2, 176): suppressed
        (base + 15 * 20 + 15, [0.5, 0.5, big, big, 0.7, 0.9]),  # apart, score 0.63
        (base + 10 * 20 + 15, [0.5, 0.5, big, big, 0.5, 0.5]),  # score 0.25: above 0.1, below 0.3
    ]
    boxes = dwpose.person_boxes(raw_detector_rows(rows), ratio=0.5, size=(640, 640))
    np.testing.assert_allclose(boxes, [[152, 152, 552, 552], [792, 792, 1192, 1192]])


def test_nms_suppresses_overlap_above_threshold():
    boxes = np.array([[0, 0, 9, 9], [1, 1, 10, 10], [50, 50, 60, 60]], float)
    keep = dwpose.nms(boxes, np.array([0.5, 0.9, 0.7]), 0.45)
    assert keep == [1, 2]


def test_crop_maps_the_box_centre_to_the_crop_centre():
    image = np.zeros((400, 300, 3), np.uint8)
    image[200:203, 120:123] = 255  # a bright dot at the box centre (121, 201)
    crop, center, scale = dwpose.crop_for_pose(image, np.array([71.0, 101.0, 171.0, 301.0]), (288, 384))
    np.testing.assert_allclose(center, [121, 201])
    np.testing.assert_allclose(scale[0] / scale[1], 288 / 384)
    np.testing.assert_allclose(scale[1], 200 * 1.25)
    bright = np.argwhere(crop[0] > 0)
    np.testing.assert_allclose(bright.mean(0), [192, 144], atol=1.0)
    np.testing.assert_allclose(crop[0, 0, 0], (0 - 123.675) / 58.395, rtol=1e-6)


def test_wholebody_to_openpose_order_neck_and_parts():
    keypoints = np.stack([np.arange(133.0), np.arange(133.0) + 1000], -1)[None]
    scores = np.full((1, 133), 0.9)
    scores[0, 6] = 0.1  # right shoulder (COCO 6) unseen: neck unseen too
    people = dwpose.to_openpose(keypoints, scores)
    assert people.shape == (1, 134, 3)
    pose = dwpose.wholebody_to_pose(people[0], 480, 640)
    coco_of = [0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3]
    for joint, coco in enumerate(coco_of):
        if coco is not None and coco != 6:
            assert pose.body[joint, 0] == coco, joint
    assert not pose.body_valid[1] and not pose.body_valid[2]
    ok = dwpose.to_openpose(keypoints, np.full((1, 133), 0.9))
    np.testing.assert_allclose(ok[0, 1], [5.5, 1005.5, 1.0])
    assert pose.face[0, 0] == 23 and pose.hands[0, 0, 0] == 91 and pose.hands[1, 0, 0] == 112


def test_load_dwpose_names_missing_files_and_onnxruntime(tmp_path):
    with pytest.raises(AA2Error, match="yolox_l.onnx"):
        dwpose.load_dwpose(str(tmp_path))
    (tmp_path / "yolox_l.onnx").write_bytes(b"x")
    with pytest.raises(AA2Error, match="dw-ll_ucoco_384.onnx"):
        dwpose.load_dwpose(str(tmp_path))
    (tmp_path / "dw-ll_ucoco_384.onnx").write_bytes(b"x")
    if importlib.util.find_spec("onnxruntime") is not None:
        pytest.skip("onnxruntime is installed here; the missing-package message cannot be checked")
    with pytest.raises(AA2Error, match="pip install onnxruntime"):
        dwpose.load_dwpose(str(tmp_path))
