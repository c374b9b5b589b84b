#!/usr/bin/env python3
"""Animate-X speed and memory, side by side: the RELEASED inference loop against ours, same weights, same inputs.

    python bench/animate_x_speed.py --source /tmp/animatex_src                       # CPU, tiny weights
    python bench/animate_x_speed.py --source SRC --device cuda --frames 32,128 --out r.json   # full size, GPU

The released side is what ``inference_animate_x_entrance.py`` runs: ``UNetSD_Animate_X`` (YAML + default_config
values, fp32 weights) under ``torch.cuda.amp.autocast`` (fp16) and ``DiffusionDDIM.ddim_sample_loop`` with CFG 2.5,
the whole video in one pass. It is imported unmodified from a source copy, with the CPU stand-ins of
``bench/animate_x_parity.py``; on a GPU the xformers stand-in gives ``scaled_dot_product_attention`` 4-D tensors
so that PyTorch's fused (flash / memory-efficient) kernels run, as xformers' would. Ours is the pack's
``Sampler`` over ``AnimateXModels`` with ``Schedule.ANIMATE_X`` (``--dtype`` weights, fp16 by default on a GPU):

* ``ours_whole``: one clip over the whole video -- the same UNet calls as the released loop, so the final latents
  are compared (``max|diff|`` and relative to the released latents' spread);
* ``ours_windows``: context windows (``--window``/``--overlap``): memory bounded whatever the length (a different
  picture from the whole-video pass by design).

Weights are seeded random at full size (``--tiny``: the parity test's tiny weights at 128x64). Steps default to
25, a count where the released loop and diffusers' DDIM visit the same timesteps (30 runs 31 steps there).
Peak memory on a GPU is each side's own: its weights plus the most the run allocated above what was allocated
when it started (both models stay resident; the other side's weights are not counted). Prints a table and writes
``--out`` JSON after each row. Nothing here is a test.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=os.environ.get("ANIMATEX_SRC", "/tmp/animatex_src"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], default=None, help="ours (default fp16 on cuda)")
    ap.add_argument("--tiny", action="store_true", help="tiny weights (default on the CPU)")
    ap.add_argument("--frames", default=None, help="lengths (default 32,128 on cuda; 4,8 tiny)")
    ap.add_argument("--size", default=None, help="HxW pixels (default 768x512; tiny 128x64)")
    ap.add_argument("--steps", type=int, default=None, help="default 25 (tiny 4)")
    ap.add_argument("--window", type=int, default=None, help="ours_windows clip length (default 32; tiny 4)")
    ap.add_argument("--overlap", type=int, default=None, help="ours_windows overlap (default 8; tiny 2)")
    ap.add_argument("--released-max-frames", type=int, default=10_000, help="skip the released loop above this")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default=None)
    return ap.parse_args(argv)


def randomise_(model, seed: int):
    """Seeded random weights at a scale that keeps a deep net's activations finite in fp16."""
    import torch

    g = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    for name, p in model.state_dict().items():
        if not p.is_floating_point():
            continue
        if p.ndim >= 2:
            p.copy_(torch.randn(p.shape, generator=g, device=p.device) / math.sqrt(p[0].numel()))
        elif name.endswith("weight"):
            p.fill_(1.0)  # norm scales
        else:
            p.copy_(0.02 * torch.randn(p.shape, generator=g, device=p.device))


def fused_attention_stand_in():
    """xformers' (B, M, K) attention as SDPA on (B, 1, M, K): the fused kernels need 4-D inputs."""
    import torch.nn.functional as F

    ops = sys.modules["xformers.ops"]

    def memory_efficient_attention(q, k, v, attn_bias=None, op=None, **_):
        assert attn_bias is None
        return F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]

    ops.memory_efficient_attention = memory_efficient_attention


def build_released(P, R, yaml_cfg, cfg, zero_y, hw, device, tiny: bool, seed: int):
    import torch

    if tiny:
        from aa2_core.families.animate_x.tiny import tiny_animate_x_state_dict

        model = P.build_released_tiny(R, cfg, yaml_cfg, zero_y, hw)
        model.load_state_dict(tiny_animate_x_state_dict(seed), strict=True)
        return model.to(device).eval()
    U = R["unet"]
    U.DwposeEncoder, U.Resampler, U.SpatialTransformer = R["ipi"].DwposeEncoder, R["ipi"].Resampler, \
        R["util"].SpatialTransformer
    kw = P.released_kwargs(yaml_cfg)
    kw["zero_y"] = zero_y.to(device)
    with torch.device(device):
        model = U.UNetSD_Animate_X(**kw)
    model.to(device)  # a few tensors are made on the CPU explicitly
    randomise_(model, seed)
    return model.eval()


