"""The released Animate-X network as a model family of the shared sampler (``families.base.Denoiser``).

The sampler's loop, CFG combine, context windows, motion frames and environment mode are unchanged; this file says
what the released network reads:

* ``begin`` (once per video): the text context (``zero_y``, the empty prompt's OpenCLIP text tokens), the
  reference's CLIP image embedding, the reference in pixels [0, 1] (``local_image``), the reference pose image and
  keypoints, and -- only with ``reference_latent=True`` -- the reference latent stacked in front along time
  (``randomref``). The released YAML does not pass ``randomref``: its reference slot is zeros, which is our default.
* ``clip_inputs`` (per clip or window): the rendered pose frames of those frames (the EPI) with the reference pose
  first, and the IPI's keypoints ``(1, f + 1, 2, 18)`` and CLIP features ``(f + 1, 1, dim)`` (reference first,
  then those frames), from the built-in ``ipi`` condition kind (``cond.driving_keypoints`` ``(F, 18, 3)``:
  x/W, y/H, confidence -> the x row and the y row; ``cond.driving_features`` ``(F, 1, dim)``).
* ``predict``: the UNet runs ``f + 1`` frames (the reference slot first) and drops the slot from its output. The
  unconditional branch is the released one: ``zero_y``, zero image tokens, zero keypoints and zero features through
  the live IPI, no pose or reference pixels.

**The reference** is a ``prepare.Reference`` made by ``animate_x_reference``: ``latents`` and ``image_embeds`` as
usual, and in ``tokens`` (no ReferenceNet here) ``local_image`` ``(1, 3, H, W)``, optionally ``pose``
``(1, 3, H, W)`` and ``keypoints`` ``(1, 18, 3)``. Without a reference pose image the slot's pose is zeros: the
network reads it only with ``reference_latent=True``. With driving IPI inputs the reference keypoints are required
(the IPI's first row); the IPI's first CLIP feature is the reference's ``image_embeds`` unless ``tokens["feature"]``
is given.

**The text context.** The released unconditional *and* conditional passes both use ``zero_y``, computed once by the
OpenCLIP text tower from "" (penultimate layer, then ``ln_final``). ``text`` is that tensor: ``files.py`` reads a
saved one or computes it at load from the text tower in ``open_clip_pytorch_model.bin`` or in SD2.1's checkpoint
(``openclip.zero_y_from_state_dict``, matched to the released code by ``bench/animate_x_clip_parity.py``). Only when
no text tower is there is ``text`` None: a zero stand-in is used and a warning says the pictures differ from the
released ones (``tests/test_animate_x_parity.py::test_changed_unconditional_inputs_fail_the_forward`` shows zeros
are not ``zero_y``).

**Schedules.** ``default_schedule`` is ``Schedule.ANIMATE_X`` (``pipeline/schedulers.py``): the released
zero-terminal-SNR ``linear_sd`` betas (diffusers' ``scaled_linear`` rescaled; alphas equal within 3.9e-7, float32),
v-prediction, timesteps ``1 + k * (1000 // n)``, the last DDIM step ending at alpha_bar[0]. With diffusers' DDIM
the sampler path equals the released DDIM loop (``diffusion.sample``) whenever the released loop runs ``n`` steps
(4, 5, 8, 10, 20, 25, 50, ...). **It is a different mode at the released default of 30 steps**: the released loop
runs 31 (991, 958, ..., 1) and diffusers' DDIM runs 30 (958, ..., 1), i.e. without the released first step at
t = 991. ``Schedule.MOORE`` is *not* this schedule (``linear`` betas: alpha_bar differs by up to 0.124).
Released parity stays in ``diffusion.py``; ``RELEASED_EQUIVALENT_STEPS`` says which step counts coincide.
Measured on the tiny released-layout weights (``tests/test_animate_x_family.py``, fp32 CPU, 4 frames 128x64, cfg 2.5):
4 steps, the sampler vs ``diffusion.sample`` 8.8e-6 and vs the released code's final latents 1.1e-5; at 30 steps
the diffusers-DDIM mode ends 0.079 away from the released 31-step loop (latents up to 7.2).

**Noise.** The sampler's default noise is Moore's layout; ``diffusion.initial_noise(generator, ...)`` gives the
released entrance's (with its reference posterior draw and offset noise): pass it to ``Sampler.sample(noise=...)``.

**Keypoints.** The released ``DWposeDetector`` writes -1 for the x and y of a joint below its confidence threshold and
the IPI reads them as they are; ``prepare.keypoint_tensor(poses, missing=-1)`` gives that (the CLI's and the Animate-X
nodes' keypoints), its default 0 is the pack's own training data's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from einops import rearrange

from ...errors import AA2Error
from ...pipeline import images
from ...pipeline.options import Schedule
from ...pipeline.prepare import Reference
from ..base import Denoiser
from .diffusion import NUM_TIMESTEPS
from .unet import AnimateXUNet

log = logging.getLogger(__name__)

TEXT_TOKENS = 77
FAMILY_READS = {"ipi"}  # kinds this family feeds to its network
SAMPLER_READS = {"environment"}  # kinds the sampler reads itself (environment mode)


def released_equivalent(steps: int, num_timesteps: int = NUM_TIMESTEPS) -> bool:
    """True when the released DDIM loop runs exactly ``steps`` steps, so diffusers' DDIM with ``Schedule.ANIMATE_X``
    visits the same timesteps (30, the released default, runs 31 there)."""
    stride = num_timesteps // steps
    return len(range(0, num_timesteps, stride)) == steps


RELEASED_EQUIVALENT_STEPS = tuple(n for n in range(1, 101) if released_equivalent(n))


def animate_x_reference(image: torch.Tensor, size: tuple[int, int], encode, embed, pose: torch.Tensor | None = None,
                        keypoints: torch.Tensor | None = None, feature: torch.Tensor | None = None) -> Reference:
    """Reference IMAGE ``[1, H, W, 3]`` -> ``Reference`` for the Animate-X family.

    ``encode``/``embed`` as in ``prepare`` (VAE latents, CLIP image embedding ``(1, 1, dim)`` or ``(1, dim)``);
    ``pose``: the reference's rendered pose IMAGE; ``keypoints``: its ``(18, 3)`` / ``(1, 18, 3)`` keypoint tensor;
    ``feature``: the IPI's first CLIP feature ``(1, 1, dim)`` when it is not the reference's ``embed`` (default)."""
    image = images.check_reference(image, "reference image")[:1]
    height, width = (int(v) for v in size)
    pixels = images.resize(image, height, width).float()
    latents = encode(pixels).float().cpu()
    embeds = embed(image).float().cpu()
    embeds = embeds[:, None] if embeds.ndim == 2 else embeds
    tokens = {"local_image": rearrange(pixels, "1 h w c -> 1 c h w").cpu()}
    if pose is not None:
        pose = images.resize(images.check_rgb(pose, "reference pose")[:1], height, width).float()
        tokens["pose"] = rearrange(pose, "1 h w c -> 1 c h w").cpu()
    if keypoints is not None:
        tokens["keypoints"] = keypoints.reshape(1, -1, 3).float().cpu()
    if feature is not None:
        tokens["feature"] = feature.reshape(1, 1, -1).float().cpu()
    return Reference(latents, embeds, tokens)


def keypoint_rows(keypoints: torch.Tensor) -> torch.Tensor:
    """``(n, 18, 3)`` (x/W, y/H, confidence) -> ``(n, 2, 18)``: the x row then the y row, as the released file."""
    return keypoints[..., :2].transpose(-1, -2)


@dataclass
class _State:
    text: torch.Tensor  # (1, 77, context)
    image_embed: torch.Tensor  # (1, 1, dim)
    local_image: torch.Tensor  # (1, 3, 1, H, W) in [0, 1]
    ref_pose: torch.Tensor  # (1, 3, 1, H, W)
    ref_keypoints: torch.Tensor | None  # (1, 1, 2, 18)
    ref_feature: torch.Tensor  # (1, 1, dim): the IPI's first CLIP feature
    randomref: torch.Tensor | None  # (1, 4, 1, h, w) or None (released: the slot stays zeros)


@dataclass
class AnimateXModels(Denoiser):
    unet: AnimateXUNet
    text: torch.Tensor | None = None  # zero_y (1, 77, context) (files.py computes it); None: zeros (warned)
    reference_latent: bool = False  # pass the reference latent in the time slot (``randomref``; released: no)

    family = "animate-x"
    default_schedule = Schedule.ANIMATE_X

    def check(self, conditions, clip_length: int) -> None:
        other = sorted(set(conditions.inputs) - FAMILY_READS - SAMPLER_READS)
        if other:
            raise AA2Error(f"the Animate-X family does not read the condition(s) {other}; it takes the pose frames, the "
                           "IPI (driving keypoints + CLIP features) and the environment (environment mode)")
        tokens = conditions.reference.tokens or {}
        if "local_image" not in tokens:
            raise AA2Error("Animate-X needs its reference made by families.animate_x.family.animate_x_reference "
                           "(the reference pixels); this reference has no 'local_image'")
        if conditions.driving_keypoints is not None and "keypoints" not in tokens:
            raise AA2Error("Animate-X's IPI reads the reference's keypoints first: give the reference pose keypoints "
                           "(animate_x_reference(..., keypoints=...)) with the driving keypoints")
        factor = 8 * 2 ** (len(self.unet.config.channel_mult) - 1)
        height, width = conditions.reference.size
        if height % factor or width % factor:
            raise AA2Error(f"Animate-X with this UNet needs width and height divisible by {factor}, got {width}x{height}")
        features = conditions.driving_features
        if features is not None and features.shape[-1] != self.unet.config.image_dim:
            raise AA2Error(f"driving CLIP features have width {features.shape[-1]} but this Animate-X UNet reads "
                           f"{self.unet.config.image_dim} (OpenCLIP ViT-H/14 image embeddings)")

    def begin(self, conditions, device, dtype, token_dtype=None) -> _State:
        ref, c = conditions.reference, self.unet.config
        text = self.text
        if text is None:
            log.warning("Animate-X: no zero_y (the empty prompt's OpenCLIP text tokens) and no text tower to compute it "
                        "from (open_clip_pytorch_model.bin in clip_vision/, or v2-1_512-ema-pruned.ckpt as the VAE); "
                        "using zeros, which is not the released input: the pictures differ from the released code's")
            text = torch.zeros(1, TEXT_TOKENS, c.context_dim)
        local = ref.tokens["local_image"][:, :, None]
        pose = ref.tokens.get("pose")
        pose = torch.zeros_like(local) if pose is None else pose[:, :, None]
        kp = ref.tokens.get("keypoints")
        put = lambda v: v.to(device, dtype)  # noqa: E731
        return _State(put(text), put(ref.image_embeds.reshape(1, 1, -1)), put(local), put(pose),
                      None if kp is None else put(keypoint_rows(kp)[None]),
                      put(ref.tokens.get("feature", ref.image_embeds).reshape(1, 1, -1)),
                      put(ref.latents[:, :, None]) if self.reference_latent else None)

    def clip_inputs(self, conditions, frames: torch.Tensor, device, dtype) -> dict:
        skeleton = rearrange(conditions.skeleton[frames].to(device, dtype), "f h w c -> 1 c f h w")
        out = {"dwpose": skeleton}  # the reference pose goes first in predict (it lives in the state)
        if conditions.driving_keypoints is not None:
            out["keypoints"] = keypoint_rows(conditions.driving_keypoints[frames].to(device, dtype))[None]
            out["driving_features"] = conditions.driving_features[frames].to(device, dtype)
        return out

    def network_kwargs(self, state: _State, inputs: dict, frames: int) -> dict:
        """The conditional branch's UNet keywords for one clip (reference slot first where the UNet wants it)."""
        kw = dict(text=state.text, image_embed=state.image_embed,
                  local_image=state.local_image.expand(-1, -1, frames, -1, -1),
                  dwpose=torch.cat([state.ref_pose, inputs["dwpose"]], dim=2))
        if "keypoints" in inputs:
            kw["keypoints"] = torch.cat([state.ref_keypoints, inputs["keypoints"]], dim=1)
            kw["driving_features"] = torch.cat([state.ref_feature, inputs["driving_features"]], dim=0)
        if state.randomref is not None:
            kw["randomref"] = state.randomref
        return kw

    def predict(self, state: _State, x, t, inputs: dict, guided: bool, batched: bool):
        """Two passes whatever ``batched`` says: the released branches differ in which conditions exist (the
        unconditional one has no pixel conditions and no image tokens), which one UNet batch cannot express."""
        ts = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0]).long()
        cond = self.unet(x, ts, **self.network_kwargs(state, inputs, x.shape[2])).float()
        if not guided:
            return None, cond
        return self.unet(x, ts, text=state.text).float(), cond
