"""Structured depth for AA2's depth-wise pose modulation (section 3.4), and Depth Anything estimation.

The paper binarises the skeleton image into a skeleton mask and keeps the depth only inside it, so the
depth tells which limb is in front without leaking the body's silhouette. The paper extracts depth
with Sapiens; we use any Depth Anything checkpoint in Hugging Face format through ``transformers``
(e.g. a local copy of ``depth-anything/Depth-Anything-V2-Small-hf``), normalised to 0..1 with near = 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import AA2Error

# Skeleton pixels are bright limb colours on exact black; 10/255 keeps faint resize fringes out.
SKELETON_THRESHOLD = 10 / 255


def skeleton_mask(skeleton, threshold: float = SKELETON_THRESHOLD):
    """``[T, H, W, 3]`` skeleton images (uint8 0..255 or float 0..1) -> ``[T, H, W]`` bool: any channel
    above ``threshold`` (a 0..1 value)."""
    _check_rank(skeleton, "skeleton", (4,), "[T, H, W, 3]")
    if skeleton.shape[-1] != 3:
        raise AA2Error(f"skeleton: expected [T, H, W, 3] images; got shape {tuple(skeleton.shape)}")
    limit = threshold * 255 if _is_integer(skeleton) else threshold
    # three plane comparisons: several times faster than .any(-1) over the short channel axis
    return (skeleton[..., 0] > limit) | (skeleton[..., 1] > limit) | (skeleton[..., 2] > limit)


def structured_depth(depth, skeleton, threshold: float = SKELETON_THRESHOLD, resize_depth: bool = True):
    """Depth kept inside the skeleton mask, zero elsewhere: ``[T, H, W]`` in the depth's type.

    ``depth``: ``[T, H, W]``, ``[T, H, W, 1]`` or a grey ``[T, H, W, 3]`` image in 0..1 (its first
    channel is used), numpy or torch. ``skeleton``: ``[T, H, W, 3]`` with the same T. A depth of
    another height/width is resized (bilinear) to the skeleton's unless ``resize_depth=False``.
    """
    depth = _depth_planes(depth)
    mask = skeleton_mask(skeleton, threshold)
    if resize_depth and len(depth) == len(mask) and tuple(depth.shape[1:]) != tuple(mask.shape[1:]):
        depth = resize_planes(depth, tuple(mask.shape[1:]))
    if tuple(mask.shape) != tuple(depth.shape):
        raise AA2Error(
            f"structured depth: depth {tuple(depth.shape)} and skeleton {tuple(mask.shape)} must have the "
            "same frames" + ("" if resize_depth else ", height and width")
        )
    if isinstance(depth, torch.Tensor):
        mask = torch.as_tensor(mask, device=depth.device)
        return torch.where(mask, depth, torch.zeros((), dtype=depth.dtype, device=depth.device))
    return np.where(np.asarray(mask), depth, np.zeros((), depth.dtype))


@dataclass
class DepthEstimator:
    model: Any
    processor: Any
    device: torch.device
    dtype: torch.dtype

    @property
    def is_metric(self) -> bool:
        return getattr(self.model.config, "depth_estimation_type", "relative") == "metric"


def load_depth_anything(model_dir: str, device="cpu", dtype=torch.float32) -> DepthEstimator:
    """A Depth Anything folder (config.json, weights, preprocessor_config.json) -> ``DepthEstimator``."""
    if not os.path.isdir(model_dir):
        raise AA2Error(
            f"Depth Anything: folder not found: {model_dir!r}; expected a Hugging Face model folder "
            "(config.json, model.safetensors, preprocessor_config.json), e.g. depth-anything/Depth-Anything-V2-Small-hf"
        )
    for name in ("config.json", "preprocessor_config.json"):
        if not os.path.isfile(os.path.join(model_dir, name)):
            raise AA2Error(f"Depth Anything: {name} is missing in {model_dir!r}; download the whole model folder")
    try:
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation
    except ImportError as e:
        raise AA2Error(
            f"Depth Anything needs a transformers version with AutoModelForDepthEstimation (>= 4.40): "
            f"pip install -U transformers ({e})"
        ) from e
    try:
        processor = AutoImageProcessor.from_pretrained(model_dir, local_files_only=True)
        model = AutoModelForDepthEstimation.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise AA2Error(
            f"Depth Anything: could not load {model_dir!r} with this transformers "
            f"(is it a depth-estimation model, and does your transformers know its type?): {e}"
        ) from e
    device = torch.device(device)
    model = model.to(device=device, dtype=dtype).eval()
    return DepthEstimator(model=model, processor=processor, device=device, dtype=dtype)


def estimate_depth(estimator: DepthEstimator, frames, batch_size: int = 4, normalize: str = "frame"):
    """``[T, H, W, 3]`` RGB frames (float 0..1 or uint8; numpy or torch) -> ``[T, H, W]`` depth in 0..1,
    near = 1, float32, same library as ``frames``. ``batch_size`` frames go through the model at once.

    ``normalize``: ``"frame"`` (each frame to 0..1, the usual for relative depth) or ``"clip"`` (one
    min/max over the clip).
    """
    if normalize not in ("frame", "clip"):
        raise AA2Error(f"estimate_depth: normalize must be 'frame' or 'clip'; got {normalize!r}")
    if int(batch_size) < 1:
        raise AA2Error(f"estimate_depth: batch_size must be >= 1; got {batch_size}")
    _check_rank(frames, "frames", (4,), "[T, H, W, 3]")
    if frames.shape[-1] != 3:
        raise AA2Error(f"frames: expected RGB [T, H, W, 3]; got shape {tuple(frames.shape)}")
    count, height, width = (int(s) for s in frames.shape[:3])
    out = np.empty((count, height, width), np.float32)
    for start in range(0, count, int(batch_size)):
        batch = frames[start : start + int(batch_size)]
        raw = _predict(estimator, batch, height, width)
        if estimator.is_metric:  # metric models give distance; we want nearness
            raw = -raw
        out[start : start + len(raw)] = _normalised(raw) if normalize == "frame" else raw
    if normalize == "clip":
        out = _normalised(out.reshape(1, -1)).reshape(out.shape)
    return torch.from_numpy(out) if isinstance(frames, torch.Tensor) else out


def _predict(estimator: DepthEstimator, batch, height: int, width: int) -> np.ndarray:
    images = [np.asarray(_to_numpy(frame)) for frame in batch]
    integer = images[0].dtype == np.uint8
    if not integer:
        images = [np.clip(im.astype(np.float32), 0.0, 1.0) for im in images]
    inputs = estimator.processor(images=images, return_tensors="pt", do_rescale=integer)
    pixels = inputs["pixel_values"].to(device=estimator.device, dtype=estimator.dtype)
    with torch.inference_mode():
        predicted = estimator.model(pixel_values=pixels).predicted_depth
    predicted = F.interpolate(predicted[:, None].float(), size=(height, width), mode="bilinear", align_corners=False)
    return predicted[:, 0].cpu().numpy()


def _normalised(depth: np.ndarray) -> np.ndarray:
    """Each leading-axis slice to 0..1 in float32, in place where possible (a flat slice gives zeros)."""
    depth = np.ascontiguousarray(depth, dtype=np.float32)
    for plane in depth.reshape(len(depth), -1):  # views into depth
        low, high = plane.min(), plane.max()
        if high > low:
            plane -= low
            plane /= high - low
        else:
            plane[:] = 0.0
    return depth


def _depth_planes(depth):
    """Depth as ``[T, H, W]`` float (first channel of an image; uint8 scaled to 0..1)."""
    _check_rank(depth, "depth", (3, 4), "[T, H, W] or [T, H, W, C]")
    if depth.ndim == 4:
        depth = depth[..., 0]
    if _is_integer(depth):
        depth = depth.float() / 255 if isinstance(depth, torch.Tensor) else depth.astype(np.float32) / 255
    return depth


def resize_planes(depth, size: tuple[int, int]):
    """Continuous per-frame planes ``[T, h, w]`` (torch or numpy) -> ``[T, *size]``, bilinear, dtype kept: the
    one depth resize of the pack."""
    planes = depth if isinstance(depth, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(depth))
    resized = F.interpolate(planes[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    if isinstance(depth, torch.Tensor):
        return resized.to(depth.dtype)
    return resized.numpy().astype(depth.dtype, copy=False)


def _check_rank(array, name: str, ranks: tuple, expected: str) -> None:
    if not isinstance(array, (np.ndarray, torch.Tensor)):
        raise AA2Error(f"{name}: expected a numpy array or torch tensor {expected}; got {type(array).__name__}")
    if array.ndim not in ranks:
        raise AA2Error(f"{name}: expected {expected}; got shape {tuple(array.shape)}")


def _is_integer(array) -> bool:
    if isinstance(array, torch.Tensor):
        return not (array.dtype.is_floating_point or array.dtype == torch.bool)
    return np.issubdtype(array.dtype, np.integer)


def _to_numpy(array):
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else array
