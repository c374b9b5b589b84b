#!/usr/bin/env python3
"""Animate-X parity: the RELEASED network (github antgroup/animate-x) against ours, on the same tiny weights.

This file contains no Animate-X code. It imports the released, unmodified modules from a source copy
(``--source``, made with ``git --git-dir=<mirror> archive HEAD | tar -x -C /tmp/animatex_src``):
``animatex/model/unet_animate_x.py`` (+ ``util.py``, ``IPI_module.py``, ``transformer.py``),
``animatex/diffusion/diffusion_ddim.py`` (+ ``schedules.py``) and ``DiagonalGaussianDistribution`` of
``animatex/model/autoencoder.py``; builds them at tiny widths; loads the tiny weights of
``aa2_core.families.animate_x.tiny`` into them with ``strict=True``; runs them in fp32 on the CPU; runs ours
(``aa2_core.families.animate_x``) on the same inputs and compares; writes the released outputs as fixtures.

Stand-ins the released code needs on a CPU without its CUDA-only packages (none changes its maths):

* ``xformers`` / ``xformers.ops``: a module whose ``memory_efficient_attention(q, k, v, attn_bias=None, op=None)``
  is ``torch.nn.functional.scaled_dot_product_attention`` on the same (B, M, K) tensors (softmax(q k^T / sqrt(K)) v,
  xformers' definition).
* ``fairscale.nn.checkpoint.checkpoint_wrapper``: identity (activation checkpointing; no effect under no_grad).
* ``rotary_embedding_torch`` and ``open_clip``: empty placeholders (imported, unused by this network).
* ``animatex`` package: its ``__init__`` imports the whole inference entrance (pynvml, torchvision, CUDA); a bare
  package object pointing at the same folder is registered instead, so only the modules above are imported.
* tiny widths: ``DwposeEncoder()`` and ``Resampler()`` are constructed without arguments (1024 wide, 8 layers),
  so ``unet_animate_x.DwposeEncoder`` / ``.Resampler`` are replaced by subclasses with the tiny defaults; the
  decoder's ``SpatialTransformer(..., context_dim=1024)`` by a subclass taking the UNet's context width;
  the three ``AdaptiveAvgPool2d((384, 256))`` get ``output_size`` = half the tiny input (at 768x512, 384x256).
* the unconditional IPI input ``torch.zeros([b*(f+1), 1, 1024]).half().cuda()``: the UNet module's ``torch`` is a
  proxy during the run whose ``zeros`` gives fp32 CPU zeros of the tiny CLIP width (``.half()``/``.cuda()``
  return them unchanged); every other ``torch`` call passes through.
* ``attn_scales``: ``[1, 1/2, 1/4]`` of ``default_config.py`` for the full-size layout; the tiny net (3 levels)
  passes ``[1, 1/2]`` so its last level has none, as the full net's.

What runs, as ``inference_animate_x_entrance.py`` does with ``configs/Animate_X_infer.yaml`` (partial_keys
``image, local_image, dwpose, pose_embeddings``; model ``eval()``; fp32 here instead of its fp16):

(a) one UNet forward with the conditional inputs (reference CLIP embedding, reference pixels in [0, 1] repeated
    over the frames, rendered poses with the reference pose first, keypoints (f+1, 2, 18), driving CLIP features)
    and with the unconditional inputs (all None: zero_y + zero image tokens, zero pose tokens through the live
    IPI); also once with ``randomref`` added (the entrance's default partial_keys); tolerance 1e-5;
(b) the entrance's noise (seed, the reference's VAE posterior draw, noise, offset noise x 0.1) and
    ``DiffusionDDIM(linear_sd, zero_terminal_snr, v).ddim_sample_loop`` with CFG 2.5 over ``--steps`` (4: a
    3-step schedule visits t = 999 where alpha_bar = 0 and the released step gives NaN); tolerance 1e-4;
(d) the VAE: the released ``AutoencoderKL`` (LDM, ``init_from_ckpt`` of a tiny ``v2-1_512-ema-pruned.ckpt`` with
    ``first_stage_model.*`` keys, strict) against diffusers' ``AutoencoderKL`` through the pack's VAE loader:
    encoder moments of the reference, the seeded reference latent sample, and the entrance's decode of (b)'s
    final latents (1 / 0.18215, 2 frames at a time); tolerance 1e-5 (decode: 1e-4, it follows the loop);
(c) the full-size key layout: the released UNet with the YAML + default_config values, built on the meta device,
    its ``{key: shape}`` saved so a test checks ours builds the same from ``AnimateXConfig()``.

Fixtures (``--fixtures``, default tests/fixtures/animate_x): ``parity.safetensors`` (inputs, released outputs,
metadata: seeds, tiny config, settings, stand-ins, versions) and ``full_layout.json``.

    python bench/animate_x_parity.py --source /tmp/animatex_src
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

FORWARD_TOL = 1e-5
DDIM_TOL = 1e-4
STAND_INS = [
    "xformers.ops.memory_efficient_attention = torch scaled_dot_product_attention",
    "fairscale checkpoint_wrapper = identity",
    "rotary_embedding_torch, open_clip = empty placeholders (unused)",
    "animatex package __init__ (imports the CUDA entrance) not run",
    "DwposeEncoder()/Resampler() built with tiny widths instead of the hard-coded 1024",
    "decoder SpatialTransformer context_dim 1024 -> the UNet's context_dim",
    "AdaptiveAvgPool2d((384, 256)) output_size -> half the tiny input",
    "unconditional torch.zeros([b*(f+1), 1, 1024]).half().cuda() -> fp32 CPU zeros of the tiny CLIP width",
    "tiny attn_scales [1, 1/2] (3 levels); full layout [1, 1/2, 1/4] (default_config.py)",
]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=os.environ.get("ANIMATEX_SRC", "/tmp/animatex_src"),
                    help="untouched copy of antgroup/animate-x (animatex/, configs/)")
    ap.add_argument("--source-commit", default=os.environ.get("ANIMATEX_COMMIT", ""),
                    help="the commit the source copy was archived from (recorded in the fixtures)")
    ap.add_argument("--fixtures", default=os.path.join(REPO, "tests", "fixtures", "animate_x"))
    ap.add_argument("--tiny-seed", type=int, default=0)
    ap.add_argument("--input-seed", type=int, default=1)
    ap.add_argument("--seed", type=int, default=13, help="the sampling seed (the YAML's)")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--size", default="128x64", help="HxW in pixels (latents HxW / 8)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--guide-scale", type=float, default=2.5)
    ap.add_argument("--timestep", type=int, default=501, help="t of the single forward")
    ap.add_argument("--no-layout", action="store_true", help="skip the full-size layout (c)")
    ap.add_argument("--no-write", action="store_true", help="compare only; keep the fixtures")
    return ap.parse_args(argv)


# --------------------------------------------------------------------------------------------- released code
def install_stand_ins(source: str):
    import torch
    import torch.nn.functional as F

    def memory_efficient_attention(q, k, v, attn_bias=None, op=None, **_):
        assert attn_bias is None
        return F.scaled_dot_product_attention(q, k, v)

    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m
        return m

    ops = module("xformers.ops", memory_efficient_attention=memory_efficient_attention)
    module("xformers", ops=ops)

    class RotaryEmbedding:  # placeholder: only built when USE_TEMPORAL_TRANSFORMER is False
        def __init__(self, *a, **k):
            raise RuntimeError("rotary_embedding_torch stand-in: not expected to be used")

    module("rotary_embedding_torch", RotaryEmbedding=RotaryEmbedding)
    ckpt = module("fairscale.nn.checkpoint", checkpoint_wrapper=lambda m, *a, **k: m)
    nn_ = module("fairscale.nn", checkpoint=ckpt)
    module("fairscale", nn=nn_)
    module("open_clip")
    pkg = module("animatex")
    pkg.__path__ = [os.path.join(source, "animatex")]
    sys.path.insert(0, source)


def import_released(source: str) -> dict:
    for need in ("animatex/model/unet_animate_x.py", "animatex/diffusion/diffusion_ddim.py",
                 "configs/Animate_X_infer.yaml", "animatex/default_config.py"):
        if not os.path.isfile(os.path.join(source, need)):
            raise SystemExit(f"--source {source!r}: {need} not found")
    install_stand_ins(source)
    import importlib

    unet_mod = importlib.import_module("animatex.model.unet_animate_x")
    utils_mod = importlib.import_module("utils.registry_class")
    if not os.path.abspath(utils_mod.__file__).startswith(os.path.abspath(source)):
        raise SystemExit(f"'utils' resolved to {utils_mod.__file__}, not the source copy")
    ipi_mod = importlib.import_module("animatex.model.IPI_module")
    ddim_mod = importlib.import_module("animatex.diffusion.diffusion_ddim")
    ae_mod = importlib.import_module("animatex.model.autoencoder")
    return dict(unet=unet_mod, ipi=ipi_mod, util=importlib.import_module("animatex.model.util"), ddim=ddim_mod,
                autoencoder=ae_mod)


def yaml_config(source: str) -> dict:
    import yaml

    with open(os.path.join(source, "configs", "Animate_X_infer.yaml")) as f:
        return yaml.safe_load(f)


def released_kwargs(yaml_cfg: dict) -> dict:
    kw = {k: v for k, v in yaml_cfg["UNet"].items() if k != "type"}
    kw["attn_scales"] = [1 / 1, 1 / 2, 1 / 4]  # default_config.cfg.UNet, merged under the YAML's UNet
    kw["config"] = None
    return kw


class _Zeros:
    """What ``torch.zeros(...)`` gives inside the proxied UNet module: ``.half()``/``.cuda()`` keep fp32 CPU."""

    def __init__(self, t):
        self._t = t

    def half(self):
        return self

    def cuda(self, *a, **k):
        return self._t

    def __getattr__(self, name):
        return getattr(self._t, name)


class TorchProxy(types.ModuleType):
    def __init__(self, real, clip_width: int):
        super().__init__("torch")
        self._real, self._clip = real, clip_width

    def __getattr__(self, name):
        return getattr(self._real, name)

    def zeros(self, *args, **kw):
        shape = list(args[0]) if len(args) == 1 and isinstance(args[0], (list, tuple)) else None
        if shape is not None and len(shape) == 3 and shape[1:] == [1, 1024] and not kw:
            return _Zeros(self._real.zeros(shape[:2] + [self._clip]))  # the unconditional driving features
        if shape is not None and len(shape) == 4 and not kw:
            return _Zeros(self._real.zeros(shape))  # the unconditional keypoints
        return self._real.zeros(*args, **kw)


def build_released_tiny(R: dict, cfg, yaml_cfg: dict, zero_y, hw: tuple[int, int]):
    """The released UNetSD_Animate_X at the tiny widths of ``cfg`` (an AnimateXConfig)."""
    import torch

    U, ipi, util = R["unet"], R["ipi"], R["util"]

    class TinyDwposeEncoder(ipi.DwposeEncoder):
        def __init__(self, **kw):
            kw = dict(dict(d_model=cfg.pose_width, nhead=cfg.pose_heads, num_encoder_layers=cfg.pose_layers,
                           dim_feedforward=cfg.pose_ff, input_dim=cfg.pose_input_dim, num_tokens=cfg.pose_tokens,
                           pos_embed_len=cfg.pose_positions), **kw)
            super().__init__(**kw)

    class TinyResampler(ipi.Resampler):
        def __init__(self, **kw):
            super().__init__(dim=cfg.pose_width, depth=cfg.resampler_depth,
                             dim_head=cfg.resampler_inner // cfg.resampler_heads, heads=cfg.resampler_heads,
                             embedding_dim=cfg.image_dim, output_dim=cfg.resampler_out,
                             ff_mult=cfg.resampler_ff // cfg.pose_width, **kw)

    class ContextSpatialTransformer(util.SpatialTransformer):
        def __init__(self, *a, context_dim=None, **kw):
            super().__init__(*a, context_dim=cfg.context_dim, **kw)

    U.DwposeEncoder, U.Resampler, U.SpatialTransformer = TinyDwposeEncoder, TinyResampler, ContextSpatialTransformer
    kw = released_kwargs(yaml_cfg)
    heads = cfg.init_temporal_width // cfg.head_dim
    kw.update(dim=cfg.model_channels, y_dim=cfg.context_dim, context_dim=cfg.context_dim, out_dim=cfg.out_channels,
              in_dim=cfg.in_channels, dim_mult=list(cfg.channel_mult), num_heads=heads, head_dim=cfg.head_dim,
              num_res_blocks=cfg.num_res_blocks, num_tokens=cfg.image_tokens, concat_dim=cfg.concat_dim,
              adapter_transformer_layers=cfg.adapter_layers, zero_y=zero_y,
              attn_scales=[1 / 2 ** i for i, a in enumerate(cfg.attention_levels) if a])
    model = U.UNetSD_Animate_X(**kw)
    pools = [m for m in model.modules() if isinstance(m, torch.nn.AdaptiveAvgPool2d)]
    assert len(pools) == 3 and all(tuple(p.output_size) == (384, 256) for p in pools), pools
    for p in pools:
        p.output_size = (hw[0] // 2, hw[1] // 2)
    return model


def released_full_layout(R: dict, yaml_cfg: dict) -> dict:
    """{key: shape} of the released UNet as the YAML builds it (hard-coded widths untouched), on meta."""
    import torch

    U = R["unet"]
    U.DwposeEncoder, U.Resampler, U.SpatialTransformer = R["ipi"].DwposeEncoder, R["ipi"].Resampler, \
        R["util"].SpatialTransformer
    kw = released_kwargs(yaml_cfg)
    kw["zero_y"] = None
    with torch.device("meta"):
        model = U.UNetSD_Animate_X(**kw)
    return {k: list(v.shape) for k, v in model.state_dict().items()}


class Proxied:
    """Run the released UNet with the zeros stand-in in its module's ``torch``."""

    def __init__(self, R, model, clip_width):
        self.U, self.model, self.clip = R["unet"], model, clip_width
        self.calls = []

    def __call__(self, x, t, **kw):
        import torch

        self.calls.append((x.detach().clone(), t.detach().clone(), sorted(k for k, v in kw.items() if v is not None)))
        real = self.U.torch
        self.U.torch = TorchProxy(torch, self.clip)
        try:
            return self.model(x, t, **kw)
        finally:
            self.U.torch = real

    def eval(self):
        self.model.eval()
        return self


