"""``python -m aa2_core train``: train Animate Anyone 2 on a prepared training set.

    python -m aa2_core prepare VIDEOS/ --out DATA/                      # once: frames, masks, keypoints, depth
    python -m aa2_core train --data DATA/ --models ComfyUI/models --out aa2_modules.safetensors
    accelerate launch --num_processes 8 -m aa2_core train ...           # DDP on 8 GPUs (or --config_file for DeepSpeed/FSDP)

Starts from the Moore-AnimateAnyone weights with the AA2 modules as exact no-ops and learns what
``--modules`` names with the paper's objective (v-prediction with the Moore schedule; section 3.1):
``aa2`` (environment input, object guider + spatial blending, depth-wise pose modulation; the default),
``temporal`` (motion modules), ``ipi`` and ``mamba`` (Animate-X's Implicit Pose Indicator, whose driving video is the
clip itself, and Mamba temporal layers), ``all`` (both UNets, motion modules, pose guider), comma-combinable.
``--stage 1`` trains on single frames without temporal layers, ``--stage 2`` on clips. The image
embedding and reference are dropped together at random (``--uncond-prob``) so classifier-free guidance
keeps working. Writes the ``aa2-modules`` file AA2 Model Loader reads; ``--run-dir`` holds checkpoints
(``--resume``), TensorBoard logs and validation videos.
"""

from __future__ import annotations

import argparse
import os
import time

from ..errors import AA2Error
from ..pipeline.options import Schedule
from .modules import GROUPS, parse_groups, parse_lr_scales
from .optim import OPTIMIZERS
from .step import clip_conditions  # noqa: F401  (tests/test_prepare.py checks the trainer's prepare path through it)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m aa2_core train", description=__doc__.splitlines()[0])
    io = p.add_argument_group("data and files")
    io.add_argument("--data", required=True, help="training set folder written by `python -m aa2_core prepare` (dataset.json)")
    io.add_argument("--models", required=True, help="ComfyUI-style models folder with the Moore weights")
    io.add_argument("--out", required=True, help="output .safetensors (aa2-modules)")
    io.add_argument("--run-dir", help="checkpoints, TensorBoard logs, validation videos (default: OUT without extension + '_run')")
    io.add_argument("--aa2-modules", help="start from this aa2-modules file (e.g. stage 2 from stage 1)")
    io.add_argument("--resume", help="continue from a checkpoint folder (or a run folder: its newest checkpoint)")

    what = p.add_argument_group("what trains")
    what.add_argument("--modules", default="aa2", type=parse_groups,
                      help="comma-separated groups: " + "; ".join(f"{g.name}: {g.help}" for g in GROUPS.values()))
    what.add_argument("--lr-scale", type=parse_lr_scales, default={}, metavar="GROUP=FACTOR[,...]",
                      help="learning rate of a module group times FACTOR, e.g. ipi=0.01 (Animate-X: the IPI 100x slower)")
    what.add_argument("--stage", type=int, default=2, choices=[1, 2], help="1: single frames, no temporal layers; 2: clips")
    what.add_argument("--fusion-blocks", default="full", choices=["full", "midup"])

    recipe = p.add_argument_group("recipe")
    recipe.add_argument("--steps", type=int, default=100_000, help="optimizer steps")
    recipe.add_argument("--batch-size", type=int, default=1, help="clips per process per micro-step")
    recipe.add_argument("--grad-accum", type=int, default=1, help="micro-steps per optimizer step")
    recipe.add_argument("--lr", type=float, default=1e-5)
    recipe.add_argument("--warmup-steps", type=int, default=0, help="linear LR warm-up (optimizer steps)")
    recipe.add_argument("--optimizer", default="auto", choices=OPTIMIZERS, help="auto: 8-bit AdamW if bitsandbytes imports, else AdamW")
    recipe.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping (0: off)")
    recipe.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"])
    recipe.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations in backward (less memory)")
    recipe.add_argument("--frames", type=int, default=16, help="clip length in stage 2 (the paper: 16); stage 1 uses 1")
    recipe.add_argument("--stride", type=int, default=1, help="take every stride-th frame")
    recipe.add_argument("--scale-range", type=_pair, default=None, help="random scale augmentation, e.g. 0.8,1.2 (off if absent)")
    recipe.add_argument("--pose-indicator", action="store_true", help="Animate-X explicit pose indicator augmentation")
    recipe.add_argument("--uncond-prob", type=float, default=0.1)
    recipe.add_argument("--schedule", default=Schedule.MOORE.value, choices=Schedule.values())
    recipe.add_argument("--seed", type=int, default=0)
    recipe.add_argument("--workers", type=int, default=2, help="data-loader processes drawing samples ahead (0: in the training process)")

    run = p.add_argument_group("logging, checkpoints, validation")
    run.add_argument("--log-every", type=int, default=50)
    run.add_argument("--checkpoint-every", type=int, default=1000, help="save the full training state every N steps (0: never)")
    run.add_argument("--validate-every", type=int, default=0, help="render a validation video every N steps (0: never)")
    run.add_argument("--validate-steps", type=int, default=10, help="sampler steps of the validation video")
    run.add_argument("--validate-cfg", type=float, default=3.5)
    run.add_argument("--no-tensorboard", dest="tensorboard", action="store_false")
    run.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    return p


def _pair(text: str) -> tuple[float, float]:
    low, high = (float(v) for v in text.split(","))
    return low, high


def training_set(args):
    from .data import TrainingSet

    frames = 1 if args.stage == 1 else args.frames
    return TrainingSet(args.data, frames=frames, stride=args.stride, scale_range=args.scale_range,
                       pose_indicator=True if args.pose_indicator else None)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    args.run_dir = args.run_dir or os.path.splitext(args.out)[0] + "_run"
    try:
        from .engine import train

        t0 = time.perf_counter()
        result = train(args, training_set(args))
        if os.environ.get("RANK", "0") == "0":
            print(f"{result['step']} steps in {time.perf_counter() - t0:.0f} s")
        return 0
    except AA2Error as e:
        print(f"error: {e}")
        return 1
