"""The released Animate-X (``aa2_core/families/animate_x``) in the graph.

* ``AA2 Animate-X Loader``: ``animate-x_ckpt.pth`` (UNet + pose encoder + IPI), the SD2.1 VAE and the OpenCLIP
  ViT-H/14 image encoder -> an ``AA2_MODEL`` of the ``animate-x`` family (UNet and image encoder in ComfyUI
  ``ModelPatcher``s) and a ComfyUI ``VAE`` (the SD2.1 VAE: reference, environment frames, VAE Decode).
* ``AA2 Animate-X Reference``: the reference (pixels, latent, CLIP embedding, optional pose and keypoints).
* ``AA2 Animate-X Implicit Pose``: the IPI's driving inputs (keypoints as released, -1 for a missing joint, and
  each driving frame's CLIP embedding from the loader's encoder) on an ``AA2_POSE``.
The AA2 Sampler runs the family (``nodes/sampler.py``).
"""

from __future__ import annotations

import torch

from .comfy_bridge import core_call, load_on_device, model_patcher, vae_encode
from .conditioning import max_resolution
from .folders import ANIMATE_X_FOLDER, files_in, full_path
from .loaders import DTYPES, compute_dtype

FAMILY = "animate-x"
CATEGORY = "AnimateAnyone2/animate-x"
UNET_FOLDERS = ("diffusion_models", ANIMATE_X_FOLDER)
VAE_FOLDERS = ("vae", "checkpoints")
CLIP_FOLDERS = ("clip_vision",)
LOADER = "AA2 Animate-X Loader"


def is_animate_x(aa2_model) -> bool:
    return isinstance(aa2_model, dict) and aa2_model.get("family") == FAMILY


def require_animate_x(node: str, aa2_model) -> None:
    if not is_animate_x(aa2_model):
        raise ValueError(f"{node}: aa2_model comes from AA2 Model Loader (the Moore family); connect AA2 Animate-X "
                         "Loader's aa2_model")


class AA2AnimateXLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "unet": (files_in(*UNET_FOLDERS), {"tooltip": "animate-x_ckpt.pth (the released 3D UNet with its pose encoder and IPI) or its .safetensors conversion, in models/diffusion_models or models/animate_x"}),
                "vae": (files_in(*VAE_FOLDERS), {"tooltip": "the SD2.1 VAE: v2-1_512-ema-pruned.ckpt in models/checkpoints (its VAE is used; its text tower gives zero_y), or an SD2.x VAE file in models/vae"}),
                "clip_vision": (files_in(*CLIP_FOLDERS), {"tooltip": "OpenCLIP ViT-H/14 image encoder in models/clip_vision: the released open_clip_pytorch_model.bin (also gives zero_y) or ComfyUI's clip_vision_h.safetensors"}),
                "dtype": (list(DTYPES), {"default": "auto", "tooltip": "compute dtype of the UNet and image encoder; auto picks bf16/fp16 where the GPU supports it, else fp32"}),
            },
            "optional": {
                "zero_y": (["none"] + files_in(ANIMATE_X_FOLDER), {"default": "none", "tooltip": "animate_x_zero_y.safetensors (the empty prompt's OpenCLIP text tokens) in models/animate_x; none = computed at load from the text tower in open_clip_pytorch_model.bin or the SD2.1 .ckpt"}),
            },
        }

    RETURN_TYPES = ("AA2_MODEL", "VAE")
    RETURN_NAMES = ("aa2_model", "vae")
    FUNCTION = "load"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Loads the released Animate-X weights (antgroup/animate-x) for ComfyUI's model management; the VAE "
                   "output is the SD2.1 VAE (connect it to AA2 Animate-X Reference, AA2 Sampler and VAE Decode).")

    def load(self, unet, vae, clip_vision, dtype, zero_y="none"):
        import comfy.model_management as mm

        from ..aa2_core.families.animate_x.files import OPENCLIP_NAMES, load_animate_x_family

        paths = {"unet": full_path(LOADER, "unet", unet, UNET_FOLDERS),
                 "vae": full_path(LOADER, "vae", vae, VAE_FOLDERS),
                 "clip_vision": full_path(LOADER, "clip_vision", clip_vision, CLIP_FOLDERS)}
        if zero_y != "none":
            paths["zero_y"] = full_path(LOADER, "zero_y", zero_y, (ANIMATE_X_FOLDER,))
        text = next((n for n in OPENCLIP_NAMES if n in files_in(*CLIP_FOLDERS)), None)
        if text:  # OpenCLIP's own file: its text tower gives zero_y, as locate_animate_x_files finds it
            paths["text_encoder"] = full_path(LOADER, "clip_vision", text, CLIP_FOLDERS)
        device, offload = mm.get_torch_device(), mm.unet_offload_device()
        torch_dtype = compute_dtype(dtype, device)
        bundle = core_call(LOADER, load_animate_x_family, paths, dtype=torch_dtype)
        comfy_vae = comfy_sd_vae(bundle.vae, paths["vae"])
        patchers = {"unet": model_patcher(bundle.models.unet, device, offload),
                    "image_encoder": model_patcher(bundle.image_encoder.to(torch_dtype), device, offload)}
        print(f"[{LOADER}] zero_y: {bundle.text_source or 'none found, zeros (the pictures differ from the released code)'}")
        return ({"family": FAMILY, "patchers": patchers, "dtype": torch_dtype, "text": bundle.models.text,
                 "reference_latent": bundle.models.reference_latent, "paths": dict(bundle.paths)}, comfy_vae)