# --------------------------------------------------------------------------------------------- inputs
def make_inputs(seed: int, frames: int, hw: tuple[int, int], cfg) -> dict:
    """Deterministic tiny inputs in the entrance's forms. Pixels are k/255 (uint8 kept for the fixture)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    H, W = hw
    h, w = H // 8, W // 8
    ref_u8 = torch.randint(0, 256, (3, H, W), generator=g, dtype=torch.uint8)
    pose_u8 = torch.randint(0, 256, (frames + 1, 3, H, W), generator=g, dtype=torch.uint8)  # reference pose first
    return dict(
        x=torch.randn(1, 4, frames, h, w, generator=g),
        zero_y=torch.randn(1, 77, cfg.context_dim, generator=g),
        image=torch.randn(1, 1, cfg.context_dim, generator=g),
        keypoints=torch.rand(1, frames + 1, 2, cfg.pose_input_dim // 2, generator=g),
        driving_features=torch.randn(frames + 1, 1, cfg.image_dim, generator=g),
        ref_posterior=torch.randn(1, 8, h, w, generator=g),
        ref_u8=ref_u8, pose_u8=pose_u8,
    )


def pixel_conditions(inp: dict, frames: int) -> tuple:
    """local_image (1, 3, f, H, W) in [0, 1], the reference repeated; dwpose (1, 3, f + 1, H, W) in [0, 1]."""
    ref = inp["ref_u8"].float() / 255
    local = ref[None, :, None].repeat(1, 1, frames, 1, 1)
    dwpose = (inp["pose_u8"].float() / 255).permute(1, 0, 2, 3)[None]
    return local, dwpose


def randomref_latent(inp: dict, frames: int):
    """The reference latent as the entrance builds it under latent_random_ref (mean of the posterior here)."""
    mean = inp["ref_posterior"][:, :4] * 0.18215
    return mean[:, :, None].repeat(1, 1, frames, 1, 1).contiguous()


def released_model_kwargs(inp: dict, frames: int) -> list[dict]:
    local, dwpose = pixel_conditions(inp, frames)
    cond = dict(image=inp["image"], local_image=local, dwpose=dwpose,
                pose_embeddings=[inp["keypoints"], inp["driving_features"]])
    uncond = dict(image=None, local_image=None, dwpose=None, pose_embeddings=None)
    return [cond, uncond]


def our_kwargs(inp: dict, frames: int) -> list[dict]:
    local, dwpose = pixel_conditions(inp, frames)
    cond = dict(text=inp["zero_y"], image_embed=inp["image"], local_image=local, dwpose=dwpose,
                keypoints=inp["keypoints"], driving_features=inp["driving_features"])
    uncond = dict(text=inp["zero_y"])
    return [cond, uncond]


def released_noise(R: dict, inp: dict, seed: int, frames: int, hw: tuple[int, int]):
    """The entrance from setup_seed to the noise: VAE posterior sample of the reference, noise, offset noise."""
    import torch

    torch.manual_seed(seed)
    posterior = R["autoencoder"].DiagonalGaussianDistribution(inp["ref_posterior"])
    R["autoencoder"].get_first_stage_encoding(posterior)  # the reference latent: drawn, not passed (YAML)
    noise = torch.randn([1, 4, frames, hw[0] // 8, hw[1] // 8])
    b, c, f, _, _ = noise.shape
    offset_noise = torch.randn(b, c, f, 1, 1, device=noise.device)
    return noise + 0.1 * offset_noise


def maxdiff(a, b) -> float:
    return float((a.double() - b.double()).abs().max())


# --------------------------------------------------------------------------------------------- main
def main(args):
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from aa2_core.families.animate_x import diffusion as ours_diffusion
    from aa2_core.families.animate_x.config import TINY_CONFIG
    from aa2_core.families.animate_x.loader import unet_from_state_dict
    from aa2_core.families.animate_x.tiny import tiny_animate_x_state_dict

    torch.set_grad_enabled(False)
    t_start = time.perf_counter()
    H, W = (int(v) for v in args.size.lower().split("x"))
    levels = len(TINY_CONFIG.channel_mult)
    if H % (8 * 2 ** (levels - 1)) or W % (8 * 2 ** (levels - 1)):
        raise SystemExit(f"--size: H and W must be multiples of {8 * 2 ** (levels - 1)}")
    F_ = args.frames
    R = import_released(args.source)
    yaml_cfg = yaml_config(args.source)
    cfg = TINY_CONFIG
    sd = tiny_animate_x_state_dict(args.tiny_seed)
    inp = make_inputs(args.input_seed, F_, (H, W), cfg)

    torch.manual_seed(0)
    theirs = build_released_tiny(R, cfg, yaml_cfg, inp["zero_y"], (H, W))
    theirs.load_state_dict(sd, strict=True)
    theirs.eval()
    run_theirs = Proxied(R, theirs, cfg.image_dim)
    ours = unet_from_state_dict(sd, "tiny Animate-X UNet")

    report, out = {}, {}
    t = torch.tensor([args.timestep])
    rk, ok = released_model_kwargs(inp, F_), our_kwargs(inp, F_)
    # (a) one forward: conditional, unconditional, conditional + randomref
    ref_lat = randomref_latent(inp, F_)
    for name, theirs_kw, ours_kw in (("cond", rk[0], ok[0]), ("uncond", rk[1], ok[1]),
                                     ("cond_randomref", dict(rk[0], randomref=ref_lat), dict(ok[0], randomref=ref_lat))):
        a = run_theirs(inp["x"], t, **theirs_kw)
        b = ours(inp["x"], t, **ours_kw)
        out[f"forward_{name}"] = a
        report[f"forward_{name}"] = maxdiff(a, b)
    # (b) noise and the DDIM loop with CFG
    noise = released_noise(R, inp, args.seed, F_, (H, W))
    our_noise = ours_diffusion.initial_noise(torch.Generator().manual_seed(args.seed), F_, H // 8, W // 8)
    report["noise"] = maxdiff(noise, our_noise)
    diffusion = R["ddim"].DiffusionDDIM(**{k: v for k, v in yaml_cfg["Diffusion"].items() if k != "type"})
    run_theirs.calls.clear()
    final = diffusion.ddim_sample_loop(noise=noise, model=run_theirs.eval(), model_kwargs=rk,
                                       guide_scale=args.guide_scale, ddim_timesteps=args.steps, eta=0.0)
    steps_x = torch.stack([c[0] for c in run_theirs.calls[0::2]])
    steps_t = torch.stack([c[1] for c in run_theirs.calls[0::2]]).flatten()
    assert [c[2] for c in run_theirs.calls[:2]] == [["dwpose", "image", "local_image", "pose_embeddings"], []]

    def predict(x, tt, kw):
        return ours(x, tt, **kw)

    our_steps = []
    our_final = ours_diffusion.sample(predict, noise, ok[0], ok[1], steps=args.steps, guide_scale=args.guide_scale,
                                      callback=lambda i, n, x: our_steps.append(x))
    report["ddim_final"] = maxdiff(final, our_final)
    report["ddim_timesteps_equal"] = steps_t.tolist() == ours_diffusion.ddim_timesteps(args.steps)
    report["ddim_steps_max"] = max(maxdiff(a, b) for a, b in zip(steps_x[1:], our_steps[:-1])) if args.steps > 1 else 0.0
    # released schedule numbers
    sched = ours_diffusion.Schedule.released()
    report["alphas_cumprod"] = maxdiff(diffusion.alphas_cumprod, sched.alphas_cumprod)
    report["alpha_bar_0"] = float(diffusion.alphas_cumprod[0])
    report["alpha_bar_999"] = float(diffusion.alphas_cumprod[-1])
    out.update(ddim_noise=noise, ddim_final=final, ddim_steps_x=steps_x, ddim_timesteps=steps_t,
               alphas_cumprod=diffusion.alphas_cumprod.clone())

    # (d) the VAE
    import tempfile

    from aa2_core.families.animate_x import vae as ours_vae
    from aa2_core.families.animate_x.loader import load_animate_x_vae
    from aa2_core.families.animate_x.tiny import TINY_VAE_DDCONFIG, write_tiny_animate_x_files

    with tempfile.TemporaryDirectory() as tmp:
        files = write_tiny_animate_x_files(tmp, args.tiny_seed)
        their_vae = R["autoencoder"].AutoencoderKL(ddconfig=dict(TINY_VAE_DDCONFIG, video_kernel_size=[3, 1, 1]),
                                                    embed_dim=4, pretrained=files["vae"]).eval()
        our_vae = load_animate_x_vae(files["vae"])
    ref01 = (inp["ref_u8"].float() / 255)[None]
    moments = their_vae.encode(ref01.sub(0.5).div_(0.5)).parameters
    report["vae_moments"] = maxdiff(moments, ours_vae.posterior_moments(our_vae, ref01))
    torch.manual_seed(args.seed)
    their_ref = R["autoencoder"].get_first_stage_encoding(their_vae.encode(ref01.sub(0.5).div_(0.5)))
    report["vae_reference_latent"] = maxdiff(
        their_ref, ours_vae.reference_latent(our_vae, ref01, torch.Generator().manual_seed(args.seed)))
    z = (1. / 0.18215 * final).permute(0, 2, 1, 3, 4).flatten(0, 1)  # the entrance's decode
    decoded = torch.cat([their_vae.decode(part) for part in torch.chunk(z, z.shape[0] // min(2, z.shape[0]), dim=0)])
    decoded = decoded.unflatten(0, (1, F_)).permute(0, 2, 1, 3, 4)
    report["vae_decode"] = maxdiff(decoded, ours_vae.decode_latents(our_vae, final))
    report["vae_decode_of_our_loop"] = maxdiff(decoded, ours_vae.decode_latents(our_vae, our_final))
    out.update(vae_moments=moments, vae_reference_latent=their_ref, vae_decoded=decoded)

    ok_all = (all(report[f"forward_{n}"] <= FORWARD_TOL for n in ("cond", "uncond", "cond_randomref"))
              and report["noise"] == 0 and report["ddim_final"] <= DDIM_TOL and report["ddim_timesteps_equal"]
              and report["alphas_cumprod"] == 0 and report["vae_moments"] <= FORWARD_TOL
              and report["vae_reference_latent"] <= FORWARD_TOL and report["vae_decode"] <= FORWARD_TOL
              and report["vae_decode_of_our_loop"] <= DDIM_TOL)

    # (c) the full-size layout
    layout = None
    if not args.no_layout:
        layout = released_full_layout(R, yaml_cfg)
        from aa2_core.families.animate_x.config import AnimateXConfig
        from aa2_core.families.animate_x.unet import AnimateXUNet

        with torch.device("meta"):
            full = AnimateXUNet(AnimateXConfig())
        mine = {k: list(v.shape) for k, v in full.state_dict().items()}
        report["full_layout_keys"] = len(layout)
        report["full_layout_equal"] = mine == layout
        derived = AnimateXConfig.from_state_dict({k: torch.empty(v, device="meta") for k, v in layout.items()})
        report["full_config_derived"] = derived == AnimateXConfig()
        report["full_params_M"] = round(sum(math.prod(v) for v in layout.values()) / 1e6, 2)
        ok_all = ok_all and report["full_layout_equal"] and report["full_config_derived"]

    for k, v in report.items():
        print(f"{k:>24}: {v}")
    print(f"{'PASS' if ok_all else 'FAIL'} (forward <= {FORWARD_TOL}, ddim <= {DDIM_TOL}); "
          f"{time.perf_counter() - t_start:.1f}s", flush=True)

    if not args.no_write:
        os.makedirs(args.fixtures, exist_ok=True)
        import diffusers

        meta = dict(
            tiny_seed=args.tiny_seed, input_seed=args.input_seed, seed=args.seed, frames=F_, height=H, width=W,
            steps=args.steps, guide_scale=args.guide_scale, timestep=args.timestep, tiny_config=cfg.to_dict(),
            forward_tolerance=FORWARD_TOL, ddim_tolerance=DDIM_TOL, measured=report, stand_ins=STAND_INS,
            source=dict(repo="github.com/antgroup/animate-x", commit=args.source_commit),
            versions=dict(torch=torch.__version__, diffusers=diffusers.__version__, numpy=np.__version__),
        )
        tensors = {k: v.contiguous() for k, v in inp.items()}
        tensors.update({k: v.detach().float().contiguous() if v.is_floating_point() else v.contiguous()
                        for k, v in out.items()})
        tensors["alphas_cumprod"] = out["alphas_cumprod"].double().contiguous()
        path = os.path.join(args.fixtures, "parity.safetensors")
        save_file(tensors, path, metadata={"animate_x_parity": json.dumps(meta)})
        if layout is not None:
            with open(os.path.join(args.fixtures, "full_layout.json"), "w") as f:
                json.dump(layout, f, separators=(",", ":"), sort_keys=True)
        print(f"fixtures -> {args.fixtures} ({sum(os.path.getsize(os.path.join(args.fixtures, n)) for n in os.listdir(args.fixtures)) / 1e6:.2f} MB)")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
