"""SAM2 video segmentation from in-memory frames, one mask sequence per marked object (AA2 section 3.3).

``sam2`` needs a CUDA build (and torchvision) on a real install, so it is imported only when used;
without it the error says what to install and that masks from any other node work too.

SAM2's video predictor reads frames only from an mp4 or a JPEG folder; here they come from memory:
``init_state_from_frames`` builds the same tracking state ``init_state`` does around our tensor (no
module is patched; tests/test_sam2_video.py compares it with sam2's own state key for key). Long
videos run in chunks, so memory stays bounded by the chunk size: each chunk after the first is
seeded with the previous chunk's masks on the frame they share, and also gets the user's prompt
frame (with its points / box) as one extra conditioning frame, so the objects as the user marked
them stay in SAM2's memory for the whole video instead of drifting from seam to seam.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..errors import AA2Error

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# trunk width and block count -> model size (SAM2 and SAM2.1 share the hiera trunks)
SIZES = {(96, 12): "t", (96, 16): "s", (112, 24): "b+", (144, 48): "l"}


def _sam2():
    try:
        import sam2.build_sam
        import sam2.sam2_video_predictor
    except Exception as e:  # ImportError, or a CUDA/torchvision build problem inside sam2
        raise AA2Error(
            "SAM2 video segmentation needs the `sam2` package (with a CUDA build of torch and torchvision): "
            f"pip install sam2 ({type(e).__name__}: {e}). Or feed masks from any other MASK node."
        ) from e
    return sam2


@dataclass
class ObjectPrompt:
    """Where the user marked one object: points (x, y in pixels) with labels (1 = on, 0 = off) and/or a box."""

    frame: int = 0
    points: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    box: list | None = None  # [x0, y0, x1, y1]


def config_for(state_dict: dict, filename: str = "") -> str:
    """The sam2 package config that builds the model a checkpoint was trained as (read off its shapes)."""
    key = "image_encoder.trunk.patch_embed.proj.weight"
    if key not in state_dict:
        raise AA2Error(f"{filename or 'checkpoint'}: not a SAM2 model (no {key})")
    width = state_dict[key].shape[0]
    blocks = len({k.split(".")[3] for k in state_dict if k.startswith("image_encoder.trunk.blocks.")})
    size = SIZES.get((width, blocks))
    if size is None:
        raise AA2Error(f"{filename}: unknown SAM2 trunk (width {width}, {blocks} blocks)")
    v21 = "no_obj_embed_spatial" in state_dict or re.search(r"2[._]1", os.path.basename(filename))
    return f"configs/sam2.1/sam2.1_hiera_{size}.yaml" if v21 else f"configs/sam2/sam2_hiera_{size}.yaml"


def config_path(config_name: str) -> str:
    """A sam2 config path from a short name: ``sam2.1_hiera_l`` -> ``configs/sam2.1/sam2.1_hiera_l.yaml``."""
    name = config_name.strip().replace("\\", "/")
    if not name.endswith(".yaml"):
        name += ".yaml"
    if "/" in name:
        return name
    version = "sam2.1" if name.startswith("sam2.1") else "sam2"
    return f"configs/{version}/{name}"


def load_sam2_video_predictor(checkpoint_path: str, device="cpu", config_name: str | None = None, image_size: int | None = None):
    """Build SAM2's video predictor from its own config and load a ``.safetensors`` or ``.pt`` checkpoint."""
    from ..checkpoints.io import read_state_dict

    sam2 = _sam2()
    sd = read_state_dict(checkpoint_path, "SAM2 model")
    config = config_path(config_name) if config_name else config_for(sd, checkpoint_path)
    overrides = [f"++model.image_size={image_size}"] if image_size else []
    predictor = sam2.build_sam.build_sam2_video_predictor(config, ckpt_path=None, device=str(device), hydra_overrides_extra=overrides)
    missing, unexpected = predictor.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise AA2Error(f"SAM2 model ({checkpoint_path}) does not fit {config}: missing {missing[:4]}, unexpected {unexpected[:4]}")
    return predictor.eval()


def _normalised(frames: torch.Tensor, size: int, device) -> torch.Tensor:
    """``[T, H, W, 3]`` 0..1 -> SAM2 input ``[T, 3, size, size]`` (fp16 on the storage side to halve memory)."""
    x = F.interpolate(frames.permute(0, 3, 1, 2).float(), size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).to(device, torch.float16)


