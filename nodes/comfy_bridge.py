"""The few places where the pack talks to ComfyUI's runtime: devices, model loading, progress."""

from __future__ import annotations

import torch

SD15_SCALE = 0.18215  # ComfyUI VAE latents are unscaled; our networks take SD1.5-scaled latents


def load_on_device(*patchers):
    """Load our models with ComfyUI's model management (it offloads others to make room).

    Our layers are plain torch modules, not ``comfy.ops``, so partial (low-VRAM) loading cannot stream
    them: they are loaded fully, and ComfyUI frees other models first.
    """
    import comfy.model_management as mm

    mm.load_models_gpu(list(patchers), force_full_load=True)
    return patchers[0].load_device


def step_callback(total_steps: int, device):
    """A per-step hook: ProgressBar tick (Cancel works there), latent preview of the middle frame."""
    import comfy.latent_formats
    import comfy.model_management as mm
    import comfy.utils
    import latent_preview

    bar = comfy.utils.ProgressBar(total_steps)
    previewer = latent_preview.get_previewer(device, comfy.latent_formats.SD15())

    def on_step(done, total, latents):
        mm.throw_exception_if_processing_interrupted()
        preview = None
        if previewer is not None:
            frame = latents[0, :, latents.shape[2] // 2][None] if latents.ndim == 5 else latents[:1]
            preview = previewer.decode_latent_to_preview_image("JPEG", frame.float())
        bar.update_absolute(done, total, preview)

    return on_step


def intermediate(tensor: torch.Tensor) -> torch.Tensor:
    import comfy.model_management as mm

    return tensor.to(mm.intermediate_device())


def vae_encode(vae, images: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """ComfyUI VAE: IMAGE batch -> SD1.5-scaled latents (frames, 4, h, w), a chunk at a time, on the CPU."""
    out = [vae.encode(images[i : i + chunk, :, :, :3]).float().cpu() for i in range(0, images.shape[0], chunk)]
    return torch.cat(out) * SD15_SCALE


def core_call(node: str, fn, *args, **kwargs):
    """Run a core function; its ``AA2Error`` becomes a ComfyUI error naming the node."""
    from ..aa2_core.errors import AA2Error

    try:
        return fn(*args, **kwargs)
    except AA2Error as e:
        raise ValueError(f"{node}: {e}") from None


class Held(torch.nn.Module):
    """A plain module around a model whose class defines a read-only ``device`` (sam2, transformers):
    ComfyUI's ``ModelPatcher`` sets ``model.device``, so it gets this wrapper to set it on."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner
