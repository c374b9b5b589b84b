"""The trainer on tiny models and a synthetic training set (depth, objects): what trains, the loss falls,
checkpointing is real, resume is exact, the CLI writes the aa2-modules file, logs and validation video.
The two-process run is in test_training_accelerate.py."""

import argparse
import math
import os
import re
import subprocess

import pytest
import torch

from aa2_core.__main__ import main
from aa2_core.checkpoints.aa2_file import load_aa2_file
from aa2_core.checkpoints.assembly import assemble_from_folder
from aa2_core.errors import AA2Error
from aa2_core.pipeline.schedulers import make_scheduler
from aa2_core.training import batches
from aa2_core.training.data import TrainingSet
from aa2_core.training.modules import select_trainable
from aa2_core.training.step import TrainStep

from training_helpers import PYTHON, data_dir, models_dir, one_thread, subprocess_env, train_args  # noqa: F401

AA2_DENOISING = ("env_conv_in.", "object_guider.", "spatial_blend_mid.", "spatial_blend_up.")
AA2_POSE = ("depth_trunk.", "depth_attention.", "temporal.")

DEPTH_BACKWARD = """
import torch
from aa2_core.tiny import tiny_pose_guider
from aa2_core.models.pose_modulation import PoseModulation
pose = PoseModulation(tiny_pose_guider())
pose.requires_grad_(False)
pose.depth_attention.requires_grad_(True)   # frozen guider, trained depth branch: the trainer's default
skeleton = torch.zeros(2, 64, 64, 3).permute(0, 3, 1, 2)  # [F, H, W, 3] -> channels-last view, as network_inputs passes it
depth = torch.zeros(2, 1, 64, 64)                          # sparse skeleton: all-zero structured depth
pose(skeleton, depth, num_frames=2).sum().backward()
print("backward ok")
"""


def test_depth_backward_with_a_frozen_guider_does_not_crash():
    """The depth segfault: PyTorch's CPU GroupNorm backward crashes on a channels-last input that needs no
    gradient; the skeleton reached the depth cross-attention's norm that way. Run in a child process so a
    crash is a failure, not a dead test session.

    Mutation seen failing: dropping ``.contiguous()`` in DepthCrossAttention.forward (rc -11, SIGSEGV)."""
    run = subprocess.run([PYTHON, "-c", DEPTH_BACKWARD], env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "backward ok" in run.stdout, (run.returncode, run.stderr[-2000:])


def test_module_groups_choose_what_trains(models_dir, one_thread):
    """aa2: exactly the AA2 modules; temporal: exactly the motion modules; all: the three nets; stage 1 drops
    the temporal layers (motion modules, the pose Conv3D); a choice with nothing left is refused.

    Mutation seen failing: the stage-1 filter removed (pose ``temporal.`` trained in stage 1)."""
    models = assemble_from_folder(models_dir)
    chosen = select_trainable(models, ["aa2"], stage=2)
    assert set(chosen) == {"denoising", "pose"}
    assert all(n.startswith(AA2_DENOISING) for n in chosen["denoising"]) and all(n.startswith(AA2_POSE) for n in chosen["pose"])
    trained = {n for n, p in models.denoising.named_parameters() if p.requires_grad}
    assert trained == set(models.denoising.aa2_state_dict())  # every AA2 parameter, nothing else
    assert not any(p.requires_grad for p in models.reference.parameters()) and not any(p.requires_grad for p in models.vae.parameters())

    chosen = select_trainable(models, ["aa2"], stage=1)
    assert not any(n.startswith("temporal.") for n in chosen["pose"]) and chosen["pose"]
    chosen = select_trainable(models, ["aa2", "temporal"], stage=2)
    assert any(n.startswith("motion.") for n in chosen["denoising"])
    chosen = select_trainable(models, ["all"], stage=2)
    assert set(chosen) == {"denoising", "reference", "pose"} and all(p.requires_grad for p in models.reference.parameters())
    with pytest.raises(AA2Error, match="nothing to train"):
        select_trainable(models, ["temporal"], stage=1)


def fixed_batch(data_dir, frames=4, count=2):
    """Two samples with depth, objects and scale augmentation on, drawn once; and fresh noise generators."""
    source = TrainingSet(data_dir, frames=frames, scale_range=(0.7, 1.3))
    clips, _ = batches.draw(source, seed=3, micro_step=0, rank=0, per_process=count)
    assert all(c.depth is not None and c.objects is not None for c in clips)
    assert any(abs(c.info["scale"] - 1) > 0.05 for c in clips)  # the augmentation really rescaled a clip
    return clips, lambda: [torch.Generator().manual_seed(batches.sample_seed(3, 0, i, 1)) for i in range(count)]


STEPS, LR, FACTOR = 10, 1e-3, 0.75  # 10 AdamW steps on the AA2 modules bring the fixed-batch loss below 0.75x (seen: 0.61x)


def test_loss_falls_with_depth_objects_and_scale_augmentation(models_dir, data_dir, one_thread):
    """The AA2 modules (base frozen) trained on one fixed batch of 2 clips (depth, objects, scale augmentation,
    fixed noise and timesteps): no crash, and after STEPS steps the loss is below FACTOR times the first;
    every base weight stays bit for bit.

    Mutation seen failing: TrainStep returning ``2 * loss.detach() - loss`` (same value, gradient flipped:
    the loss rose to 2.4x)."""
    torch.manual_seed(0)  # the AA2 modules' random initial weights (the trainer seeds them with --seed)
    models = assemble_from_folder(models_dir)
    select_trainable(models, ["aa2"], stage=2)
    step = TrainStep(models, make_scheduler("ddim", "moore"), uncond_prob=0.0)
    frozen = {n: p.detach().clone() for n, p in step.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in step.parameters() if p.requires_grad], lr=LR)
    clips, generators = fixed_batch(data_dir, frames=2)
    losses = []
    for i in range(STEPS + 1):
        loss = step(clips, generators())
        losses.append(loss.item())
        if i == STEPS:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(math.isfinite(v) and v > 0 for v in losses), losses
    assert losses[-1] < FACTOR * losses[0], losses
    assert all(torch.equal(p, frozen[n]) for n, p in step.named_parameters() if n in frozen)