def init_state_from_frames(predictor, images: torch.Tensor, height: int, width: int) -> dict:
    """What ``predictor.init_state(video_path, offload_video_to_cpu=True, offload_state_to_cpu=True)`` returns,
    for frames already in memory: ``images`` ``[T, 3, S, S]`` normalised as SAM2 wants, ``height`` x ``width``
    the video's own size (masks come back at it). sam2 1.x state layout; frame features are computed on use.
    """
    return {
        "images": images, "num_frames": len(images), "offload_video_to_cpu": True, "offload_state_to_cpu": True,
        "video_height": height, "video_width": width, "device": predictor.device, "storage_device": torch.device("cpu"),
        "point_inputs_per_obj": {}, "mask_inputs_per_obj": {}, "cached_features": {}, "constants": {},
        "obj_id_to_idx": OrderedDict(), "obj_idx_to_id": OrderedDict(), "obj_ids": [],
        "output_dict_per_obj": {}, "temp_output_dict_per_obj": {}, "frames_tracked_per_obj": {},
    }


PROMPT_KEYS = ("frame", "points", "labels", "box")


def as_prompts(prompts) -> list[ObjectPrompt]:
    """Prompts as ``ObjectPrompt``; plain dicts ``{"frame", "points", "labels", "box"}`` are accepted too."""
    if not isinstance(prompts, (list, tuple)):
        raise AA2Error(f"prompts must be a list with one entry per object, got {type(prompts).__name__}")
    out = []
    for i, p in enumerate(prompts):
        if isinstance(p, dict):
            unknown = sorted(set(p) - set(PROMPT_KEYS))
            if unknown:
                raise AA2Error(f"object {i}: unknown prompt keys {unknown}; expected {list(PROMPT_KEYS)}")
            p = ObjectPrompt(frame=p.get("frame", 0), points=p.get("points") or [], labels=p.get("labels") or [], box=p.get("box"))
        elif not isinstance(p, ObjectPrompt):
            raise AA2Error(f"object {i}: a prompt must be a dict or ObjectPrompt, got {type(p).__name__}")
        out.append(p)
    return out


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate_prompts(prompts, num_frames: int, height: int, width: int) -> None:
    """Raise AA2Error, naming the object, for prompts SAM2 would reject or silently misread."""
    prompts = as_prompts(prompts)
    if not prompts:
        raise AA2Error("mark at least one object (points or a box)")
    for i, p in enumerate(prompts):
        if isinstance(p.frame, bool) or not isinstance(p.frame, int):
            raise AA2Error(f"object {i}: prompt frame must be an integer frame index, got {p.frame!r}")
    if len({p.frame for p in prompts}) > 1:
        raise AA2Error(f"mark every object on the same frame (got frames {sorted({p.frame for p in prompts})})")
    for i, p in enumerate(prompts):
        if not 0 <= p.frame < num_frames:
            raise AA2Error(f"object {i}: prompt frame {p.frame} is outside the video (0..{num_frames - 1})")
        if len(p.points) != len(p.labels):
            raise AA2Error(f"object {i}: {len(p.points)} points but {len(p.labels)} labels; give one label (1 on, 0 off) per point")
        if not p.points and p.box is None:
            raise AA2Error(f"object {i}: give points or a box")
        if any(label not in (0, 1) for label in p.labels):
            raise AA2Error(f"object {i}: labels must be 1 (on the object) or 0 (not on it), got {list(p.labels)}")
        if p.box is not None:
            if len(p.box) != 4 or not all(_is_number(v) for v in p.box) or p.box[0] >= p.box[2] or p.box[1] >= p.box[3]:
                raise AA2Error(f"object {i}: box must be [x0, y0, x1, y1] with x0 < x1 and y0 < y1, got {p.box}")
            x0, y0, x1, y1 = p.box
            if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
                raise AA2Error(f"object {i}: box {list(p.box)} reaches outside the {width}x{height} frame")
        for point in p.points:
            if not isinstance(point, (list, tuple)) or len(point) != 2 or not all(_is_number(v) for v in point):
                raise AA2Error(f"object {i}: points must be [[x, y], ...] in pixels, got {point!r}")
            x, y = point
            if not (0 <= x < width and 0 <= y < height):
                raise AA2Error(f"object {i}: point ({x}, {y}) lies outside the {width}x{height} frame")


