"""The AA2 Sampler node: the 3D UNet denoising loop with long-video stitching."""

from __future__ import annotations

from .comfy_bridge import SD15_SCALE, core_call, intermediate, load_on_device, step_callback, vae_encode

NODE = "AA2 Sampler"


class AA2Sampler:
    @classmethod
    def INPUT_TYPES(cls):
        from ..aa2_core.pipeline.options import EnvironmentMode, Schedule, SchedulerName
        from ..aa2_core.pipeline.prepare import DEFAULT_FEATHER

        return {
            "required": {
                "aa2_model": ("AA2_MODEL", {"tooltip": "from AA2 Model Loader (Moore) or AA2 Animate-X Loader (the released Animate-X)"}),
                "reference": ("AA2_REFERENCE", {"tooltip": "from AA2 ReferenceNet (Moore) or AA2 Animate-X Reference"}),
                "pose": ("AA2_POSE", {"tooltip": "from AA2 Pose Condition; its frame count is the video length"}),
                "vae": ("VAE", {"tooltip": "the VAE of the model family, to encode environment and object frames: the SD1.5 VAE (Moore), the SD2.1 VAE from AA2 Animate-X Loader (Animate-X)"}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True, "tooltip": "noise seed (noise is drawn on the CPU: same seed, same video on any GPU)"}),
                "steps": ("INT", {"default": 25, "min": 1, "max": 200, "tooltip": "denoising steps"}),
                "cfg": ("FLOAT", {"default": 3.5, "min": 1.0, "max": 20.0, "step": 0.1, "tooltip": "classifier-free guidance scale; 1 skips the unconditional branch"}),
                "scheduler": (SchedulerName.values(), {"default": SchedulerName.DDIM.value, "tooltip": "diffusers scheduler"}),
                "schedule": (Schedule.values(), {"default": Schedule.MOORE.value, "tooltip": "moore: v-prediction, zero-SNR, trailing (the Moore-AnimateAnyone weights); sd15: epsilon models; animate_x: the released Animate-X schedule (zero-SNR linear_sd, v-prediction). With an Animate-X model, moore (the default) means the family's own animate_x"}),
                "environment_mode": (EnvironmentMode.values(), {"default": EnvironmentMode.AUTO.value, "tooltip": "put the driving video's (noised) scene back outside the mask at every step. auto: on while the AA2 environment modules are untrained (the public weights keep the scene only this way), off once trained ones are loaded (they read the scene themselves); on / off: always / never"}),
                "feather": ("INT", {"default": DEFAULT_FEATHER, "min": 0, "max": 8, "tooltip": "latent pixels of soft edge around the mask in environment mode (the trainer uses the default)"}),
                "batch_cfg": ("BOOLEAN", {"default": True, "tooltip": "run both guidance branches in one batch (faster); off halves the activation memory"}),
            },
            "optional": {
                "environment": ("IMAGE", {"tooltip": "environment frames (from AA2 Environment Mask)"}),
                "environment_mask": ("MASK", {"tooltip": "formulated mask, 1 where the character is generated (from AA2 Environment Mask)"}),
                "objects": ("IMAGE", {"tooltip": "object frames (from AA2 Object Guider); used by trained AA2 modules"}),
                "stitching": ("AA2_STITCH", {"tooltip": "long-video options; default: 24-frame clips with 4 motion frames"}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, environment_mode):
        """Also takes ``true`` / ``false``: workflows saved when environment_mode was an on/off toggle (on / off)."""
        from ..aa2_core.pipeline.options import EnvironmentMode

        if isinstance(environment_mode, bool) or environment_mode in EnvironmentMode.values():
            return True
        return (f"{NODE}: environment_mode must be one of {EnvironmentMode.values()} (or true / false from a workflow "
                f"saved with the former toggle), got {environment_mode!r}")

    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "sample"
    CATEGORY = "AnimateAnyone2"
    DESCRIPTION = "Animates the reference character along the pose sequence, inside the driving video's environment."

    def sample(self, aa2_model, reference, pose, vae, seed, steps, cfg, scheduler, schedule, environment_mode, feather,
               batch_cfg=True, environment=None, environment_mask=None, objects=None, stitching=None):
        from ..aa2_core.pipeline.options import SamplerSettings, Stitching
        from ..aa2_core.pipeline.prepare import prepare_conditions
        from ..aa2_core.families.moore import MooreModels
        from ..aa2_core.pipeline.sampler import Sampler, total_steps

        if isinstance(aa2_model, dict) and aa2_model.get("family") == "animate-x":
            return sample_animate_x(aa2_model, reference, pose, vae, seed, steps, cfg, scheduler, schedule,
                                    environment_mode, feather, batch_cfg, environment, environment_mask, objects, stitching)
        # settings first: a bad number is refused before the VAE encodes anything
        settings = core_call(NODE, SamplerSettings, steps=steps, cfg=cfg, seed=seed, scheduler=scheduler, schedule=schedule,
                             stitching=stitching or Stitching(), environment_mode=environment_mode, cfg_batch=batch_cfg)
        cond = core_call(NODE, prepare_conditions, reference, pose["skeleton"], lambda x: vae_encode(vae, x),
                         depth=pose["depth"], environment=environment, environment_mask=environment_mask, objects=objects,
                         feather=feather, keypoints=pose.get("keypoints"), driving_features=pose.get("driving_features"),
                         **pose.get("condition_inputs", {}))  # plug-in condition kinds' inputs, by keyword
        patchers = aa2_model["patchers"]
        device = load_on_device(patchers["denoising"], patchers["pose"],
                                memory_required=activation_bytes(settings, cond, aa2_model["dtype"]))
        sampler = Sampler(MooreModels(patchers["denoising"].model, patchers["pose"].model), settings, device=device,
                          dtype=aa2_model["dtype"], on_step=step_callback(total_steps(settings, cond.num_frames), device))
        latents = core_call(NODE, sampler.sample, cond)
        return ({"samples": intermediate(latents / SD15_SCALE)},)


def sample_animate_x(aa2_model, reference, pose, vae, seed, steps, cfg, scheduler, schedule, environment_mode, feather,
                     batch_cfg, environment, environment_mask, objects, stitching):
    """The released Animate-X (``families/animate_x``) through the same sampler, as ``animate --family animate-x``:
    the family's schedule when ``schedule`` is left at moore, the released entrance's noise for the seed."""
    import torch

    from ..aa2_core.families.animate_x import diffusion
    from ..aa2_core.families.animate_x.family import AnimateXModels
    from ..aa2_core.pipeline.options import Schedule, SamplerSettings, Stitching
    from ..aa2_core.pipeline.prepare import prepare_conditions
    from ..aa2_core.pipeline.sampler import Sampler, total_steps

    tokens = getattr(reference, "tokens", None) or {}
    if "local_image" not in tokens:
        raise ValueError(f"{NODE}: reference comes from AA2 ReferenceNet (the Moore family); with an Animate-X model "
                         "connect AA2 Animate-X Reference's reference")
    if pose.get("keypoints") is not None and "keypoints" not in tokens:
        raise ValueError(f"{NODE}: pose carries driving keypoints for the IPI (AA2 Animate-X Implicit Pose) but the "
                         "reference has no keypoints: connect reference_keypoints on AA2 Animate-X Reference (the "
                         "IPI reads the reference's keypoints first)")
    if schedule == Schedule.MOORE.value:  # the widget's default: the family's own schedule
        schedule = AnimateXModels.default_schedule.value
    settings = core_call(NODE, SamplerSettings, steps=steps, cfg=cfg, seed=seed, scheduler=scheduler, schedule=schedule,
                         stitching=stitching or Stitching(), environment_mode=environment_mode, cfg_batch=batch_cfg)
    cond = core_call(NODE, prepare_conditions, reference, pose["skeleton"], lambda x: vae_encode(vae, x),
                     depth=pose["depth"], environment=environment, environment_mask=environment_mask, objects=objects,
                     feather=feather, keypoints=pose.get("keypoints"), driving_features=pose.get("driving_features"),
                     **pose.get("condition_inputs", {}))
    patcher = aa2_model["patchers"]["unet"]
    device = load_on_device(patcher, memory_required=activation_bytes(settings, cond, aa2_model["dtype"]))
    models = AnimateXModels(patcher.model, text=aa2_model.get("text"), reference_latent=aa2_model.get("reference_latent", False))
    h, w = cond.reference.latents.shape[-2:]
    noise = diffusion.initial_noise(torch.Generator().manual_seed(seed), cond.num_frames, h, w)
    sampler = Sampler(models, settings, device=device, dtype=aa2_model["dtype"],
                      on_step=step_callback(total_steps(settings, cond.num_frames), device))
    latents = core_call(NODE, sampler.sample, cond, noise)
    return ({"samples": intermediate(latents / SD15_SCALE)},)


def activation_bytes(settings, cond, dtype) -> float:
    """Device memory one denoiser call needs besides the weights, so that ComfyUI leaves it free (and
    streams weights instead) rather than loading every weight and running out during the clip.

    ComfyUI's own SD1.5 estimate (``BaseModel.memory_required``: 0.01 MB per latent pixel and byte of
    dtype, per frame of the batch) over one clip or window of frames, both CFG branches when batched,
    plus the reference tokens and their keys/values, which stay on the device for the whole run.
    """
    import torch

    frames = min(cond.num_frames, settings.stitching.clip_length)
    batch = 2 if settings.cfg > 1 and settings.cfg_batch else 1
    h, w = cond.reference.latents.shape[-2:]
    size = torch.empty((), dtype=dtype).element_size()
    unet = batch * frames * h * w * size * 0.01 * 2**20
    tokens = 3 * size * sum(t.numel() for t in cond.reference.tokens.values())
    return unet + tokens
