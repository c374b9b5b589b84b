"""One path from user inputs (pixels, masks, depth) to the network's typed inputs.

The nodes, the command line and the trainer all call these functions, so the three cannot disagree:
this module alone owns resizing to the output size, the size rule, the latent mask (with its soft
edge) and reference encoding. Encoders come in as callables, so ComfyUI's VAE and diffusers' VAE take
the same path:

* ``encode(images [F, H, W, 3] 0..1) -> (F, 4, H/8, W/8)`` latents scaled by the VAE scaling factor;
* ``embed(image [1, H, W, 3] 0..1) -> (1, tokens, dim)`` projected CLIP image embedding.

Nothing here writes into a tensor it was given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..conditions.registry import CONDITION_KINDS, BuildContext, ConditionKind, kind_inputs, register_condition
from ..conditions.depth import resize_planes
from ..conditions.environment import (SKELETON_RADIUS, environment_sequence, latent_aligned_size, latent_mask, regenerated_region,
                                      shape_agnostic_mask)
from ..errors import AA2Error
from . import images

Encode = Callable[[torch.Tensor], torch.Tensor]
Embed = Callable[[torch.Tensor], torch.Tensor]

# Latent pixels of soft edge grown around the environment mask; the sampler and the trainer share it.
DEFAULT_FEATHER = 1


@dataclass
class Reference:
    """The character image, encoded once: VAE latents, CLIP embedding, and the ReferenceNet's tokens."""

    latents: torch.Tensor  # (1, 4, h, w) scaled
    image_embeds: torch.Tensor  # (1, tokens, dim)
    tokens: dict[str, torch.Tensor]  # ReferenceNet output per fused layer

    @property
    def size(self) -> tuple[int, int]:
        """Output ``(height, width)`` in pixels."""
        return 8 * self.latents.shape[-2], 8 * self.latents.shape[-1]


@dataclass
class Conditions:
    """The network's inputs for ``F`` frames at latent size ``h x w``; full-video tensors may stay on the CPU.

    ``inputs`` holds each condition kind's per-frame tensors by kind name (``conditions.registry``); the
    properties below name the built-in ones."""

    reference: Reference
    skeleton: torch.Tensor  # (F, H, W, 3) 0..1 pose images, H = 8h, W = 8w
    inputs: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return self.skeleton.shape[0]

    def get(self, kind: str, name: str):
        return self.inputs.get(kind, {}).get(name)

    def put(self, kind: str, name: str, value) -> None:
        if value is None:
            self.inputs.get(kind, {}).pop(name, None)
            if kind in self.inputs and not self.inputs[kind]:
                del self.inputs[kind]
        else:
            self.inputs.setdefault(kind, {})[name] = value


def _stored(kind: str, name: str, doc: str) -> property:
    return property(lambda self: self.get(kind, name), lambda self, value: self.put(kind, name, value), doc=doc)


Conditions.depth = _stored("depth", "depth", "(F, H, W) 0..1 structured depth")
Conditions.environment_latents = _stored("environment", "latents", "(F, 4, h, w) scaled latents of the environment frames")
Conditions.environment_mask = _stored("environment", "mask", "(F, h, w) 1 where the character is generated, soft edge")
Conditions.object_latents = _stored("objects", "latents", "(F, 4, h, w) scaled latents of the object frames")
# Animate-X Implicit Pose Indicator inputs, both or neither (None: IPI off)
Conditions.driving_keypoints = _stored("ipi", "keypoints", "(F, 18, 3) x/W, y/H, confidence; missing joints 0")
Conditions.driving_features = _stored("ipi", "features", "(F, tokens, dim) CLIP image embeddings of the driving frames")


def output_size(height: int, width: int) -> tuple[int, int]:
    """The size rule for everything the network sees: each side rounded to the nearest multiple of 8."""
    return latent_aligned_size(height, width)


