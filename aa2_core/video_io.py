"""Reading and writing videos and images for the command line (ComfyUI has its own loaders)."""

from __future__ import annotations

import os

import numpy as np
import torch

from .errors import AA2Error


def _cv2():
    try:
        import cv2
    except ImportError as e:  # opencv is a declared dependency; say so rather than fail deep inside
        raise AA2Error("reading and writing video needs opencv: pip install opencv-python") from e
    return cv2


def read_image(path: str) -> torch.Tensor:
    """``[1, H, W, C]`` float 0..1 (C = 4 if the file has alpha, so the caller can refuse it)."""
    cv2 = _cv2()
    if not os.path.isfile(path):
        raise AA2Error(f"image not found: {path}")
    data = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if data is None:
        raise AA2Error(f"could not read {path} as an image")
    if data.ndim == 2:
        data = np.repeat(data[..., None], 3, axis=2)
    order = [2, 1, 0, 3][: data.shape[2]]  # BGR(A) -> RGB(A)
    scale = 65535.0 if data.dtype == np.uint16 else 255.0
    return torch.from_numpy(data[..., order].astype(np.float32) / scale)[None]


def read_video(path: str, max_frames: int | None = None) -> tuple[torch.Tensor, float]:
    """(``[T, H, W, 3]`` float 0..1, fps)."""
    cv2 = _cv2()
    if not os.path.isfile(path):
        raise AA2Error(f"video not found: {path}")
    cap = cv2.VideoCapture(path)
    fps = cap.get(cv2.CAP_PROP_FPS) or 24.0
    frames = []
    while max_frames is None or len(frames) < max_frames:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(torch.from_numpy(frame[..., ::-1].copy()))
    cap.release()
    if not frames:
        raise AA2Error(f"could not read any frame from {path}")
    return torch.stack(frames).float() / 255.0, fps


def write_video(path: str, frames: torch.Tensor, fps: float = 24.0) -> None:
    """Write ``[T, H, W, 3]`` 0..1 frames as an mp4 (mp4v)."""
    cv2 = _cv2()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    t, h, w, _ = frames.shape
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise AA2Error(f"could not open {path} for writing")
    for frame in frames:
        writer.write((frame.clamp(0, 1).numpy()[..., ::-1] * 255).round().astype(np.uint8))
    writer.release()
