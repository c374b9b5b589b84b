"""The AA2 Sampler node: the 3D UNet denoising loop with long-video stitching."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .comfy_bridge import SD15_SCALE, core_call, intermediate, load_on_device, step_callback, vae_encode

NODE = "AA2 Sampler"


class AA2Sampler:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "aa2_model": ("AA2_MODEL", {"tooltip": "from AA2 Model Loader"}),
                "reference": ("AA2_REFERENCE", {"tooltip": "from AA2 ReferenceNet"}),
                "pose": ("AA2_POSE", {"tooltip": "from AA2 Pose Condition; its frame count is the video length"}),
                "vae": ("VAE", {"tooltip": "the same SD1.5 VAE, to encode environment and object frames"}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True, "tooltip": "noise seed (noise is drawn on the CPU: same seed, same video on any GPU)"}),
                "steps": ("INT", {"default": 25, "min": 1, "max": 200, "tooltip": "denoising steps"}),
                "cfg": ("FLOAT", {"default": 3.5, "min": 1.0, "max": 20.0, "step": 0.1, "tooltip": "classifier-free guidance scale; 1 skips the unconditional branch"}),
                "scheduler": (["ddim", "euler", "dpmpp_2m", "lcm"], {"default": "ddim", "tooltip": "diffusers scheduler"}),
                "schedule": (["moore", "sd15"], {"default": "moore", "tooltip": "moore: v-prediction, zero-SNR, trailing (the Moore-AnimateAnyone weights); sd15: epsilon models"}),
                "environment_mode": ("BOOLEAN", {"default": True, "tooltip": "keep the driving video's scene outside the mask at every step (works with the public weights)"}),
                "feather": ("INT", {"default": 1, "min": 0, "max": 8, "tooltip": "latent pixels of soft edge around the mask in environment mode"}),
                "batch_cfg": ("BOOLEAN", {"default": True, "tooltip": "run both guidance branches in one batch (faster); off halves the activation memory"}),
            },
            "optional": {
                "environment": ("IMAGE", {"tooltip": "environment frames (from AA2 Environment Mask)"}),
                "environment_mask": ("MASK", {"tooltip": "formulated mask, 1 where the character is generated (from AA2 Environment Mask)"}),
                "objects": ("IMAGE", {"tooltip": "object frames (from AA2 Object Guider); used by trained AA2 modules"}),
                "stitching": ("AA2_STITCH", {"tooltip": "long-video options; default: 24-frame clips with 4 motion frames"}),
            },
        }

    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "sample"
    CATEGORY = "AnimateAnyone2"
    DESCRIPTION = "Animates the reference character along the pose sequence, inside the driving video's environment."

    def sample(self, aa2_model, reference, pose, vae, seed, steps, cfg, scheduler, schedule, environment_mode, feather,
               batch_cfg=True, environment=None, environment_mask=None, objects=None, stitching=None):
        from ..aa2_core.errors import AA2Error
        from ..aa2_core.pipeline.images import check_rgb, resize
        from ..aa2_core.pipeline.sampler import Conditions, Models, Sampler, SamplerSettings

        height, width = reference["size"]
        skeleton = pose["skeleton"]
        frames = skeleton.shape[0]
        if skeleton.shape[1:3] != (height, width):
            skeleton = resize(skeleton, height, width)
        cond = Conditions(reference["latents"], reference["image_embeds"], skeleton,
                          depth=None if pose["depth"] is None else _resize_mask(pose["depth"], height, width),
                          reference_tokens=reference["tokens"])
        try:
            if environment is not None or environment_mask is not None:
                if environment is None or environment_mask is None:
                    raise AA2Error("environment and environment_mask come together: connect both or neither")
                _check_frames("environment", environment.shape[0], frames)
                _check_frames("environment_mask", environment_mask.shape[0], frames)
                env = resize(check_rgb(environment, "environment"), height, width)
                cond.environment_latents = vae_encode(vae, env)
                cond.environment_mask = latent_mask(environment_mask, height // 8, width // 8, feather)
            if objects is not None:
                _check_frames("objects", objects.shape[0], frames)
                cond.object_latents = vae_encode(vae, resize(check_rgb(objects, "objects"), height, width))
        except AA2Error as e:
            raise ValueError(f"{NODE}: {e}") from None

        stitch = stitching or {"stitching": "motion_frames", "clip_length": 24, "motion_frames": 4, "context_overlap": 4, "fusion": "pyramid"}
        settings = SamplerSettings(steps=steps, cfg=cfg, seed=seed, scheduler=scheduler, schedule=schedule,
                                   environment_mode=environment_mode, cfg_batch=batch_cfg, aa2_environment_input=aa2_model.get("aa2_trained", False),
                                   **stitch)
        patchers = aa2_model["patchers"]
        device = load_on_device(patchers["denoising"], patchers["pose"])
        models = Models(patchers["denoising"].model, None, patchers["pose"].model)
        sampler = Sampler(models, settings, device=device, dtype=aa2_model["dtype"])
        sampler.on_step = step_callback(_total_steps(settings, frames), device)
        latents = core_call(NODE, sampler.sample, cond)
        return ({"samples": intermediate(latents / SD15_SCALE)},)


def _check_frames(name, got, expected):
    from ..aa2_core.errors import AA2Error

    if got != expected:
        raise AA2Error(f"{name} has {got} frames but the pose sequence has {expected}; they must match")


def _total_steps(settings, frames):
    from ..aa2_core.pipeline.windows import clip_plan

    if settings.stitching == "context_windows":
        return settings.steps
    return settings.steps * len(clip_plan(frames, settings.clip_length, settings.motion_frames))


def _resize_mask(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if mask.ndim == 4:  # an IMAGE given as depth
        mask = mask[..., 0]
    if mask.shape[1:] == (height, width):
        return mask
    return F.interpolate(mask[:, None].float(), size=(height, width), mode="bilinear", align_corners=False)[:, 0]


def latent_mask(mask: torch.Tensor, h: int, w: int, feather: int) -> torch.Tensor:
    """Pixel MASK ``[F, H, W]`` -> latent mask ``[F, h, w]``: any covered pixel marks its cell, then a soft edge."""
    m = F.adaptive_max_pool2d((mask > 0.5).float()[:, None], (h, w))
    if feather > 0:
        k = 2 * feather + 1
        m = F.max_pool2d(m, k, stride=1, padding=feather)  # grow, so the soft edge lies outside the character
        m = F.avg_pool2d(m, k, stride=1, padding=feather, count_include_pad=False)
        m = torch.maximum(m, F.adaptive_max_pool2d((mask > 0.5).float()[:, None], (h, w)))
    return m[:, 0]
