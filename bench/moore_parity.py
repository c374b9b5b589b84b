#!/usr/bin/env python3
"""Moore side of the parity harness: the ORIGINAL Moore-AnimateAnyone ``Pose2VideoPipeline`` on given weights.

This file contains no Moore code. It imports Moore's unmodified modules from a copy of its source (``--moore-src``,
made with ``git --git-dir=<mirror> archive HEAD | tar -x -C <dir>``), through ``import_moore`` of
``shared/tools/gpu_bench/moore_bench.py`` (diffusers 0.42: three moved imports aliased, USE_PEFT_BACKEND off,
torchvision hidden when it cannot be imported). The pack's own code is not used for any computation here; it is
only imported, with ``--write-tiny``, to write the tiny weight files.

What it does, the way Moore's ``scripts/pose2vid.py`` does it, in fp32 on the CPU:

* reads the Moore-format files of a ComfyUI-style ``--models`` folder (what ``aa2_core.check.write_tiny_models_dir``
  writes): ``animate_anyone2/{denoising_unet,reference_unet,pose_guider,motion_module}.pth``,
  ``vae/sd-vae-ft-mse.safetensors`` (diffusers keys), ``clip_vision/image_encoder.safetensors`` (transformers keys);
* builds Moore's ``UNet2DConditionModel`` (reference), ``UNet3DConditionModel`` (denoising, 3D block types as
  ``from_pretrained_2d`` makes them, ``unet_additional_kwargs`` of Moore's ``configs/inference/inference_v2.yaml``)
  and ``PoseGuider``, with the config read off the tensor shapes (heads and group count are not in the shapes:
  8 and 32, as SD1.5 and ``aa2_core/tiny.py``); diffusers ``AutoencoderKL``; transformers
  ``CLIPVisionModelWithProjection``; ``DDIMScheduler(**noise_scheduler_kwargs)`` of inference_v2.yaml;
* merges the weights as pose2vid.py does: motion_module.pth first, denoising_unet.pth over it; every key must load;
* makes a reference image and ``--frames`` pose frames as uint8 arrays, deterministic from ``--seed``
  (a smooth random image; stick figures on black), passes them to the pipeline as PIL images;
* calls ``pipe(ref, poses, W, H, F, steps, guidance, generator=torch.manual_seed(seed), context_frames=C,
  context_overlap=O)`` (context_stride 1, context_batch_size 1, the pipeline's defaults; closed_loop is the
  default True of ``context.uniform``, which the pipeline does not pass);
* the pipeline has no latent output, so ``pipe.decode_latents`` is replaced on the instance: it records the final
  latents (1, 4, F, H/8, W/8) and, unless ``--decode``, skips the VAE decode.

Saved with ``torch.save`` to ``--out``: ``latents`` (final, fp32), ``ref_image`` (uint8 H x W x 3), ``pose_frames``
(uint8 F x H x W x 3), and for debugging ``initial_noise``, ``timesteps``, ``windows``, ``clip_pixel_values``,
``image_embeds``, ``ref_latents``, ``pose_features``, ``unet_calls``, ``settings``, ``versions``, ``seconds``
(and ``video`` with ``--decode``).

    python bench/moore_parity.py --moore-src /tmp/moore_src --models /tmp/aa2_tiny --write-tiny \\
        --frames 8 --steps 2 --size 128x128 --context-frames 4 --context-overlap 1 --seed 0 --out /tmp/moore_8.pt
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moore-src", default=os.environ.get("MOORE_SRC", "/tmp/moore_src"),
                    help="untouched copy of Moore-AnimateAnyone's source (src/, configs/)")
    ap.add_argument("--gpu-bench", default=None,
                    help="folder holding moore_bench.py (default: shared/tools/gpu_bench beside or above the repo)")
    ap.add_argument("--models", required=True, help="ComfyUI-style models folder with the Moore-format files")
    ap.add_argument("--write-tiny", action="store_true",
                    help="first write the tiny models (aa2_core.check.write_tiny_models_dir) into --models "
                    "if its animate_anyone2 folder does not exist yet")
    ap.add_argument("--tiny-seed", type=int, default=0, help="seed of --write-tiny")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--size", default="128x128", help="HxW of the video (multiples of 8)")
    ap.add_argument("--ref-size", default=None, help="HxW of the reference image (default --size; Moore resizes "
                    "it to --size with PIL lanczos for the VAE, to 224x224 with PIL bicubic for CLIP)")
    ap.add_argument("--pose-size", default=None, help="HxW of the pose frames (default --size; resized like the "
                    "reference, lanczos)")
    ap.add_argument("--context-frames", type=int, default=24)
    ap.add_argument("--context-overlap", type=int, default=4)
    ap.add_argument("--guidance", type=float, default=3.5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--unet-heads", type=int, default=8, help="attention_head_dim of the UNet config (SD1.5: 8)")
    ap.add_argument("--unet-groups", type=int, default=32, help="norm_num_groups of the UNet config")
    ap.add_argument("--vae-groups", type=int, default=32, help="norm_num_groups of the VAE config")
    ap.add_argument("--clip-heads", type=int, default=None,
                    help="CLIP vision heads (default: 12/16 for 768/1024+ wide, else max(1, hidden // 64))")
    ap.add_argument("--decode", action="store_true", help="also run Moore's VAE decode and save the video")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--torchvision", choices=["auto", "hide", "keep"], default="auto")
    ap.add_argument("--out", required=True, help="output .pt file")
    return ap.parse_args(argv)


def parse_hw(s):
    m = re.fullmatch(r"(\d+)[xX](\d+)", s.strip())
    if not m:
        raise SystemExit(f"size {s!r}: expected HxW, e.g. 128x128")
    return int(m.group(1)), int(m.group(2))


def find_gpu_bench(explicit):
    cands = [explicit] if explicit else []
    cands += [os.path.join(REPO, "shared", "tools", "gpu_bench"),
              os.path.join(os.path.dirname(REPO), "shared", "tools", "gpu_bench"),
              "/work/shared/tools/gpu_bench"]
    for c in cands:
        if c and os.path.isfile(os.path.join(c, "moore_bench.py")):
            return c
    raise SystemExit(f"moore_bench.py not found in {cands}; give --gpu-bench")


# --------------------------------------------------------------------------------------------- files
WEIGHT_EXT = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
FILES = dict(
    denoising_unet=(("animate_anyone2",), ("denoising_unet",)),
    reference_unet=(("animate_anyone2",), ("reference_unet",)),
    pose_guider=(("animate_anyone2",), ("pose_guider",)),
    motion_module=(("animate_anyone2", "animatediff_models"), ("motion_module", "mm_sd_v15_v2")),
    vae=(("vae",), ("sd-vae-ft-mse", "diffusion_pytorch_model")),
    clip_vision=(("clip_vision",), ("image_encoder", "sd-image-variations-image_encoder", "model")),
)


def find_files(models_dir):
    found, missing = {}, []
    for role, (folders, names) in FILES.items():
        hit = None
        for folder in folders:
            for name in names:
                base = os.path.join(models_dir, folder, name)
                if os.path.isdir(base):
                    hit = base
                for ext in WEIGHT_EXT:
                    if hit is None and os.path.isfile(base + ext):
                        hit = base + ext
                if hit:
                    break
            if hit:
                break
        if hit:
            found[role] = hit
        else:
            missing.append(f"{role}: {folders[0]}/{names[0]}.(pth|safetensors)")
    if missing:
        raise SystemExit(f"--models {models_dir}: missing " + "; ".join(missing))
    return found


def read_sd(path):
    import torch

    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return dict(load_file(path, device="cpu"))
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    return dict(sd)


def indices(sd, pattern):
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd for m in [rx.match(k)] if m})


# --------------------------------------------------------------------------------------------- configs
def unet_config(sd, heads, groups):
    """SD1.5-structured UNet config read off a (diffusers-keyed) UNet state dict."""
    levels = indices(sd, r"down_blocks\.(\d+)\.")
    ups = indices(sd, r"up_blocks\.(\d+)\.")
    boc = [sd[f"down_blocks.{i}.resnets.0.conv1.weight"].shape[0] for i in levels]
    down = ["CrossAttnDownBlock2D" if any(k.startswith(f"down_blocks.{i}.attentions.") for k in sd) else "DownBlock2D"
            for i in levels]
    up = ["CrossAttnUpBlock2D" if any(k.startswith(f"up_blocks.{i}.attentions.") for k in sd) else "UpBlock2D"
          for i in ups]
    k2 = next(k for k in sd if k.endswith("attn2.to_k.weight"))
    proj = next(k for k in sd if re.match(r"down_blocks\.\d+\.attentions\.0\.proj_in\.weight", k))
    return dict(
        sample_size=64, in_channels=sd["conv_in.weight"].shape[1],
        out_channels=sd["conv_out.weight"].shape[0] if "conv_out.weight" in sd else sd["conv_in.weight"].shape[1],
        down_block_types=down, up_block_types=up, block_out_channels=boc,
        layers_per_block=len(indices(sd, r"down_blocks\.0\.resnets\.(\d+)\.")),
        cross_attention_dim=sd[k2].shape[1], attention_head_dim=heads, norm_num_groups=groups,
        use_linear_projection=sd[proj].ndim == 2,
    )


def unet3d_config(cfg2d):
    """what UNet3DConditionModel.from_pretrained_2d makes of the 2D config"""
    c = dict(cfg2d)
    c["down_block_types"] = [t.replace("2D", "3D") for t in c["down_block_types"]]
    c["up_block_types"] = [t.replace("2D", "3D") for t in c["up_block_types"]]
    c["mid_block_type"] = "UNetMidBlock3DCrossAttn"
    return c


def vae_config(sd, groups):
    levels = indices(sd, r"encoder\.down_blocks\.(\d+)\.")
    if not levels or "decoder.conv_in.weight" not in sd:
        raise SystemExit("VAE: expected a diffusers-keyed AutoencoderKL state dict (encoder.down_blocks.*)")
    return dict(
        in_channels=sd["encoder.conv_in.weight"].shape[1], out_channels=sd["decoder.conv_out.weight"].shape[0],
        down_block_types=("DownEncoderBlock2D",) * len(levels), up_block_types=("UpDecoderBlock2D",) * len(levels),
        block_out_channels=tuple(sd[f"encoder.down_blocks.{i}.resnets.0.conv2.weight"].shape[0] for i in levels),
        layers_per_block=len(indices(sd, r"encoder\.down_blocks\.0\.resnets\.(\d+)\.")),
        latent_channels=sd["decoder.conv_in.weight"].shape[1], norm_num_groups=groups,
    )


CLIP_HEADS = {768: 12, 1024: 16, 1280: 16, 1664: 16}


def load_clip(path, heads):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    if os.path.isdir(path):
        folder = os.path.join(path, "image_encoder") if os.path.isdir(os.path.join(path, "image_encoder")) else path
        return CLIPVisionModelWithProjection.from_pretrained(folder, local_files_only=True)
    sd = {k: v for k, v in read_sd(path).items() if k.startswith(("vision_model.", "visual_projection."))}
    patch = sd["vision_model.embeddings.patch_embedding.weight"]
    hidden, positions = patch.shape[0], sd["vision_model.embeddings.position_embedding.weight"].shape[0]
    cfg = CLIPVisionConfig(
        hidden_size=hidden, intermediate_size=sd["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
        projection_dim=sd["visual_projection.weight"].shape[0],
        num_hidden_layers=len(indices(sd, r"vision_model\.encoder\.layers\.(\d+)\.")),
        num_attention_heads=heads or CLIP_HEADS.get(hidden, max(1, hidden // 64)),
        patch_size=patch.shape[-1], image_size=patch.shape[-1] * round((positions - 1) ** 0.5),
    )
    model = CLIPVisionModelWithProjection(cfg)
    sd = {k: v for k, v in sd.items() if not k.endswith("position_ids")}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise SystemExit(f"CLIP vision {path}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model


def load_strict(model, sd, what, optional=()):
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith(optional)]
    if missing or unexpected:
        raise SystemExit(f"{what}: {len(missing)} missing keys {missing[:6]}, {len(unexpected)} unexpected "
                         f"{unexpected[:6]}")
    return model


def build_models(M, files, add_kwargs, args):
    import torch
    from diffusers import AutoencoderKL

    den_sd = read_sd(files["denoising_unet"])
    mm_sd = read_sd(files["motion_module"])
    ref_sd = read_sd(files["reference_unet"])
    pose_sd = read_sd(files["pose_guider"])

    cfg2d = unet_config({k: v for k, v in den_sd.items() if ".motion_modules." not in k},
                        args.unet_heads, args.unet_groups)
    ref_cfg = unet_config(ref_sd, args.unet_heads, args.unet_groups)
    reference_unet = M["UNet2DConditionModel"](**ref_cfg)
    # pose2vid.py loads reference_unet.pth strictly; a file without the unused output head is accepted here
    load_strict(reference_unet, ref_sd, "reference UNet", optional=("conv_norm_out.", "conv_out."))

    kw = copy.deepcopy(add_kwargs)
    merged = dict(mm_sd)
    merged.update(den_sd)  # pose2vid: from_pretrained_2d(base + motion_module.pth), then denoising_unet.pth over it
    pe = [v for k, v in merged.items() if k.endswith("pos_encoder.pe")]
    if pe:
        kw["motion_module_kwargs"]["temporal_position_encoding_max_len"] = int(pe[0].shape[1])
    kw["motion_module_mid_block"] = any(k.startswith("mid_block.motion_modules.") for k in merged)
    denoising_unet = M["UNet3DConditionModel"].from_config(unet3d_config(cfg2d), **kw)
    load_strict(denoising_unet, merged, "denoising UNet + motion module")

    boc = (pose_sd["conv_in.weight"].shape[0],) + tuple(
        pose_sd[f"blocks.{i}.weight"].shape[0] for i in indices(pose_sd, r"blocks\.(\d+)\.") if i % 2 == 1)
    pose_guider = M["PoseGuider"](pose_sd["conv_out.weight"].shape[0], conditioning_channels=
                                  pose_sd["conv_in.weight"].shape[1], block_out_channels=boc)
    load_strict(pose_guider, pose_sd, "pose guider")

    vae_sd = read_sd(files["vae"]) if not os.path.isdir(files["vae"]) else None
    if vae_sd is None:
        vae = AutoencoderKL.from_pretrained(files["vae"], local_files_only=True)
    else:
        vae = load_strict(AutoencoderKL(**vae_config(vae_sd, args.vae_groups)), vae_sd, "VAE")
    image_encoder = load_clip(files["clip_vision"], args.clip_heads)

    mods = dict(reference_unet=reference_unet, denoising_unet=denoising_unet, pose_guider=pose_guider, vae=vae,
                image_encoder=image_encoder)
    for m in mods.values():
        torch.nn.Module.to(m, device="cpu", dtype=torch.float32).eval().requires_grad_(False)
    configs = dict(unet2d=cfg2d, reference_unet=ref_cfg, unet_additional_kwargs=kw,
                   pose_guider=dict(conditioning_embedding_channels=pose_sd["conv_out.weight"].shape[0],
                                    block_out_channels=list(boc)),
                   vae=dict(vae.config), image_encoder=image_encoder.config.to_dict())
    return mods, configs


# --------------------------------------------------------------------------------------------- inputs
def make_inputs(seed, frames, ref_hw, pose_hw):
    """uint8 arrays: reference (H, W, 3), a smooth random image; poses (F, H, W, 3), stick figures on black."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    rh, rw = ref_hw
    low = Image.fromarray(rng.integers(0, 256, (6, 4, 3), dtype=np.uint8))
    ref = np.asarray(low.resize((rw, rh), Image.BICUBIC), dtype=np.int16)
    ref = np.clip(ref + rng.integers(-12, 13, ref.shape), 0, 255).astype(np.uint8)

    ph, pw = pose_hw
    lw = max(2, round(min(ph, pw) / 40))
    base = dict(head=(0.5, 0.14), neck=(0.5, 0.25), hip=(0.5, 0.55), lh=(0.28, 0.42), rh=(0.72, 0.42),
                lf=(0.38, 0.92), rf=(0.62, 0.92))
    jitter = {k: rng.uniform(-0.04, 0.04, 2) for k in base}
    phase, period = rng.uniform(0, 2 * math.pi), rng.uniform(10, 20)
    bones = [(("head", "neck"), (255, 0, 85)), (("neck", "hip"), (0, 255, 0)), (("neck", "lh"), (255, 170, 0)),
             (("neck", "rh"), (170, 255, 0)), (("hip", "lf"), (0, 170, 255)), (("hip", "rf"), (0, 85, 255))]
    poses = []
    for i in range(frames):
        a = math.sin(phase + 2 * math.pi * i / period)
        dx = 0.06 * math.sin(phase + 2 * math.pi * i / (2 * period))
        j = {}
        for k, (x, y) in base.items():
            x, y = x + jitter[k][0] + dx, y + jitter[k][1]
            if k in ("lh", "rh"):
                y += (0.1 if k == "lh" else -0.1) * a
            if k in ("lf", "rf"):
                x += (0.05 if k == "lf" else -0.05) * a
            j[k] = (x * pw, y * ph)
        img = Image.new("RGB", (pw, ph))
        d = ImageDraw.Draw(img)
        for (p, q), col in bones:
            d.line([j[p], j[q]], fill=col, width=lw)
        for x, y in j.values():
            d.ellipse([x - lw, y - lw, x + lw, y + lw], fill=(255, 255, 255))
        poses.append(np.asarray(img, dtype=np.uint8))
    return ref, np.stack(poses)