def test_gradient_checkpointing_keeps_gradients_and_saves_memory(models_dir, data_dir, one_thread):
    """With the DenoisingNet checkpointed (the trainer's --gradient-checkpointing), the AA2 modules' gradients
    are those without it, and the activations kept for backward are under half.

    Mutation seen failing: ``DenoisingNet._layer`` ignoring the flag (saved bytes equal)."""
    models = assemble_from_folder(models_dir)
    select_trainable(models, ["aa2"], stage=2)
    step = TrainStep(models, make_scheduler("ddim", "moore"), uncond_prob=0.0)
    clips, generators = fixed_batch(data_dir, frames=2, count=1)

    def run(checkpointing):
        models.denoising.enable_gradient_checkpointing(checkpointing)
        saved = []

        def pack(t):
            saved.append(t.numel() * t.element_size())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = step(clips, generators())
        step.zero_grad()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in step.named_parameters() if p.grad is not None}
        return sum(saved), grads

    plain_bytes, plain = run(False)
    ckpt_bytes, ckpt = run(True)
    models.denoising.enable_gradient_checkpointing(False)
    assert set(plain) == set(ckpt) and any(n.startswith("denoising.env_conv_in") for n in ckpt)
    for n in plain:
        torch.testing.assert_close(ckpt[n], plain[n], rtol=1e-4, atol=1e-6)
    assert ckpt_bytes < 0.5 * plain_bytes, (ckpt_bytes, plain_bytes)  # seen: ~0.2x


def run_cli(capsys, args):
    assert main(args) == 0
    out = capsys.readouterr().out
    return [float(v) for v in re.findall(r"^step \d+/\d+ loss (\S+)", out, flags=re.M)], out


