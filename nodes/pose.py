"""Pose nodes: load POSE_KEYPOINT JSON, retarget to the character, render skeletons, DWPose extraction."""

from __future__ import annotations

import json
import os

import torch

from .comfy_bridge import core_call
from .conditioning import max_resolution
from .folders import files_in, full_path

CATEGORY = "AnimateAnyone2/pose"


class AA2LoadPoseKeypoints:
    @classmethod
    def INPUT_TYPES(cls):
        import folder_paths

        folder = folder_paths.get_input_directory()
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith(".json")) if os.path.isdir(folder) else []
        return {"required": {"file": (files, {"tooltip": "POSE_KEYPOINT JSON in ComfyUI/input (e.g. saved from a DWPose node)"})}}

    RETURN_TYPES = ("POSE_KEYPOINT",)
    RETURN_NAMES = ("pose_keypoint",)
    FUNCTION = "load"
    CATEGORY = CATEGORY
    DESCRIPTION = "Loads OpenPose/DWPose keypoints saved as JSON (one entry per frame)."

    @classmethod
    def IS_CHANGED(cls, file):
        """The file's content hash: an edited JSON is read again, an unchanged one comes from the cache."""
        import hashlib

        import folder_paths

        path = os.path.join(folder_paths.get_input_directory(), file)
        if not os.path.isfile(path):
            return ""
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    @classmethod
    def VALIDATE_INPUTS(cls, file):
        import folder_paths

        if not os.path.isfile(os.path.join(folder_paths.get_input_directory(), file)):
            return f"AA2 Load Pose Keypoints: file '{file}' is not in ComfyUI/input"
        return True

    def load(self, file):
        import folder_paths

        from ..aa2_core.conditions.keypoints import parse_pose_keypoint

        node = "AA2 Load Pose Keypoints"
        with open(os.path.join(folder_paths.get_input_directory(), file)) as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{node}: {file} is not valid JSON ({e})") from None
        frames = data if isinstance(data, list) else [data]
        core_call(node, parse_pose_keypoint, frames)  # validates now, not deep in a later node
        return (frames,)


class AA2RetargetPose:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "driving": ("POSE_KEYPOINT", {"tooltip": "keypoints of the driving video, one entry per frame"}),
                "reference": ("POSE_KEYPOINT", {"tooltip": "keypoints of the character image (first entry used)"}),
                "anchor": (["driving", "reference"], {"default": "driving", "tooltip": "driving: the body stays where the driving person is; reference: it starts where the character stands and moves by the driving motion"}),
            }
        }

    RETURN_TYPES = ("POSE_KEYPOINT",)
    RETURN_NAMES = ("pose_keypoint",)
    FUNCTION = "retarget"
    CATEGORY = CATEGORY
    DESCRIPTION = "Gives the driving motion the character's proportions (bone lengths, overall scale), so differently built or non-human characters keep their shape."

    def retarget(self, driving, reference, anchor):
        from ..aa2_core.conditions.keypoints import parse_pose_keypoint, poses_to_pose_keypoint
        from ..aa2_core.conditions.retarget import retarget_poses

        node = "AA2 Retarget Pose"
        drv = core_call(node, parse_pose_keypoint, driving)
        ref = core_call(node, parse_pose_keypoint, reference)
        if not drv or ref[0].is_empty:
            raise ValueError(f"{node}: reference has no person in its first entry" if drv else f"{node}: driving has no frames")
        return (poses_to_pose_keypoint(core_call(node, retarget_poses, drv, ref[0], anchor=anchor)),)


class AA2RenderPose:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "pose_keypoint": ("POSE_KEYPOINT", {"tooltip": "keypoints, one entry per frame"}),
                "width": ("INT", {"default": 512, "min": 64, "max": max_resolution(), "step": 8, "tooltip": "image width (the output video's)"}),
                "height": ("INT", {"default": 768, "min": 64, "max": max_resolution(), "step": 8, "tooltip": "image height (the output video's)"}),
                "draw_hands": ("BOOLEAN", {"default": True, "tooltip": "draw hand keypoints"}),
                "draw_face": ("BOOLEAN", {"default": True, "tooltip": "draw face keypoints (moore style; the released Animate-X frames have none, so the animate_x style never draws them)"}),
            },
            "optional": {
                "style": (["moore", "animate_x"], {"default": "moore", "tooltip": "moore: the OpenPose drawing the Moore pose guider was trained on; animate_x: the released Animate-X frames (process_data.py: body with two foot points from foot_keypoints_2d, hands, no face, channels as its network reads them)"}),
            },
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "render"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Renders skeleton images: in the OpenPose colours the Moore pose guider was trained on (moore), or "
                   "as the released Animate-X draws its pose frames (animate_x; its feet come from the JSON's "
                   "foot_keypoints_2d, which AA2 DWPose Extract writes).")

    def render(self, pose_keypoint, width, height, draw_hands, draw_face, style="moore"):
        """``style="animate_x"`` reads each person's ``foot_keypoints_2d`` (six COCO-WholeBody foot points, see
        ``conditions/skeleton.py``); a person without it is drawn without feet."""
        from ..aa2_core.conditions.keypoints import parse_pose_keypoint
        from ..aa2_core.conditions.skeleton import STYLES, parse_feet, render_skeleton

        node = "AA2 Render Pose"
        if style not in STYLES:
            raise ValueError(f"{node}: style must be one of {list(STYLES)}; got {style!r}")
        poses = core_call(node, parse_pose_keypoint, pose_keypoint, height=height, width=width)
        feet = core_call(node, parse_feet, pose_keypoint, height=height, width=width) if style == "animate_x" else None
        return (torch.from_numpy(core_call(node, render_skeleton, poses, height, width, draw_hands, draw_face,
                                           as_float=True, style=style, feet=feet)),)


class AA2DWPoseExtract:
    @classmethod
    def INPUT_TYPES(cls):
        onnx = files_in("dwpose")
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "driving video frames"}),
                "detector": (onnx, {"tooltip": "yolox_l.onnx in models/dwpose"}),
                "pose_model": (onnx, {"tooltip": "dw-ll_ucoco_384.onnx in models/dwpose"}),
            }
        }

    RETURN_TYPES = ("POSE_KEYPOINT",)
    RETURN_NAMES = ("pose_keypoint",)
    FUNCTION = "extract"
    CATEGORY = CATEGORY
    DESCRIPTION = ("DWPose keypoints through onnxruntime (optional dependency): OpenPose-18 body, hands, face, and "
                   "the six foot points as foot_keypoints_2d (for the animate_x style of AA2 Render Pose).")

    def extract(self, images, detector, pose_model):
        """POSE_KEYPOINT in frame pixels; each person also carries ``foot_keypoints_2d``: the six COCO-WholeBody
        foot points (left big toe, small toe, heel, then the right's; below 0.3 ``[0, 0, 0]``), which OpenPose-18
        leaves out and the released Animate-X frames draw (``skeleton.dwpose_with_feet``)."""
        from ..aa2_core.conditions.dwpose import load_dwpose
        from ..aa2_core.conditions.skeleton import dwpose_with_feet

        node = "AA2 DWPose Extract"
        extractor = core_call(node, load_dwpose, detector_path=full_path(node, "detector", detector, ("dwpose",)),
                                    pose_path=full_path(node, "pose_model", pose_model, ("dwpose",)))
        return (core_call(node, dwpose_with_feet, extractor, images),)
