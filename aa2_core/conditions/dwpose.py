"""Optional built-in DWPose: YOLOX-L person boxes, then DWPose-L whole-body keypoints, via onnxruntime.

Uses the files ComfyUI users already have from comfyui_controlnet_aux: ``yolox_l.onnx`` and
``dw-ll_ucoco_384.onnx``. The pre/post-processing follows DWPose's ONNX demo (as Moore-AnimateAnyone
runs it): frames go in as BGR; the detector sees a 640x640 letterbox (top-left, padding 114) and its
boxes go through YOLOX's grid decoding and NMS (IoU 0.45, score > 0.1, kept > 0.3); each box, padded
by 1.25 and widened to the pose model's aspect ratio, is warped to the model input and normalised;
keypoints come from SimCC argmax (split ratio 2). The 133 COCO-WholeBody points become OpenPose-18
(neck = shoulders' midpoint) plus 68 face and 2x21 hand points; points scoring below 0.3 are missing.
A frame without a detected person gives an empty pose (DWPose's demo would pose the whole image).
"""

from __future__ import annotations

import os
from typing import Optional

import cv2
import numpy as np

from ..errors import AA2Error
from .keypoints import BODY_JOINTS, DEFAULT_THRESHOLD, Pose

DETECTOR_FILE = "yolox_l.onnx"
POSE_FILE = "dw-ll_ucoco_384.onnx"
DET_SIZE = (640, 640)  # (height, width)
DET_STRIDES = (8, 16, 32)
LETTERBOX_FILL = 114
NMS_IOU = 0.45
DET_SCORE_MIN = 0.1
PERSON_SCORE_MIN = 0.3
BOX_PADDING = 1.25
PIXEL_MEAN = np.array([123.675, 116.28, 103.53])
PIXEL_STD = np.array([58.395, 57.12, 57.375])
SIMCC_SPLIT = 2.0
# OpenPose-18 joint <- COCO-WholeBody index after the neck is inserted at 17.
OPENPOSE_FROM_MMPOSE = {
    1: 17, 2: 6, 3: 8, 4: 10, 6: 7, 7: 9, 8: 12, 9: 14, 10: 16, 12: 13, 13: 15, 14: 2, 15: 1, 16: 4, 17: 3,
}  # fmt: skip
FACE_SLICE = slice(24, 92)
LEFT_HAND_SLICE = slice(92, 113)
RIGHT_HAND_SLICE = slice(113, 134)