def chunk_plan(num_frames: int, prompt_frame: int, chunk_size: int) -> list[tuple[int, int, bool]]:
    """``(start, end, reverse)`` chunks: forwards from the prompt frame, then backwards from it.

    Neighbouring chunks share one frame, whose mask from the earlier chunk seeds the next.
    """
    if chunk_size < 2:
        raise AA2Error(f"chunk_size must be at least 2, got {chunk_size}")
    chunks, s = [], prompt_frame
    while True:
        e = min(s + chunk_size, num_frames)
        chunks.append((s, e, False))
        if e == num_frames:
            break
        s = e - 1
    e = prompt_frame + 1
    while e > 1:
        s = max(e - chunk_size, 0)
        chunks.append((s, e, True))
        e = s + 1
    return chunks


@torch.inference_mode()
def segment_video(predictor, frames: torch.Tensor, prompts, chunk_size: int = 64, on_chunk=None,
                  keep_prompt_frame: bool = True) -> torch.Tensor:
    """Masks ``[N_objects, T, H, W]`` (0/1) of each prompted object through the whole video.

    ``prompts``: one ``ObjectPrompt`` (or dict ``{"frame", "points", "labels", "box"}``) per object,
    all on the same frame. The video is tracked forwards from the prompt frame, then backwards, in
    chunks of ``chunk_size`` frames (see ``chunk_plan``). ``keep_prompt_frame`` adds the prompt frame
    with the user's marks to every later chunk as an extra conditioning frame (one more image
    encode per chunk) so that tracking stays anchored to them. ``on_chunk(done, total)`` reports
    progress after each chunk (and may raise to cancel).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise AA2Error(f"frames must be an IMAGE tensor [T, H, W, 3], got shape {tuple(frames.shape)}")
    t, h, w, _ = frames.shape
    prompts = as_prompts(prompts)
    validate_prompts(prompts, t, h, w)
    _sam2()  # a clear message rather than a bare ImportError from inside the tracking
    masks = torch.zeros(len(prompts), t, h, w)
    prompt_frame = prompts[0].frame
    plan = chunk_plan(t, prompt_frame, chunk_size)
    for done, (s, e, reverse) in enumerate(plan, start=1):
        # the first chunk of each direction starts from the prompts, later ones from the shared frame's masks
        first = s == prompt_frame if not reverse else e == prompt_frame + 1
        seed = None if first else masks[:, e - 1 if reverse else s]
        _track_chunk(predictor, frames, masks, s, e, prompts, seed, reverse, keep_prompt_frame)
        if on_chunk is not None:
            on_chunk(done, len(plan))
    return masks


def _add_prompts(predictor, state, frame_idx, prompts):
    """The user's points / box for every object, on chunk-local frame ``frame_idx``."""
    for obj, prompt in enumerate(prompts):
        kwargs = {}
        if prompt.points:
            kwargs.update(points=torch.tensor(prompt.points, dtype=torch.float32), labels=torch.tensor(prompt.labels, dtype=torch.int32))
        if prompt.box is not None:
            kwargs["box"] = torch.tensor(prompt.box, dtype=torch.float32)
        predictor.add_new_points_or_box(state, frame_idx=frame_idx, obj_id=obj, **kwargs)


def _track_chunk(predictor, frames, masks, s, e, prompts, seed, reverse, keep_prompt_frame=True):
    """Track all objects through frames ``[s, e)``, started by the prompts or by ``seed`` masks.

    A seeded chunk with ``keep_prompt_frame`` also holds the prompt frame, placed behind the
    tracking direction (first when forwards, last when backwards) so propagation never visits it:
    it only serves as memory.
    """
    h, w = frames.shape[1:3]
    carry = seed is not None and keep_prompt_frame
    pieces = [frames[s:e]]
    if carry:
        extra = frames[prompts[0].frame : prompts[0].frame + 1]
        pieces = [pieces[0], extra] if reverse else [extra, pieces[0]]
    images = _normalised(torch.cat(pieces) if carry else pieces[0], predictor.image_size, "cpu")
    offset = 1 if carry and not reverse else 0  # chunk-local index of frame s
    state = init_state_from_frames(predictor, images, h, w)
    anchor = offset + (e - 1 - s if reverse else 0)
    if seed is None:
        _add_prompts(predictor, state, prompts[0].frame - s, prompts)
    else:
        if carry:
            _add_prompts(predictor, state, e - s if reverse else 0, prompts)
        for obj in range(len(prompts)):
            predictor.add_new_mask(state, frame_idx=anchor, obj_id=obj, mask=seed[obj] > 0.5)
    for frame_idx, obj_ids, logits in predictor.propagate_in_video(state, start_frame_idx=anchor, reverse=reverse):
        for k, obj in enumerate(obj_ids):
            masks[obj, s + frame_idx - offset] = (logits[k, 0] > 0).float().cpu()
