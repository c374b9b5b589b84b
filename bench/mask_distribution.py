"""How much area the shape-agnostic mask (AA2 eq. 2) adds over the character's silhouette.

    .venv/bin/python bench/mask_distribution.py [--draws 400] [--seed 0]

Draws human-like silhouettes (head, neck, torso, arms, legs as capsules; several poses) at 768x512 and 512x512
(H x W), formulates training masks with the pack's random draws (``shape_agnostic_mask(generator=...)``, block
sizes log-uniform from ``TRAIN_BLOCK_MIN_PIXELS`` to half the box) and prints the distribution of the added area
``mask area / silhouette area - 1`` (target, issue 19: median 20-60 %, 10th percentile >= 5 %), with the
previous draw (block COUNTS uniform over 2..h-1) and both readings of the paper's inference setting
(``kh = h/10`` as 10-pixel blocks, or a 10 x 10 grid over the box) for comparison.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aa2_core.conditions import environment as env  # noqa: E402

POSES = ("standing", "arms_out", "walking", "arms_up")


def _capsules(shape, segments, radius):
    """0/1 ``[H, W]``: the union of thick segments ``((y0, x0), (y1, x1))`` of the given radii."""
    height, width = shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.zeros(shape, bool)
    for ((y0, x0), (y1, x1)), r in zip(segments, radius):
        dy, dx = y1 - y0, x1 - x0
        t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / max(dy * dy + dx * dx, 1e-6), 0, 1)
        out |= (yy - (y0 + t * dy)) ** 2 + (xx - (x0 + t * dx)) ** 2 <= r * r
    return out


def silhouette(height: int, width: int, pose: str = "standing", fill: float = 0.85) -> torch.Tensor:
    """A person ``fill * height`` tall, centred, with adult proportions (head ~1/7.5 of the height)."""
    u = fill * height / 7.5  # one head height
    cx, top = width / 2, (1 - fill) * height / 2
    head = (top + 0.5 * u, cx)
    neck, hip = (top + 1.2 * u, cx), (top + 3.9 * u, cx)
    shoulder_l, shoulder_r = (top + 1.55 * u, cx - 0.95 * u), (top + 1.55 * u, cx + 0.95 * u)
    hip_l, hip_r = (top + 3.9 * u, cx - 0.45 * u), (top + 3.9 * u, cx + 0.45 * u)
    foot = top + 7.4 * u
    if pose == "standing":
        elbows = ((top + 2.9 * u, cx - 1.2 * u), (top + 2.9 * u, cx + 1.2 * u))
        hands = ((top + 4.1 * u, cx - 1.3 * u), (top + 4.1 * u, cx + 1.3 * u))
        knees = ((top + 5.65 * u, cx - 0.5 * u), (top + 5.65 * u, cx + 0.5 * u))
        feet = ((foot, cx - 0.55 * u), (foot, cx + 0.55 * u))
    elif pose == "arms_out":
        elbows = ((top + 1.7 * u, cx - 2.1 * u), (top + 1.7 * u, cx + 2.1 * u))
        hands = ((top + 1.8 * u, cx - 3.1 * u), (top + 1.8 * u, cx + 3.1 * u))
        knees = ((top + 5.65 * u, cx - 0.7 * u), (top + 5.65 * u, cx + 0.7 * u))
        feet = ((foot, cx - 1.0 * u), (foot, cx + 1.0 * u))
    elif pose == "walking":
        elbows = ((top + 2.8 * u, cx - 1.5 * u), (top + 2.8 * u, cx + 1.0 * u))
        hands = ((top + 3.7 * u, cx - 2.0 * u), (top + 3.9 * u, cx + 0.6 * u))
        knees = ((top + 5.6 * u, cx - 1.0 * u), (top + 5.6 * u, cx + 0.8 * u))
        feet = ((foot, cx - 1.6 * u), (foot - 0.3 * u, cx + 0.6 * u))
    elif pose == "arms_up":
        elbows = ((top + 0.8 * u, cx - 1.4 * u), (top + 0.8 * u, cx + 1.4 * u))
        hands = ((top + 0.1 * u, cx - 1.3 * u), (top + 0.1 * u, cx + 1.3 * u))
        knees = ((top + 5.65 * u, cx - 0.5 * u), (top + 5.65 * u, cx + 0.5 * u))
        feet = ((foot, cx - 0.6 * u), (foot, cx + 0.6 * u))
    else:
        raise ValueError(f"pose must be one of {POSES}, got {pose!r}")
    segments, radius = [(head, head), (neck, (top + 1.4 * u, cx))], [0.42 * u, 0.22 * u]
    segments += [(shoulder_l, hip_l), (shoulder_r, hip_r), (shoulder_l, shoulder_r), (hip_l, hip_r)]  # torso
    radius += [0.5 * u, 0.5 * u, 0.35 * u, 0.45 * u]
    for side in (0, 1):
        shoulder, hipj = (shoulder_l, shoulder_r)[side], (hip_l, hip_r)[side]
        segments += [(shoulder, elbows[side]), (elbows[side], hands[side]), (hipj, knees[side]), (knees[side], feet[side])]
        radius += [0.22 * u, 0.18 * u, 0.32 * u, 0.24 * u]
    return torch.from_numpy(_capsules((height, width), segments, radius)).float()


def added_area(mask: torch.Tensor, draws: int, seed: int = 0, **options) -> torch.Tensor:
    """Added area of ``draws`` training masks (one per frame) on the one silhouette ``mask [H, W]``."""
    frames = mask[None].expand(draws, -1, -1)
    formulated = env.shape_agnostic_mask(frames, generator=torch.Generator().manual_seed(seed), **options)
    return formulated.sum(dim=(1, 2)) / mask.sum() - 1


def inference_added_area(mask: torch.Tensor, reading: str) -> float:
    return float(env.shape_agnostic_mask(mask[None], inference=reading).sum() / mask.sum() - 1)


def _old_uniform_counts(mask: torch.Tensor, draws: int, seed: int) -> torch.Tensor:
    """The draw before issue 19: counts uniform over 2..h-1 (passed as fixed counts, one frame at a time)."""
    g = torch.Generator().manual_seed(seed)
    _, box_h, _, box_w, _ = env.mask_bounding_boxes(mask[None])
    h, w = int(box_h[0]), int(box_w[0])
    out = []
    for _ in range(draws):
        kh = int(torch.randint(2, max(h - 1, 2) + 1, (), generator=g))
        kw = int(torch.randint(2, max(w - 1, 2) + 1, (), generator=g))
        out.append(float(env.shape_agnostic_mask(mask[None], kh, kw).sum() / mask.sum() - 1))
    return torch.tensor(out)


def _row(name: str, values: torch.Tensor) -> str:
    q = torch.quantile(values.double(), torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)) * 100
    below = float((values < 0.05).double().mean() * 100)
    return f"{name:<34} p10 {q[0]:6.1f} %  median {q[1]:6.1f} %  p90 {q[2]:6.1f} %  draws < 5 %: {below:5.1f} %"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--draws", type=int, default=400, help="training masks per silhouette")
    p.add_argument("--old-draws", type=int, default=100, help="draws of the previous (uniform count) recipe")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print(f"training block sizes: log-uniform {env.TRAIN_BLOCK_MIN_PIXELS} px .. {env.TRAIN_BLOCK_MAX_FRACTION:g} x box; "
          f"inference default reading: {env.INFERENCE_READING!r}")
    pooled = []
    for height, width in ((768, 512), (512, 512)):
        for pose in POSES:
            sil = silhouette(height, width, pose)
            area = added_area(sil, args.draws, args.seed)
            pooled.append(area)
            inference = ", ".join(f"{r} {inference_added_area(sil, r) * 100:.1f} %" for r in env.INFERENCE_READINGS)
            print(f"{height}x{width} {pose:<9} ({int(sil.sum())} px)")
            print("  " + _row("training (block sizes)", area))
            if args.old_draws:
                print("  " + _row("before (uniform counts)", _old_uniform_counts(sil, args.old_draws, args.seed)))
            print(f"  inference: {inference}")
    print(_row("all silhouettes, training", torch.cat(pooled)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