def inputs(cfg, frames: int, hw, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    H, W = hw
    return dict(
        image=torch.randn(1, 1, cfg.context_dim, generator=g),
        ref=torch.rand(3, H, W, generator=g),
        pose=torch.rand(frames + 1, 3, H, W, generator=g),  # reference pose first
        keypoints=torch.rand(1, frames + 1, 2, cfg.pose_input_dim // 2, generator=g),
        features=torch.randn(frames + 1, 1, cfg.image_dim, generator=g),
    )


def released_kwargs(inp, frames, device):
    local = inp["ref"][None, :, None].repeat(1, 1, frames, 1, 1)
    dwpose = inp["pose"].permute(1, 0, 2, 3)[None]
    cond = dict(y=None, image=inp["image"], local_image=local, dwpose=dwpose, randomref=None,
                pose_embeddings=[inp["keypoints"], inp["features"]])
    cond = {k: (v.to(device) if hasattr(v, "to") else [t.to(device) for t in v] if v is not None else None)
            for k, v in cond.items()}
    return [cond, dict(y=None, local_image=None, image=None, randomref=None, dwpose=None, pose_embeddings=None)]


def our_conditions(inp, frames):
    import torch

    from aa2_core.pipeline.prepare import Conditions, Reference

    def pack(rows):  # (n, 2, 18) -> (n, 18, 3), confidence 1
        return torch.cat([rows.transpose(-1, -2), torch.ones(*rows.shape[:-2], rows.shape[-1], 1)], dim=-1)

    h, w = inp["ref"].shape[-2] // 8, inp["ref"].shape[-1] // 8
    ref = Reference(latents=torch.zeros(1, 4, h, w), image_embeds=inp["image"],
                    tokens=dict(local_image=inp["ref"][None], pose=inp["pose"][:1], keypoints=pack(inp["keypoints"][0, :1]),
                                feature=inp["features"][:1]))
    cond = Conditions(ref, inp["pose"][1:].permute(0, 2, 3, 1))
    cond.driving_keypoints = pack(inp["keypoints"][0, 1:])
    cond.driving_features = inp["features"][1:]
    return cond


class Timer:
    def __init__(self, device):
        self.device = device

    def __enter__(self):
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.above_start = torch.cuda.max_memory_allocated() - self.start  # both models' weights are resident
        else:
            import resource

            self.rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        self.seconds = time.perf_counter() - self.t0


def main(args):
    import torch

    import animate_x_parity as P
    from aa2_core.choices import Precision
    from aa2_core.families.animate_x.config import TINY_CONFIG, AnimateXConfig
    from aa2_core.families.animate_x.diffusion import initial_noise
    from aa2_core.families.animate_x.family import AnimateXModels
    from aa2_core.families.animate_x.loader import unet_from_state_dict
    from aa2_core.pipeline.options import SamplerSettings, Schedule, StitchMode, Stitching
    from aa2_core.pipeline.sampler import Sampler

    torch.set_grad_enabled(False)
    cuda = args.device.startswith("cuda")
    tiny = args.tiny or not cuda
    frames_list = [int(v) for v in (args.frames or ("4,8" if tiny else "32,128")).split(",")]
    H, W = (int(v) for v in (args.size or ("128x64" if tiny else "768x512")).lower().split("x"))
    steps = args.steps or (4 if tiny else 25)
    window, overlap = args.window or (4 if tiny else 32), args.overlap or (2 if tiny else 8)
    dtype = Precision(args.dtype).dtype if args.dtype else (torch.float16 if cuda else torch.float32)
    cfg = TINY_CONFIG if tiny else AnimateXConfig()

    R = P.import_released(args.source)
    if cuda:
        fused_attention_stand_in()
    yaml_cfg = P.yaml_config(args.source)
    zero_y = torch.randn(1, 77, cfg.context_dim, generator=torch.Generator().manual_seed(3))
    t0 = time.perf_counter()
    theirs = build_released(P, R, yaml_cfg, cfg, zero_y, (H, W), args.device, tiny, seed=0)
    run_theirs = theirs if cuda else P.Proxied(R, theirs, cfg.image_dim)  # CPU: fp32 zeros stand-in
    sd = {k: v.detach().float().cpu() for k, v in theirs.state_dict().items()}
    ours = unet_from_state_dict(sd, "random Animate-X UNet", dtype=dtype).to(args.device).eval()
    del sd
    params = sum(p.numel() for p in ours.parameters()) / 1e6
    weight_bytes = {side: sum(t.numel() * t.element_size() for t in m.state_dict().values())
                    for side, m in (("released", theirs), ("ours", ours))}
    build_s = time.perf_counter() - t0
    diffusion = R["ddim"].DiffusionDDIM(**{k: v for k, v in yaml_cfg["Diffusion"].items() if k != "type"})
    models = AnimateXModels(ours, text=zero_y)
    device_name = torch.cuda.get_device_name() if cuda else "cpu"
    head = dict(device=device_name, torch=torch.__version__, size_wxh=f"{W}x{H}", steps=steps, cfg=2.5,
                params_M=round(params, 1), ours_dtype=str(dtype).replace("torch.", ""),
                released_dtype="fp32 weights, fp16 autocast" if cuda else "fp32", tiny=tiny,
                window=window, overlap=overlap, build_s=round(build_s, 1), rows=[])
    print(json.dumps({k: v for k, v in head.items() if k != "rows"}), flush=True)

    def write():
        if args.out:
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out + ".tmp", "w") as f:
                json.dump(head, f, indent=1)
            os.replace(args.out + ".tmp", args.out)

    def released(frames, inp, noise):
        kw = released_kwargs(inp, frames, args.device)
        with torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
            return diffusion.ddim_sample_loop(noise=noise.to(args.device), model=run_theirs, model_kwargs=kw,
                                              guide_scale=2.5, ddim_timesteps=steps, eta=0.0).float().cpu()

    def ours_run(frames, inp, noise, stitching):
        settings = SamplerSettings(steps=steps, cfg=2.5, scheduler="ddim", schedule=Schedule.ANIMATE_X,
                                   stitching=stitching, environment_mode=False)
        out = Sampler(models, settings, device=args.device, dtype=dtype).sample(our_conditions(inp, frames), noise=noise)
        return out.permute(1, 0, 2, 3)[None].float()

    # warm-up (kernel choice, allocator) on a short video, both sides
    inp = inputs(cfg, 2, (H, W), seed=1)
    noise = initial_noise(torch.Generator().manual_seed(13), 2, H // 8, W // 8)
    released(2, inp, noise)
    ours_run(2, inp, noise, Stitching(clip_length=2, motion_frames=0))

    for frames in frames_list:
        inp = inputs(cfg, frames, (H, W), seed=1)
        noise = initial_noise(torch.Generator().manual_seed(13), frames, H // 8, W // 8)
        results = {}
        runs = [("ours_whole", lambda: ours_run(frames, inp, noise, Stitching(clip_length=frames, motion_frames=0))),
                ("ours_windows", lambda: ours_run(frames, inp, noise, Stitching(
                    mode=StitchMode.CONTEXT_WINDOWS, clip_length=min(window, frames),
                    context_overlap=min(overlap, min(window, frames) - 1))))]
        if frames <= args.released_max_frames:
            runs.insert(0, ("released", lambda: released(frames, inp, noise)))
        for name, fn in runs:
            best = None
            for _ in range(args.repeats):
                try:
                    with Timer(args.device) as tm:
                        lat = fn()
                except Exception as e:  # noqa: BLE001 - out of memory or a length the released code cannot run
                    row = dict(run=name, frames=frames, error=f"{type(e).__name__}: {str(e)[:160]}")
                    break
                if best is None or tm.seconds < best.seconds:
                    best = tm
                results[name] = lat
            else:
                row = dict(run=name, frames=frames, seconds=round(best.seconds, 2),
                           frames_per_s=round(frames / best.seconds, 3), finite=bool(torch.isfinite(results[name]).all()))
                if cuda:  # this side's own peak: its weights + what the run allocated (the other side's weights excluded)
                    own = weight_bytes["released" if name == "released" else "ours"]
                    row["peak_gib"] = round((own + best.above_start) / 2**30, 2)
                else:
                    row["process_peak_rss_gib"] = round(best.rss_gib, 2)
            if name != "released" and "released" in results and name in results:
                a, b = results["released"].double(), results[name].double()
                row["max_diff_vs_released"] = float(f"{float((a - b).abs().max()):.3g}")
                row["rel_diff_vs_released"] = float(f"{float((a - b).abs().max() / a.std()):.3g}")
                row["speedup_vs_released"] = round(next(r["seconds"] for r in head["rows"] if r["run"] == "released"
                                                        and r["frames"] == frames) / row["seconds"], 2) \
                    if "seconds" in row else None
            head["rows"].append(row)
            print(json.dumps(row), flush=True)
            write()
            if cuda:
                torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
