"""The training loop on ``accelerate``: one process per device, DDP / DeepSpeed / FSDP from its config.

    accelerate launch [--num_processes N | --config_file cfg.yaml] -m aa2_core train ...

accelerate owns the distributed engine (process group, gradient all-reduce, sharding, mixed precision,
checkpoint files, TensorBoard); this module only sequences the steps. Tested here: one process and
two CPU processes (gloo DDP). Written, untested here: DeepSpeed ZeRO-2 and FSDP (FSDP needs
``fsdp_use_orig_params: true`` in the accelerate config, since frozen and trained weights share modules). Gradient accumulation is done
here (``no_sync`` on the inner micro-steps) so the optimizer-step count is ours and is the one thing a
resumed run needs besides the accelerate state.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext

import torch

from ..checkpoints.aa2_file import save_aa2_file
from ..errors import AA2Error
from ..pipeline.schedulers import make_scheduler
from . import batches
from .modules import count, parameter_groups, select_trainable, trained_parts
from .optim import Progress, make_optimizer, warmup_schedule
from .step import TrainStep
from .validation import render_validation, validation_path


def build_accelerator(args):
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.state import AcceleratorState
    from accelerate.utils import ProjectConfiguration

    # accelerate keeps its settings in a process-wide singleton; a second run in one process (tests, notebooks)
    # may use another mixed precision. The process group (PartialState) is kept.
    AcceleratorState._reset_state()

    project = ProjectConfiguration(project_dir=args.run_dir, logging_dir=os.path.join(args.run_dir, "logs"))
    # unused parameters are normal here: no objects in a batch leaves the object guider without gradients
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(mixed_precision=args.mixed_precision, log_with="tensorboard" if args.tensorboard else None,
                       project_config=project, kwargs_handlers=[ddp], cpu=args.cpu)


def load_models(args, accelerator):
    from ..checkpoints.assembly import assemble_from_folder

    torch.manual_seed(args.seed)  # the AA2 modules' random initial weights: the same on every process and every run
    models = assemble_from_folder(args.models, args.aa2_modules, args.fusion_blocks)
    if args.stage == 1:  # images: the UNet runs without temporal layers, as stage 1 of Animate Anyone
        models.denoising.motion = None
        if getattr(models.denoising, "mamba", None) is not None:
            models.denoising.mamba = None
    chosen = select_trainable(models, args.modules, args.stage)
    place_models(models, chosen, accelerator.device, accelerator.mixed_precision, args.gradient_checkpointing)
    return models, chosen


def place_models(models, chosen, device, mixed_precision: str, gradient_checkpointing: bool) -> None:
    """Models onto the device; frozen whole nets in the compute dtype on a GPU (half their memory), trained
    ones in fp32 (master weights; autocast computes in bf16/fp16)."""
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(str(mixed_precision))
    frozen_dtype = half if half is not None and torch.device(device).type == "cuda" else torch.float32
    for name in ("denoising", "reference", "pose", "vae", "image_encoder"):
        whole_frozen = name in ("vae", "image_encoder") or (name == "reference" and "reference" not in chosen)
        getattr(models, name).to(device, frozen_dtype if whole_frozen else torch.float32)
    if gradient_checkpointing:
        models.denoising.enable_gradient_checkpointing()
        if "reference" in chosen:
            models.reference.unet.enable_gradient_checkpointing()


def filter_saved_state(chosen):
    """accelerate save hook: checkpoint only the trained weights (the frozen base is the model files)."""
    keep = {f"{net}.{n}" for net, names in chosen.items() for n in names}

    def hook(models, weights, output_dir):
        for state in weights:
            for key in [k for k in state if k not in keep]:
                del state[key]
    return hook


def latest_checkpoint(path: str) -> str:
    """``--resume`` takes a checkpoint folder, or a run folder (its newest checkpoint)."""
    folder = os.path.join(path, "checkpoints")
    if os.path.isdir(folder):
        found = sorted(d for d in os.listdir(folder) if d.startswith("step_"))
        if not found:
            raise AA2Error(f"--resume {path}: no checkpoint in {folder}")
        return os.path.join(folder, found[-1])
    if not os.path.isdir(path):
        raise AA2Error(f"--resume {path}: no such checkpoint folder")
    return path


def train(args, source) -> dict:
    """Run ``args.steps`` optimizer steps on clips from ``source`` (anything with ``sample(generator)``)."""
    accelerator = build_accelerator(args)
    log = accelerator.print
    models, chosen = load_models(args, accelerator)
    step_module = TrainStep(models, make_scheduler("ddim", args.schedule), args.uncond_prob)
    groups = parameter_groups(models, args.lr, getattr(args, "lr_scale", None) or {})
    params = [p for g in groups for p in g["params"]]
    optimizer, optimizer_name = make_optimizer(groups, args.optimizer, args.lr)
    lr_schedule = warmup_schedule(optimizer, args.warmup_steps)
    progress = Progress()
    deepspeed = accelerator.state.deepspeed_plugin
    if deepspeed is not None:  # no dataloader is prepared, so DeepSpeed is told the batch; it accumulates itself
        deepspeed.deepspeed_config["train_micro_batch_size_per_gpu"] = args.batch_size
        deepspeed.deepspeed_config["gradient_accumulation_steps"] = args.grad_accum
    step_module, optimizer = accelerator.prepare(step_module, optimizer)
    # our own LR schedule in optimizer steps (accelerate's wrapper would step it once per process)
    accelerator.register_for_checkpointing(lr_schedule, progress)
    if accelerator.distributed_type.value in ("NO", "MULTI_GPU", "MULTI_CPU"):
        accelerator.register_save_state_pre_hook(filter_saved_state(chosen))
    if args.resume:
        accelerator.load_state(latest_checkpoint(args.resume), strict=False)
        log(f"resumed from {args.resume} at step {progress.step}")

    world, rank = accelerator.num_processes, accelerator.process_index
    log(f"training {'+'.join(args.modules)} (stage {args.stage}): {count(models, chosen):,} parameters; optimizer: {optimizer_name}; "
        f"mixed precision: {accelerator.mixed_precision}; {world} process(es) x batch {args.batch_size} x accumulation "
        f"{args.grad_accum} = {world * args.batch_size * args.grad_accum} clips per step; gradient checkpointing "
        f"{'on' if args.gradient_checkpointing else 'off'}")
    if args.tensorboard:
        accelerator.init_trackers("aa2_train", config=_hparams(args))
    validation_clip = source.sample(torch.Generator().manual_seed(batches.sample_seed(args.seed, 0, 0, 2))) if args.validate_every else None

    losses, t0 = [], time.perf_counter()
    data = batches.micro_batches(source, args.seed, rank, args.batch_size, progress.step * args.grad_accum,
                                 args.steps * args.grad_accum, args.workers)
    while progress.step < args.steps:
        step_loss = torch.zeros((), device=accelerator.device)
        for micro in range(args.grad_accum):
            m, clips = next(data)
            generators = batches.noise_generators(args.seed, m, rank, args.batch_size)
            sync = micro == args.grad_accum - 1
            with nullcontext() if sync else accelerator.no_sync(step_module):
                loss = step_module(clips, generators)
                # DeepSpeed divides by its gradient_accumulation_steps itself (and steps at the boundary)
                accelerator.backward(loss if deepspeed is not None else loss / args.grad_accum)
            step_loss += loss.detach() / args.grad_accum
        if args.max_grad_norm > 0:
            accelerator.clip_grad_norm_(params, args.max_grad_norm)
        lr = optimizer.param_groups[0]["lr"]  # the rate this step used
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
        progress.step += 1
        mean_loss = accelerator.gather(step_loss[None]).mean().item()  # every process's clips, as one batch
        losses.append(mean_loss)
        if not math.isfinite(mean_loss):
            raise AA2Error(f"step {progress.step}: the loss is {mean_loss}; lower --lr or use --mixed-precision bf16 instead of fp16")
        accelerator.log({"train/loss": mean_loss, "train/lr": lr}, step=progress.step)
        if progress.step % args.log_every == 0 or progress.step == args.steps:
            log(f"step {progress.step}/{args.steps} loss {mean_loss:.8g} lr {lr:.3g} "
                f"({(time.perf_counter() - t0) / len(losses):.2f} s/step)")
        if args.checkpoint_every and progress.step % args.checkpoint_every == 0:
            accelerator.save_state(os.path.join(args.run_dir, "checkpoints", f"step_{progress.step:07d}"))
        if args.validate_every and (progress.step % args.validate_every == 0):
            validate(args, accelerator, models, validation_clip, progress.step)
    accelerator.wait_for_everyone()
    state = accelerator.get_state_dict(step_module)  # every process: FSDP / ZeRO gather the shards together
    if accelerator.is_main_process:
        write_output(args, accelerator, step_module, state, chosen, progress.step)
        log(f"wrote {args.out}")
    accelerator.end_training()
    return {"losses": losses, "step": progress.step}


def validate(args, accelerator, models, clip, step):
    if accelerator.is_main_process:
        path = validation_path(args.run_dir, step)
        with accelerator.autocast():
            video = render_validation(models, clip, path, args.validate_steps, args.validate_cfg, accelerator.device)
        if args.tensorboard:
            frame = video[video.shape[0] // 2].clamp(0, 1).numpy()
            accelerator.get_tracker("tensorboard").log_images({"validation/target|render": frame}, step=step, dataformats="HWC")
        accelerator.print(f"step {step}: validation video {path}")
    accelerator.wait_for_everyone()


def write_output(args, accelerator, step_module, state, chosen, steps):
    denoising = accelerator.unwrap_model(step_module).denoising
    training = {"modules": args.modules, "steps": steps, "stage": args.stage, "parts": sorted(chosen), "recipe": _hparams(args)}
    save_aa2_file(args.out, trained_parts(state, chosen), base=os.path.abspath(args.models), fusion_blocks=denoising.fusion_blocks,
                  notes=f"python -m aa2_core train --modules {','.join(args.modules)} --stage {args.stage}: {steps} steps",
                  training=training, architecture=denoising.architecture())


def _hparams(args) -> dict:
    keys = ("modules", "stage", "frames", "stride", "batch_size", "grad_accum", "lr", "warmup_steps", "optimizer", "mixed_precision",
            "gradient_checkpointing", "uncond_prob", "schedule", "scale_range", "pose_indicator", "seed", "fusion_blocks")
    out = {}
    for k in keys:
        v = getattr(args, k, None)
        out[k] = ",".join(v) if isinstance(v, list) else (str(v) if isinstance(v, tuple) or v is None else v)
    return out
