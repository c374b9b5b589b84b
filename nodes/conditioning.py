"""Condition nodes: ReferenceNet, pose, long-video stitching options."""

from __future__ import annotations

import torch

from .comfy_bridge import core_call, intermediate, load_on_device, vae_encode


class AA2ReferenceNet:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "aa2_model": ("AA2_MODEL", {"tooltip": "from AA2 Model Loader"}),
                "vae": ("VAE", {"tooltip": "SD1.5 VAE (sd-vae-ft-mse), e.g. from Load VAE"}),
                "reference_image": ("IMAGE", {"tooltip": "the character to animate (RGB; composite any alpha first)"}),
                "width": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 8, "tooltip": "output width; must match the pose images"}),
                "height": ("INT", {"default": 768, "min": 64, "max": 4096, "step": 8, "tooltip": "output height; must match the pose images"}),
            },
            "optional": {
                "clip_vision": ("CLIP_VISION", {"tooltip": "ViT-L/14 image encoder (sd-image-variations image_encoder) from Load CLIP Vision; if not connected, the AA2 Model Loader's image_encoder is used"}),
            },
        }

    RETURN_TYPES = ("AA2_REFERENCE",)
    RETURN_NAMES = ("reference",)
    FUNCTION = "encode"
    CATEGORY = "AnimateAnyone2"
    DESCRIPTION = "Encodes the character image (VAE + CLIP) and runs the ReferenceNet once; the sampler reuses the result at every step."

    def encode(self, aa2_model, vae, reference_image, width, height, clip_vision=None):
        from ..aa2_core.pipeline import images

        image = core_call("AA2 ReferenceNet", images.check_rgb, reference_image, "reference_image")[:1]
        if width % 8 or height % 8:
            raise ValueError(f"AA2 ReferenceNet: width and height must be multiples of 8, got {width}x{height}")
        image = images.resize(image, height, width)
        latents = vae_encode(vae, image)
        embeds = image_embeds(aa2_model, clip_vision, image)
        patcher = aa2_model["patchers"]["reference"]
        device = load_on_device(patcher)
        dtype = aa2_model["dtype"]
        with torch.no_grad():
            tokens = patcher.model(latents.to(device, dtype), embeds.to(device, dtype))
        return ({"latents": latents, "image_embeds": embeds.cpu(), "tokens": {k: intermediate(v) for k, v in tokens.items()},
                 "size": (height, width)},)


def image_embeds(aa2_model, clip_vision, image):
    """Projected CLIP image embedding ``(1, 1, dim)``; the image is squashed to 224x224 as Moore does."""
    from ..aa2_core.pipeline.images import clip_pixels

    if clip_vision is not None:
        return clip_vision.encode_image(image, crop=False).image_embeds[:, None].float().cpu()
    patcher = aa2_model["patchers"].get("image_encoder")
    if patcher is None:
        raise ValueError("AA2 ReferenceNet: connect a CLIP_VISION (Load CLIP Vision) or choose an image_encoder in AA2 Model Loader")
    device = load_on_device(patcher)
    encoder = patcher.model
    with torch.no_grad():
        pixels = clip_pixels(image.to(device), encoder.image_size).to(aa2_model["dtype"])
        return encoder(pixels).float().cpu()


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
            structured = structured_depth(depth, pose_images)
        return ({"skeleton": pose_images, "depth": structured},)


class AA2StitchingOptions:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "mode": (["motion_frames", "context_windows"], {"default": "motion_frames", "tooltip": "motion_frames: clips in turn, each continuing from the previous clip's last frames (AA2 paper); context_windows: overlapping windows fused at every step"}),
                "clip_length": ("INT", {"default": 24, "min": 2, "max": 32, "tooltip": "frames per clip/window (the motion module saw at most 32)"}),
                "motion_frames": ("INT", {"default": 4, "min": 0, "max": 16, "tooltip": "frames of the previous clip carried into the next (motion_frames mode)"}),
                "context_overlap": ("INT", {"default": 4, "min": 0, "max": 16, "tooltip": "frames shared by neighbouring windows (context_windows mode)"}),
                "fusion": (["pyramid", "linear", "flat"], {"default": "pyramid", "tooltip": "how overlapping windows are weighted (context_windows mode)"}),
            }
        }

    RETURN_TYPES = ("AA2_STITCH",)
    RETURN_NAMES = ("stitching",)
    FUNCTION = "build"
    CATEGORY = "AnimateAnyone2"
    DESCRIPTION = "Long-video options for the AA2 Sampler."

    def build(self, mode, clip_length, motion_frames, context_overlap, fusion):
        if mode == "motion_frames" and motion_frames >= clip_length:
            raise ValueError(f"AA2 Stitching Options: motion_frames ({motion_frames}) must be smaller than clip_length ({clip_length})")
        if mode == "context_windows" and context_overlap >= clip_length:
            raise ValueError(f"AA2 Stitching Options: context_overlap ({context_overlap}) must be smaller than clip_length ({clip_length})")
        return ({"stitching": mode, "clip_length": clip_length, "motion_frames": motion_frames,
                 "context_overlap": context_overlap, "fusion": fusion},)


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
        from ..aa2_core.pipeline.windows import clip_plan

        if stitching["stitching"] != "motion_frames":
            return (images,)
        plan = core_call("AA2 Color Match Clips", clip_plan, images.shape[0], stitching["clip_length"], stitching["motion_frames"])
        return (match_clip_colors(images, plan, strength),)