class DWPoseExtractor:
    """Runs both ONNX models on RGB frames; one ``Pose`` per frame (the most confident person)."""

    def __init__(self, detector_session, pose_session):
        self.detector = detector_session
        self.pose = pose_session
        height, width = pose_session.get_inputs()[0].shape[2:]
        self.pose_size = (int(width), int(height))  # (w, h) as DWPose writes it

    def __call__(self, frames, threshold: float = DEFAULT_THRESHOLD) -> list[Pose]:
        """``[T, H, W, 3]`` RGB (uint8, or float 0..1; numpy or torch) -> poses in frame pixels."""
        frames = _uint8_frames(frames)
        return [self.frame_pose(frame, threshold) for frame in frames]

    def frame_pose(self, rgb: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> Pose:
        height, width = rgb.shape[:2]
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        boxes = self.detect(bgr)
        if len(boxes) == 0:
            return Pose.empty(height, width)
        keypoints, scores = self.keypoints(bgr, boxes)
        people = to_openpose(keypoints, scores)
        best = int(np.argmax(people[:, :BODY_JOINTS, 2].mean(1)))
        return wholebody_to_pose(people[best], height, width, threshold)

    def detect(self, bgr: np.ndarray) -> np.ndarray:
        image, ratio = letterbox(bgr, DET_SIZE)
        output = self.detector.run(None, {self.detector.get_inputs()[0].name: image[None]})[0][0]
        return person_boxes(output, ratio, DET_SIZE)

    def keypoints(self, bgr: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        name = self.pose.get_inputs()[0].name
        all_points, all_scores = [], []
        for box in boxes:
            crop, center, scale = crop_for_pose(bgr, box, self.pose_size)
            simcc_x, simcc_y = self.pose.run(None, {name: crop[None]})[:2]
            points, scores = decode_simcc(simcc_x, simcc_y, SIMCC_SPLIT)
            all_points.append(points[0] / np.array(self.pose_size) * scale + center - scale / 2)
            all_scores.append(scores[0])
        return np.stack(all_points), np.stack(all_scores)


def load_dwpose(model_dir: Optional[str] = None, detector_path: Optional[str] = None,
                pose_path: Optional[str] = None, providers: Optional[list] = None) -> DWPoseExtractor:
    """Open the two ONNX files (from ``model_dir`` under their usual names, or explicit paths)."""
    detector_path = detector_path or os.path.join(model_dir or "", DETECTOR_FILE)
    pose_path = pose_path or os.path.join(model_dir or "", POSE_FILE)
    for path, what in ((detector_path, f"person detector ({DETECTOR_FILE})"), (pose_path, f"pose model ({POSE_FILE})")):
        if not os.path.isfile(path):
            raise AA2Error(
                f"DWPose: {what} not found at {path!r}; put the file there "
                "(the one comfyui_controlnet_aux downloads from yzd-v/DWPose)"
            )
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise AA2Error(
            "DWPose needs onnxruntime: pip install onnxruntime-gpu (CUDA) or onnxruntime (CPU); "
            "or feed POSE_KEYPOINT from comfyui_controlnet_aux's DWPose node instead"
        ) from e
    available = ort.get_available_providers()
    providers = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    return DWPoseExtractor(
        ort.InferenceSession(detector_path, providers=providers),
        ort.InferenceSession(pose_path, providers=providers),
    )


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Resize keeping aspect into the top-left of a ``size`` canvas filled with 114; CHW float32 and ratio."""
    ratio = min(size[0] / image.shape[0], size[1] / image.shape[1])
    new_h, new_w = int(image.shape[0] * ratio), int(image.shape[1] * ratio)
    canvas = np.full((size[0], size[1], 3), LETTERBOX_FILL, np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(canvas.transpose(2, 0, 1), np.float32), ratio


def yolox_grid_decode(output: np.ndarray, size: tuple[int, int], strides=DET_STRIDES) -> np.ndarray:
    """YOLOX raw ``[N, 5 + classes]`` rows (cells of each stride, row-major) -> centre/size in input pixels."""
    grids, cell_strides = [], []
    for stride in strides:
        ys, xs = np.mgrid[0 : size[0] // stride, 0 : size[1] // stride]
        grids.append(np.stack([xs.ravel(), ys.ravel()], 1))
        cell_strides.append(np.full((xs.size, 1), stride))
    grids, cell_strides = np.concatenate(grids), np.concatenate(cell_strides)
    decoded = np.array(output, dtype=np.float64)
    decoded[:, :2] = (decoded[:, :2] + grids) * cell_strides
    decoded[:, 2:4] = np.exp(decoded[:, 2:4]) * cell_strides
    return decoded


def person_boxes(output: np.ndarray, ratio: float, size: tuple[int, int]) -> np.ndarray:
    """Raw detector output -> ``[n, 4]`` xyxy person boxes in original pixels, after NMS."""
    decoded = yolox_grid_decode(output, size)
    scores = decoded[:, 4] * decoded[:, 5]  # objectness x person class
    centre, wh = decoded[:, :2], decoded[:, 2:4]
    boxes = np.concatenate([centre - wh / 2, centre + wh / 2], 1) / ratio
    candidates = scores > DET_SCORE_MIN
    boxes, scores = boxes[candidates], scores[candidates]
    keep = nms(boxes, scores, NMS_IOU)
    boxes, scores = boxes[keep], scores[keep]
    return boxes[scores > PERSON_SCORE_MIN]


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy NMS, highest score first; IoU with the +1 pixel convention of DWPose's numpy NMS."""
    x1, y1, x2, y2 = boxes.T if len(boxes) else (np.zeros(0),) * 4
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores)[::-1]
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        overlap = w * h / (areas[i] + areas[rest] - w * h)
        order = rest[overlap <= iou_threshold]
    return keep


def crop_for_pose(bgr: np.ndarray, box: np.ndarray, input_size: tuple[int, int]):
    """Box -> normalised CHW crop of ``input_size`` (w, h), its centre and (aspect-fixed) scale."""
    width, height = input_size
    x1, y1, x2, y2 = box
    center = np.array([x1 + x2, y1 + y2]) * 0.5
    scale = np.array([x2 - x1, y2 - y1]) * BOX_PADDING
    aspect = width / height
    if scale[0] > scale[1] * aspect:
        scale = np.array([scale[0], scale[0] / aspect])
    else:
        scale = np.array([scale[1] * aspect, scale[1]])
    k = width / scale[0]  # same as height / scale[1] after the aspect fix
    warp = np.array([[k, 0, width / 2 - k * center[0]], [0, k, height / 2 - k * center[1]]], np.float32)
    crop = cv2.warpAffine(bgr, warp, (int(width), int(height)), flags=cv2.INTER_LINEAR)
    crop = (crop - PIXEL_MEAN) / PIXEL_STD
    return np.ascontiguousarray(crop.transpose(2, 0, 1), np.float32), center, scale


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float = SIMCC_SPLIT):
    """SimCC ``[N, K, Wx]``, ``[N, K, Wy]`` -> keypoints ``[N, K, 2]`` in model-input pixels and scores
    ``[N, K]`` (the smaller of the two maxima; location -1 where that is <= 0)."""
    n, k, _ = simcc_x.shape
    flat_x, flat_y = simcc_x.reshape(n * k, -1), simcc_y.reshape(n * k, -1)
    locs = np.stack([flat_x.argmax(1), flat_y.argmax(1)], -1).astype(np.float32)
    scores = np.minimum(flat_x.max(1), flat_y.max(1))
    locs[scores <= 0] = -1
    return (locs / split_ratio).reshape(n, k, 2), scores.reshape(n, k)


