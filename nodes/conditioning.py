"""Condition nodes: ReferenceNet, pose, long-video stitching options."""

from __future__ import annotations

import sys

import torch

from .comfy_bridge import core_call, intermediate, load_on_device, vae_encode

FALLBACK_MAX_RESOLUTION = 16384  # ComfyUI's value, for imports outside ComfyUI (unit tests, tools)


def max_resolution() -> int:
    """ComfyUI's size limit for width/height widgets (``nodes.MAX_RESOLUTION``).

    ComfyUI's ``nodes`` module is loaded before any custom node, so it is looked up, not imported: an
    import could find this pack's own ``nodes`` folder where the repository root is on sys.path (tests,
    tools). Outside ComfyUI, ComfyUI's value is used.
    """
    return int(getattr(sys.modules.get("nodes"), "MAX_RESOLUTION", FALLBACK_MAX_RESOLUTION))


class AA2ReferenceNet:
    @classmethod
    def INPUT_TYPES(cls):
        from ..aa2_core.pipeline.options import ClipPreprocess

        return {
            "required": {
                "aa2_model": ("AA2_MODEL", {"tooltip": "from AA2 Model Loader"}),
                "vae": ("VAE", {"tooltip": "SD1.5 VAE (sd-vae-ft-mse), e.g. from Load VAE"}),
                "reference_image": ("IMAGE", {"tooltip": "the character to animate (RGB; composite any alpha first)"}),
                "width": ("INT", {"default": 512, "min": 64, "max": max_resolution(), "step": 8, "tooltip": "output width; must match the pose images"}),
                "height": ("INT", {"default": 768, "min": 64, "max": max_resolution(), "step": 8, "tooltip": "output height; must match the pose images"}),
            },
            "optional": {
                "clip_vision": ("CLIP_VISION", {"tooltip": "ViT-L/14 image encoder (sd-image-variations image_encoder) from Load CLIP Vision; if not connected, the AA2 Model Loader's image_encoder is used"}),
                "clip_preprocess": (ClipPreprocess.values(), {"default": ClipPreprocess.SQUASH.value, "tooltip": "image-encoder input for the loader's image_encoder: squash (the image squashed to 224x224) or moore (8-bit image through CLIPImageProcessor, exactly as Moore-AnimateAnyone's pipeline)"}),
            },
        }

    RETURN_TYPES = ("AA2_REFERENCE",)
    RETURN_NAMES = ("reference",)
    FUNCTION = "encode"
    CATEGORY = "AnimateAnyone2"
    DESCRIPTION = "Encodes the character image (VAE + CLIP) and runs the ReferenceNet once; the sampler reuses the result at every step."

    def encode(self, aa2_model, vae, reference_image, width, height, clip_vision=None, clip_preprocess="squash"):
        from ..aa2_core.pipeline.prepare import encode_reference

        from .animate_x_family import is_animate_x  # here: that module imports this one

        node = "AA2 ReferenceNet"
        if is_animate_x(aa2_model):  # checked first: that model has no ReferenceNet to look up
            raise ValueError(f"{node}: aa2_model comes from AA2 Animate-X Loader, which has no ReferenceNet; use "
                             "AA2 Animate-X Reference for its reference image")
        embed, encoder = image_embedder(node, aa2_model, clip_vision, clip_preprocess)
        patcher = aa2_model["patchers"]["reference"]
        device = load_on_device(patcher, *encoder)
        with torch.no_grad():
            reference = core_call(node, encode_reference, reference_image, (height, width), lambda x: vae_encode(vae, x),
                                  embed, patcher.model, device, aa2_model["dtype"])
        reference.tokens = {k: intermediate(v) for k, v in reference.tokens.items()}
        return (reference,)


def image_embedder(node, aa2_model, clip_vision, clip_preprocess):
    """(``image [1, H, W, 3] -> (1, 1, dim)``, patchers to load): a connected CLIP_VISION (ComfyUI's own
    preprocessing, squashed to a square as Moore does) or the loader's image encoder with the chosen one."""
    if clip_vision is not None:
        return (lambda image: clip_vision.encode_image(image, crop=False).image_embeds[:, None].float().cpu()), ()
    patcher = aa2_model["patchers"].get("image_encoder")
    if patcher is None:
        raise ValueError(f"{node}: connect a CLIP_VISION (Load CLIP Vision) or choose an image_encoder in AA2 Model Loader")
    return (lambda image: patcher.model.embed(image, clip_preprocess)), (patcher,)


