"""Environment and object conditions on a 256-frame 512x768 video: seconds and peak memory.

    python bench/conditions_env_bench.py [--frames 256]

A synthetic driving video (a moving ellipse for the character, a box for the object). Prints a table;
nothing here is a test. Memory stays bounded because every step works in frame chunks.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aa2_core.conditions.environment import environment_sequence, latent_mask, random_scale_augment, shape_agnostic_mask  # noqa: E402
from aa2_core.conditions.objects import object_sequence  # noqa: E402


def synthetic(frames: int, height: int, width: int):
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    t = torch.arange(frames)[:, None, None]
    cx = width / 2 + width / 4 * torch.sin(t / 20)
    character = ((((xx - cx) / (width / 8)) ** 2 + ((yy - height / 2) / (height / 3)) ** 2) <= 1).float()
    obj = torch.zeros(frames, height, width)
    obj[:, height // 2 : height // 2 + 60, :] = ((xx[None] - cx - 60).abs() < 40).float()[:, height // 2 : height // 2 + 60]
    video = torch.rand(frames, height, width, 3)
    return video, character, obj


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=256)
    p.add_argument("--height", type=int, default=768)
    p.add_argument("--width", type=int, default=512)
    args = p.parse_args()
    video, character, obj = synthetic(args.frames, args.height, args.width)
    base = rss_mb()
    input_mb = (video.numel() + character.numel() + obj.numel()) * 4 / 2**20
    print(f"{args.frames} frames {args.width}x{args.height}; inputs {input_mb:.0f} MB, process RSS {base:.0f} MB before the steps")
    print(f"{'step':<28} {'seconds':>8} {'ms/frame':>9} {'peak RSS MB':>12}")
    steps = [
        ("shape-agnostic mask", lambda: shape_agnostic_mask(character)),
        ("environment sequence", lambda: environment_sequence(video, shape_agnostic_mask(character))),
        ("latent mask", lambda: latent_mask(character, args.height // 8, args.width // 8)),
        ("object sequence", lambda: object_sequence(video, [obj])),
        ("random scale augmentation", lambda: random_scale_augment(video, character, [obj], generator=torch.Generator().manual_seed(0))),
    ]
    for name, run in steps:
        t0 = time.perf_counter()
        run()
        seconds = time.perf_counter() - t0
        print(f"{name:<28} {seconds:>8.2f} {1000 * seconds / args.frames:>9.1f} {rss_mb():>12.0f}")


if __name__ == "__main__":
    main()