def encode_reference(image: torch.Tensor, size: tuple[int, int], encode: Encode, embed: Embed,
                     reference_net, device=None, dtype=torch.float32) -> Reference:
    """Reference image ``[1, H, W, 3]`` -> ``Reference``: VAE latents at ``size``, CLIP embedding, ReferenceNet once.

    The image encoder sees the image as given (its own preprocessing resizes it), as Moore's pipeline does;
    the VAE sees it resized to ``size``. Gradients flow where the caller allows them (the trainer may train
    the ReferenceNet).
    """
    image = images.check_reference(image, "reference image")[:1]
    size = _checked_size(size)
    if not images.same_aspect(image.shape[1:3], size):  # Moore squashes the reference too; say so
        images.log.warning("reference image is %dx%d but the output is %dx%d: it is squashed to the output's shape; "
                           "crop it to that aspect to keep the character's proportions", image.shape[2], image.shape[1],
                           size[1], size[0])
    latents = encode(images.resize(image, *size)).float()
    embeds = embed(image).float()
    device = device or latents.device
    tokens = reference_net(latents.to(device, dtype), embeds.to(device, dtype))
    return Reference(latents.cpu(), embeds.cpu(), tokens)


def prepare_conditions(reference: Reference, skeleton: torch.Tensor, encode: Encode, **inputs) -> Conditions:
    """Pose frames and the optional driving-video inputs -> ``Conditions`` at the reference's size.

    ``skeleton`` IMAGE ``[F, H, W, 3]`` sets the frame count. The other keywords belong to the registered
    condition kinds (``conditions.registry``); the built-in ones: ``depth`` ``[F, H, W]`` (or an IMAGE), structured
    depth; ``environment`` IMAGE and ``environment_mask`` MASK (the formulated mask, 1 where the character goes)
    together, with ``feather``; ``objects`` IMAGE, the object frames; ``keypoints`` (``Pose`` list or
    ``keypoint_tensor``) and ``driving_features`` (``driving_clip_features``), the Implicit Pose Indicator.
    """
    height, width = reference.size
    skeleton = images.resize(images.check_rgb(skeleton, "pose images"), height, width)
    cond = Conditions(reference, skeleton)
    owners = kind_inputs()
    unknown = sorted(k for k, v in inputs.items() if v is not None and k not in owners)
    if unknown:
        raise AA2Error(f"prepare_conditions: unknown input(s) {unknown}; the condition kinds take {sorted(owners)}")
    ctx = BuildContext(height, width, skeleton.shape[0], encode)
    for kind in CONDITION_KINDS.values():
        values = {k: inputs[k] for k in kind.inputs if inputs.get(k) is not None}
        if kind.given(values):
            cond.inputs[kind.name] = kind.build(ctx, **values)
    return cond


def _build_depth(ctx: BuildContext, depth) -> dict:
    return {"depth": resize_plane(_frames_checked(depth, ctx.frames, "depth"), ctx.height, ctx.width)}


def _build_environment(ctx: BuildContext, environment=None, environment_mask=None, feather: int = DEFAULT_FEATHER) -> dict:
    if (environment is None) != (environment_mask is None):
        raise AA2Error("environment and environment_mask come together: give both or neither")
    latents, mask = environment_latents(_frames_checked(environment, ctx.frames, "environment"),
                                        _frames_checked(environment_mask, ctx.frames, "environment_mask"),
                                        (ctx.height, ctx.width), ctx.encode, feather)
    return {"latents": latents, "mask": mask}


def _build_objects(ctx: BuildContext, objects) -> dict:
    frames_in = images.check_rgb(_frames_checked(objects, ctx.frames, "objects"), "objects")
    images.fit_size(frames_in.shape[1:3], (ctx.height, ctx.width), "objects", "the output (reference) size")
    return {"latents": ctx.encode(images.resize(frames_in, ctx.height, ctx.width)).float()}


def _build_ipi(ctx: BuildContext, keypoints=None, driving_features=None) -> dict:
    if (keypoints is None) != (driving_features is None):
        raise AA2Error("the Implicit Pose Indicator needs both the driving keypoints and the driving frames' CLIP "
                       "features: give both or neither")
    keypoints = keypoints if isinstance(keypoints, torch.Tensor) else keypoint_tensor(keypoints)
    return {"keypoints": _frames_checked(keypoints, ctx.frames, "driving keypoints").float(),
            "features": _frames_checked(driving_features, ctx.frames, "driving CLIP features").float()}


# The built-in kinds, in the order their inputs are built. What each feeds in the network is the model
# family's business (families/moore.py registers the Moore/AA2 network inputs).
register_condition(ConditionKind("depth", ("depth",), _build_depth, module_group="aa2",
                                 from_clip=lambda clip: {"depth": clip.depth}, help="structured depth (pose modulation)"))
