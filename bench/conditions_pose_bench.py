"""Benchmark: skeleton rendering + structured depth for a synthetic 256-frame 512x768 (w x h) clip.

Renders in chunks so memory stays bounded by the chunk, not the clip. Not a test:
    .venv/bin/python bench/conditions_pose_bench.py [--frames 256] [--chunk 16]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aa2_core.conditions.depth import structured_depth  # noqa: E402
from aa2_core.conditions.keypoints import Pose  # noqa: E402
from aa2_core.conditions.pose_indicator import explicit_pose_indicator  # noqa: E402
from aa2_core.conditions.retarget import retarget_poses  # noqa: E402
from aa2_core.conditions.skeleton import render_skeleton  # noqa: E402

STANDING = np.array([
    [256, 100], [256, 200], [156, 200], [106, 330], [66, 460], [356, 200], [406, 330], [446, 460],
    [196, 420], [176, 560], [166, 700], [316, 420], [336, 560], [346, 700],
    [226, 60], [286, 60], [176, 40], [336, 40],
], float)  # fmt: skip


def synthetic_clip(frames: int, height: int, width: int, seed: int = 0) -> list[Pose]:
    """A swaying person with both hands and a face on every frame."""
    rng = np.random.default_rng(seed)
    poses = []
    for t in range(frames):
        sway = np.array([40 * np.sin(t / 12), 10 * np.sin(t / 7)])
        xy = (STANDING + sway + rng.normal(0, 3, STANDING.shape)) * [width / 512, height / 768]
        hands = np.stack([np.c_[xy[w] + rng.normal(0, 12, (21, 2)), np.ones(21)] for w in (7, 4)])
        face = np.c_[xy[0] + rng.normal(0, 10, (68, 2)), np.ones(68)]
        poses.append(Pose(body=np.c_[xy, np.ones(18)], height=height, width=width, hands=hands, face=face))
    return poses


def synthetic_depth(start: int, count: int, height: int, width: int) -> np.ndarray:
    ramp = np.linspace(0, 1, height, dtype=np.float32)[:, None] * np.ones(width, np.float32)
    return np.stack([(ramp + 0.01 * (start + i)) % 1 for i in range(count)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=16)
    args = parser.parse_args()
    h, w = args.height, args.width
    poses = synthetic_clip(args.frames, h, w)

    tracemalloc.start()
    t0 = time.perf_counter()
    reference = synthetic_clip(1, h, w, seed=1)[0]
    retargeted = retarget_poses(poses, reference)
    t_retarget = time.perf_counter() - t0
    t0 = time.perf_counter()
    explicit_pose_indicator(poses, [reference], 0)
    t_epi = time.perf_counter() - t0

    t_render = t_depth = 0.0
    covered = 0
    skeleton = np.empty((args.chunk, h, w, 3), np.uint8)  # reused: memory bounded by one chunk
    for start in range(0, args.frames, args.chunk):
        chunk = retargeted[start : start + args.chunk]
        t0 = time.perf_counter()
        out = render_skeleton(chunk, h, w, out=skeleton[: len(chunk)])
        t_render += time.perf_counter() - t0
        depth = synthetic_depth(start, len(chunk), h, w)
        t0 = time.perf_counter()
        structured = structured_depth(depth, out)
        t_depth += time.perf_counter() - t0
        covered += int((structured > 0).sum())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    n = args.frames
    print(f"clip: {n} frames, {w}x{h} (w x h), chunk {args.chunk}")
    print(f"retarget      {t_retarget:7.3f} s  ({1000 * t_retarget / n:.2f} ms/frame)")
    print(f"pose EPI      {t_epi:7.3f} s  ({1000 * t_epi / n:.2f} ms/frame)")
    print(f"render        {t_render:7.3f} s  ({1000 * t_render / n:.2f} ms/frame)")
    print(f"struct depth  {t_depth:7.3f} s  ({1000 * t_depth / n:.2f} ms/frame)")
    print(f"skeleton pixels with depth: {covered / (n * h * w):.3%}")
    print(f"peak traced memory (numpy + Python, during the run): {peak / 2**20:.1f} MiB")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"max RSS of the process (includes torch import): {rss:.0f} MiB")
    whole = n * h * w * (3 + 4) / 2**20
    print(f"(whole-clip uint8 skeleton + float32 depth would be {whole:.0f} MiB)")


if __name__ == "__main__":
    main()
