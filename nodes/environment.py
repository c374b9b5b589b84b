"""Environment and object nodes (Animate Anyone 2, sections 3.2-3.3)."""

from __future__ import annotations

from .comfy_bridge import core_call

CATEGORY = "AnimateAnyone2/environment"


class AA2EnvironmentMask:
    @classmethod
    def INPUT_TYPES(cls):
        from ..aa2_core.conditions.environment import SKELETON_RADIUS

        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "driving video frames"}),
                "character_mask": ("MASK", {"tooltip": "the driving character's mask per frame (AA2 SAM2 Segment Video or any MASK)"}),
                "grid_rows": ("INT", {"default": 0, "min": 0, "max": 512, "tooltip": "blocks across the character's box height; 0 = the paper's inference setting (box height / 10, i.e. ~10-pixel blocks); small numbers give a coarser, more shape-agnostic mask"}),
                "grid_cols": ("INT", {"default": 0, "min": 0, "max": 512, "tooltip": "blocks across the box width; 0 = box width / 10"}),
                "threshold": ("FLOAT", {"default": 0.5, "min": 0.01, "max": 1.0, "step": 0.01, "tooltip": "mask values at or above this count as character"}),
            },
            "optional": {
                "character_pose": ("POSE_KEYPOINT", {"tooltip": "mask source 'driving person + character skeleton': the skeleton the character is animated with (AA2 Retarget Pose's output, one entry per frame). The regenerated region then also covers the character's own limbs and body (capsules around the retargeted skeleton), so a character wider or taller than the driving person is not clipped. Not connected: the driving person's mask alone (the paper's setting)"}),
                "object_mask": ("MASK", {"tooltip": "the object guider's object mask: object pixels that are not the driving person are kept out of the regenerated region, so they stay the driving video's (connect the same mask to AA2 Composite Environment)"}),
                "skeleton_radius": ("FLOAT", {"default": SKELETON_RADIUS, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "with character_pose: half-width of the capsules around the character's limbs, a fraction of its body size (neck to mid-hip); raise it for loose clothes or a tail"}),
            },
        }

    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("environment", "environment_mask")
    FUNCTION = "build"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Shape-agnostic mask (block-wise max in the character's box) and the environment frames with that region removed. "
                   "Mask source: the driving person; with character_pose connected, the driving person + the character's "
                   "retargeted skeleton (for a character of another build); object_mask keeps held objects from the driving video.")

    def build(self, images, character_mask, grid_rows, grid_cols, threshold, character_pose=None, object_mask=None,
              skeleton_radius=None):
        from ..aa2_core.conditions.environment import SKELETON_RADIUS
        from ..aa2_core.pipeline.prepare import environment_frames

        node = "AA2 Environment Mask"
        if character_mask.shape[0] != images.shape[0] and character_mask.shape[0] != 1:
            raise ValueError(f"{node}: character_mask has {character_mask.shape[0]} frames but images has {images.shape[0]}")
        if object_mask is not None and object_mask.shape[0] not in (1, images.shape[0]):
            raise ValueError(f"{node}: object_mask has {object_mask.shape[0]} frames but images has {images.shape[0]} "
                             "(give one mask per frame, or one mask)")
        poses = None
        if character_pose is not None:
            from ..aa2_core.conditions.keypoints import parse_pose_keypoint

            poses = core_call(node, parse_pose_keypoint, character_pose, images.shape[1], images.shape[2])
            if len(poses) < images.shape[0] and len(poses) != 1:
                raise ValueError(f"{node}: character_pose has {len(poses)} frames but images has {images.shape[0]} "
                                 "(give the retargeted pose of every driving frame)")
            poses = poses[: images.shape[0]]
        # sides rounded to multiples of 8 by the pack's one size rule
        return core_call(node, environment_frames, images, character_mask, None, grid_rows or None, grid_cols or None,
                         threshold=threshold, character_poses=poses, object_mask=object_mask,
                         skeleton_radius=SKELETON_RADIUS if skeleton_radius is None else skeleton_radius)


class AA2ObjectGuider:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "driving video frames"}),
                "object_mask": ("MASK", {"tooltip": "mask of the interacting object(s) per frame; combine several objects with a mask add node"}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("objects",)
    FUNCTION = "build"
    CATEGORY = CATEGORY
    DESCRIPTION = "Object frames (object pixels cut out of the driving video) for the object guider."

    def build(self, images, object_mask):
        from ..aa2_core.conditions.objects import object_sequence

        node = "AA2 Object Guider"
        if object_mask.shape[0] != images.shape[0]:
            raise ValueError(f"{node}: object_mask has {object_mask.shape[0]} frames but images has {images.shape[0]}")
        result = core_call(node, object_sequence, images, [object_mask])
        return (result[0] if isinstance(result, tuple) else result,)


class AA2CompositeEnvironment:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "generated frames (after VAE Decode)"}),
                "environment": ("IMAGE", {"tooltip": "the driving video frames"}),
                "environment_mask": ("MASK", {"tooltip": "the formulated mask from AA2 Environment Mask"}),
                "feather": ("INT", {"default": 2, "min": 0, "max": 64, "tooltip": "pixels of soft edge outside the mask"}),
            },
            "optional": {
                "object_mask": ("MASK", {"tooltip": "the object mask given to AA2 Environment Mask: object pixels outside the regenerated region are the driving video's exactly (no soft edge over them)"}),
            },
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "composite"
    CATEGORY = CATEGORY
    DESCRIPTION = "Keeps the driving video's exact pixels outside the mask and the generated character inside."

    def composite(self, images, environment, environment_mask, feather, object_mask=None):
        from ..aa2_core.pipeline.composite import composite_environment

        return (core_call("AA2 Composite Environment", composite_environment, images, environment, environment_mask, feather,
                          keep=object_mask),)
