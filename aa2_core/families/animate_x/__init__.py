"""The released Animate-X (github.com/antgroup/animate-x) as a second model family: its own weights
(``animate-x_ckpt.pth``), its own network and sampler, written by us on torch / diffusers / einops.

What differs from the Moore / AA2 family (``aa2_core.models``):

* **No ReferenceNet.** The reference enters three ways: its latent slot is stacked *along time* in front of the
  noisy latents (the network runs ``f + 1`` frames and drops the first; the released inference leaves this slot
  at zeros -- its YAML does not pass ``randomref`` -- and cuts off the prepended reference pose), its pixels in
  [0, 1] (``local_image``) go through a conv stack concatenated on channels, and its CLIP embedding makes
  ``image_tokens`` cross-attention tokens after the text tokens of the empty prompt (``zero_y``).
* **The explicit pose indicator (EPI)** -- the rendered (aligned) pose frames -- is *concatenated on channels*
  (``concat_dim`` = 8) after its own conv stack and a per-pixel transformer along the frames, not added after
  ``conv_in`` as Moore's PoseGuider.
* **The implicit pose indicator (IPI)**: keypoints ``(f + 1, 2, 18)`` through ``DwposeEncoder`` and the driving
  frames' CLIP features through ``Resampler`` give 4 motion tokens per frame, read by a second transformer with
  *cross-attention after every spatial transformer* (``pose_attention``). Our Moore-side IPI
  (``aa2_core.models.implicit_pose_indicator``) is a different, zero-initialised module.
* Its own 3D UNet (ResBlocks with temporal convolutions, temporal transformers, no motion-module file), VAE of
  SD2.1, OpenCLIP ViT-H/14; v-prediction with the zero-terminal-SNR ``linear_sd`` schedule and the released
  DDIM loop (``diffusion.py``); CFG as ``u + 2.5 (c - u)`` where the unconditional pass has zero_y, zero image
  tokens and zero keypoints/features through the live IPI.

What our network lifts: any size divisible by ``8 * 2^(levels - 1)`` (the released pooling fixes 384x256, so
only 768x512 works there), clips longer than the stored sinusoid table, batches larger than one (the released
``DwposeEncoder`` orders rows frame-major, which equals ours only at batch 1), no xformers and no CUDA-only
zeros (attention is ``scaled_dot_product_attention`` via diffusers' ``Attention``).

Parity (``bench/animate_x_parity.py``, ``tests/test_animate_x_parity.py``): the released modules, run from a
source copy on tiny weights, need stand-ins on a CPU -- a fake ``xformers.ops.memory_efficient_attention``
(SDPA), identity ``fairscale`` checkpointing, placeholder ``rotary_embedding_torch`` / ``open_clip``, the
``animatex`` package without its CUDA entrance ``__init__``, tiny-width subclasses in place of the
argument-less ``DwposeEncoder()`` / ``Resampler()`` and of the decoder's ``context_dim=1024``
``SpatialTransformer``, the three ``(384, 256)`` poolings set to half the tiny input, and fp32 CPU zeros for
the unconditional ``torch.zeros(...).half().cuda()``. None changes the released maths.
"""

from .config import TINY_CONFIG, AnimateXConfig
from .diffusion import Schedule, ddim_timesteps, initial_noise, sample
from .loader import convert_to_safetensors, load_animate_x_unet, unet_from_state_dict
from .unet import AnimateXUNet

__all__ = [
    "AnimateXConfig", "AnimateXUNet", "Schedule", "TINY_CONFIG", "convert_to_safetensors", "ddim_timesteps",
    "initial_noise", "load_animate_x_unet", "sample", "unet_from_state_dict",
]
