"""The training loop on ``accelerate``: one process per device, DDP / DeepSpeed / FSDP from its config.

    accelerate launch [--num_processes N | --config_file cfg.yaml] -m aa2_core train ...

accelerate owns the distributed engine (process group, gradient all-reduce, sharding, mixed precision,
TensorBoard); this module sequences the steps and writes the checkpoints. Tested here: one process and
two CPU processes (gloo DDP). Written, untested here: DeepSpeed ZeRO-2 and FSDP (FSDP needs
``fsdp_use_orig_params: true`` in the accelerate config, since frozen and trained weights share modules). Gradient
accumulation is done here (``no_sync`` on the inner micro-steps) so the optimizer-step count is ours.

Checkpoints (``TrainingState``) are the pack's own files, written to a temporary folder and renamed whole:
safetensors, JSON and an optimizer state read back with ``weights_only=True``, so ``--resume`` runs no code from
the run folder. DeepSpeed / FSDP shards are accelerate's files, loaded with every ``torch.load`` forced to
``weights_only=True``. A step whose gradients are inf/NaN is skipped before the optimizer sees it.
"""

from __future__ import annotations

import glob
import importlib
import json
import math
import os
import pickle
import time
import zipfile
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from safetensors.torch import load_file, safe_open

from ..atomic import atomic_dir, write_text
from ..checkpoints.aa2_file import save_aa2_file
from ..checkpoints.io import _reason, write_safetensors
from ..errors import AA2Error, describe_keys
from ..pipeline.schedulers import make_scheduler
from . import batches
from .blend_init import init_blends
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
    models.blend_init = init_blends(models, getattr(args, "blend_init", "auto"), chosen)
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


# ------------------------------------------------------------------------------------------------ checkpoints
# A checkpoint is the pack's own files, so resume unpickles nothing that could run code:
STATE = "state.json"            # counters, LR schedule, loss scale and every file's size; written last
TRAINED = "trained.safetensors"  # the trained parameters only (the frozen base is the model files)
OPTIMIZER = "optimizer.pt"       # torch.save of the optimizer state; read back with weights_only=True
RNG = "rng.safetensors"          # every process's torch RNG states as uint8 tensors
# (Python's and NumPy's global RNGs are not saved: nothing in training draws from them; data and noise come
# from generators seeded by the step, see ``batches``.)


def is_sharded(accelerator) -> bool:
    """DeepSpeed / FSDP split weights and optimizer state over the processes: accelerate writes those files."""
    return accelerator.distributed_type.value not in ("NO", "MULTI_GPU", "MULTI_CPU")