class AA2PoseCondition:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "pose_images": ("IMAGE", {"tooltip": "skeleton frames in the OpenPose colour convention (e.g. from AA2 Render Pose or a DWPose node)"}),
            },
            "optional": {
                "depth": ("IMAGE", {"tooltip": "depth frames (any depth node); kept only inside the skeleton as structured depth (AA2 pose modulation)"}),
            },
        }

    RETURN_TYPES = ("AA2_POSE",)
    RETURN_NAMES = ("pose",)
    FUNCTION = "build"
    CATEGORY = "AnimateAnyone2"
    DESCRIPTION = "Pose modulation input: skeleton frames plus optional structured depth."

    def build(self, pose_images, depth=None):
        from ..aa2_core.conditions.depth import structured_depth

        if pose_images.shape[0] == 0:
            raise ValueError("AA2 Pose Condition: pose_images has 0 frames")
        structured = None
        if depth is not None:
            if depth.shape[0] != pose_images.shape[0]:
                raise ValueError(f"AA2 Pose Condition: depth has {depth.shape[0]} frames but pose_images has {pose_images.shape[0]}")
            structured = core_call("AA2 Pose Condition", structured_depth, depth, pose_images)
        return ({"skeleton": pose_images, "depth": structured},)


class AA2StitchingOptions:
    @classmethod
    def INPUT_TYPES(cls):
        from ..aa2_core.pipeline.options import ContextSchedule, Fusion, StitchMode

        return {
            "required": {
                "mode": (StitchMode.values(), {"default": StitchMode.MOTION_FRAMES.value, "tooltip": "motion_frames: clips in turn, each continuing from the previous clip's last frames (AA2 paper); context_windows: overlapping windows fused at every step"}),
                "clip_length": ("INT", {"default": 24, "min": 2, "max": 32, "tooltip": "frames per clip/window (the motion module saw at most 32; AnimateDiff v1 holds 24)"}),
                "motion_frames": ("INT", {"default": 4, "min": 0, "max": 16, "tooltip": "frames of the previous clip carried into the next (motion_frames mode)"}),
                "context_overlap": ("INT", {"default": 4, "min": 0, "max": 16, "tooltip": "frames shared by neighbouring windows (context_windows mode)"}),
                "fusion": (Fusion.values(), {"default": Fusion.PYRAMID.value, "tooltip": "how overlapping windows are weighted (context_windows mode); flat = plain average"}),
            },
            "optional": {
                "context_schedule": (ContextSchedule.values(), {"default": ContextSchedule.OPEN.value, "tooltip": "context_windows mode: open = windows end at the last frame; closed_loop = Moore-AnimateAnyone's schedule, windows wrap past the end to the start (with flat fusion: Moore's pictures)"}),
            },
        }

    RETURN_TYPES = ("AA2_STITCH",)
    RETURN_NAMES = ("stitching",)
    FUNCTION = "build"
    CATEGORY = "AnimateAnyone2"
    DESCRIPTION = "Long-video options for the AA2 Sampler."

    def build(self, mode, clip_length, motion_frames, context_overlap, fusion, context_schedule="open"):
        from ..aa2_core.pipeline.options import Stitching

        return (core_call("AA2 Stitching Options", Stitching, mode, clip_length, motion_frames, context_overlap, fusion, context_schedule),)


class AA2ColorMatchClips:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "decoded frames of a long video made with motion-frame clips"}),
                "stitching": ("AA2_STITCH", {"tooltip": "the same stitching options the sampler used (they tell where clips start)"}),
                "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip": "1 = match each clip's colours fully to the frames it continues from"}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "match"
    CATEGORY = "AnimateAnyone2"
    DESCRIPTION = "Removes colour drift between clips of a long video (motion_frames mode; context windows pass through)."

    def match(self, images, stitching, strength):
        from ..aa2_core.pipeline.composite import match_clip_colors
        from ..aa2_core.pipeline.options import StitchMode
        from ..aa2_core.pipeline.windows import clip_plan

        if stitching.mode != StitchMode.MOTION_FRAMES:
            return (images,)
        plan = core_call("AA2 Color Match Clips", clip_plan, images.shape[0], stitching.clip_length, stitching.motion_frames)
        return (match_clip_colors(images, plan, strength),)
