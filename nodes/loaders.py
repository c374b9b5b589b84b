"""Loader nodes: Moore-AnimateAnyone / AnimateDiff / AA2 files -> ComfyUI-managed models."""

from __future__ import annotations

from .folders import AA2_FOLDER, MOTION_FOLDERS, files_in, full_path

DTYPES = ("auto", "fp16", "bf16", "fp32")


class AA2ModelLoader:
    """Loads the denoising UNet (+ motion module), ReferenceNet, pose guider and optional AA2 modules."""

    @classmethod
    def INPUT_TYPES(cls):
        aa2 = files_in(AA2_FOLDER)
        motion = files_in(*MOTION_FOLDERS)
        return {
            "required": {
                "denoising_unet": (aa2, {"tooltip": "Moore-AnimateAnyone denoising_unet.pth (or .safetensors) in models/animate_anyone2"}),
                "reference_unet": (aa2, {"tooltip": "Moore-AnimateAnyone reference_unet.pth in models/animate_anyone2"}),
                "pose_guider": (aa2, {"tooltip": "Moore-AnimateAnyone pose_guider.pth in models/animate_anyone2"}),
                "motion_module": (motion, {"tooltip": "Moore motion_module.pth, or an AnimateDiff v1/v2/v3 motion module (models/animatediff_models)"}),
                "fusion_blocks": (["full", "midup"], {"default": "full", "tooltip": "ReferenceNet fusion: 'full' for the Moore weights, 'midup' as in the Animate Anyone 2 paper"}),
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
        import comfy.model_patcher

        from ..aa2_core.checkpoints.aa2_file import apply_aa2_parts, load_aa2_file
        from ..aa2_core.models.image_encoder import ImageEncoder
        from ..aa2_core.checkpoints.loaders import load_clip_vision, load_denoising_net, load_pose_modulation, load_reference_net

        node = "AA2 Model Loader"
        denoising = load_denoising_net(
            full_path(node, "denoising_unet", denoising_unet, (AA2_FOLDER,)),
            full_path(node, "motion_module", motion_module, MOTION_FOLDERS),
            fusion_blocks,
        )
        reference = load_reference_net(full_path(node, "reference_unet", reference_unet, (AA2_FOLDER,)), fusion_blocks)
        pose = load_pose_modulation(full_path(node, "pose_guider", pose_guider, (AA2_FOLDER,)))
        if aa2_modules != "none":
            path = full_path(node, "aa2_modules", aa2_modules, (AA2_FOLDER,))
            parts, _ = load_aa2_file(path)
            for name, model in (("denoising", denoising), ("pose", pose), ("reference", reference)):
                if name in parts:
                    apply_aa2_parts(model, parts[name], path)

        device, offload = mm.get_torch_device(), mm.unet_offload_device()
        torch_dtype = compute_dtype(dtype, device)
        models = {"denoising": denoising, "reference": reference, "pose": pose}
        if image_encoder != "none":
            clip = load_clip_vision(full_path(node, "image_encoder", image_encoder, ("clip_vision",)))
            models["image_encoder"] = ImageEncoder(clip)
        patchers = {
            name: comfy.model_patcher.ModelPatcher(model.to(torch_dtype), load_device=device, offload_device=offload)
            for name, model in models.items()
        }
        return ({"patchers": patchers, "dtype": torch_dtype, "fusion_blocks": fusion_blocks, "aa2_trained": aa2_modules != "none"},)


def compute_dtype(choice: str, device):
    import torch

    if choice != "auto":
        return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[choice]
    import comfy.model_management as mm

    if mm.should_use_bf16(device):
        return torch.bfloat16
    if mm.should_use_fp16(device):
        return torch.float16
    return torch.float32