def comfy_sd_vae(diffusers_vae, path: str):
    """The loaded SD2.1 VAE (diffusers ``AutoencoderKL``) as ComfyUI's ``VAE`` (its own model management, tiled
    decoding); ComfyUI converts the diffusers keys. Same weights, so the same latents (``tests/integration``)."""
    import comfy.sd

    sd = {k: v.detach() for k, v in diffusers_vae.state_dict().items()}
    try:
        return comfy.sd.VAE(sd=sd)
    except RuntimeError as e:  # shapes ComfyUI's SD VAE does not have
        raise ValueError(f"{LOADER}: vae {path} is not an SD2.x VAE ComfyUI can load ({str(e).splitlines()[0]})") from None


def parse_reference_keypoints(node: str, reference_keypoints):
    """POSE_KEYPOINT of the reference image -> (its Pose, its (2, 3) feet, the released (1, 18, 3) tensor)."""
    from ..aa2_core.conditions.keypoints import parse_pose_keypoint
    from ..aa2_core.conditions.skeleton import parse_feet
    from ..aa2_core.pipeline.prepare import keypoint_tensor

    frames = reference_keypoints if isinstance(reference_keypoints, list) else [reference_keypoints]
    poses = core_call(node, parse_pose_keypoint, frames[:1])
    if not poses or poses[0].is_empty:
        raise ValueError(f"{node}: reference_keypoints has no person in its first entry; expected the reference "
                         "image's POSE_KEYPOINT (e.g. AA2 DWPose Extract on the reference image)")
    return poses[0], core_call(node, parse_feet, frames[:1])[0], keypoint_tensor(poses[:1], missing=-1.0)