@dataclass
class TrainingState:
    """Everything a checkpoint holds and ``--resume`` restores."""
    accelerator: object
    step_module: torch.nn.Module
    optimizer: object
    lr_schedule: object
    progress: Progress
    chosen: dict

    def trained(self) -> dict[str, torch.nn.Parameter]:
        net = self.accelerator.unwrap_model(self.step_module)
        return {f"{part}.{n}": p for part, names in self.chosen.items()
                for n, p in getattr(net, part).named_parameters() if n in set(names)}

    def save(self, path: str) -> None:
        """Write ``path`` whole or not at all: a temporary folder, renamed once every file is in it."""
        from accelerate.utils import broadcast_object_list, gather_object

        acc = self.accelerator
        rng = gather_object([_rng_state()])  # every process's RNG, written by the main one
        try:
            with (atomic_dir(path) if acc.is_main_process else nullcontext()) as tmp:
                tmp = broadcast_object_list([tmp])[0]
                if is_sharded(acc):
                    acc.save_state(tmp)  # every process writes its shards
                    acc.wait_for_everyone()
                    if acc.is_main_process:  # accelerate's RNG pickles: ours are in RNG, and resume refuses pickles
                        for pkl in glob.glob(os.path.join(tmp, "*.pkl")):
                            os.remove(pkl)
                if acc.is_main_process:
                    self._write(tmp, rng)
        except OSError as e:  # disk full, folder gone: the older checkpoints stay whole
            raise AA2Error(f"checkpoint {path}: could not write it ({e.strerror or e}); older checkpoints are intact") from e
        acc.wait_for_everyone()

    def _write(self, folder: str, rng: list[dict]) -> None:
        acc = self.accelerator
        if not is_sharded(acc):
            write_safetensors({k: p.detach() for k, p in self.trained().items()}, os.path.join(folder, TRAINED))
            torch.save(self.optimizer.state_dict(), os.path.join(folder, OPTIMIZER))
        write_safetensors({f"{rank}.{k}": v for rank, state in enumerate(rng) for k, v in state.items()}, os.path.join(folder, RNG))
        files = {os.path.relpath(os.path.join(root, f), folder): os.path.getsize(os.path.join(root, f))
                 for root, _, names in os.walk(folder) for f in names}
        state = {"format": "aa2-train-checkpoint", "version": 1, "sharded": is_sharded(acc), "progress": self.progress.state_dict(),
                 "lr_schedule": self.lr_schedule.state_dict(), "scaler": acc.scaler.state_dict() if acc.scaler is not None else {},
                 "files": files}
        write_text(os.path.join(folder, STATE), json.dumps(state, indent=1))  # last: lists the files above

    def load(self, path: str, state: dict) -> None:
        """Restore a checkpoint ``find_checkpoint`` accepted (``state``: its state.json)."""
        acc = self.accelerator
        if is_sharded(acc):
            with weights_only_loads():
                acc.load_state(path, strict=False)
        else:
            weights = _read(path, TRAINED, lambda f: load_file(f, device="cpu"))
            trained = self.trained()
            if set(weights) != set(trained) or any(weights[k].shape != p.shape for k, p in trained.items()):
                raise AA2Error(f"--resume {path}: {TRAINED} holds other parameters than this run trains "
                               f"({describe_keys(set(weights) ^ set(trained)) or 'other shapes'}); resume with the run's --modules and --stage")
            with torch.no_grad():
                for k, p in trained.items():
                    p.copy_(weights[k])
            optimizer = _read(path, OPTIMIZER, lambda f: torch.load(f, map_location="cpu", weights_only=True))
            try:
                self.optimizer.load_state_dict(optimizer)
            except (ValueError, KeyError) as e:
                raise AA2Error(f"--resume {path}: {OPTIMIZER} does not fit this optimizer ({e}); resume with the run's "
                               "--optimizer, --modules and --lr-scale") from e
        self.lr_schedule.load_state_dict(state["lr_schedule"])
        self.progress.load_state_dict(state["progress"])
        if acc.scaler is not None and state.get("scaler"):
            acc.scaler.load_state_dict(state["scaler"])
        rng = _read(path, RNG, lambda f: load_file(f, device="cpu"))
        _set_rng_state({k.split(".", 1)[1]: v for k, v in rng.items() if k.split(".", 1)[0] == str(acc.process_index)})


def _rng_state() -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return state


def _set_rng_state(state: dict[str, torch.Tensor]) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    for key, value in state.items():
        if key.startswith("cuda.") and torch.cuda.is_available() and int(key[5:]) < torch.cuda.device_count():
            torch.cuda.set_rng_state(value, int(key[5:]))


def _read(folder: str, name: str, load):
    try:
        return load(os.path.join(folder, name))
    except Exception as e:  # same size as written, yet unreadable
        raise AA2Error(f"--resume {folder}: cannot read {name} ({type(e).__name__}: {_reason(e)})") from e


def find_checkpoint(resume: str, sharded: bool, log) -> tuple[str, dict]:
    """``--resume`` takes a checkpoint folder, or a run folder: its newest *complete* checkpoint, each damaged
    newer one skipped with the reason logged. Returns the folder and its state.json. Checks files, loads nothing."""
    if not os.path.isdir(resume):
        raise AA2Error(f"--resume {resume}: no such folder; expected a run folder (--run-dir) or one of its checkpoints/step_N folders")
    folder = os.path.join(resume, "checkpoints")
    if not os.path.isdir(folder):
        if not os.path.isfile(os.path.join(resume, STATE)):
            raise AA2Error(f"--resume {resume}: no checkpoints folder and no {STATE} in it; expected a run folder (--run-dir) "
                           "or one of its checkpoints/step_N folders")
        state = checkpoint_state(resume, sharded)
        if isinstance(state, str):
            raise AA2Error(f"--resume {resume}: {state}")
        return resume, state
    names = sorted((d for d in os.listdir(folder) if d.startswith("step_") and d[5:].isdigit()), key=lambda d: -int(d[5:]))
    skipped = []
    for name in names:
        state = checkpoint_state(os.path.join(folder, name), sharded)
        if not isinstance(state, str):
            return os.path.join(folder, name), state
        log(f"--resume: skipped {os.path.join(folder, name)}: {state}")
        skipped.append(f"{name}: {state}")
    raise AA2Error(f"--resume {resume}: no complete checkpoint in {folder}" + (f" (skipped {'; '.join(skipped)})" if skipped else ""))