def test_cli_writes_file_logs_checkpoint_and_validation_video(tmp_path, models_dir, data_dir, one_thread, capsys):
    """2 steps of 2 accumulated clips, LR warm-up, gradient checkpointing: the
    aa2-modules file holds exactly the AA2 parameters (moved from zero) with the training metadata; the
    TensorBoard log, a checkpoint and the validation mp4 are written; the log names the optimizer. Samples come
    through a data-loader worker process. In fp32: in one full-suite CI run under load, bf16 autocast on the CPU gave
    inf/NaN gradients at every step-2 draw of this tiny random model (the bad-step guard stopped the run, as it
    should); not reproduced alone. bf16 stays covered by the bad-step test below.

    Mutations seen failing: the warm-up lambda returning 1 always (the logged first lr is the full lr);
    ``trained_parts`` saving every tensor of a trained net (base weights in the file)."""
    from aa2_core.video_io import read_video

    out = tmp_path / "aa2.safetensors"
    args = train_args(data_dir, models_dir, out, "--steps", 2, "--frames", 2, "--batch-size", 1, "--grad-accum", 2, "--lr", 1e-3,
                      "--warmup-steps", 2, "--mixed-precision", "no", "--gradient-checkpointing", "--checkpoint-every", 2,
                      "--validate-every", 2, "--validate-steps", 2, "--workers", 1)
    args.remove("--no-tensorboard")
    losses, log = run_cli(capsys, args)
    assert len(losses) == 2 and all(math.isfinite(v) and v > 0 for v in losses), log
    assert "optimizer: AdamW" in log and "mixed precision: no" in log and "= 2 clips per step" in log
    assert "spatial blends start as 'identity'" in log  # --blend-init auto on a frozen base (test_blend_init.py)
    lrs = [float(v) for v in re.findall(r" lr (\S+) ", log)]
    assert lrs == [pytest.approx(5e-4), pytest.approx(1e-3)], lrs  # warm-up: half the rate, then the rate

    parts, meta = load_aa2_file(str(out))
    models = assemble_from_folder(models_dir)
    assert set(parts["denoising"]) == set(models.denoising.aa2_state_dict())
    assert set(parts["pose"]) == {n for n, _ in models.pose.named_parameters() if n.startswith(AA2_POSE)}
    assert parts["denoising"]["env_conv_in.weight"].abs().max() > 0  # zero-initialised, trained
    training = meta["training"]
    assert training["modules"] == ["aa2"] and training["steps"] == 2 and training["stage"] == 2
    assert training["recipe"]["mixed_precision"] == "no" and training["recipe"]["grad_accum"] == 2

    run_dir = tmp_path / "aa2_run"
    assert any(f.startswith("events.out.tfevents") for _, _, files in os.walk(run_dir / "logs") for f in files)
    assert {f.name for f in (run_dir / "checkpoints" / "step_0000002").iterdir()} == {"state.json", "trained.safetensors", "optimizer.pt", "rng.safetensors"}
    video, _ = read_video(str(run_dir / "validation" / "step_0000002.mp4"))
    assert video.shape == (2, 64, 128, 3)  # [target | render]


def test_stage_1_trains_single_frames_without_temporal_layers(tmp_path, models_dir, data_dir, one_thread, capsys):
    """--stage 1 --modules aa2,temporal: one frame per sample, the motion modules and the pose Conv3D left
    out (and not saved); the metadata says stage 1. (The stage-1 filter's mutation is seen failing in
    test_module_groups_choose_what_trains.)"""
    out = tmp_path / "s1.safetensors"
    losses, log = run_cli(capsys, train_args(data_dir, models_dir, out, "--steps", 1, "--stage", 1, "--modules", "aa2,temporal",
                                              "--frames", 4, "--lr", 1e-3))
    assert len(losses) == 1 and "(stage 1)" in log and "x batch 1 " in log
    parts, meta = load_aa2_file(str(out))
    assert meta["training"]["stage"] == 1 and meta["training"]["recipe"]["frames"] == 4
    # the file says which recipe made it, the reference's background included (the default: a plain colour)
    assert meta["training"]["recipe"]["reference_background"] == "colour"
    assert meta["training"]["recipe"]["blend_init"] == "auto"
    assert not any(k.startswith("motion.") for k in parts["denoising"]) and not any(k.startswith("temporal.") for k in parts["pose"])


def test_resume_continues_exactly(tmp_path, models_dir, data_dir, one_thread, capsys):
    """3 steps in one run vs 2 steps, stop, --resume, 1 more: the same loss at step 3 and the same weights
    (model, AdamW moments, LR schedule, step counter and data draws all restored).

    Mutation seen failing: Progress.load_state_dict ignoring the step (the resumed run starts again at step 0)."""
    common = ("--frames", 2, "--lr", 1e-2, "--warmup-steps", 3, "--optimizer", "adamw")
    full, log_full = run_cli(capsys, train_args(data_dir, models_dir, tmp_path / "full.safetensors", "--steps", 3, *common))
    part, _ = run_cli(capsys, train_args(data_dir, models_dir, tmp_path / "part.safetensors", "--steps", 2, "--checkpoint-every", 2, *common))
    resumed, log = run_cli(capsys, train_args(data_dir, models_dir, tmp_path / "resumed.safetensors", "--steps", 3,
                                              "--resume", tmp_path / "part_run", *common))
    assert "resumed from" in log and "at step 2" in log
    assert part == full[:2] and resumed == full[2:], (full, part, resumed)
    a, b = load_aa2_file(str(tmp_path / "full.safetensors"))[0], load_aa2_file(str(tmp_path / "resumed.safetensors"))[0]
    assert all(torch.equal(a[part][k], b[part][k]) for part in a for k in a[part])