def to_openpose(keypoints: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``[N, 133, 2]`` + ``[N, 133]`` COCO-WholeBody -> ``[N, 134, 3]``: neck inserted at 17 and the
    first 18 rows reordered to OpenPose-18 (as DWPose does)."""
    info = np.concatenate([keypoints, scores[..., None]], -1)
    neck = info[:, [5, 6]].mean(1)
    # the neck is visible only when both shoulders are (score 1/0, as DWPose)
    neck[:, 2] = ((info[:, 5, 2] > 0.3) & (info[:, 6, 2] > 0.3)).astype(float)
    info = np.insert(info, 17, neck, axis=1)
    reordered = info.copy()
    for openpose, mmpose in OPENPOSE_FROM_MMPOSE.items():
        reordered[:, openpose] = info[:, mmpose]
    return reordered


def wholebody_to_pose(person: np.ndarray, height: int, width: int, threshold: float = DEFAULT_THRESHOLD) -> Pose:
    """One ``[134, 3]`` OpenPose-ordered whole-body row -> ``Pose`` (scores below threshold missing)."""

    def part(rows):
        rows = rows.astype(np.float64).copy()
        rows[rows[:, 2] < threshold] = 0.0
        return rows

    body = part(person[:BODY_JOINTS])
    hands = np.stack([part(person[LEFT_HAND_SLICE]), part(person[RIGHT_HAND_SLICE])])
    face = part(person[FACE_SLICE])
    return Pose(body=body, height=height, width=width, hands=hands, face=face)


def _uint8_frames(frames) -> np.ndarray:
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise AA2Error(f"DWPose: frames must be RGB [T, H, W, 3]; got shape {frames.shape}")
    if frames.dtype != np.uint8:
        frames = (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)
    return frames