def checkpoint_state(path: str, sharded: bool):
    """A checkpoint's state.json as a dict, or why the checkpoint is not whole (a string). A pickle in it is an
    error, not a reason to skip: someone put it there, and the user should know."""
    pickles = sorted(os.path.join(root, f) for root, _, names in os.walk(path) for f in names if f.endswith(".pkl"))
    if pickles:
        raise AA2Error(f"--resume: refusing {pickles[0]}: a pickle can run code when loaded, and this trainer's checkpoints "
                       "hold none (a checkpoint written by an older version cannot be resumed)")
    try:
        with open(os.path.join(path, STATE), encoding="utf-8") as f:
            state = json.load(f)
        files, written_sharded = dict(state["files"]), bool(state["sharded"])
        Progress().load_state_dict(state["progress"])  # whole numbers
        if not isinstance(state["lr_schedule"], dict):
            raise TypeError("lr_schedule is not an object")
    except FileNotFoundError:
        return f"no {STATE} (an empty or unfinished checkpoint)"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{STATE} is unreadable ({type(e).__name__}: {e})"
    if written_sharded != sharded:
        raise AA2Error(f"--resume {path}: written by a{'' if written_sharded else ' non'}-sharded run (DeepSpeed / FSDP); "
                       "resume with the run's accelerate config")
    for name in (RNG,) + (() if sharded else (TRAINED, OPTIMIZER)):
        if name not in files:
            return f"{STATE} lists no {name}"
    for name, size in files.items():
        full = os.path.join(path, name)
        if not os.path.isfile(full):
            return f"{name} is missing"
        if os.path.getsize(full) != size:
            return f"{name} is {os.path.getsize(full)} bytes; {size} were written (cut short or changed)"
    for name in files:
        if name.endswith(".safetensors"):
            try:
                with safe_open(os.path.join(path, name), framework="pt"):
                    pass
            except Exception as e:
                return f"{name} is not readable safetensors ({_reason(e)})"
        elif name == OPTIMIZER and (problem := _zip_problem(os.path.join(path, name))):
            return f"{name} is not a whole torch.save file ({problem})"
        elif os.path.basename(name) == ".metadata":  # FSDP's torch.distributed.checkpoint index: a plain pickle
            problem = dcp_metadata_problem(os.path.join(path, name))
            if problem:
                raise AA2Error(f"--resume: refusing {os.path.join(path, name)}: {problem}")
    return state


def _zip_problem(path: str) -> str | None:
    """torch.save writes a zip with a CRC per entry: reading it through finds any changed byte."""
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
        return f"{bad} fails its CRC" if bad else None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        return str(e)


@contextmanager
def weights_only_loads():
    """Every ``torch.load`` inside (DeepSpeed's, accelerate's) is forced to ``weights_only=True``."""
    before = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"]
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = before