class InfGradient(torch.autograd.Function):
    """The loss unchanged, its gradient inf: the trainer's loss check alone cannot see it."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def poison_steps(monkeypatch, bad):
    """TrainStep whose forward call number n (1-based) gets an inf gradient when ``bad(n)``."""
    from aa2_core.training import engine

    calls = [0]

    class Poisoned(engine.TrainStep):
        def forward(self, clips, generators):
            calls[0] += 1
            loss = super().forward(clips, generators)
            return InfGradient.apply(loss) if bad(calls[0]) else loss

    monkeypatch.setattr(engine, "TrainStep", Poisoned)


def test_an_inf_gradient_skips_the_step_before_the_optimizer(tmp_path, models_dir, data_dir, one_thread, monkeypatch, capsys):
    """Step 2's gradient is inf (its loss finite): the step is skipped and counted, the LR schedule does not move
    (warm-up 4: the logged rates are 1/4 and 3/4 of --lr at steps 1 and 3), three real steps are taken and every
    saved weight is finite. --log-every 50 still logs step 1 first, with a rate and an ETA.

    Mutations seen failing: the gradient check removed from engine.train (AdamW turned every weight NaN);
    lr_schedule.step() on a skipped step (step 3's rate was 1e-2)."""
    poison_steps(monkeypatch, lambda n: n == 2)
    out = tmp_path / "aa2.safetensors"
    assert main(train_args(data_dir, models_dir, out, "--steps", 3, "--frames", 2, "--lr", 1e-2, "--warmup-steps", 4,
                           "--optimizer", "adamw", "--log-every", 50)) == 0
    log = capsys.readouterr().out
    assert "step 2: inf/NaN gradients (loss " in log and "step skipped, weights unchanged (1 skipped in all, 1 in a row)" in log, log
    assert re.findall(r"^step (\d+)/3 loss \S+ lr (\S+) \(\d+\.\d\d s/step, ETA \d+:\d\d:\d\d\)$", log, flags=re.M) == \
        [("1", "0.0025"), ("3", "0.0075")], log
    assert "3 steps in " in log and "1 skipped for inf/NaN gradients" in log
    parts, _ = load_aa2_file(str(out))
    assert all(torch.isfinite(t).all() for p in parts.values() for t in p.values())
    assert parts["denoising"]["env_conv_in.weight"].abs().max() > 0  # the good steps did train


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_inf_gradients_in_a_row_stop_the_run(precision, tmp_path, models_dir, data_dir, one_thread, monkeypatch, capsys):
    """Every gradient inf: after --max-bad-steps 2 skipped steps in a row the run stops with one clear line that
    does not suggest bf16 (it is in use, or fp32 is), and no --out is written.

    Mutations seen failing: the --max-bad-steps stop removed (the run looped on fresh clips; killed by timeout);
    the hint suggesting bf16 whatever the precision."""
    poison_steps(monkeypatch, lambda n: True)
    out = tmp_path / "aa2.safetensors"
    assert main(train_args(data_dir, models_dir, out, "--steps", 3, "--frames", 2, "--max-bad-steps", 2,
                           "--mixed-precision", precision)) == 1
    captured = capsys.readouterr()
    assert "error: 2 steps in a row had inf/NaN gradients (--max-bad-steps 2); stopped at step 0" in captured.err, captured
    assert "bf16" not in captured.err and not out.exists()


def test_gradient_check_agrees_across_processes():
    """A non-finite gradient on another process skips the step here too (the flag goes through gather).

    Mutation seen failing: gradients_finite deciding on the local gradients only."""
    from aa2_core.training.engine import gradients_finite

    class TwoProcesses:
        device = torch.device("cpu")

        def __init__(self, other_finite):
            self.other = torch.tensor([float(other_finite)])

        def gather(self, flag):
            return torch.cat([flag, self.other])

    param = torch.nn.Parameter(torch.zeros(3))
    param.grad = torch.ones(3)
    assert gradients_finite([param], TwoProcesses(True)) and not gradients_finite([param], TwoProcesses(False))
    param.grad[1] = float("nan")
    assert not gradients_finite([param], TwoProcesses(True))


def test_help_shows_every_default_and_explains_every_option():
    """`train --help`: each option has help text and each option with a value to default shows it (switches such
    as --cpu, off unless given, and required options do not); --steps says it is the total on resume.

    Mutation seen failing: the plain HelpFormatter (no defaults shown)."""
    from aa2_core.training.train import parser

    p = parser()
    formatter = p._get_formatter()
    for action in p._actions:
        if action.dest == "help":
            continue
        assert action.help, action.option_strings
        switch = isinstance(action.default, bool) and not isinstance(action, argparse.BooleanOptionalAction)
        expected = action.default not in (None, {}) and not switch and not action.required
        assert ("%(default)s" in formatter._get_help_string(action)) == expected, (action.option_strings, action.default)
    flat = " ".join(p.format_help().split())
    assert "(default: 100000)" in flat and "with --resume the total too, counting the steps already done" in flat
