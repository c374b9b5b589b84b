"""Sampler speed and memory: seconds per frame, peak memory, achieved FLOP/s, and growth with length.

    python bench/sampler_bench.py                     # CPU, tiny model (runs anywhere)
    python bench/sampler_bench.py --full --device cuda --dtype fp16   # full-size SD1.5 model, random weights

Settings follow the target: 512x768, 24-frame clips, 25 steps, CFG 3.5 (tiny mode uses 64x64 and 2 steps).
Prints a table; nothing here is a test.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aa2_core.models import DenoisingNet, MotionConfig, MotionModuleSet, PoseGuider, PoseModulation, ReferenceNet  # noqa: E402
from aa2_core.pipeline.options import SamplerSettings, Stitching  # noqa: E402
from aa2_core.pipeline.prepare import Conditions, Reference  # noqa: E402
from aa2_core.pipeline.sampler import Models, Sampler, total_steps  # noqa: E402

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "RTX 4090": 165.0}  # dense fp16/bf16


def build(full: bool):
    from diffusers import UNet2DConditionModel

    from aa2_core import tiny

    if full:
        config = dict(attention_head_dim=8, cross_attention_dim=768)
        unet, ref = UNet2DConditionModel(**config), UNet2DConditionModel(**config)
        motion, guider = MotionModuleSet(MotionConfig()), PoseGuider(320)
    else:
        unet, ref, motion, guider = tiny.tiny_unet(0), tiny.tiny_unet(1), tiny.tiny_motion(), tiny.tiny_pose_guider()
    return Models(DenoisingNet(unet, motion), PoseModulation(guider)), ReferenceNet(ref)


@torch.no_grad()
def conditions(reference_net, frames, height, width, dim):
    """Random latents and embedding; the ReferenceNet runs once, as the ReferenceNet node does."""
    g = torch.Generator().manual_seed(0)
    latents, embeds = torch.randn(1, 4, height // 8, width // 8, generator=g), torch.randn(1, 1, dim, generator=g)
    param = next(reference_net.parameters())
    tokens = reference_net(latents.to(param.device, param.dtype), embeds.to(param.device, param.dtype))
    return Conditions(Reference(latents, embeds, tokens), torch.rand(frames, height, width, 3, generator=g))


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="full-size SD1.5 model with random weights")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--frames", default="24,48,96,192")
    p.add_argument("--steps", type=int)
    args = p.parse_args()
    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    height, width, steps = (768, 512, 25) if args.full else (64, 64, 2)
    steps = args.steps or steps
    models, reference_net = build(args.full)
    for m in (models.denoising, reference_net, models.pose):
        m.to(device, dtype).eval()
    dim = models.denoising.unet.config.cross_attention_dim
    settings = SamplerSettings(steps=steps, cfg=3.5, stitching=Stitching(clip_length=24, motion_frames=4))

    # FLOPs of one denoising call (both CFG branches) on one 24-frame clip
    probe = Sampler(models, settings, device=device, dtype=dtype)
    cond = conditions(reference_net, 24, height, width, dim)
    with FlopCounterMode(display=False) as counter:
        Sampler(models, SamplerSettings(steps=1, cfg=3.5), device=device, dtype=dtype).sample(cond)
    flops_per_clip_step = counter.get_total_flops()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    print(f"device: {name}, dtype: {args.dtype}, size {width}x{height}, {steps} steps, clip 24 (+4 motion frames), cfg batch")
    print(f"FLOPs per 24-frame clip step (CFG batch): {flops_per_clip_step / 1e12:.3f} TFLOP")
    print(f"{'frames':>7} {'clips':>5} {'seconds':>9} {'s/frame':>8} {'peak MB':>9} {'TFLOP/s':>8} {'% of peak':>9}")
    for frames in [int(f) for f in args.frames.split(",")]:
        cond = conditions(reference_net, frames, height, width, dim)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        probe.sample(cond)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        calls = total_steps(settings, frames)
        clips = calls // steps
        tflops = flops_per_clip_step * calls / seconds / 1e12
        share = f"{100 * tflops / peak:.1f}" if peak else "n/a"
        print(f"{frames:>7} {clips:>5} {seconds:>9.2f} {seconds / frames:>8.3f} {peak_memory_mb(device):>9.0f} {tflops:>8.3f} {share:>9}")


if __name__ == "__main__":
    main()