class _MetadataCheck(pickle.Unpickler):
    """Reads a torch.distributed.checkpoint ``.metadata`` pickle building only its data classes, enums, torch
    sizes/dtypes and paths: anything else (``os.system``...) is refused before torch unpickles the file."""

    def find_class(self, module, name):
        import enum
        from dataclasses import is_dataclass

        obj = getattr(importlib.import_module(module), name, None) if module.split(".")[0] in ("torch", "pathlib") else None
        data = isinstance(obj, type) and (is_dataclass(obj) or issubclass(obj, enum.Enum))
        if ((module.startswith("torch.distributed.checkpoint.") and data) or (module == "torch" and (name == "Size" or isinstance(obj, torch.dtype)))
                or (module, name) in (("torch.serialization", "_get_layout"), ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"))):
            return obj
        raise pickle.UnpicklingError(f"it names {module}.{name}, which a checkpoint index never holds")


def dcp_metadata_problem(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            _MetadataCheck(f).load()
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return None


def train(args, source) -> dict:
    """Run optimizer steps up to ``args.steps`` (the total, counting a resumed run's) on clips from ``source``
    (anything with ``sample(generator)``)."""
    accelerator = build_accelerator(args)
    log = accelerator.print
    resume = find_checkpoint(args.resume, is_sharded(accelerator), log) if args.resume else None
    if resume and resume[1]["progress"]["step"] >= args.steps:  # before any model loads
        log(f"warning: {resume[0]} is at step {resume[1]['progress']['step']}, and --steps {args.steps} is the total, not "
            f"more steps: nothing to train, {args.out} not written; give a larger --steps to train on")
        accelerator.end_training()
        return {"losses": [], "step": resume[1]["progress"]["step"], "skipped": 0, "written": False}
    models, chosen = load_models(args, accelerator)
    step_module = TrainStep(models, make_scheduler("ddim", args.schedule), args.uncond_prob)
    groups = parameter_groups(models, args.lr, getattr(args, "lr_scale", None) or {})
    params = [p for g in groups for p in g["params"]]
    optimizer, optimizer_name = make_optimizer(groups, args.optimizer, args.lr)
    lr_schedule = warmup_schedule(optimizer, args.warmup_steps)  # ours, in optimizer steps (accelerate's wrapper would step it per process)
    deepspeed = accelerator.state.deepspeed_plugin
    if deepspeed is not None:  # no dataloader is prepared, so DeepSpeed is told the batch; it accumulates itself
        deepspeed.deepspeed_config["train_micro_batch_size_per_gpu"] = args.batch_size
        deepspeed.deepspeed_config["gradient_accumulation_steps"] = args.grad_accum
    step_module, optimizer = accelerator.prepare(step_module, optimizer)
    run = TrainingState(accelerator, step_module, optimizer, lr_schedule, Progress(), chosen)
    progress = run.progress
    if resume:
        run.load(*resume)
        log(f"resumed from {resume[0]} at step {progress.step}")

    world, rank = accelerator.num_processes, accelerator.process_index
    log(f"training {'+'.join(args.modules)} (stage {args.stage}): {count(models, chosen):,} parameters; optimizer: {optimizer_name}; "
        f"mixed precision: {accelerator.mixed_precision}; {world} process(es) x batch {args.batch_size} x accumulation "
        f"{args.grad_accum} = {world * args.batch_size * args.grad_accum} clips per step; gradient checkpointing "
        f"{'on' if args.gradient_checkpointing else 'off'}; steps {progress.step + 1} to {args.steps}; {models.blend_init}")
    if args.tensorboard:
        accelerator.init_trackers("aa2_train", config=_hparams(args))
    validation_clip = source.sample(torch.Generator().manual_seed(batches.sample_seed(args.seed, 0, 0, 2))) if args.validate_every else None

    losses, bad_in_a_row, t0, first = [], 0, time.perf_counter(), progress.step
    data = _draws(args, source, rank, progress)
    while progress.step < args.steps:
        step_loss = torch.zeros((), device=accelerator.device)
        for micro in range(args.grad_accum):
            m, clips = next(data)
            progress.micro = m + 1
            generators = batches.noise_generators(args.seed, m, rank, args.batch_size)
            sync = micro == args.grad_accum - 1
            with nullcontext() if sync else accelerator.no_sync(step_module):
                loss = step_module(clips, generators)
                # DeepSpeed divides by its gradient_accumulation_steps itself (and steps at the boundary)
                accelerator.backward(loss if deepspeed is not None else loss / args.grad_accum)
            step_loss += loss.detach() / args.grad_accum
        mean_loss = accelerator.gather(step_loss[None]).mean().item()  # every process's clips, as one batch
        if args.max_grad_norm > 0:
            accelerator.clip_grad_norm_(params, args.max_grad_norm)  # (fp16: unscales first; an inf stays non-finite)
        elif accelerator.scaler is not None:
            accelerator.unscale_gradients()
        lr = optimizer.param_groups[0]["lr"]  # the rate this step uses
        if not (math.isfinite(mean_loss) and gradients_finite(params, accelerator)):
            # before optimizer.step(): one inf gradient would make every weight NaN, and a checkpoint would keep them
            if accelerator.scaler is not None:
                optimizer.step()  # fp16: the loss scaler sees the inf, skips the update and lowers its scale
            optimizer.zero_grad(set_to_none=True)
            progress.skipped += 1
            # fp16: overflow while the loss scale is still high is the scaler's normal search, not a bad run
            bad_in_a_row += 1 if accelerator.scaler is None or accelerator.scaler.get_scale() < 1 else 0
            log(f"step {progress.step + 1}: inf/NaN gradients (loss {mean_loss:.6g}); step skipped, weights unchanged "
                f"({progress.skipped} skipped in all, {bad_in_a_row} in a row)")
            if bad_in_a_row >= args.max_bad_steps:
                hint = "; or use --mixed-precision bf16 instead of fp16" if accelerator.mixed_precision == "fp16" else ""
                raise AA2Error(f"{bad_in_a_row} steps in a row had inf/NaN gradients (--max-bad-steps {args.max_bad_steps}); stopped "
                               f"at step {progress.step} with the weights of that step; lower --lr (now {args.lr:g}){hint}, or check the "
                               "training set")
            continue
        bad_in_a_row = 0
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
        progress.step += 1
        losses.append(mean_loss)
        accelerator.log({"train/loss": mean_loss, "train/lr": lr}, step=progress.step)
        if progress.step == first + 1 or progress.step % args.log_every == 0 or progress.step == args.steps:
            per_step = (time.perf_counter() - t0) / len(losses)
            log(f"step {progress.step}/{args.steps} loss {mean_loss:.8g} lr {lr:.3g} ({per_step:.2f} s/step, "
                f"ETA {_duration(per_step * (args.steps - progress.step))})")
        if args.checkpoint_every and progress.step % args.checkpoint_every == 0:
            run.save(os.path.join(args.run_dir, "checkpoints", f"step_{progress.step:07d}"))
        if args.validate_every and (progress.step % args.validate_every == 0):
            validate(args, accelerator, models, validation_clip, progress.step)
    accelerator.wait_for_everyone()
    state = accelerator.get_state_dict(step_module)  # every process: FSDP / ZeRO gather the shards together
    if accelerator.is_main_process:
        write_output(args, accelerator, step_module, state, chosen, progress.step)
        log(f"wrote {args.out}")
    accelerator.end_training()
    return {"losses": losses, "step": progress.step, "skipped": progress.skipped, "written": True}


def _draws(args, source, rank, progress):
    """``(m, clips)`` from the saved data position on. Open-ended: a skipped step draws fresh clips, so how
    many micro-steps a run takes is not known ahead."""
    start, stop = progress.micro, progress.micro + (args.steps - progress.step) * args.grad_accum
    while True:
        yield from batches.micro_batches(source, args.seed, rank, args.batch_size, start, stop, args.workers)
        start, stop = stop, stop + args.grad_accum * args.max_bad_steps


def gradients_finite(params, accelerator) -> bool:
    """Whether every trained gradient is finite on every process (all agree, so all skip the same steps).
    Under DeepSpeed the step already ran inside backward; there this only stops a run that went bad."""
    grads = [p.grad for p in params if p.grad is not None]
    finite = torch.stack([torch.isfinite(g).all() for g in grads]).all() if grads else torch.tensor(True)
    return bool(accelerator.gather(finite.float().reshape(1).to(accelerator.device)).min() > 0)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


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
    try:
        save_aa2_file(args.out, trained_parts(state, chosen), base=os.path.abspath(args.models), fusion_blocks=denoising.fusion_blocks,
                      notes=f"python -m aa2_core train --modules {','.join(args.modules)} --stage {args.stage}: {steps} steps",
                      training=training, architecture=denoising.architecture())
    except OSError as e:  # written to a temporary name first: a file already at --out is unchanged
        raise AA2Error(f"--out {args.out}: could not write it ({e.strerror or e}); a file already there is unchanged") from e


def _hparams(args) -> dict:
    keys = ("modules", "stage", "frames", "stride", "batch_size", "grad_accum", "lr", "warmup_steps", "optimizer", "mixed_precision",
            "gradient_checkpointing", "uncond_prob", "schedule", "scale_range", "pose_indicator", "reference_background", "seed",
            "fusion_blocks", "blend_init")
    out = {}
    for k in keys:
        v = getattr(args, k, None)
        out[k] = ",".join(v) if isinstance(v, list) else (str(v) if isinstance(v, tuple) or v is None else v)
    return out