class AA2AnimateXReference:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "aa2_model": ("AA2_MODEL", {"tooltip": "from AA2 Animate-X Loader"}),
                "vae": ("VAE", {"tooltip": "the SD2.1 VAE from AA2 Animate-X Loader"}),
                "reference_image": ("IMAGE", {"tooltip": "the character to animate (RGB; composite any alpha first)"}),
                "width": ("INT", {"default": 512, "min": 64, "max": max_resolution(), "step": 8, "tooltip": "output width; must match the pose images (released: 512)"}),
                "height": ("INT", {"default": 768, "min": 64, "max": max_resolution(), "step": 8, "tooltip": "output height; must match the pose images (released: 768)"}),
            },
            "optional": {
                "reference_keypoints": ("POSE_KEYPOINT", {"tooltip": "the reference image's keypoints (e.g. AA2 DWPose Extract on it): the IPI's first row; needed when the pose carries driving keypoints (AA2 Animate-X Implicit Pose)"}),
                "reference_pose": ("IMAGE", {"tooltip": "the reference's rendered pose (the slot before the driving poses); not connected: drawn from reference_keypoints in the animate_x style, else zeros. The released setting does not read it"}),
            },
        }

    RETURN_TYPES = ("AA2_REFERENCE",)
    RETURN_NAMES = ("reference",)
    FUNCTION = "encode"
    CATEGORY = CATEGORY
    DESCRIPTION = ("The Animate-X reference: the character's pixels and SD2.1 latent, its OpenCLIP embedding (the "
                   "released preprocessing) and, for the IPI, its keypoints. No ReferenceNet in this family.")

    def encode(self, aa2_model, vae, reference_image, width, height, reference_keypoints=None, reference_pose=None):
        from ..aa2_core.conditions.skeleton import render_pose
        from ..aa2_core.families.animate_x.family import animate_x_reference
        from ..aa2_core.pipeline.prepare import output_size

        node = "AA2 Animate-X Reference"
        require_animate_x(node, aa2_model)
        size = output_size(height, width)
        keypoints = None
        if reference_keypoints is not None:
            pose, feet, keypoints = parse_reference_keypoints(node, reference_keypoints)
            if reference_pose is None:  # as the CLI: the released drawing of the reference's keypoints
                reference_pose = torch.from_numpy(render_pose(pose, *size, style="animate_x", feet=feet)[None]).float() / 255
        patcher = aa2_model["patchers"]["image_encoder"]
        load_on_device(patcher)
        with torch.no_grad():
            reference = core_call(node, animate_x_reference, reference_image, size, lambda x: vae_encode(vae, x),
                                  lambda image: patcher.model.embed(image), pose=reference_pose, keypoints=keypoints)
        return (reference,)



class AA2AnimateXImplicitPose:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "aa2_model": ("AA2_MODEL", {"tooltip": "from AA2 Animate-X Loader (its image encoder embeds the driving frames)"}),
                "pose": ("AA2_POSE", {"tooltip": "from AA2 Pose Condition (the rendered, retargeted poses: the explicit indicator)"}),
                "driving_video": ("IMAGE", {"tooltip": "the driving frames (their CLIP embeddings are the IPI's features); one per pose frame"}),
                "driving_keypoints": ("POSE_KEYPOINT", {"tooltip": "DWPose keypoints of the driving video (AA2 DWPose Extract), one entry per pose frame"}),
                "enabled": ("BOOLEAN", {"default": True, "tooltip": "off: the pose passes through unchanged (the IPI then sees zero keypoints and features)"}),
            }
        }

    RETURN_TYPES = ("AA2_POSE",)
    RETURN_NAMES = ("pose",)
    FUNCTION = "build"
    CATEGORY = CATEGORY
    DESCRIPTION = ("The released Animate-X implicit pose indicator's inputs: the driving keypoints (18 body joints, x/W "
                   "and y/H, -1 where a joint is missing) and each driving frame's OpenCLIP embedding. Connect "
                   "reference_keypoints on AA2 Animate-X Reference too: the IPI reads the reference first.")

    def build(self, aa2_model, pose, driving_video, driving_keypoints, enabled=True):
        from ..aa2_core.conditions.keypoints import parse_pose_keypoint
        from ..aa2_core.pipeline import images
        from ..aa2_core.pipeline.prepare import driving_clip_features, keypoint_tensor, output_size

        node = "AA2 Animate-X Implicit Pose"
        require_animate_x(node, aa2_model)
        if not enabled:
            return (pose,)
        frames = pose["skeleton"].shape[0]
        poses = core_call(node, parse_pose_keypoint, driving_keypoints)
        for name, count in (("driving_video", driving_video.shape[0]), ("driving_keypoints", len(poses))):
            if count != frames:
                raise ValueError(f"{node}: {name} has {count} frames but the pose has {frames}; they must match")
        size = output_size(*pose["skeleton"].shape[1:3])
        patcher = aa2_model["patchers"]["image_encoder"]
        load_on_device(patcher)
        with torch.no_grad():
            features = core_call(node, driving_clip_features, images.resize(driving_video, *size),
                                 lambda image: patcher.model.embed(image))
        return ({**pose, "keypoints": keypoint_tensor(poses, missing=-1.0), "driving_features": features},)

