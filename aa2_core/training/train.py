"""``python -m aa2_core train``: train Animate Anyone 2 on a prepared training set.

    python -m aa2_core prepare VIDEOS/ --out DATA/                      # once: frames, masks, keypoints, depth
    python -m aa2_core train --data DATA/ --models ComfyUI/models --out aa2_modules.safetensors
    accelerate launch --num_processes 8 -m aa2_core train ...           # DDP on 8 GPUs (or --config_file for DeepSpeed/FSDP)
    accelerate launch --multi_gpu --num_processes 2 -m aa2_core train ... --cpu   # two CPU processes (accelerate's --cpu starts one)

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
import math
import os
import sys
import time

from ..atomic import check_output_file, check_output_folder
from ..errors import AA2Error
from ..pipeline.options import Schedule
from .blend_init import BLEND_INITS
from .modules import GROUPS, parse_groups, parse_lr_scales
from .optim import OPTIMIZERS, check_optimizer
from .step import clip_conditions  # noqa: F401  (tests/test_prepare.py checks the trainer's prepare path through it)


class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every default in the help, except where there is none (required options, switches, unset paths)."""

    def _get_help_string(self, action):
        default = action.default
        switch = isinstance(default, bool) and not isinstance(action, argparse.BooleanOptionalAction)  # off unless given
        if action.required or default is None or switch or default == {} or default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line, not the 25-line usage block above it."""
        self.exit(2, f"{self.prog}: error: {message} (all options: {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m aa2_core train", description=__doc__, formatter_class=_Help)
    io = p.add_argument_group("data and files")
    io.add_argument("--data", required=True, help="training set folder written by `python -m aa2_core prepare` (dataset.json)")
    io.add_argument("--models", required=True, help="ComfyUI-style models folder with the Moore weights")
    io.add_argument("--out", required=True, help="output .safetensors (aa2-modules); checked before training, written whole at the end")
    io.add_argument("--run-dir", help="checkpoints, TensorBoard logs, validation videos (default: OUT without extension + '_run')")
    io.add_argument("--aa2-modules", help="start from this aa2-modules file (e.g. stage 2 from stage 1)")
    io.add_argument("--resume", help="continue from a checkpoint folder, or a run folder (its newest complete checkpoint); "
                                     "the same --modules, --stage, --optimizer and --lr-scale as the run")

    what = p.add_argument_group("what trains")
    what.add_argument("--modules", default="aa2", type=parse_groups,
                      help="comma-separated groups: " + "; ".join(f"{g.name}: {g.help}" for g in GROUPS.values()))
    what.add_argument("--lr-scale", type=_lr_scales, default={}, metavar="GROUP=FACTOR[,...]",
                      help="learning rate of a module group times FACTOR, e.g. ipi=0.01 (Animate-X: the IPI 100x slower)")
    what.add_argument("--stage", type=int, default=2, choices=[1, 2], help="1: single frames, no temporal layers; 2: clips")
    what.add_argument("--fusion-blocks", default="full", choices=["full", "midup"],
                      help="ReferenceNet fusion: full (Moore-AnimateAnyone) or midup (the paper); must match --aa2-modules")

    recipe = p.add_argument_group("recipe")
    recipe.add_argument("--steps", type=_int(1), default=100_000,
                        help="total optimizer steps of the run; with --resume the total too, counting the steps already done")
    recipe.add_argument("--batch-size", type=_int(1), default=1, help="clips per process per micro-step")
    recipe.add_argument("--grad-accum", type=_int(1), default=1, help="micro-steps per optimizer step")
    recipe.add_argument("--lr", type=_float(0, None, low_open=True), default=1e-5, help="learning rate")
    recipe.add_argument("--warmup-steps", type=_int(0), default=0, help="linear LR warm-up (optimizer steps)")
    recipe.add_argument("--optimizer", default="auto", choices=OPTIMIZERS, help="auto: 8-bit AdamW if bitsandbytes imports, else AdamW")
    recipe.add_argument("--max-grad-norm", type=_float(0, None), default=1.0, help="gradient clipping (0: off)")
    recipe.add_argument("--max-bad-steps", type=_int(1), default=5,
                        help="stop after this many steps in a row with inf/NaN gradients (each is skipped, the weights untouched)")
    recipe.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"], help="autocast dtype; trained weights stay fp32")
    recipe.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations in backward (less memory)")
    recipe.add_argument("--frames", type=_int(1), default=16, help="clip length in stage 2 (the paper: 16); stage 1 uses 1")
    recipe.add_argument("--stride", type=_int(1), default=1, help="take every stride-th frame")
    recipe.add_argument("--scale-range", type=_scale_range, default=(0.8, 1.2), metavar="LOW,HIGH",
                        help="random scale augmentation of character and objects (paper 3.2; the range is the pack's "
                             "choice), 'off' to turn it off")
    recipe.add_argument("--pose-indicator", action=argparse.BooleanOptionalAction, default=True,
                        help="Animate-X explicit pose indicator augmentation (--no-pose-indicator: off)")
    recipe.add_argument("--reference-background", default="colour", choices=["colour", "other_clip"],
                        help="the centre-cropped reference's new background: a random plain colour or a frame of another clip")
    recipe.add_argument("--blend-init", default="auto", choices=BLEND_INITS,
                        help="the object guider's spatial blends at the start: paper (alpha 0.5 from step 1, the guider "
                             "learns at once), identity (the base's output kept exactly), auto: paper when the "
                             "DenoisingNet's base trains too (--modules all), else identity; only fresh blends")
    recipe.add_argument("--uncond-prob", type=_float(0, 1), default=0.1,
                        help="probability of dropping the reference and image embedding together (classifier-free guidance)")
    recipe.add_argument("--schedule", default=Schedule.MOORE.value, choices=Schedule.values(), help="noise schedule of the objective")
    recipe.add_argument("--seed", type=_int(0), default=0, help="seeds the new modules' weights and every sample and noise draw")
    recipe.add_argument("--workers", type=_int(0), default=2, help="data-loader processes drawing samples ahead (0: in the training process)")

    run = p.add_argument_group("logging, checkpoints, validation")
    run.add_argument("--log-every", type=_int(1), default=50, help="a log line every N steps (and at the first and last)")
    run.add_argument("--checkpoint-every", type=_int(0), default=1000, help="save the full training state every N steps (0: never)")
    run.add_argument("--validate-every", type=_int(0), default=0, help="render a validation video every N steps (0: never)")
    run.add_argument("--validate-steps", type=_int(1), default=10, help="sampler steps of the validation video")
    run.add_argument("--validate-cfg", type=_float(0, None), default=3.5, help="guidance scale of the validation video")
    run.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", help="no TensorBoard logs in RUN_DIR/logs")
    run.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    return p


# argparse turns an ArgumentTypeError into "argument --flag: MESSAGE" and exit code 2 (a ValueError would be
# replaced by its own "invalid ... value")
def _int(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; expected one >= {low}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is too small; expected a whole number >= {low}")
        return value
    return parse


def _float(low: float, high: float | None, low_open: bool = False):
    expected = f"a number {'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number; expected {expected}") from None
        if not math.isfinite(value) or value < low or (low_open and value == low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text} is out of range; expected {expected}")
        return value
    return parse


def _scale_range(text: str) -> tuple[float, float] | None:
    if text.strip().lower() in ("off", "none", "0"):
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not LOW,HIGH; expected two numbers such as 0.8,1.2") from None
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
        raise argparse.ArgumentTypeError(f"{text!r} is out of range; expected 0 < LOW <= HIGH, e.g. 0.8,1.2")
    return low, high


def _lr_scales(text: str) -> dict[str, float]:
    try:
        scales = parse_lr_scales(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected GROUP=FACTOR[,...] with FACTOR a number, e.g. ipi=0.01") from None
    for name, factor in scales.items():
        if not (math.isfinite(factor) and factor > 0):
            raise argparse.ArgumentTypeError(f"{name}={factor:g}: expected a factor > 0")
    return scales


def check_paths(args) -> None:
    """Every file and folder the run needs, before the training set or any model is read."""
    args.out = check_output_file(args.out, "--out", (".safetensors",))
    args.run_dir = args.run_dir or os.path.splitext(args.out)[0] + "_run"
    check_output_folder(args.run_dir, "--run-dir")
    if not os.path.isdir(args.models):
        raise AA2Error(f"--models {args.models}: no such folder; expected the ComfyUI models folder with the Moore weights")
    if args.aa2_modules and not os.path.isfile(args.aa2_modules):
        what = "is a folder" if os.path.isdir(args.aa2_modules) else "does not exist"
        raise AA2Error(f"--aa2-modules {args.aa2_modules} {what}; expected an aa2-modules .safetensors file")
    check_optimizer(args.optimizer)
    check_installed(args.tensorboard)


def check_installed(tensorboard: bool) -> None:
    """The `train` extra: accelerate, and TensorBoard unless --no-tensorboard."""
    try:
        from accelerate.utils import is_tensorboard_available
    except ImportError as e:
        raise AA2Error(f"train needs accelerate, which does not import here ({e}); pip install accelerate tensorboard") from None
    if tensorboard and not is_tensorboard_available():
        raise AA2Error("TensorBoard logs (the default) need tensorboard, which is not installed; pip install tensorboard, "
                       "or pass --no-tensorboard")


def training_set(args):
    from .data import TrainingSet

    frames = 1 if args.stage == 1 else args.frames
    return TrainingSet(args.data, frames=frames, stride=args.stride, scale_range=args.scale_range,
                       pose_indicator=True if args.pose_indicator else None,
                       reference_background=getattr(args, "reference_background", "colour"))


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        check_paths(args)
        source = training_set(args)
        from .engine import train

        t0 = time.perf_counter()
        result = train(args, source)
        if os.environ.get("RANK", "0") == "0" and result["written"]:
            skipped = f", {result['skipped']} skipped for inf/NaN gradients" if result["skipped"] else ""
            print(f"{result['step']} steps in {time.perf_counter() - t0:.0f} s{skipped}")
        return 0
    except AA2Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
