"""The few places where the pack talks to ComfyUI's runtime: devices, model loading, progress."""

from __future__ import annotations

import torch

SD15_SCALE = 0.18215  # ComfyUI VAE latents are unscaled; our networks take SD1.5-scaled latents


def load_on_device(*patchers, memory_required: float = 0):
    """Load our models with ComfyUI's model management: it frees other models, then loads ours whole or,
    under ``--lowvram``/``--novram`` or when VRAM is short, partially, streaming the rest layer by layer.

    ``memory_required``: bytes of activations the coming work needs on the device, so that ComfyUI keeps
    that much free instead of filling it with weights (0: ComfyUI's minimum inference reserve).
    """
    import comfy.model_management as mm

    mm.load_models_gpu(list(patchers), memory_required=memory_required)
    return patchers[0].load_device


# ---- low VRAM: ComfyUI's partial loading for our (plain torch) layers --------------------------------
#
# ComfyUI's ``ModelPatcher.load(lowvram_model_memory=...)`` puts layers on the GPU until the budget is
# spent; the others stay on the offload device, and only layers with a ``comfy_cast_weights`` attribute
# (the ``comfy.ops`` classes) can then run, by casting their weights to the input's device at each call.
# Our models are built by ``aa2_core`` (which never imports comfy) from plain ``nn.Linear``/``Conv2d``/
# norm layers, so here, on the host side, each such layer's class is swapped to its
# ``comfy.ops.disable_weight_init`` subclass:
# * a class swap keeps the very same Parameter objects (no copy, no state-dict reload, no extra memory);
#   the ``comfy.ops`` classes only add class attributes and a forward, so the instance layout is the same;
# * ``disable_weight_init`` rather than ``manual_cast``: our weights are stored in the compute dtype
#   (the loader casts them), which is the case where ComfyUI's own ``pick_operations`` picks
#   ``disable_weight_init``. Fully loaded layers then run torch's own forward (bit-identical, no
#   overhead); ComfyUI itself turns ``comfy_cast_weights`` on for the layers it leaves offloaded.
# * only exact classes are swapped: a subclass may have its own forward that a swap would drop.
# Parameters and buffers ComfyUI does not stream (a scalar gate next to sub-layers, the motion modules'
# positional tables, any layer we do not swap) are small; ``pin_unstreamable`` moves them to the device
# after every load, so a partially loaded model never mixes devices.


def _streamable_classes():
    import comfy.ops

    ops = comfy.ops.disable_weight_init
    nn = torch.nn
    return {
        nn.Linear: ops.Linear, nn.Conv1d: ops.Conv1d, nn.Conv2d: ops.Conv2d, nn.Conv3d: ops.Conv3d,
        nn.ConvTranspose1d: ops.ConvTranspose1d, nn.ConvTranspose2d: ops.ConvTranspose2d,
        nn.GroupNorm: ops.GroupNorm, nn.LayerNorm: ops.LayerNorm, nn.Embedding: ops.Embedding,
    }


def make_streamable(model: torch.nn.Module) -> list[str]:
    """Swap every plain torch layer of ``model`` to its ``comfy.ops`` class, in place.

    Returns the names of leaf modules that hold weights but stay unstreamable (pinned on the device).
    """
    swaps = _streamable_classes()
    pinned = []
    for name, module in model.named_modules():
        cast = swaps.get(type(module))
        if cast is not None:
            module.__class__ = cast
        elif not hasattr(module, "comfy_cast_weights") and _owns_weights(module) and not any(module.children()):
            pinned.append(name)
    return pinned


def _owns_weights(module: torch.nn.Module) -> bool:
    return any(p is not None for p in module._parameters.values())


def pin_unstreamable(model: torch.nn.Module, device) -> None:
    """Move what ComfyUI neither loads nor casts on use (parameters and buffers of modules without
    ``comfy_cast_weights``) to ``device``. Already there after a full load, so then a no-op."""
    for module in model.modules():
        if hasattr(module, "comfy_cast_weights"):
            continue
        for name, p in module._parameters.items():
            if p is not None and not _on(p, device):  # a new Parameter, as nn.Module.to does across tensor types
                module._parameters[name] = torch.nn.Parameter(p.data.to(device), requires_grad=p.requires_grad)
        for name, b in module._buffers.items():
            if b is not None and not _on(b, device):
                module._buffers[name] = b.to(device)


def _on(tensor: torch.Tensor, device: torch.device) -> bool:
    """``cuda`` means the current GPU: a tensor on ``cuda:0`` is already there."""
    return tensor.device.type == device.type and device.index in (None, tensor.device.index)


def model_patcher(model: torch.nn.Module, load_device, offload_device):
    """A ``ModelPatcher`` whose partial (low-VRAM) loads stream ``model``'s layers."""
    import logging

    import comfy.model_patcher
    from comfy.patcher_extension import CallbacksMP

    pinned = make_streamable(model)
    if pinned:
        logging.warning("AA2: %d %s layers cannot be streamed in low-VRAM mode and stay on the GPU, e.g. %s",
                        len(pinned), type(model).__name__, pinned[0])
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)
    patcher.add_callback(CallbacksMP.ON_LOAD, _pin_after_load)
    return patcher


def _pin_after_load(patcher, device_to, lowvram_model_memory, force_patch_weights, full_load):
    if device_to is not None:
        pin_unstreamable(patcher.model, torch.device(device_to))


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