register_condition(ConditionKind("environment", ("environment", "environment_mask", "feather"), _build_environment,
                                 options=("feather",), module_group="aa2",
                                 from_clip=lambda clip: {"environment": clip.environment, "environment_mask": clip.environment_mask},
                                 help="the driving video's scene outside the formulated mask"))
register_condition(ConditionKind("objects", ("objects",), _build_objects, module_group="aa2",
                                 from_clip=lambda clip: {"objects": clip.objects}, help="object guider frames"))
register_condition(ConditionKind("ipi", ("keypoints", "driving_features"), _build_ipi, module_group="ipi",
                                 help="Animate-X's Implicit Pose Indicator: driving keypoints + CLIP features"))


def keypoint_tensor(poses, missing: float = 0.0) -> torch.Tensor:
    """``Pose`` per frame -> ``(F, 18, 3)``: body joints as x / width, y / height, confidence (0 if missing).

    ``missing``: the x and y of a missing joint: 0 (the pack's IPI in the Moore family and its training data) or
    -1 (the released Animate-X keypoints: its ``DWposeDetector`` writes -1 for a joint below its threshold and
    ``process_single_pose_embedding`` passes ``bodies[:18]`` on as they are)."""
    import numpy as np

    rows = []
    for pose in poses:
        body = np.asarray(pose.body, dtype=np.float64)
        scale = np.array([1.0 / max(pose.width, 1), 1.0 / max(pose.height, 1), 1.0])
        rows.append(np.where(body[:, 2:3] > 0, body * scale, np.array([missing, missing, 0.0])))
    if not rows:
        raise AA2Error("no driving keypoints: give one pose per frame")
    return torch.from_numpy(np.stack(rows)).float()


def driving_clip_features(frames: torch.Tensor, embed: Embed) -> torch.Tensor:
    """Driving video IMAGE ``[F, H, W, 3]`` -> ``(F, tokens, dim)``, each frame through the same ``embed`` as the
    reference (so ComfyUI's CLIP_VISION and the pack's image encoder take one path)."""
    frames = images.check_rgb(frames, "driving video")
    return torch.cat([embed(frames[i : i + 1]).float().cpu() for i in range(frames.shape[0])])


def environment_frames(driving: torch.Tensor, character_mask: torch.Tensor, size: tuple[int, int] | None = None,
                       rows: int | None = None, cols: int | None = None, generator: torch.Generator | None = None,
                       threshold: float = 0.5, character_poses=None, object_mask: torch.Tensor | None = None,
                       skeleton_radius: float = SKELETON_RADIUS):
    """Driving frames + the character's mask -> (environment frames, formulated mask), the paper's section 3.2.

    The shape-agnostic mask uses ``rows x cols`` blocks, the paper's inference default when None, or random
    counts per frame with a ``generator`` (training). ``size`` defaults to the frame size under ``output_size``.

    At inference the regenerated region (``regenerated_region``) can also cover the character's own extent:
    ``character_poses`` (one ``Pose`` per frame, the retargeted skeleton the character is animated with) grow it
    by limb capsules of ``skeleton_radius`` x the body's size, so a character wider or taller than the driving
    person is not clipped; ``object_mask`` (MASK, the object guider's objects) keeps the objects' pixels out of it,
    so they stay the driving video's (give the same mask to ``composite_environment(keep=...)``). Without them the
    result is the paper's mask of the driving person alone, as before.
    """
    driving = images.check_rgb(driving, "driving video")
    size = output_size(*driving.shape[1:3]) if size is None else _checked_size(size)
    if character_mask.ndim in (2, 3):  # other shapes: environment_sequence names them
        images.fit_size(character_mask.shape[-2:], driving.shape[1:3], "character mask", "the driving video")
    images.fit_size(driving.shape[1:3], size, "driving video", "the output size")
    if character_poses is None and object_mask is None:
        formulated = shape_agnostic_mask(character_mask, rows, cols, generator=generator, threshold=threshold)
    else:
        if object_mask is not None and object_mask.ndim in (2, 3):
            images.fit_size(object_mask.shape[-2:], driving.shape[1:3], "object mask", "the driving video")
        if character_poses is not None and len(character_poses) not in (1, driving.shape[0]):
            raise AA2Error(f"character poses: {len(character_poses)} frames but the driving video has "
                           f"{driving.shape[0]}; give one retargeted pose per driving frame")
        formulated = regenerated_region(character_mask, character_poses, object_mask, rows, cols, generator=generator,
                                        threshold=threshold, skeleton_radius=skeleton_radius)
    return environment_sequence(driving, formulated, size=size, threshold=threshold)


