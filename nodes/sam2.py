"""SAM2 nodes: load a SAM2 / SAM2.1 model, segment the character and objects through a video."""

from __future__ import annotations

import json

import torch

from .comfy_bridge import Held, core_call
from .folders import files_in, full_path

CATEGORY = "AnimateAnyone2/sam2"
EXAMPLE_PROMPTS = '[{"frame": 0, "points": [[256, 300]], "labels": [1]},\n {"frame": 0, "box": [300, 420, 420, 560]}]'


class AA2SAM2Loader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": (files_in("sam2"), {"tooltip": "SAM2 / SAM2.1 hiera checkpoint in models/sam2 (.safetensors or .pt); size detected from its shapes"})}}

    RETURN_TYPES = ("AA2_SAM2",)
    RETURN_NAMES = ("sam2_model",)
    FUNCTION = "load"
    CATEGORY = CATEGORY
    DESCRIPTION = "Loads SAM2 for video segmentation (needs the sam2 package with a CUDA build)."

    def load(self, model):
        import comfy.model_management as mm
        import comfy.model_patcher

        from ..aa2_core.conditions.sam2_video import load_sam2_video_predictor

        node = "AA2 SAM2 Loader"
        predictor = core_call(node, load_sam2_video_predictor, full_path(node, "model", model, ("sam2",)), device="cpu")
        return (comfy.model_patcher.ModelPatcher(Held(predictor), load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device()),)


class AA2SAM2SegmentVideo:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "sam2_model": ("AA2_SAM2", {"tooltip": "from AA2 SAM2 Loader"}),
                "images": ("IMAGE", {"tooltip": "driving video frames"}),
                "prompts": ("STRING", {"multiline": True, "default": EXAMPLE_PROMPTS, "tooltip": "JSON list, one entry per object, all on the same frame: the character first, then each interacting object; points [[x, y], ...] in pixels with labels (1 on, 0 off) and/or a box [x0, y0, x1, y1]"}),
                "chunk_size": ("INT", {"default": 64, "min": 2, "max": 1024, "tooltip": "frames tracked at once; smaller uses less memory on long videos"}),
            }
        }

    RETURN_TYPES = ("MASK", "MASK", "MASK")
    RETURN_NAMES = ("character_mask", "object_mask", "masks")
    OUTPUT_IS_LIST = (False, False, True)
    FUNCTION = "segment"
    CATEGORY = CATEGORY
    DESCRIPTION = "Tracks each marked object through the video: the character's mask, the union of the objects, and one MASK batch per object."

    def segment(self, sam2_model, images, prompts, chunk_size):
        import comfy.model_management as mm
        import comfy.utils

        from ..aa2_core.conditions.sam2_video import ObjectPrompt, segment_video

        node = "AA2 SAM2 Segment Video"
        try:
            entries = json.loads(prompts)
            marks = [ObjectPrompt(frame=e.get("frame", 0), points=e.get("points", []), labels=e.get("labels", []), box=e.get("box")) for e in entries]
        except (ValueError, AttributeError, TypeError) as e:
            raise ValueError(f"{node}: prompts must be a JSON list of objects like {EXAMPLE_PROMPTS} ({e})") from None
        mm.load_models_gpu([sam2_model], force_full_load=True)
        bar = comfy.utils.ProgressBar(1)

        def on_chunk(done, total):
            mm.throw_exception_if_processing_interrupted()
            bar.update_absolute(done, total)

        masks = core_call(node, segment_video, sam2_model.model.inner, images, marks, chunk_size, on_chunk)
        objects = masks[1:].amax(dim=0) if masks.shape[0] > 1 else torch.zeros_like(masks[0])
        return (masks[0], objects, list(masks))
