"""Loader nodes: Moore-AnimateAnyone / AnimateDiff / AA2 files -> ComfyUI-managed models."""

from __future__ import annotations

from .comfy_bridge import core_call, model_patcher
from .folders import AA2_FOLDER, MOTION_FOLDERS, files_in, full_path

DTYPES = ("auto", "fp16", "bf16", "fp32")  # "auto" + choices.Precision


class AA2ModelLoader:
    """Loads the denoising UNet (+ motion module), ReferenceNet, pose guider and optional AA2 modules."""

    @classmethod
    def INPUT_TYPES(cls):
        from ..aa2_core.choices import FusionBlocks

        aa2 = files_in(AA2_FOLDER)
        motion = files_in(*MOTION_FOLDERS)
        return {
            "required": {
                "denoising_unet": (aa2, {"tooltip": "Moore-AnimateAnyone denoising_unet.pth (or .safetensors) in models/animate_anyone2"}),
                "reference_unet": (aa2, {"tooltip": "Moore-AnimateAnyone reference_unet.pth in models/animate_anyone2"}),
                "pose_guider": (aa2, {"tooltip": "Moore-AnimateAnyone pose_guider.pth in models/animate_anyone2"}),
                "motion_module": (motion, {"tooltip": "Moore motion_module.pth, or an AnimateDiff v1/v2/v3 motion module (models/animatediff_models)"}),
                "fusion_blocks": (FusionBlocks.values(), {"default": FusionBlocks.FULL.value, "tooltip": "ReferenceNet fusion: 'full' for the Moore weights, 'midup' as in the Animate Anyone 2 paper"}),
                "dtype": (list(DTYPES), {"default": "auto", "tooltip": "compute dtype; auto picks bf16/fp16 where the GPU supports it, else fp32"}),
            },
            "optional": {
                "aa2_modules": (["none"] + aa2, {"default": "none", "tooltip": "trained Animate Anyone 2 modules (.safetensors written by the trainer); none = untrained, an exact no-op"}),
                "image_encoder": (["none"] + files_in("clip_vision"), {"default": "none", "tooltip": "image encoder used by AA2 ReferenceNet when no CLIP_VISION is connected: sd-image-variations image_encoder (models/clip_vision)"}),
            },
        }

    RETURN_TYPES = ("AA2_MODEL",)
    RETURN_NAMES = ("aa2_model",)
    FUNCTION = "load"
    CATEGORY = "AnimateAnyone2/loaders"
    DESCRIPTION = "Loads Animate Anyone (Moore) weights and wraps them for ComfyUI's model management."

    def load(self, denoising_unet, reference_unet, pose_guider, motion_module, fusion_blocks, dtype, aa2_modules="none", image_encoder="none"):
        import comfy.model_management as mm

        from ..aa2_core.checkpoints.assembly import assemble

        node = "AA2 Model Loader"
        models = core_call(
            node, assemble,
            full_path(node, "denoising_unet", denoising_unet, (AA2_FOLDER,)),
            full_path(node, "reference_unet", reference_unet, (AA2_FOLDER,)),
            full_path(node, "pose_guider", pose_guider, (AA2_FOLDER,)),
            full_path(node, "motion_module", motion_module, MOTION_FOLDERS),
            fusion_blocks,
            aa2_modules=None if aa2_modules == "none" else full_path(node, "aa2_modules", aa2_modules, (AA2_FOLDER,)),
            clip_vision=None if image_encoder == "none" else full_path(node, "image_encoder", image_encoder, ("clip_vision",)),
        )
        device, offload = mm.get_torch_device(), mm.unet_offload_device()
        torch_dtype = compute_dtype(dtype, device)
        nets = {"denoising": models.denoising, "reference": models.reference, "pose": models.pose}
        if models.image_encoder is not None:
            nets["image_encoder"] = models.image_encoder
        # streamable layers: ComfyUI may load them partially (--lowvram, --novram, short VRAM)
        patchers = {name: model_patcher(model.to(torch_dtype), device, offload) for name, model in nets.items()}
        from ..aa2_core.checkpoints.assembly import describe_modules, held_modules

        print(f"[{node}] {describe_modules(models)}")  # which AA2 / Animate-X modules the file holds
        return ({"patchers": patchers, "dtype": torch_dtype, "fusion_blocks": fusion_blocks, "aa2_modules": models.aa2_modules,
                 "modules": held_modules(models)},)


def compute_dtype(choice: str, device):
    import torch

    if choice != "auto":
        from ..aa2_core.choices import Precision

        return Precision(choice).dtype
    import comfy.model_management as mm

    if mm.should_use_bf16(device):
        return torch.bfloat16
    if mm.should_use_fp16(device):
        return torch.float16
    return torch.float32
