"""The pack's side of the Moore parity check: same weights, inputs and seed as a ``bench/moore_parity.py`` run.

    python bench/moore_parity.py --moore-src /tmp/moore_src --models M --write-tiny --frames 30 --steps 3 \
        --size 128x128 --context-frames 24 --context-overlap 4 --seed 0 --out moore_30.pt
    python bench/moore_parity_check.py --models M --moore moore_30.pt

It reads the reference image and pose frames (uint8) that Moore's run used, builds the conditions through
the pack's own path (``prepare``, Moore's CLIP preprocessing) and samples with Moore's settings: context
windows with the ``closed_loop`` schedule and ``flat`` fusion, DDIM on the Moore schedule. It prints the
largest difference of the final latents, and of the intermediate inputs Moore's run saved.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aa2_core.checkpoints.assembly import assemble_from_folder  # noqa: E402
from aa2_core.cli.animate import build_conditions  # noqa: E402
from aa2_core.pipeline.options import ClipPreprocess, SamplerSettings, Stitching  # noqa: E402
from aa2_core.families.moore import MooreModels as Models  # noqa: E402
from aa2_core.pipeline.sampler import Sampler  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", required=True, help="the models folder the Moore run loaded")
    p.add_argument("--moore", required=True, help=".pt written by bench/moore_parity.py")
    p.add_argument("--clip-preprocess", default=ClipPreprocess.MOORE.value, choices=ClipPreprocess.values())
    p.add_argument("--context-schedule", default="closed_loop", choices=["closed_loop", "open"])
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    moore = torch.load(args.moore, weights_only=False)  # our own benchmark output (settings dict inside)
    s = moore["settings"]
    ref = torch.as_tensor(moore["ref_image"]).float()[None] / 255
    poses = torch.as_tensor(moore["pose_frames"]).float() / 255
    models = assemble_from_folder(args.models)
    with torch.no_grad():
        cond, _ = build_conditions(models, ref, poses, clip_preprocess=args.clip_preprocess)
    stitching = Stitching("context_windows", s["context_frames"], context_overlap=s["context_overlap"], fusion="flat",
                          context_schedule=args.context_schedule)
    settings = SamplerSettings(steps=s["steps"], cfg=s["guidance"], seed=s["seed"], stitching=stitching)
    ours = Sampler(Models(models.denoising, models.pose), settings).sample(cond)
    theirs = moore["latents"][0].transpose(0, 1).float()
    print(f"frames {ours.shape[0]}, latents {tuple(ours.shape[1:])}, steps {s['steps']}, cfg {s['guidance']}, "
          f"context {s['context_frames']}/{s['context_overlap']} ({args.context_schedule}), clip {args.clip_preprocess}")
    for name, a, b in (("reference latents", cond.reference.latents, moore.get("ref_latents")),
                       ("image embedding", cond.reference.image_embeds.flatten(), moore.get("image_embeds"))):
        if b is not None:
            print(f"{name:18s} max |diff| {(a.flatten() - b.float().flatten()).abs().max().item():.2e}")
    diff = (ours - theirs).abs().max().item()
    print(f"{'final latents':18s} max |diff| {diff:.2e} (values up to {theirs.abs().max().item():.2f})")
    return 0 if diff < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
