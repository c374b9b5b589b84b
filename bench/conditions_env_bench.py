"""Environment and object conditions on a 256-frame 512x768 video: seconds and peak memory.

    python bench/conditions_env_bench.py [--frames 256] [--height 768] [--width 512]

A synthetic driving video (a moving ellipse for the character, a box it carries). Each step runs in a
fresh process so its peak RSS is its own: ``extra MB`` is the peak above the RSS at the fork (the
inputs), ``working MB`` that extra minus the step's outputs. Working memory should not grow with
the frame count, since every step works in frame chunks. Prints a table; nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aa2_core.conditions.environment import (
    environment_sequence,
    latent_mask,
    random_scale_augment,
    shape_agnostic_mask,
)
from aa2_core.conditions.objects import object_sequence


def synthetic(frames: int, height: int, width: int):
    """A noise video, an ellipse walking left and right, and a box held at its side."""
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    t = torch.arange(frames)[:, None, None]
    cx = width / 2 + width / 4 * torch.sin(t / 20)
    character = ((((xx - cx) / (width / 8)) ** 2 + ((yy - height / 2) / (height / 3)) ** 2) <= 1).float()
    box = ((xx - cx - width / 8).abs() < 40) & ((yy - height / 2).abs() < 30)
    video = torch.rand(frames, height, width, 3)
    return video, character, box.float()


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak() -> None:
    """Restart the peak-RSS count (Linux: VmHWM), so that building the inputs does not count."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # then the peak may include the input building: an overestimate


def peak_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def nbytes(result) -> int:
    if isinstance(result, torch.Tensor):
        return result.numel() * result.element_size()
    if isinstance(result, (list, tuple)):
        return sum(nbytes(r) for r in result)
    return 0


def measure(frames: int, step: int, height: int, width: int):
    """``(seconds, extra MB, output MB)`` of one step, in a fresh process (forking torch can hang)."""
    command = [sys.executable, __file__, "--child", str(step), "--frames", str(frames), "--height", str(height), "--width", str(width)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_child(step: int, frames: int, height: int, width: int) -> None:
    """Build the inputs, then time one step; peak RSS is measured above the RSS with the inputs."""
    video, character, box = synthetic(frames, height, width)
    _, run = steps(video, character, box, height, width)[step]
    reset_peak()
    start_rss = rss_mb()
    t0 = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - t0
    peak = peak_mb()
    print(json.dumps([seconds, peak - start_rss, nbytes(result) / 2**20]))


def steps(video, character, box, height, width):
    """The measured steps; their inputs exist before the RSS baseline is taken."""
    formulated = shape_agnostic_mask(character)
    return [
        ("shape-agnostic mask", lambda: shape_agnostic_mask(character)),
        ("environment sequence", lambda: environment_sequence(video, formulated)),
        ("latent mask", lambda: latent_mask(formulated, height // 8, width // 8)),
        ("object sequence", lambda: object_sequence(video, [box])),
        ("random scale augmentation", lambda: random_scale_augment(video, character, [box], generator=torch.Generator().manual_seed(0))),
    ]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, nargs="+", default=[64, 256])
    p.add_argument("--height", type=int, default=768)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        return run_child(args.child, args.frames[0], args.height, args.width)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.width}x{args.height}")
    print(f"{'frames':>6} {'step':<26} {'seconds':>8} {'ms/frame':>9} {'extra MB':>9} {'output MB':>10} {'working MB':>11}")
    names = [name for name, _ in steps(*synthetic(1, 8, 8), 8, 8)]
    for frames in args.frames:
        for index, name in enumerate(names):
            seconds, extra, output = measure(frames, index, args.height, args.width)
            print(f"{frames:>6} {name:<26} {seconds:>8.2f} {1000 * seconds / frames:>9.1f} {extra:>9.0f} {output:>10.0f} {extra - output:>11.0f}", flush=True)


if __name__ == "__main__":
    main()