def environment_latents(environment: torch.Tensor, environment_mask: torch.Tensor, size: tuple[int, int],
                        encode: Encode, feather: int = DEFAULT_FEATHER):
    """Environment frames and their formulated pixel mask -> (scaled latents, latent mask with a soft edge)."""
    height, width = _checked_size(size)
    environment = images.check_rgb(environment, "environment")
    images.fit_size(environment.shape[1:3], (height, width), "environment", "the output (reference) size")
    frames = images.resize(environment, height, width)
    mask = environment_mask[..., 0] if environment_mask.ndim == 4 else environment_mask  # an IMAGE given as mask
    if mask.ndim in (2, 3):
        images.fit_size(mask.shape[-2:], environment.shape[1:3], "environment_mask", "the environment")
    return encode(frames).float(), latent_mask(mask, height // 8, width // 8, feather=feather)


def resize_plane(planes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Continuous per-frame planes (depth) ``[F, h, w]`` (or an IMAGE) -> ``[F, height, width]``, bilinear."""
    if planes.ndim == 4:
        planes = planes[..., 0]
    if tuple(planes.shape[1:]) == (height, width):
        return planes.float()
    return resize_planes(planes.float(), (height, width))


def _frames_checked(tensor: torch.Tensor, frames: int, name: str) -> torch.Tensor:
    if tensor.shape[0] != frames:
        raise AA2Error(f"{name} has {tensor.shape[0]} frames but the pose sequence has {frames}; they must match")
    return tensor


def _checked_size(size) -> tuple[int, int]:
    height, width = (int(v) for v in size)
    if height < 8 or width < 8 or height % 8 or width % 8:
        raise AA2Error(f"width and height must be multiples of 8 (the VAE's factor), got {width}x{height}; "
                       f"the nearest is {'x'.join(map(str, output_size(max(height, 1), max(width, 1))[::-1]))}")
    return height, width


def validate_conditions(cond: Conditions) -> None:
    """Clear errors for inputs that do not fit together, before any model runs."""
    if cond.skeleton.ndim != 4 or cond.skeleton.shape[-1] != 3:
        raise AA2Error(f"pose images must be an IMAGE batch [frames, height, width, 3], got shape {tuple(cond.skeleton.shape)}")
    f, height, width, _ = cond.skeleton.shape
    if f == 0:
        raise AA2Error("the pose sequence has 0 frames; give at least one frame")
    _, c, h, w = cond.reference.latents.shape
    if (height, width) != (8 * h, 8 * w):
        raise AA2Error(
            f"pose images are {width}x{height} but the reference latent is for {8 * w}x{8 * h}; "
            "resize both to the same size (a multiple of 8)"
        )
    per_frame = {
        "depth": (cond.depth, (height, width)),
        "environment_latents": (cond.environment_latents, (c, h, w)),
        "environment_mask": (cond.environment_mask, (h, w)),
        "object_latents": (cond.object_latents, (c, h, w)),
    }
    for name, (tensor, shape) in per_frame.items():
        if tensor is None:
            continue
        if tensor.shape[0] != f:
            raise AA2Error(f"{name} has {tensor.shape[0]} frames but the pose sequence has {f}; they must match")
        if tuple(tensor.shape[1:]) != shape:
            raise AA2Error(f"{name} has per-frame shape {tuple(tensor.shape[1:])}, expected {shape}")
    for kind, tensors in cond.inputs.items():  # every kind's tensors, registered or plugged in, are per frame
        for name, tensor in tensors.items():
            if tensor.shape[0] != f:
                raise AA2Error(f"{kind} {name} has {tensor.shape[0]} frames but the pose sequence has {f}; they must match")
    if (cond.environment_latents is None) != (cond.environment_mask is None):
        raise AA2Error("environment latents and environment mask come together: give both or neither")
    if (cond.driving_keypoints is None) != (cond.driving_features is None):
        raise AA2Error("driving keypoints and driving CLIP features come together (the IPI): give both or neither")
    for name in ("driving_keypoints", "driving_features"):
        tensor = getattr(cond, name)
        if tensor is not None and (tensor.ndim != 3 or tensor.shape[0] != f):
            raise AA2Error(f"{name} must be (frames, n, dim) with {f} frames, got shape {tuple(tensor.shape)}")
