"""Animate-X's pose indicators in the graph.

* Implicit (IPI): ``AA2 Implicit Pose Indicator`` adds the driving video's keypoints and per-frame CLIP
  features to an ``AA2_POSE``; the sampler turns them into motion tokens (the aa2-modules file must hold an IPI).
* Explicit (EPI): at inference it is retargeting the driving poses onto the character (``AA2 Retarget Pose``,
  then ``AA2 Render Pose``); in training it is the pose-pool realign + rescale augmentation.
"""

from __future__ import annotations

import torch

from .animate_x_family import is_animate_x
from .comfy_bridge import core_call, load_on_device
from .conditioning import image_embedder

NODE = "AA2 Implicit Pose Indicator"


class AA2ImplicitPoseIndicator:
    @classmethod
    def INPUT_TYPES(cls):
        from ..aa2_core.choices import ClipPreprocess

        return {
            "required": {
                "aa2_model": ("AA2_MODEL", {"tooltip": "from AA2 Model Loader, with an aa2-modules file that holds an IPI"}),
                "pose": ("AA2_POSE", {"tooltip": "from AA2 Pose Condition"}),
                "driving_video": ("IMAGE", {"tooltip": "the driving frames (their CLIP features are the IPI's keys and values); one per pose frame"}),
                "driving_keypoints": ("POSE_KEYPOINT", {"tooltip": "DWPose keypoints of the driving video (the IPI's queries), one entry per frame"}),
                "enabled": ("BOOLEAN", {"default": True, "tooltip": "off: the pose passes through unchanged (IPI off)"}),
            },
            "optional": {
                "clip_vision": ("CLIP_VISION", {"tooltip": "the image encoder used for the reference; if not connected, the AA2 Model Loader's image_encoder"}),
                "clip_preprocess": (ClipPreprocess.values(), {"default": ClipPreprocess.SQUASH.value, "tooltip": "as in AA2 ReferenceNet"}),
            },
        }

    RETURN_TYPES = ("AA2_POSE",)
    RETURN_NAMES = ("pose",)
    FUNCTION = "build"
    CATEGORY = "AnimateAnyone2/animate-x"
    DESCRIPTION = ("Animate-X implicit pose indicator: motion features from the driving video (CLIP) queried by its "
                   "keypoints, injected after each spatial attention. Helps non-human characters follow the motion.")

    def build(self, aa2_model, pose, driving_video, driving_keypoints, enabled=True, clip_vision=None, clip_preprocess="squash"):
        from ..aa2_core.conditions.keypoints import parse_pose_keypoint
        from ..aa2_core.pipeline.prepare import driving_clip_features, keypoint_tensor

        if is_animate_x(aa2_model):
            raise ValueError(f"{NODE}: aa2_model comes from AA2 Animate-X Loader; the released network's own IPI is "
                             "fed by AA2 Animate-X Implicit Pose")
        if not enabled:
            return (pose,)
        core_call(NODE, aa2_model["patchers"]["denoising"].model.require, "ipi")  # names the file when it lacks the IPI
        frames = pose["skeleton"].shape[0]
        keypoints = core_call(NODE, keypoint_tensor, core_call(NODE, parse_pose_keypoint, driving_keypoints))
        for name, count in (("driving_video", driving_video.shape[0]), ("driving_keypoints", keypoints.shape[0])):
            if count != frames:
                raise ValueError(f"{NODE}: {name} has {count} frames but the pose has {frames}; they must match")
        embed, encoder = image_embedder(NODE, aa2_model, clip_vision, clip_preprocess)
        if encoder:
            load_on_device(*encoder)
        with torch.no_grad():
            features = core_call(NODE, driving_clip_features, driving_video, embed)
        return ({**pose, "keypoints": keypoints, "driving_features": features},)