# --------------------------------------------------------------------------------------------- main
def main(args):
    t_start = time.perf_counter()
    bench_dir = find_gpu_bench(args.gpu_bench)
    sys.path.insert(0, bench_dir)
    import moore_bench as mb

    mb.prepare_environment(argparse.Namespace(progress=False, torchvision=args.torchvision))
    import numpy as np
    import torch
    from PIL import Image

    if args.threads:
        torch.set_num_threads(args.threads)
    H, W = parse_hw(args.size)
    if H % 8 or W % 8:
        raise SystemExit("--size: height and width must be multiples of 8")
    ref_hw = parse_hw(args.ref_size) if args.ref_size else (H, W)
    pose_hw = parse_hw(args.pose_size) if args.pose_size else (H, W)
    for need in ("src/pipelines/pipeline_pose2vid_long.py", "configs/inference/inference_v2.yaml"):
        if not os.path.isfile(os.path.join(args.moore_src, need)):
            raise SystemExit(f"--moore-src {args.moore_src!r}: {need} not found")

    if args.write_tiny and not os.path.isdir(os.path.join(args.models, "animate_anyone2")):
        sys.path.insert(0, REPO)
        from aa2_core.check import write_tiny_models_dir

        write_tiny_models_dir(args.models, args.tiny_seed)
        print(f"wrote tiny models to {args.models}", flush=True)

    M = mb.import_moore(args.moore_src, "off")
    from diffusers import DDIMScheduler
    from diffusers.utils import logging as dlogging

    dlogging.set_verbosity_error()

    add_kwargs, sched_kwargs = mb.load_inference_v2(args.moore_src)
    files = find_files(args.models)
    t0 = time.perf_counter()
    mods, configs = build_models(M, files, add_kwargs, args)
    load_s = time.perf_counter() - t0

    pipe = M["Pose2VideoPipeline"](vae=mods["vae"], image_encoder=mods["image_encoder"],
                                   reference_unet=mods["reference_unet"], denoising_unet=mods["denoising_unet"],
                                   pose_guider=mods["pose_guider"], scheduler=DDIMScheduler(**sched_kwargs))
    pipe = pipe.to(torch.device("cpu"), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)

    ref_u8, poses_u8 = make_inputs(args.seed, args.frames, ref_hw, pose_hw)
    ref_pil = Image.fromarray(ref_u8)
    pose_pils = [Image.fromarray(p) for p in poses_u8]

    # --- recorders (hooks and instance attributes only; Moore's code runs unchanged)
    rec = dict(unet_calls=0)

    def on_clip(mod, a, kw, out):
        rec["clip_pixel_values"] = (kw.get("pixel_values") if "pixel_values" in kw else a[0]).detach().clone()
        rec["image_embeds"] = out.image_embeds.detach().clone()

    def on_ref(mod, a, kw):
        rec.setdefault("ref_latents", a[0][:1].detach().clone())

    def on_pose(mod, a, out):
        rec["pose_features"] = out.detach().clone()

    def on_unet(mod, a, kw):
        rec["unet_calls"] += 1

    hooks = [mods["image_encoder"].register_forward_hook(on_clip, with_kwargs=True),
             mods["reference_unet"].register_forward_pre_hook(on_ref, with_kwargs=True),
             mods["pose_guider"].register_forward_hook(on_pose),
             mods["denoising_unet"].register_forward_pre_hook(on_unet, with_kwargs=True)]
    orig_prepare = pipe.prepare_latents

    def prepare_latents(*a, **kw):
        lat = orig_prepare(*a, **kw)
        rec["initial_noise"] = lat.detach().clone()
        return lat

    orig_decode = pipe.decode_latents

    def decode_latents(latents):
        rec["latents"] = latents.detach().clone()
        if args.decode:
            return orig_decode(latents)
        b, _, f = latents.shape[:3]
        return np.zeros((b, 3, f, 1, 1), dtype=np.float32)

    pipe.prepare_latents = prepare_latents
    pipe.decode_latents = decode_latents

    C, O = args.context_frames, args.context_overlap
    windows = list(M["uniform"](0, args.steps, args.frames, C, 1, O))
    t0 = time.perf_counter()
    generator = torch.manual_seed(args.seed)  # as scripts/pose2vid.py: the global CPU generator
    video = pipe(ref_pil, pose_pils, W, H, args.frames, args.steps, args.guidance, generator=generator,
                 context_frames=C, context_overlap=O).videos
    run_s = time.perf_counter() - t0
    for h in hooks:
        h.remove()

    lat = rec["latents"].float()
    expect_noise = torch.randn(tuple(lat.shape), generator=torch.Generator().manual_seed(args.seed))
    assert torch.equal(rec["initial_noise"], expect_noise), "initial noise is not randn(seed) of the latent shape"
    assert rec["unet_calls"] == args.steps * len(windows), (rec["unet_calls"], args.steps, len(windows))
    pipe.scheduler.set_timesteps(args.steps)

    import diffusers
    import PIL
    import transformers

    out = dict(
        latents=lat, ref_image=torch.from_numpy(ref_u8.copy()), pose_frames=torch.from_numpy(poses_u8.copy()),
        initial_noise=rec["initial_noise"], timesteps=pipe.scheduler.timesteps.clone(), windows=windows,
        clip_pixel_values=rec["clip_pixel_values"], image_embeds=rec["image_embeds"],
        ref_latents=rec["ref_latents"], pose_features=rec["pose_features"], unet_calls=rec["unet_calls"],
        settings=dict(frames=args.frames, steps=args.steps, height=H, width=W, ref_size=ref_hw, pose_size=pose_hw,
                      context_frames=C, context_overlap=O, context_stride=1, context_batch_size=1,
                      closed_loop=True, guidance=args.guidance, eta=0.0, seed=args.seed, dtype="float32",
                      device="cpu", models=os.path.abspath(args.models), files=files,
                      noise_scheduler_kwargs=sched_kwargs, configs=configs),
        moore_commit=mb.moore_commit(args.moore_src),
        versions=dict(torch=torch.__version__, diffusers=diffusers.__version__,
                      transformers=transformers.__version__, pillow=PIL.__version__, numpy=np.__version__),
        seconds=dict(load=round(load_s, 3), pipeline=round(run_s, 3),
                     total=round(time.perf_counter() - t_start, 3)),
    )
    if args.decode:
        out["video"] = video.float()
    d = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(d, exist_ok=True)
    torch.save(out, args.out)
    print(f"latents {tuple(lat.shape)} mean {lat.mean():.5f} std {lat.std():.5f} finite "
          f"{bool(torch.isfinite(lat).all())}; {len(windows)} windows x {args.steps} steps; "
          f"load {load_s:.1f}s, pipeline {run_s:.1f}s -> {args.out}", flush=True)


if __name__ == "__main__":
    main(parse_args())
