"""Training-data sampling speed: seconds per ``TrainingSet.sample`` at 768x512 (H x W), 16 frames.

    python bench/training_data_bench.py                 # plain / scale / scale+EPI, median of 5, profile
    python bench/training_data_bench.py --reps 3 --no-profile --threads 1

A synthetic training set (two 48-frame clips with frames, character, objects, depth, body, hands and face)
is written to a temporary folder once; then each mode draws ``--reps`` samples with fixed seeds (after one
warm-up sample) and the median is printed. ``--profile`` adds a cProfile breakdown of one sample per mode
(the top stages by cumulative time, inside ``aa2_core``). The machine, torch's thread count and the CPU
count are printed first, since figures are only comparable on the same machine under the same load.
Nothing here is a test.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aa2_core.conditions.pose_indicator import PoseIndicatorConfig  # noqa: E402
from aa2_core.training.data import TrainingSet  # noqa: E402
from aa2_core.training.dataset_format import ClipRecord, write_clip, write_index  # noqa: E402

MODES = {
    "plain": {},
    "scale": {"scale_range": (0.8, 1.2)},
    "scale+EPI": {"scale_range": (0.8, 1.2), "pose_indicator": PoseIndicatorConfig(transform_prob=1.0)},
}


def stick_body(cx: float, top: float, height: float) -> np.ndarray:
    u = height / 8
    offsets = [(0, 0.5), (0, 1.5), (-1, 1.5), (-1.4, 3), (-1.6, 4.3), (1, 1.5), (1.4, 3), (1.6, 4.3), (-0.6, 4.5),
               (-0.7, 6.2), (-0.7, 7.8), (0.6, 4.5), (0.7, 6.2), (0.7, 7.8), (-0.3, 0.3), (0.3, 0.3), (-0.6, 0.4), (0.6, 0.4)]
    return np.array([(cx + dx * u, top + dy * u, 1.0) for dx, dy in offsets], np.float32)


def synthetic_clip(frames: int, height: int, width: int, seed: int) -> ClipRecord:
    """Smooth-ish frames, a drifting character with hands and face, an object, random depth."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (frames, height // 8, width // 8, 3), generator=g, dtype=torch.uint8)
    video = base.repeat_interleave(8, 1).repeat_interleave(8, 2).contiguous()
    character = torch.zeros(frames, height, width, dtype=torch.uint8)
    objects = torch.zeros(frames, height, width, dtype=torch.uint8)
    figure, top = 0.7 * height, 0.15 * height
    body = torch.zeros(frames, 18, 3)
    hands = torch.zeros(frames, 2, 21, 3)
    face = torch.zeros(frames, 68, 3)
    rng = np.random.default_rng(seed)
    for i in range(frames):
        cx = width / 2 - 20 + i
        character[i, int(top):int(top + figure), int(cx - figure / 6):int(cx + figure / 6)] = 1
        objects[i, int(top + figure * 0.5):int(top + figure * 0.6), int(cx + figure / 6):int(cx + figure / 6) + 30] = 1
        b = stick_body(cx, top, figure)
        body[i] = torch.from_numpy(b)
        for h, wrist in enumerate((4, 7)):
            pts = b[wrist, :2] + rng.normal(0, 12, (21, 2))
            hands[i, h] = torch.from_numpy(np.concatenate([pts, np.ones((21, 1))], 1).astype(np.float32))
        pts = b[0, :2] + rng.normal(0, 10, (68, 2))
        face[i] = torch.from_numpy(np.concatenate([pts, np.ones((68, 1))], 1).astype(np.float32))
    depth = torch.rand(frames, height // 8, width // 8, generator=g)
    depth = torch.nn.functional.interpolate(depth[:, None], size=(height, width), mode="bilinear")[:, 0].half()
    return ClipRecord(frames=video, character=character, body=body, hands=hands, face=face, objects=objects,
                      depth=depth, fps=24.0, source=f"synthetic{seed}")


def write_set(root: str, clips: int, frames: int, height: int, width: int) -> str:
    entries = []
    for i in range(clips):
        rec = synthetic_clip(frames, height, width, seed=i)
        write_clip(os.path.join(root, f"clip{i}"), rec)
        entries.append({"name": f"clip{i}", "frames": frames, "fps": 24.0, "source": rec.source})
    write_index(root, height, width, entries, [])
    return root


def time_mode(dataset: TrainingSet, reps: int) -> list[float]:
    dataset.sample(torch.Generator().manual_seed(1000))  # warm-up (page cache, lazy imports)
    times = []
    for seed in range(reps):
        t0 = time.perf_counter()
        dataset.sample(torch.Generator().manual_seed(seed))
        times.append(time.perf_counter() - t0)
    return times


def profile_mode(dataset: TrainingSet, top: int) -> None:
    prof = cProfile.Profile()
    prof.enable()
    dataset.sample(torch.Generator().manual_seed(0))
    prof.disable()
    stats = pstats.Stats(prof)
    rows = []
    for (file, line, name), (_, calls, _, cumtime, _) in stats.stats.items():
        if "aa2_core" in file or name in ("grid_sample", "render_skeleton") or "safetensors" in file:
            where = file.split("aa2_core/")[-1] if "aa2_core" in file else os.path.basename(file)
            rows.append((cumtime, calls, f"{where}:{line}({name})"))
    rows.sort(reverse=True)
    print(f"    stages (cumulative; total {stats.total_tt:.3f} s):")
    for cumtime, calls, where in rows[:top]:
        print(f"      {cumtime:7.3f} s  {calls:6d} calls  {where}")
    ops = sorted(((tottime, calls, name) for (file, _, name), (_, calls, tottime, _, _) in stats.stats.items()
                  if file == "~"), reverse=True)  # C functions: torch ops, cv2, safetensors reads
    print("    tensor / C operations (own time):")
    for tottime, calls, name in ops[:max(4, top // 2)]:
        print(f"      {tottime:7.3f} s  {calls:6d} calls  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--clip-frames", type=int, default=48)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--top", type=int, default=14)
    parser.add_argument("--data", default=None, help="reuse (or create) the synthetic set in this folder")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    print(f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''} | cpus {os.cpu_count()} | "
          f"torch {torch.__version__} threads {torch.get_num_threads()} | load avg {load[0]:.2f}")
    print(f"sample: {args.height}x{args.width} (HxW), {args.frames} frames, clips of {args.clip_frames}; median of {args.reps}")
    tmp = None
    root = args.data
    if root is None:
        tmp = tempfile.TemporaryDirectory()
        root = tmp.name
    if not os.path.isfile(os.path.join(root, "dataset.json")):
        os.makedirs(root, exist_ok=True)
        write_set(root, 2, args.clip_frames, args.height, args.width)
    for mode in args.modes.split(","):
        dataset = TrainingSet(root, frames=args.frames, **MODES[mode])
        times = time_mode(dataset, args.reps)
        print(f"{mode:10s} median {statistics.median(times):6.3f} s/sample  (min {min(times):.3f}, max {max(times):.3f})")
        if args.profile:
            profile_mode(dataset, args.top)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
